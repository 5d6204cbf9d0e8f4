package flux

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Artifact is what a GitRepository's status says to fetch.
type Artifact struct {
	URL      string
	Path     string // the URL's path, as source-controller writes it
	Revision string // "<branch>@sha1:<commit>"
	Digest   string // "sha256:<hex>" of the tarball
	Size     int64
	// LastUpdateTime is when the artifact was published.
	LastUpdateTime time.Time
}

// artifactServer serves tarballs from memory on loopback, as
// source-controller serves its storage.
type artifactServer struct {
	base   string
	srv    *http.Server
	served chan error
	mu     sync.Mutex
	files  map[string][]byte // by URL path
	n      int               // artifacts so far, so that each has a URL of its own
}

func startArtifactServer() (*artifactServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &artifactServer{base: "http://" + ln.Addr().String(), files: map[string][]byte{}, served: make(chan error, 1)}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { s.served <- s.srv.Serve(ln) }()
	return s, nil
}

func (s *artifactServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	b, ok := s.files[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/gzip")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

// add packs dir into a tarball served under prefix.
func (s *artifactServer) add(prefix, dir, revision string) (Artifact, error) {
	b, err := tarball(dir)
	if err != nil {
		return Artifact{}, err
	}
	sum := sha256.Sum256(b)
	s.mu.Lock()
	s.n++
	path := fmt.Sprintf("%s/%d.tar.gz", prefix, s.n)
	s.files[path] = b
	s.mu.Unlock()
	return Artifact{URL: s.base + path, Path: path, Revision: revision, Digest: "sha256:" + hex.EncodeToString(sum[:]),
		Size: int64(len(b)), LastUpdateTime: time.Now().UTC()}, nil
}

func (s *artifactServer) close() {
	_ = s.srv.Close()
	<-s.served
}

// tarball is a gzipped tar of the regular files under dir, with paths
// relative to it, as source-controller packs a checkout.
func tarball(dir string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsDir() && !info.Mode().IsRegular() {
			return nil
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err = errors.Join(err, tw.Close(), gz.Close()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"fmt"
	"path"
	"strings"
	"time"
)

// entry is one file or directory of an image's single layer.
type entry struct {
	// path is absolute, as seen inside the container.
	path string
	mode int64
	// uid is also the gid: every entry belongs to root or to nonroot.
	uid  int
	dir  bool
	data []byte
}

// layerTime is every entry's modification time, so that the same inputs give
// the same layer digest: rebuilding a version changes nothing in a registry.
var layerTime = time.Unix(0, 0).UTC()

// passwd and group hold root, nobody and nonroot, as distroless's do: enough
// for a process, or a tool in a debug container, to name its user.
const passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
	"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
	"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"

const group = "root:x:0:\n" +
	"nobody:x:65534:\n" +
	"nonroot:x:65532:\n"

// layerEntries is the whole file system of the image of s: the binary, the CA
// bundle, the user database, a writable /tmp and home, and s's volumes. Parents
// come before their children, as a tar reader creating them in order needs.
func layerEntries(s spec, binary, caCerts []byte) []entry {
	dir := func(p string, mode int64, uid int) entry { return entry{path: p, mode: mode, uid: uid, dir: true} }
	file := func(p string, mode int64, data []byte) entry { return entry{path: p, mode: mode, data: data} }
	entries := []entry{
		dir("/etc", 0o755, 0),
		file("/etc/group", 0o644, []byte(group)),
		file("/etc/passwd", 0o644, []byte(passwd)),
		dir("/etc/ssl", 0o755, 0),
		dir("/etc/ssl/certs", 0o755, 0),
		file(caCertsPath, 0o644, caCerts),
		dir("/home", 0o755, 0),
		dir(nonrootHome, 0o700, nonrootUID),
		// Sticky and world-writable, as /tmp is everywhere: a library that
		// writes to os.TempDir works without a volume mounted there.
		dir("/tmp", 0o1777, 0),
		dir("/usr", 0o755, 0),
		dir("/usr/local", 0o755, 0),
		dir(binDir, 0o755, 0),
		file(s.entrypoint(), 0o755, binary),
	}
	for _, v := range s.volumes {
		entries = append(entries, dir(v, 0o755, nonrootUID))
	}
	return entries
}

// writeTar encodes entries as an uncompressed tar stream, with names relative
// to the root as image layers carry them.
func writeTar(entries []entry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if !path.IsAbs(e.path) || path.Clean(e.path) != e.path {
			return nil, fmt.Errorf("layer entry %q: want a clean absolute path", e.path)
		}
		h := &tar.Header{
			Name:    strings.TrimPrefix(e.path, "/"),
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.uid,
			Uname:   userName(e.uid),
			Gname:   userName(e.uid),
			ModTime: layerTime,
			Format:  tar.FormatPAX,
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

func userName(uid int) string {
	if uid == nonrootUID {
		return nonrootName
	}
	return "root"
}

// checkCACerts refuses a bundle without a single certificate: an image built
// from an empty or mistaken file would fail every TLS connection at run time,
// far from the build that caused it.
func checkCACerts(pem []byte) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no PEM certificate in it")
	}
	return nil
}

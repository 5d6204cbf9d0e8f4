package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// refNameAnnotation tags an entry of a layout's index.json, so that
// `skopeo copy oci:build/out/caravan:<version> ...` finds it.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// writeLayout replaces dir with an OCI image layout holding idx, tagged with
// version. It writes beside dir and renames, so that an interrupted build
// leaves the previous layout whole rather than a mix of two builds' blobs.
func writeLayout(dir string, idx v1.ImageIndex, version string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", parent, err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("make a folder beside %s: %w", dir, err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("start layout in %s: %w", tmp, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{refNameAnnotation: version})); err != nil {
		return fmt.Errorf("write layout in %s: %w", tmp, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove the previous %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the layout to %s: %w", dir, err)
	}
	return nil
}

// readLayout returns the image index that writeLayout stored in dir.
func readLayout(dir string) (v1.ImageIndex, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("read layout %s: %w", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("read layout %s: index.json: %w", dir, err)
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("layout %s: index.json lists %d entries, want the one image index this builder writes", dir, len(m.Manifests))
	}
	idx, err := top.ImageIndex(m.Manifests[0].Digest)
	if err != nil {
		return nil, fmt.Errorf("layout %s: image index %s: %w", dir, m.Manifests[0].Digest, err)
	}
	return idx, nil
}

// push uploads the layout in dir as tag, with the credentials docker login
// or crane auth login stored, then asks the registry what the tag names: a
// push that a proxy or a registry quietly dropped is an error here, not a
// surprise at the next deploy.
func push(ctx context.Context, dir string, tag name.Tag) (v1.Hash, error) {
	idx, err := readLayout(dir)
	if err != nil {
		return v1.Hash{}, err
	}
	want, err := idx.Digest()
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest of %s: %w", dir, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
	if err := remote.WriteIndex(tag, idx, opts...); err != nil {
		return v1.Hash{}, fmt.Errorf("push %s: %w (is IMAGE_REPO right, reachable, and logged in to?)", tag, err)
	}
	desc, err := remote.Head(tag, opts...)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("check pushed %s: %w", tag, err)
	}
	if desc.Digest != want {
		return v1.Hash{}, fmt.Errorf("pushed %s as %s, but the registry serves %s", tag, want, desc.Digest)
	}
	return want, nil
}

package main

import (
	"bytes"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// buildImage makes the single-layer OCI image of s for one platform. The
// config's creation time stays at its zero value, like the layer's times, so
// that an image depends on its inputs alone.
func buildImage(s spec, platform v1.Platform, version, source string, binary, caCerts []byte) (v1.Image, error) {
	tarBytes, err := writeTar(layerEntries(s, binary, caCerts))
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: %w", s.binary, platform, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: layer: %w", s.binary, platform, err)
	}

	// empty.Image is a Docker schema 2 manifest; the media types are set to
	// OCI's before anything else so that every descriptor computed later
	// carries them.
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: append layer: %w", s.binary, platform, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: config file: %w", s.binary, platform, err)
	}
	cf = cf.DeepCopy()
	cf.OS = platform.OS
	cf.Architecture = platform.Architecture
	cf.Variant = platform.Variant
	cf.Config = imageConfig(s, version, source)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s for %s: set config: %w", s.binary, platform, err)
	}
	return img, nil
}

// platformImage is one entry of a multi-platform image.
type platformImage struct {
	platform v1.Platform
	image    v1.Image
}

// buildIndex gathers a binary's per-platform images into the OCI image
// index a registry serves under one tag, each runtime pulling its own.
func buildIndex(images []platformImage) v1.ImageIndex {
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, pi := range images {
		p := pi.platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        pi.image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	return idx
}

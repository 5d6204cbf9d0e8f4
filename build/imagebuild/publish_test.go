package main

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeIndex is the index of caravan's image for amd64 and arm64 built around
// a stand-in binary: the assembly and publishing code without a compile.
func fakeIndex(t *testing.T, binary string) v1.ImageIndex {
	t.Helper()
	s, err := specFor("caravan")
	require.NoError(t, err)
	var images []platformImage
	for _, p := range []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}} {
		img, err := buildImage(s, p, "v1.0.0", "src", []byte(binary+" for "+p.Architecture), testCACerts(t))
		require.NoError(t, err)
		images = append(images, platformImage{platform: p, image: img})
	}
	return buildIndex(images)
}

func TestIndexListsEachPlatformAsAnOCIImage(t *testing.T) {
	idx := fakeIndex(t, "bin")
	mt, err := idx.MediaType()
	require.NoError(t, err)
	assert.Equal(t, types.OCIImageIndex, mt)
	m, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, m.Manifests, 2)
	for i, arch := range []string{"amd64", "arm64"} {
		d := m.Manifests[i]
		assert.Equal(t, types.OCIManifestSchema1, d.MediaType)
		require.NotNil(t, d.Platform)
		assert.Equal(t, v1.Platform{OS: "linux", Architecture: arch}, *d.Platform)

		img, err := idx.Image(d.Digest)
		require.NoError(t, err)
		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, arch, cf.Architecture, "the config must name the platform the index claims")
		assert.Equal(t, "linux", cf.OS)
		manifest, err := img.Manifest()
		require.NoError(t, err)
		assert.Equal(t, types.OCIConfigJSON, manifest.Config.MediaType)
		require.Len(t, manifest.Layers, 1, "one layer: binary, certificates and user together")
		assert.Equal(t, types.OCILayer, manifest.Layers[0].MediaType)
	}
}

func TestWriteLayoutReplacesThePreviousBuild(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out", "caravan")
	first := fakeIndex(t, "first")
	require.NoError(t, writeLayout(dir, first, "v1"))
	second := fakeIndex(t, "second")
	require.NoError(t, writeLayout(dir, second, "v2"))

	got, err := readLayout(dir)
	require.NoError(t, err)
	wantDigest, err := second.Digest()
	require.NoError(t, err)
	gotDigest, err := got.Digest()
	require.NoError(t, err)
	assert.Equal(t, wantDigest, gotDigest)

	// No blob of the first build is left behind to be mistaken for this one.
	firstDigest, err := first.Digest()
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(dir, "blobs", "sha256", firstDigest.Hex))
	assert.ErrorIs(t, err, os.ErrNotExist)
	// Nor the temporary folders it was written in.
	siblings, err := os.ReadDir(filepath.Dir(dir))
	require.NoError(t, err)
	require.Len(t, siblings, 1)
	assert.Equal(t, "caravan", siblings[0].Name())

	top, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err)
	topManifest, err := top.IndexManifest()
	require.NoError(t, err)
	require.Len(t, topManifest.Manifests, 1)
	assert.Equal(t, map[string]string{"org.opencontainers.image.ref.name": "v2"}, topManifest.Manifests[0].Annotations,
		"the tag skopeo's oci:build/out/caravan:v2 looks up")
}

func TestPushSendsTheLayoutAndChecksTheTag(t *testing.T) {
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "caravan")
	idx := fakeIndex(t, "bin")
	require.NoError(t, writeLayout(dir, idx, "v1.0.0"))
	want, err := idx.Digest()
	require.NoError(t, err)

	tag, err := name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/caravan/caravan:v1.0.0")
	require.NoError(t, err)
	got, err := push(context.Background(), dir, tag)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	pulled, err := remote.Index(tag)
	require.NoError(t, err)
	pulledDigest, err := pulled.Digest()
	require.NoError(t, err)
	assert.Equal(t, want, pulledDigest)
}

func TestPushFailsWhenTheRegistryIsUnreachable(t *testing.T) {
	srv := httptest.NewServer(quietRegistry())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there any more
	dir := filepath.Join(t.TempDir(), "caravan")
	require.NoError(t, writeLayout(dir, fakeIndex(t, "bin"), "v1.0.0"))

	tag, err := name.NewTag(host + "/caravan/caravan:v1.0.0")
	require.NoError(t, err)
	_, err = push(context.Background(), dir, tag)
	assert.ErrorContains(t, err, "push "+tag.String())
	assert.ErrorContains(t, err, "is IMAGE_REPO right, reachable, and logged in to?")
}

// A registry that accepts the push but then serves something else under the
// tag (a proxy cache, a concurrent push) must not pass for a good push.
func TestPushFailsWhenTheTagNamesAnotherDigest(t *testing.T) {
	other := fakeIndex(t, "other")
	otherDigest, err := other.Digest()
	require.NoError(t, err)
	reg := quietRegistry()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead && strings.HasSuffix(r.URL.Path, "/manifests/v1.0.0") {
			reg.ServeHTTP(&digestRewriter{ResponseWriter: w, digest: otherDigest.String()}, r)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "caravan")
	require.NoError(t, writeLayout(dir, fakeIndex(t, "bin"), "v1.0.0"))

	tag, err := name.NewTag(strings.TrimPrefix(srv.URL, "http://") + "/caravan/caravan:v1.0.0")
	require.NoError(t, err)
	_, err = push(context.Background(), dir, tag)
	assert.ErrorContains(t, err, "but the registry serves "+otherDigest.String())
}

// digestRewriter replaces the manifest digest a registry reports.
type digestRewriter struct {
	http.ResponseWriter
	digest string
}

func (d *digestRewriter) WriteHeader(code int) {
	if d.Header().Get("Docker-Content-Digest") != "" {
		d.Header().Set("Docker-Content-Digest", d.digest)
	}
	d.ResponseWriter.WriteHeader(code)
}

// quietRegistry is an in-process registry that does not log every request
// into the test output.
func quietRegistry() http.Handler {
	return registry.New(registry.Logger(log.New(io.Discard, "", 0)))
}

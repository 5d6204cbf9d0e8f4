package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImagesBuildPushAndRun builds the three images as `make images
// IMAGE_REPO=...` does (run, with the Makefile's flags), pushing them to an
// in-process registry, then takes each apart: its config, its CA bundle, and
// its binary, which must run and print the version it was built with. Only
// the machine's own platform is built, so that the binary runs here and the
// test compiles each command once.
func TestImagesBuildPushAndRun(t *testing.T) {
	srv := httptest.NewServer(quietRegistry())
	defer srv.Close()
	repo := strings.TrimPrefix(srv.URL, "http://") + "/caravan"

	ca := testCACerts(t)
	caFile := filepath.Join(t.TempDir(), "ca-certificates.crt")
	require.NoError(t, os.WriteFile(caFile, ca, 0o644))
	out := t.TempDir()
	// Not what any real build stamps, so a binary that printed a default or
	// a cached build's version would fail.
	const version = "v0.0.0-imagetest.7"
	platform := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}

	var stdout bytes.Buffer
	require.NoError(t, run(context.Background(), []string{
		"-version", version, "-out", out, "-push", repo,
		"-platforms", platform.String(), "-ca-certs", caFile,
	}, &stdout))

	for _, binary := range []string{"caravan", "caravan-central", "caravan-agent"} {
		t.Run(binary, func(t *testing.T) {
			idx, err := readLayout(filepath.Join(out, binary))
			require.NoError(t, err)
			m, err := idx.IndexManifest()
			require.NoError(t, err)
			require.Len(t, m.Manifests, 1)
			require.NotNil(t, m.Manifests[0].Platform)
			assert.Equal(t, platform, *m.Manifests[0].Platform)
			img, err := idx.Image(m.Manifests[0].Digest)
			require.NoError(t, err)

			cf, err := img.ConfigFile()
			require.NoError(t, err)
			assert.Equal(t, "65532:65532", cf.Config.User)
			assert.Equal(t, []string{"/usr/local/bin/" + binary}, cf.Config.Entrypoint)
			assert.Equal(t, version, cf.Config.Labels["org.opencontainers.image.version"])
			assert.Equal(t, binary, cf.Config.Labels["org.opencontainers.image.title"])
			assert.Equal(t, runtime.GOARCH, cf.Architecture)

			files, names := readTar(t, mutate.Extract(img))
			assert.Equal(t, ca, files["etc/ssl/certs/ca-certificates.crt"].data, "entries: %v", names)
			assert.Contains(t, string(files["etc/passwd"].data), "nonroot:x:65532:65532:")

			bin := files["usr/local/bin/"+binary]
			require.NotEmpty(t, bin.data, "no binary in the layer; entries: %v", names)
			exe := filepath.Join(t.TempDir(), binary)
			require.NoError(t, os.WriteFile(exe, bin.data, 0o755))
			got, err := exec.Command(exe, "--version").CombinedOutput()
			require.NoError(t, err, "%s --version: %s", binary, got)
			assert.Equal(t, version+"\n", string(got))

			// The registry serves, under the tag, exactly the layout's index.
			want, err := idx.Digest()
			require.NoError(t, err)
			tag, err := name.NewTag(repo + "/" + binary + ":" + version)
			require.NoError(t, err)
			pulled, err := remote.Index(tag)
			require.NoError(t, err)
			pulledDigest, err := pulled.Digest()
			require.NoError(t, err)
			assert.Equal(t, want, pulledDigest)
			assert.Contains(t, stdout.String(), "pushed "+tag.String()+"@"+want.String())
		})
	}
}

// `make images IMAGE_REPO=...` fails when the push does, after writing every
// layout: the build is not lost, and CI does not go on as if it had pushed.
func TestImagesFailWhenThePushFails(t *testing.T) {
	srv := httptest.NewServer(quietRegistry())
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Close() // nothing listens there any more
	caFile := filepath.Join(t.TempDir(), "ca-certificates.crt")
	require.NoError(t, os.WriteFile(caFile, testCACerts(t), 0o644))
	out := t.TempDir()

	var stdout bytes.Buffer
	// One small binary: what is under test is the failure, not the build.
	err := run(context.Background(), []string{
		"-version", "v0.0.0-pushfails", "-out", out, "-push", host + "/caravan",
		"-platforms", "linux/" + runtime.GOARCH, "-ca-certs", caFile, "-binaries", "caravan-central",
	}, &stdout)
	assert.ErrorContains(t, err, "push "+host+"/caravan/caravan-central:v0.0.0-pushfails")
	assert.Empty(t, stdout.String(), "nothing reported as built and pushed")
	_, err = readLayout(filepath.Join(out, "caravan-central"))
	assert.NoError(t, err, "the layout is written before the push")
}

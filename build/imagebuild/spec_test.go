package main

import (
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestImageConfigRunsTheBinaryAsNonroot(t *testing.T) {
	for _, s := range specs {
		t.Run(s.binary, func(t *testing.T) {
			cfg := imageConfig(s, "v1.2.3", "https://example.org/src")
			assert.Equal(t, "65532:65532", cfg.User)
			assert.Equal(t, []string{"/usr/local/bin/" + s.binary}, cfg.Entrypoint)
			assert.Equal(t, map[string]string{
				"org.opencontainers.image.version": "v1.2.3",
				"org.opencontainers.image.source":  "https://example.org/src",
				"org.opencontainers.image.title":   s.binary,
			}, cfg.Labels)
			assert.Contains(t, cfg.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")
		})
	}
}

// The registry's image keeps build/caravan-central.Dockerfile's defaults: a
// `docker run` of either serves on 8080 with SQLite on the /data volume.
func TestCentralConfigMatchesItsDockerfile(t *testing.T) {
	s, err := specFor("caravan-central")
	require.NoError(t, err)
	cfg := imageConfig(s, "v1", "src")
	assert.Equal(t, []string{"serve", "--listen", "0.0.0.0:8080", "--insecure-http", "--database", "sqlite:///data/caravan.db"}, cfg.Cmd)
	assert.Equal(t, map[string]struct{}{"8080/tcp": {}}, cfg.ExposedPorts)
	assert.Equal(t, map[string]struct{}{"/data": {}}, cfg.Volumes)

	agent, err := specFor("caravan-agent")
	require.NoError(t, err)
	agentCfg := imageConfig(agent, "v1", "src")
	assert.Empty(t, agentCfg.Cmd)
	assert.Empty(t, agentCfg.ExposedPorts)
	assert.Empty(t, agentCfg.Volumes)
}

func TestSpecForUnknownBinary(t *testing.T) {
	_, err := specFor("caravan-ui")
	assert.ErrorContains(t, err, `no image is defined for "caravan-ui"; known: caravan, caravan-central, caravan-agent`)
}

func TestGoBuildArgsMatchTheMakefileBuild(t *testing.T) {
	args := goBuildArgs("v1.2.3", "/tmp/out", []string{"caravan", "caravan-agent"})
	assert.Equal(t, []string{
		"build", "-trimpath",
		"-ldflags", "-s -w -X github.com/caravan-gitops/caravan/pkg/version.Version=v1.2.3",
		"-o", "/tmp/out/",
		"./cmd/caravan", "./cmd/caravan-agent",
	}, args)
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-version", "v0.2.0-3-gabcdef-dirty"})
	require.NoError(t, err)
	assert.Equal(t, "build/out", o.out)
	assert.Equal(t, "", o.push, "no push unless asked")
	assert.Equal(t, []string{"caravan", "caravan-central", "caravan-agent"}, o.binaries)
	assert.Equal(t, []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}, o.platforms)

	o, err = parseFlags([]string{"-version", "v1", "-platforms", "linux/arm/v7", "-binaries", "caravan-agent", "-push", "localhost:5000/caravan/"})
	require.NoError(t, err)
	assert.Equal(t, []v1.Platform{{OS: "linux", Architecture: "arm", Variant: "v7"}}, o.platforms)
	assert.Equal(t, []string{"caravan-agent"}, o.binaries)
	assert.Equal(t, "localhost:5000/caravan", o.push)

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no version":      {[]string{}, "-version is required"},
		"version not tag": {[]string{"-version", "dev+0123abc"}, "is not a valid image tag"},
		"no platform":     {[]string{"-version", "v1", "-platforms", " , "}, "-platforms lists none"},
		"unknown binary":  {[]string{"-version", "v1", "-binaries", "caravan,kubectl"}, `no image is defined for "kubectl"`},
		"stray argument":  {[]string{"-version", "v1", "extra"}, "unexpected arguments"},
		"bad repository":  {[]string{"-version", "v1", "-push", "Registry.Example/UPPER"}, "is not a repository"},
	} {
		_, err := parseFlags(tc.args)
		assert.ErrorContains(t, err, tc.want, name)
	}
}

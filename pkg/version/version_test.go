package version

import (
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnstampedVersionNamesTheCommit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		settings []debug.BuildSetting
		want     string
	}{
		{"no vcs information", nil, "dev"},
		{"clean checkout", []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "6bbfee7a1b2c3d4e5f60718293a4b5c6d7e8f901"},
			{Key: "vcs.modified", Value: "false"},
		}, "dev+6bbfee7a1b2c"},
		{"uncommitted changes", []debug.BuildSetting{
			{Key: "vcs.revision", Value: "6bbfee7a1b2c3d4e5f60718293a4b5c6d7e8f901"},
			{Key: "vcs.modified", Value: "true"},
		}, "dev+6bbfee7a1b2c.dirty"},
		{"short revision", []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}, "dev+abc123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, fromBuildSettings(tc.settings))
		})
	}
}

func TestStampedVersionWins(t *testing.T) {
	stamped := Version
	t.Cleanup(func() { Version = stamped })
	Version = "v1.4.2"
	assert.Equal(t, "v1.4.2", String())
}

func TestEmptyStampCountsAsNone(t *testing.T) {
	stamped := Version
	t.Cleanup(func() { Version = stamped })
	Version = ""
	assert.Regexp(t, `^dev(\+[0-9a-f]+(\.dirty)?)?$`, String())
}

// Builds the three binaries with a stamp, as `make build` and the
// Dockerfiles do, and asks each for its version. The build keeps the
// environment's cgo setting, so that it shares the go test build's cache;
// the stamp does not depend on it.
func TestEveryBinaryPrintsTheStampedVersion(t *testing.T) {
	const stamp = "v0.0.0-versiontest.1"
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+string(filepath.Separator),
		"-ldflags", "-X github.com/caravan-gitops/caravan/pkg/version.Version="+stamp,
		"github.com/caravan-gitops/caravan/cmd/caravan",
		"github.com/caravan-gitops/caravan/cmd/caravan-central",
		"github.com/caravan-gitops/caravan/cmd/caravan-agent")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	for _, name := range []string{"caravan", "caravan-central", "caravan-agent"} {
		out, err := exec.Command(filepath.Join(bin, name), "--version").CombinedOutput()
		require.NoError(t, err, "%s --version: %s", name, out)
		assert.Equal(t, stamp+"\n", string(out), "%s --version", name)
	}
}

package gitserver

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCloneAndPushThroughTheServer(t *testing.T) {
	s := Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "README"), []byte("hello\n"), 0o644))
	first, err := s.CreateRepo("config", src, "dev", "stable")
	require.NoError(t, err)

	next, err := s.Commit("config", "dev", "change dev", map[string][]byte{"kubernetes/a.yaml": []byte("a: 1\n"), "README": nil})
	require.NoError(t, err)
	assert.NotEqual(t, first, next)

	out, err := exec.Command("git", "ls-remote", s.AuthURL("config")).Output()
	require.NoError(t, err)
	refs := string(out)
	assert.Contains(t, refs, next+"\trefs/heads/dev")
	assert.Contains(t, refs, first+"\trefs/heads/stable", "other branches stay where they were")

	bad := strings.Replace(s.RepoURL("config"), "http://", "http://caravan:wrong@", 1)
	cmd := exec.Command("git", "ls-remote", bad)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0")
	assert.Error(t, cmd.Run(), "a wrong password is refused")
}

func TestAServerDownRefusesAndUpServesAgain(t *testing.T) {
	s := Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "README"), []byte("hello\n"), 0o644))
	first, err := s.CreateRepo("config", src, "dev")
	require.NoError(t, err)

	require.NoError(t, s.Down())
	_, err = net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "a server down refuses connections")

	require.NoError(t, s.Up())
	refs, err := exec.Command("git", "ls-remote", s.AuthURL("config")).Output()
	require.NoError(t, err)
	assert.Contains(t, string(refs), first+"\trefs/heads/dev", "the repositories are kept")
}

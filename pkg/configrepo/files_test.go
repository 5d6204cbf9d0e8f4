package configrepo

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/test/gitserver"
)

func TestHeadAndFetchThroughARealGitServer(t *testing.T) {
	srv := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "kubernetes"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "kubernetes", "a.yaml"), []byte("a: 1\n"), 0o644))
	first, err := srv.CreateRepo("config", src, "dev", "stable")
	require.NoError(t, err)
	ctx := context.Background()

	repo, err := Open(srv.RepoURL("config"), Credentials{Username: srv.User, Password: srv.Password})
	require.NoError(t, err)
	head, err := repo.Head(ctx, "dev")
	require.NoError(t, err)
	assert.Equal(t, first, head)

	next, err := srv.Commit("config", "dev", "add b", map[string][]byte{"kubernetes/b.yaml": []byte("b: 2\n")})
	require.NoError(t, err)
	head, err = repo.Head(ctx, "dev")
	require.NoError(t, err)
	assert.Equal(t, next, head, "a new commit shows in the head")
	stable, err := repo.Head(ctx, "stable")
	require.NoError(t, err)
	assert.Equal(t, first, stable, "other channels' branches stay")

	snap, err := repo.Fetch(ctx, "dev")
	require.NoError(t, err)
	assert.Equal(t, next, snap.Commit)
	b, err := fs.ReadFile(snap.Files, "kubernetes/b.yaml")
	require.NoError(t, err)
	assert.Equal(t, "b: 2\n", string(b))
	entries, err := fs.ReadDir(snap.Files, "kubernetes")
	require.NoError(t, err)
	assert.Len(t, entries, 2)

	_, err = repo.Head(ctx, "nightly")
	assert.ErrorIs(t, err, ErrBranchNotFound)
	_, err = repo.Fetch(ctx, "nightly")
	assert.ErrorIs(t, err, ErrBranchNotFound)

	wrong, err := Open(srv.RepoURL("config"), Credentials{Username: srv.User, Password: "nope"})
	require.NoError(t, err)
	_, err = wrong.Head(ctx, "dev")
	assert.Error(t, err, "a wrong password is refused")
}

func TestHeadAndFetchOverSSHWithAKeyAndAPinnedHost(t *testing.T) {
	srv := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "README.md"), []byte("config\n"), 0o644))
	first, err := srv.CreateRepo("config", src, "dev")
	require.NoError(t, err)
	ssh := srv.StartSSH(t)
	ctx := context.Background()

	repo, err := Open(ssh.URL("config"), Credentials{SSHKey: ssh.ClientKey, KnownHosts: ssh.KnownHosts})
	require.NoError(t, err)
	head, err := repo.Head(ctx, "dev")
	require.NoError(t, err)
	assert.Equal(t, first, head)
	snap, err := repo.Fetch(ctx, "dev")
	require.NoError(t, err)
	assert.Equal(t, first, snap.Commit)
	b, err := fs.ReadFile(snap.Files, "README.md")
	require.NoError(t, err)
	assert.Equal(t, "config\n", string(b))

	other := gitserver.Start(t).StartSSH(t)
	stranger, err := Open(ssh.URL("config"), Credentials{SSHKey: other.ClientKey, KnownHosts: ssh.KnownHosts})
	require.NoError(t, err)
	_, err = stranger.Head(ctx, "dev")
	assert.Error(t, err, "a key the server does not know is refused")

	impostor, err := Open(ssh.URL("config"), Credentials{SSHKey: ssh.ClientKey, KnownHosts: other.KnownHosts})
	require.NoError(t, err)
	_, err = impostor.Head(ctx, "dev")
	assert.Error(t, err, "a host whose key known_hosts does not pin is refused")
}

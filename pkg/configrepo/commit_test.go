package configrepo

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caravan-gitops/caravan/test/gitserver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A plan's commit is found on any branch: a head, or a commit behind one.
func TestFetchCommitFindsTheCommitOnAnyBranch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	git := gitserver.Start(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config-defaults.yaml"), []byte("defaults: {}\n"), 0o644))
	first, err := git.CreateRepo("config", dir, "dev", "stable")
	require.NoError(t, err)
	older, err := git.Commit("config", "dev", "older", map[string][]byte{"note.txt": []byte("older\n")})
	require.NoError(t, err)
	head, err := git.Commit("config", "dev", "head", map[string][]byte{"note.txt": []byte("head\n")})
	require.NoError(t, err)
	url, creds := git.RepoURL("config"), Credentials{Username: git.User, Password: git.Password}

	fetchCommit := func(ctx context.Context, url string, creds Credentials, commit string) (fs.FS, error) {
		repo, err := Open(url, creds)
		require.NoError(t, err)
		return repo.FetchCommit(ctx, commit)
	}
	for commit, want := range map[string]string{head: "head\n", older: "older\n"} {
		files, err := fetchCommit(ctx, url, creds, commit)
		require.NoError(t, err, commit)
		note, err := fs.ReadFile(files, "note.txt")
		require.NoError(t, err)
		assert.Equal(t, want, string(note))
	}
	files, err := fetchCommit(ctx, url, creds, first)
	require.NoError(t, err)
	_, err = fs.Stat(files, "note.txt")
	assert.ErrorIs(t, err, fs.ErrNotExist, "the first commit, head of stable, has no note")

	_, err = fetchCommit(ctx, url, creds, "0123456789abcdef0123456789abcdef01234567")
	assert.ErrorIs(t, err, ErrCommitNotFound)
	assert.ErrorContains(t, err, "0123456789abcdef0123456789abcdef01234567 is not among the newest 200 commits of any branch of "+url)

	_, err = fetchCommit(ctx, url, Credentials{Username: git.User, Password: "wrong"}, head)
	assert.ErrorContains(t, err, "listing "+url)
}

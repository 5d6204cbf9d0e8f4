package gitserver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

func TestTheServerCountsListingsFetchesAndPushesByClient(t *testing.T) {
	s := Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "README"), []byte("hello\n"), 0o644))
	_, err := s.CreateRepo("config", src, "dev")
	require.NoError(t, err)
	assert.Empty(t, s.Requests(), "creating a repository goes around the server")

	for range 2 {
		require.NoError(t, exec.Command("git", "ls-remote", s.AuthURL("config")).Run())
	}
	_, err = s.Commit("config", "dev", "change dev", map[string][]byte{"a.yaml": []byte("a: 1\n")})
	require.NoError(t, err)

	got := s.Requests()
	key := func(kind string) RequestKey { return RequestKey{Repo: "config", Kind: kind, Client: "git"} }
	assert.Equal(t, 3, got[key(RefListing)], "two ls-remote and the clone")
	assert.Equal(t, 3, got[key(Handshake)], "protocol v2 asks for the capabilities before each listing")
	assert.Positive(t, got[key(Fetch)], "the clone")
	assert.Equal(t, 2, got[key(Push)], "the push lists the refs it pushes to, then sends")
	assert.Len(t, got, 4)

	require.Error(t, exec.Command("git", "ls-remote", s.RepoURL("config")).Run())
	assert.Equal(t, got, s.Requests(), "a request without credentials is refused, not counted")

	repo, err := configrepo.Open(s.RepoURL("config"), gitauth.Credentials{Username: s.User, Password: s.Password})
	require.NoError(t, err)
	_, err = repo.Branches(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 1, s.Requests()[RequestKey{Repo: "config", Kind: RefListing, Client: "go-git"}], "go-git speaks protocol v0: one GET info/refs")
}

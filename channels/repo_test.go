package channels

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// testRepo is a config repo on a real git server with one branch per channel.
type testRepo struct {
	t     *testing.T
	srv   *gitserver.Server
	url   string
	first string
}

func newTestRepo(t *testing.T) *testRepo {
	t.Helper()
	srv := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644))
	first, err := srv.CreateRepo("config", src, "dev", "alpha", "beta")
	require.NoError(t, err)
	return &testRepo{t: t, srv: srv, url: srv.RepoURL("config"), first: first}
}

func (r *testRepo) creds() gitauth.Credentials {
	return gitauth.Credentials{Username: r.srv.User, Password: r.srv.Password}
}

// commit adds a commit on branch, as an operator pushing would.
func (r *testRepo) commit(branch, message string) string {
	r.t.Helper()
	c, err := r.srv.Commit("config", branch, message, map[string][]byte{"changes/" + strings.ReplaceAll(message, " ", "-"): []byte(message)})
	require.NoError(r.t, err)
	return c
}

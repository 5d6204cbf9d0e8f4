package configrepo

import (
	"os"
	"os/exec"
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

// merge merges branch from into branch into with a merge commit, as a
// merged pull request does, and returns the merge commit.
func (r *testRepo) merge(into, from string) string {
	r.t.Helper()
	work := r.t.TempDir()
	r.git(work, "clone", "--quiet", "--branch", into, r.srv.AuthURL("config"), ".")
	r.git(work, "fetch", "--quiet", "origin", from)
	r.git(work, "merge", "--quiet", "--no-ff", "-m", "Merge "+from+" into "+into, "FETCH_HEAD")
	r.git(work, "push", "--quiet", "origin", into)
	return strings.TrimSpace(r.git(work, "rev-parse", "HEAD"))
}

// head is the commit branch points to on the server.
func (r *testRepo) head(branch string) string {
	r.t.Helper()
	return strings.TrimSpace(r.git("", "--git-dir", filepath.Join(r.srv.Root, "config.git"), "rev-parse", "refs/heads/"+branch))
}

func (r *testRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Merger", "-c", "user.email=merger@caravan.invalid", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	require.NoError(r.t, err, "git %s: %s", strings.Join(args, " "), out)
	return string(out)
}

package gitserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// ChannelRepo is a config repo on a test git server with one branch per
// channel, for the tests of what reads and moves channels' branches.
type ChannelRepo struct {
	t      testing.TB
	Server *Server
	URL    string
	// First is the commit every branch starts at.
	First string
}

// StartChannelRepo serves a repo "config" whose branches dev, alpha and
// beta hold one commit, until the test ends.
func StartChannelRepo(t testing.TB) *ChannelRepo {
	t.Helper()
	srv := Start(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	first, err := srv.CreateRepo("config", src, "dev", "alpha", "beta")
	if err != nil {
		t.Fatal(err)
	}
	return &ChannelRepo{t: t, Server: srv, URL: srv.RepoURL("config"), First: first}
}

// Credentials reach the repo.
func (r *ChannelRepo) Credentials() gitauth.Credentials {
	return gitauth.Credentials{Username: r.Server.User, Password: r.Server.Password}
}

// Commit adds a commit on branch, as an operator pushing would.
func (r *ChannelRepo) Commit(branch, message string) string {
	r.t.Helper()
	c, err := r.Server.Commit("config", branch, message, map[string][]byte{"changes/" + strings.ReplaceAll(message, " ", "-"): []byte(message)})
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// Merge merges branch from into branch into with a merge commit, as a
// merged pull request does, and returns the merge commit.
func (r *ChannelRepo) Merge(into, from string) string {
	r.t.Helper()
	work := r.t.TempDir()
	r.git(work, "clone", "--quiet", "--branch", into, r.Server.AuthURL("config"), ".")
	r.git(work, "fetch", "--quiet", "origin", from)
	r.git(work, "merge", "--quiet", "--no-ff", "-m", "Merge "+from+" into "+into, "FETCH_HEAD")
	r.git(work, "push", "--quiet", "origin", into)
	return strings.TrimSpace(r.git(work, "rev-parse", "HEAD"))
}

// Head is the commit branch points to on the server.
func (r *ChannelRepo) Head(branch string) string {
	r.t.Helper()
	return strings.TrimSpace(r.git("", "--git-dir", filepath.Join(r.Server.Root, "config.git"), "rev-parse", "refs/heads/"+branch))
}

func (r *ChannelRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Merger", "-c", "user.email=merger@caravan.invalid", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

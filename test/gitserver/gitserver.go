// Package gitserver serves bare git repositories over smart HTTP, with
// basic auth, through the real `git http-backend`, for tests and the demo.
package gitserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Server is a running git server.
type Server struct {
	// Root holds the bare repositories, one folder named NAME.git each.
	Root     string
	User     string
	Password string
	URL      string
	srv      *http.Server
	requests requestCounts
}

// Launch serves the bare repositories under root on a free loopback port
// until Close. Pushes are allowed to the authenticated user.
func Launch(root, user, password string) (*Server, error) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("the git server needs git: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{Root: root, User: user, Password: password, URL: "http://" + ln.Addr().String()}
	s.srv = &http.Server{Handler: s.handler(gitPath), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Start serves a new, empty root until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch(t.TempDir(), "caravan", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Close stops serving.
func (s *Server) Close() error { return s.srv.Close() }

func (s *Server) handler(gitPath string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok || user != s.User || password != s.Password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		s.requests.count(r)
		// http-backend allows pushes only when REMOTE_USER is set.
		h := &cgi.Handler{
			Path: gitPath,
			Args: []string{"http-backend"},
			Env:  []string{"GIT_PROJECT_ROOT=" + s.Root, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=" + user},
		}
		h.ServeHTTP(w, r)
	})
}

// RepoURL is the clone URL of a repository, without credentials.
func (s *Server) RepoURL(name string) string { return s.URL + "/" + name + ".git" }

// AuthURL is the clone URL with the credentials in it, for the git command.
func (s *Server) AuthURL(name string) string {
	return strings.Replace(s.RepoURL(name), "http://", "http://"+s.User+":"+s.Password+"@", 1)
}

// CreateRepo makes a bare repository whose branches all start from one
// commit holding the files of dir.
func (s *Server) CreateRepo(name, dir string, branches ...string) (string, error) {
	bare := filepath.Join(s.Root, name+".git")
	if err := run("", "git", "init", "--bare", "--quiet", "--initial-branch", "main", bare); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp("", "caravan-git-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := os.CopyFS(work, os.DirFS(dir)); err != nil {
		return "", fmt.Errorf("copying %s: %w", dir, err)
	}
	steps := [][]string{
		{"init", "--quiet", "--initial-branch", "main"},
		{"add", "--all"},
		{"commit", "--quiet", "-m", "Initial configuration"},
	}
	for _, b := range branches {
		steps = append(steps, []string{"branch", b})
	}
	for _, step := range steps {
		if err := git(work, step...); err != nil {
			return "", err
		}
	}
	if err := git(work, append([]string{"push", "--quiet", bare, "main"}, branches...)...); err != nil {
		return "", err
	}
	return head(work)
}

// Commit changes files on a branch (a nil content deletes the file) and
// pushes through the server, as an operator would; it returns the new commit.
func (s *Server) Commit(name, branch, message string, files map[string][]byte) (string, error) {
	work, err := os.MkdirTemp("", "caravan-git-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	if err := git(work, "clone", "--quiet", "--branch", branch, "--single-branch", s.AuthURL(name), "."); err != nil {
		return "", err
	}
	for path, content := range files {
		full := filepath.Join(work, filepath.FromSlash(path))
		if content == nil {
			if err := os.Remove(full); err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return "", err
		}
	}
	for _, step := range [][]string{{"add", "--all"}, {"commit", "--quiet", "--allow-empty", "-m", message}, {"push", "--quiet", "origin", branch}} {
		if err := git(work, step...); err != nil {
			return "", err
		}
	}
	return head(work)
}

func head(dir string) (string, error) {
	out, err := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
	if err != nil {
		return "", fmt.Errorf("git rev-parse HEAD: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// git runs git with a fixed identity, independent of the user's config.
func git(dir string, args ...string) error {
	base := []string{"-c", "user.name=Caravan Test", "-c", "user.email=test@caravan.invalid", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main"}
	return run(dir, "git", append(base, args...)...)
}

func run(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

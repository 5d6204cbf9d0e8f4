// Package centraltest runs a real caravan-central on loopback for tests of
// the registry, its client, the CLI and the agent.
package centraltest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// Server is a running registry.
type Server struct {
	URL        string
	AdminToken string
	Database   string
	cancel     context.CancelFunc
	done       chan error
}

// Option changes the server a test starts.
type Option func(*central.Config)

// WithDatabase serves from databaseURL instead of a new SQLite file.
func WithDatabase(databaseURL string) Option {
	return func(c *central.Config) { c.Database = databaseURL }
}

// WithMaxWait bounds long-polls.
func WithMaxWait(d time.Duration) Option { return func(c *central.Config) { c.MaxWait = d } }

// Start runs caravan-central on a free loopback port until the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := central.Config{
		Listen:        "127.0.0.1:0",
		Database:      "sqlite://" + filepath.Join(t.TempDir(), "caravan.db"),
		RepositoryURL: "https://git.example.org/fleet-config.git",
		Logger:        slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}
	for _, o := range opts {
		o(&cfg)
	}
	addr := make(chan string, 1)
	cfg.Ready = func(a string) { addr <- a }
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Database: cfg.Database, cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- central.Run(ctx, cfg) }()
	select {
	case a := <-addr:
		s.URL = "http://" + a
	case err := <-s.done:
		cancel()
		t.Fatalf("caravan-central did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("caravan-central did not start within 30s")
	}
	t.Cleanup(func() { s.Stop(t) })
	s.AdminToken = s.Token(t, api.RoleAdmin, "")
	return s
}

// Token creates a token directly in the database, as `caravan-central token create` does.
func (s *Server) Token(t testing.TB, role, clusterID string) string {
	t.Helper()
	st, err := store.Open(context.Background(), s.Database)
	if err != nil {
		t.Fatalf("opening the registry database: %v", err)
	}
	defer st.Close()
	tok, err := st.CreateToken(context.Background(), role+"-"+time.Now().Format("150405.000000000"), role, clusterID, "centraltest")
	if err != nil {
		t.Fatalf("creating a %s token: %v", role, err)
	}
	return tok.Secret
}

// Stop shuts the server down gracefully; it is safe to call twice.
func (s *Server) Stop(t testing.TB) {
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.cancel = nil
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("caravan-central stopped with: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Error("caravan-central did not stop within 40s")
	}
}

// AnnouncePush sends the registry the plain git webhook of a push to
// branch, signed with secret (the server's WebhookSecret), as a git host
// does after a push: the registry reads the branch before it answers.
func (s *Server) AnnouncePush(t testing.TB, secret, branch string) {
	t.Helper()
	if err := gitserver.AnnouncePush(context.Background(), s.URL, secret, branch); err != nil {
		t.Fatal(err)
	}
}

package central_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Tokens shaped like the ones the caravan-central chart generates.
const (
	firstAdminToken  = "cvn_Q8fz2LkP0aXwR7tYbN4mC1vS9dHjE6uG3oKiT5rW"
	secondAdminToken = "cvn_Zr4Xn8Vq1Bm7Lc2Kd9Jf3Hg6Ps0Wt5Ye1Ua8Io4S"
)

// lockedBuffer collects a server's log while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// served is `caravan-central serve` running in the test.
type served struct {
	url      string
	log      *lockedBuffer
	finished chan struct{}
	// runErr is what the command returned, once finished is closed.
	runErr *error
	stop   func()
}

// serve runs `caravan-central serve` with args on a free loopback port
// until it answers /readyz; it stops at the latest when the test ends.
func serve(t *testing.T, args ...string) *served {
	t.Helper()
	s := startServe(t, args...)
	s.waitReady(t)
	return s
}

// startServe starts `caravan-central serve` without waiting for it.
func startServe(t *testing.T, args ...string) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	ctx, cancel := context.WithCancel(context.Background())
	log := &lockedBuffer{}
	var runErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		cmd := central.Command()
		cmd.SetOut(io.Discard)
		cmd.SetErr(log)
		cmd.SetArgs(append([]string{"serve", "--listen", addr}, args...))
		runErr = cmd.ExecuteContext(ctx)
	}()
	s := &served{url: "http://" + addr, log: log, finished: finished, runErr: &runErr, stop: sync.OnceFunc(func() {
		cancel()
		<-finished
		assert.NoError(t, runErr, "caravan-central serve stopped with an error")
	})}
	t.Cleanup(s.stop)
	return s
}

func (s *served) waitReady(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case <-s.finished:
			t.Fatalf("caravan-central serve ended before it was ready: %v; its log: %s", *s.runErr, s.log)
		default:
		}
		if res, err := http.Get(s.url + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "caravan-central serve not ready within 30s")
	}
}

func (s *served) client(t *testing.T, token string) *client {
	return &client{t: t, base: s.url, token: token}
}

// withServer serves with args, runs fn against the server and stops it: one
// life of the registry's pod.
func withServer(t *testing.T, args []string, fn func(s *served)) {
	t.Helper()
	s := serve(t, args...)
	defer s.stop()
	fn(s)
}

func writeToken(t *testing.T, file, token string) {
	t.Helper()
	require.NoError(t, os.WriteFile(file, []byte(token+"\n"), 0o600))
}

// bootstrapTokens lists the tokens named bootstrap-admin.
func bootstrapTokens(t *testing.T, admin *client) []api.Token {
	t.Helper()
	var list api.List[api.Token]
	admin.must(http.StatusOK, "GET", "/api/v1/tokens?limit=1000", nil).json(t, &list)
	var out []api.Token
	for _, tok := range list.Items {
		if tok.Name == central.AdminTokenName {
			out = append(out, tok)
		}
	}
	return out
}

// tokenActions lists the audit log's actions on one token, newest first.
func tokenActions(t *testing.T, admin *client, id string) []string {
	t.Helper()
	var list api.List[api.AuditEntry]
	admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=token&resource_id="+id+"&limit=1000", nil).json(t, &list)
	var actions []string
	for _, e := range list.Items {
		actions = append(actions, e.Action)
	}
	return actions
}

// TestAdminTokenFileGivesTheFirstAdminToken runs the registry again and
// again over one database, as restarts of its pod would, with the file of
// --admin-token-file unchanged, changed, and its token revoked.
func TestAdminTokenFileGivesTheFirstAdminToken(t *testing.T) {
	databases := map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "caravan.db") },
		"postgres": func(t *testing.T) string { return pg.NewDatabase(t) },
	}
	for name, database := range databases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "token")
			writeToken(t, file, firstAdminToken)
			args := []string{"--database", database(t), "--admin-token-file", file}
			var first api.Token

			withServer(t, args, func(s *served) {
				admin := s.client(t, firstAdminToken)
				admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
				tokens := bootstrapTokens(t, admin)
				require.Len(t, tokens, 1)
				first = tokens[0]
				assert.Equal(t, api.RoleAdmin, first.Role)
				assert.Nil(t, first.RevokedAt)
			})

			t.Run("a restart with the same file changes nothing", func(t *testing.T) {
				withServer(t, args, func(s *served) {
					admin := s.client(t, firstAdminToken)
					assert.Equal(t, []api.Token{first}, bootstrapTokens(t, admin))
					assert.Equal(t, []string{"create"}, tokenActions(t, admin, first.ID))
				})
			})

			t.Run("a new secret in the file replaces the former one", func(t *testing.T) {
				writeToken(t, file, secondAdminToken)
				withServer(t, args, func(s *served) {
					s.client(t, firstAdminToken).must(http.StatusUnauthorized, "GET", "/api/v1/clusters", nil)
					admin := s.client(t, secondAdminToken)
					tokens := bootstrapTokens(t, admin)
					require.Len(t, tokens, 1)
					assert.Equal(t, first.ID, tokens[0].ID, "the token keeps its id")
					assert.Equal(t, []string{"update", "create"}, tokenActions(t, admin, first.ID))
				})
			})

			t.Run("a token revoked through the API stays revoked", func(t *testing.T) {
				withServer(t, args, func(s *served) {
					s.client(t, secondAdminToken).must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+first.ID, nil)
				})
				withServer(t, args, func(s *served) {
					s.client(t, secondAdminToken).must(http.StatusUnauthorized, "GET", "/api/v1/clusters", nil)
					assert.Contains(t, s.log.String(), "stays revoked", "the log says why the file's token does not work")
				})
			})

			t.Run("a new secret brings a revoked token back", func(t *testing.T) {
				writeToken(t, file, firstAdminToken+"-3")
				withServer(t, args, func(s *served) {
					admin := s.client(t, firstAdminToken+"-3")
					tokens := bootstrapTokens(t, admin)
					require.Len(t, tokens, 1)
					assert.Nil(t, tokens[0].RevokedAt)
					assert.Equal(t, []string{"update", "revoke", "update", "create"}, tokenActions(t, admin, first.ID))
				})
			})
		})
	}
}

// Replicas on one PostgreSQL database that start together with a new
// secret make one token between them.
func TestAdminTokenFileOnReplicasStartingTogether(t *testing.T) {
	database := pg.NewDatabase(t)
	serve(t, "--database", database).stop()
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, firstAdminToken)
	replicas := []*served{startServe(t, "--database", database, "--admin-token-file", file), startServe(t, "--database", database, "--admin-token-file", file)}
	for _, r := range replicas {
		r.waitReady(t)
	}
	assert.Len(t, bootstrapTokens(t, replicas[1].client(t, firstAdminToken)), 1)

	writeToken(t, file, secondAdminToken)
	for _, r := range replicas {
		r.stop()
	}
	replicas = []*served{startServe(t, "--database", database, "--admin-token-file", file), startServe(t, "--database", database, "--admin-token-file", file)}
	for _, r := range replicas {
		r.waitReady(t)
	}
	tokens := bootstrapTokens(t, replicas[0].client(t, secondAdminToken))
	require.Len(t, tokens, 1)
	assert.Equal(t, []string{"update", "create"}, tokenActions(t, replicas[0].client(t, secondAdminToken), tokens[0].ID), "one rotation")
}

func TestAdminTokenFileFromTheEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, firstAdminToken)
	t.Setenv("CARAVAN_ADMIN_TOKEN_FILE", file)
	s := serve(t, "--database", "sqlite://"+filepath.Join(t.TempDir(), "caravan.db"))
	s.client(t, firstAdminToken).must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
}

// The secret of an admin token made before, by `caravan-central token
// create`, serves as the file's token as it is.
func TestAdminTokenFileTakesAnExistingAdminToken(t *testing.T) {
	database := "sqlite://" + filepath.Join(t.TempDir(), "caravan.db")
	out, err := runCommand(t, "token", "create", "--database", database, "--role", "admin", "--name", "helm-admin")
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "token")
	writeToken(t, file, strings.TrimSpace(out))

	s := serve(t, "--database", database, "--admin-token-file", file)
	admin := s.client(t, strings.TrimSpace(out))
	admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
	assert.Empty(t, bootstrapTokens(t, admin), "no second token for the same secret")
}

func TestAdminTokenFileRefusesBadTokens(t *testing.T) {
	database := "sqlite://" + filepath.Join(t.TempDir(), "caravan.db")
	readerToken, err := runCommand(t, "token", "create", "--database", database, "--role", "reader", "--name", "dashboards")
	require.NoError(t, err)
	cases := map[string]struct {
		token string
		says  string
	}{
		"too short":        {token: "cvn_short", says: "must be 32 to 256 characters long, got 9"},
		"too long":         {token: strings.Repeat("a", 257), says: "got 257"},
		"a space inside":   {token: "cvn_Q8fz2LkP0aXwR7tY bN4mC1vS9dHjE6uG3oKiT5rW", says: `got " " at position 21`},
		"not ASCII":        {token: "cvn_Q8fz2LkP0aXwR7tYbN4mC1vS9dHjE6uG3oKiT5rWé", says: `got "é" at position 45`},
		"a reader's token": {token: strings.TrimSpace(readerToken), says: `token "dashboards", a reader token, not an admin token`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "token")
			writeToken(t, file, tc.token)
			_, err := runCommand(t, "serve", "--listen", "127.0.0.1:0", "--database", database, "--admin-token-file", file)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "--admin-token-file")
			assert.Contains(t, err.Error(), tc.says)
		})
	}
}

// A missing or empty file gives no token, and the registry serves anyway.
func TestAdminTokenFileMissingOrEmpty(t *testing.T) {
	database := "sqlite://" + filepath.Join(t.TempDir(), "caravan.db")
	empty := filepath.Join(t.TempDir(), "empty")
	require.NoError(t, os.WriteFile(empty, []byte("\n"), 0o600))
	for _, file := range []string{filepath.Join(t.TempDir(), "missing"), empty} {
		s := serve(t, "--database", database, "--admin-token-file", file)
		assert.Contains(t, s.log.String(), "no admin token from --admin-token-file")
	}
	out, err := runCommand(t, "token", "list", "--database", database)
	require.NoError(t, err)
	assert.NotContains(t, out, central.AdminTokenName)
}

package central_test

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// noRedirects is a client that shows each answer, redirects included.
var noRedirects = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// uiGet fetches a page with the session cookie, if any.
func uiGet(t *testing.T, srv *centraltest.Server, path, session string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", srv.URL+path, nil)
	require.NoError(t, err)
	if session != "" {
		req.AddCookie(&http.Cookie{Name: "caravan_session", Value: session})
	}
	res, err := noRedirects.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

func hidden(t *testing.T, body, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(body, marker)
	require.GreaterOrEqual(t, i, 0, "no hidden field %s", name)
	rest := body[i+len(marker):]
	return rest[:strings.Index(rest, `"`)]
}

// uiSignIn signs in with token through the sign-in form and returns the session cookie's value.
func uiSignIn(t *testing.T, srv *centraltest.Server, token string) string {
	t.Helper()
	res, err := noRedirects.Get(srv.URL + "/signin")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	req, err := http.NewRequest("POST", srv.URL+"/signin", strings.NewReader(url.Values{"token": {token}, "nonce": {hidden(t, string(body), "nonce")}, "next": {"/"}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range res.Cookies() {
		req.AddCookie(c)
	}
	res, err = noRedirects.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	for _, c := range res.Cookies() {
		if c.Name == "caravan_session" {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// Regression: the UI cookie held the API token itself, so sign-out could
// not end a copied cookie, and a sign-in never expired on the server.
func TestSignOutEndsTheSessionOnTheServer(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		reader := srv.Token(t, api.RoleReader, "")
		session := uiSignIn(t, srv, reader)
		assert.NotContains(t, session, reader, "the cookie is not the token")
		copied := session
		status, page := uiGet(t, srv, "/", session)
		require.Equal(t, http.StatusOK, status)

		req, err := http.NewRequest("POST", srv.URL+"/signout", strings.NewReader(url.Values{"csrf": {hidden(t, page, "csrf")}}.Encode()))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: "caravan_session", Value: session})
		res, err := noRedirects.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusSeeOther, res.StatusCode)
		status, _ = uiGet(t, srv, "/", copied)
		assert.Equal(t, http.StatusSeeOther, status, "a copy of the cookie is signed out too")

		// Revoking the token ends its sessions.
		other := uiSignIn(t, srv, reader)
		status, _ = uiGet(t, srv, "/", other)
		require.Equal(t, http.StatusOK, status)
		admin := newClient(t, srv, srv.AdminToken)
		var tokens api.List[api.Token]
		admin.must(http.StatusOK, "GET", "/api/v1/tokens?role=reader", nil).json(t, &tokens)
		require.Len(t, tokens.Items, 1)
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tokens.Items[0].ID, nil)
		status, _ = uiGet(t, srv, "/", other)
		assert.Equal(t, http.StatusSeeOther, status, "the session of a revoked token ends")
	})
}

func TestSessionsExpire(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		session := uiSignIn(t, srv, srv.Token(t, api.RoleReader, ""))
		status, _ := uiGet(t, srv, "/", session)
		require.Equal(t, http.StatusOK, status)
		assert.Eventually(t, func() bool {
			status, _ := uiGet(t, srv, "/", session)
			return status == http.StatusSeeOther
		}, 10*time.Second, 100*time.Millisecond, "the session ends after its 1s")
	}, func(c *central.Config) { c.SessionTTL = time.Second })
}

// Regression: a client that left during a slow merge-patch was logged
// and counted as a server error (500).
func TestClientLeavingASlowPatchIsNoServerError(t *testing.T) {
	logs := &lockedBuffer{}
	db := pg.NewDatabase(t)
	srv := centraltest.Start(t, centraltest.WithDatabase(db), func(c *central.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)

	// Another writer holds the cluster's row: the patch waits for it.
	conn, err := sql.Open("pgx", db)
	require.NoError(t, err)
	defer conn.Close()
	ctx := context.Background()
	lock, err := conn.BeginTx(ctx, nil)
	require.NoError(t, err)
	defer lock.Rollback()
	_, err = lock.ExecContext(ctx, `SELECT 1 FROM clusters WHERE key = $1 FOR UPDATE`, clusterA)
	require.NoError(t, err)

	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, "PATCH", srv.URL+"/api/v1/clusters/"+clusterA, strings.NewReader(`{"config_items":{"slow":"yes"}}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
	done := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		done <- err
	}()
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, conn.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting))
		return waiting > 0
	}, 10*time.Second, 20*time.Millisecond, "the patch waits for the row")
	cancel()
	require.Error(t, <-done)

	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"status":499`) }, 10*time.Second, 20*time.Millisecond,
		"the patch is logged as the client leaving:\n%s", logs.String())
	assert.NotContains(t, logs.String(), `"level":"ERROR"`)
	assert.Contains(t, logs.String(), "the client left before its answer")
	metrics := string(admin.must(http.StatusOK, "GET", "/metrics", nil).Body)
	assert.Contains(t, metrics, `caravan_central_http_requests_total{code="499",method="PATCH",route="PATCH /api/v1/clusters/{id}"} 1`)
	assert.NotContains(t, metrics, `code="500"`)
	require.NoError(t, lock.Rollback())
}

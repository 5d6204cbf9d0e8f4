package central_test

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/test/postgres"
)

// pg is one PostgreSQL server shared by the package's tests; each test gets
// a database of its own.
var pg *postgres.Server

func TestMain(m *testing.M) {
	var err error
	pg, err = postgres.Launch()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}

// onBothDatabases runs a test against a registry on SQLite and one on
// PostgreSQL, both started with opts.
func onBothDatabases(t *testing.T, test func(t *testing.T, srv *centraltest.Server), opts ...centraltest.Option) {
	t.Run("sqlite", func(t *testing.T) { test(t, centraltest.Start(t, opts...)) })
	t.Run("postgres", func(t *testing.T) {
		test(t, centraltest.Start(t, append([]centraltest.Option{centraltest.WithDatabase(pg.NewDatabase(t))}, opts...)...))
	})
}

// client sends raw requests so that tests see exact status codes and headers.
type client struct {
	t     *testing.T
	base  string
	token string
	// tls is the client's TLS configuration for a registry serving TLS.
	tls *tls.Config
}

func newClient(t *testing.T, srv *centraltest.Server, token string) *client {
	return &client{t: t, base: srv.URL, token: token}
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// problem decodes a problem answer.
func (r response) problem(t *testing.T) map[string]any {
	t.Helper()
	require.Equal(t, "application/problem+json", r.Header.Get("Content-Type"), "body: %s", r.Body)
	var p map[string]any
	r.json(t, &p)
	return p
}

func (c *client) do(method, path string, body any, headers ...string) response {
	c.t.Helper()
	var rd io.Reader
	contentType := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(raw)
	}
	if method == http.MethodPatch {
		contentType = "application/merge-patch+json"
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	hc := &http.Client{Timeout: 2 * time.Minute}
	if c.tls != nil {
		hc.Transport = &http.Transport{TLSClientConfig: c.tls}
	}
	res, err := hc.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return response{Status: res.StatusCode, Header: res.Header, Body: out}
}

func (c *client) must(status int, method, path string, body any, headers ...string) response {
	c.t.Helper()
	r := c.do(method, path, body, headers...)
	require.Equal(c.t, status, r.Status, "%s %s: %s", method, path, r.Body)
	return r
}

const (
	accountID = "aws:123456789012"
	clusterA  = "aws:123456789012:eu-central-1:kube-a"
	clusterB  = "aws:123456789012:eu-central-1:kube-b"
)

func account() map[string]any {
	return map[string]any{"id": accountID, "name": "team-a", "owner": "team-a", "environment": "test", "config_items": map[string]string{"vpc_cidr": "10.0.0.0/16"}}
}

func cluster(id, channel string) map[string]any {
	return map[string]any{
		"id": id, "infrastructure_account": accountID, "region": "eu-central-1", "api_server_url": "https://" + id[strings.LastIndex(id, ":")+1:] + ".example.org",
		"environment": "test", "channel": channel, "lifecycle_status": "ready", "config_items": map[string]string{"dns_zone": "example.org"},
		"node_pools": []map[string]any{{"name": "default", "profile": "worker", "instance_types": []string{"m6i.large"}, "min_size": 1, "max_size": 3}},
	}
}

// seed creates the account and two clusters on the dev channel.
func seed(t *testing.T, admin *client) {
	t.Helper()
	admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterA, "dev"))
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterB, "dev"))
}

func path(format string, args ...any) string { return fmt.Sprintf(format, args...) }

package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// HTTP/2 connections cannot be taken over, so their long-polls wait in the
// handler; this guards that path, which the HTTP/1.1 tests never take.
func TestLongPollOverHTTP2WaitsInItsHandler(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "db"))
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	require.NoError(t, st.SeedChannels(ctx, []api.Channel{{Name: "dev", Branch: "dev"}}, "test"))
	acc := api.InfrastructureAccount{ID: "aws:123456789012", Name: "a", Owner: "o", Environment: "test"}
	acc.Normalize()
	_, err = store.Create(ctx, st, store.Accounts, store.Ref{Key: acc.ID}, acc, "test")
	require.NoError(t, err)
	c := api.Cluster{ID: "aws:123456789012:eu-central-1:k", InfrastructureAccount: acc.ID, Region: "eu-central-1",
		APIServerURL: "https://k.example.org", Environment: "test", Channel: "dev"}
	c.Normalize()
	rec, err := store.CreateCluster(ctx, st, c, "test")
	require.NoError(t, err)
	token, err := st.CreateToken(ctx, "agent", api.RoleAgent, c.ID, "test")
	require.NoError(t, err)

	ts := httptest.NewUnstartedServer(New(Options{Store: st}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	get := func(etag, wait string) *http.Response {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/clusters/"+c.ID+"/assignment?wait="+wait, nil)
		req.Header.Set("Authorization", "Bearer "+token.Secret)
		req.Header.Set("If-None-Match", etag)
		res, err := ts.Client().Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res
	}
	first := get("", "")
	require.Equal(t, 2, first.ProtoMajor)
	etag := first.Header.Get("ETag")

	start := time.Now()
	assert.Equal(t, http.StatusNotModified, get(etag, "300ms").StatusCode)
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)

	answered := make(chan *http.Response, 1)
	go func() { answered <- get(etag, "20s") }()
	time.Sleep(200 * time.Millisecond)
	changed := c
	changed.ConfigItems = map[string]string{"x": "y"}
	_, err = store.Update(ctx, st, store.Clusters, store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}, rec.Revision, c, changed, "test")
	require.NoError(t, err)
	select {
	case res := <-answered:
		assert.Equal(t, http.StatusOK, res.StatusCode)
		assert.NotEqual(t, etag, res.Header.Get("ETag"))
	case <-time.After(5 * time.Second):
		t.Fatal("the HTTP/2 long-poll did not answer the change")
	}
}

package registry

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func testEndpoints(t *testing.T, urls string, home int, now func() time.Time) *endpoints {
	t.Helper()
	parsed, err := parseEndpoints(urls)
	require.NoError(t, err)
	return newEndpoints(parsed, home, 5*time.Minute, now)
}

// The client sticks to an endpoint while it answers and moves to the next
// when it fails; a retry goes there at once until every one failed once
// more, and then waits.
func TestEndpointsMoveInTurn(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	e := testEndpoints(t, "http://a,http://b,http://c", 1, func() time.Time { return now })

	assert.Equal(t, 1, e.pick(), "the first pick")
	e.answered()
	assert.Equal(t, 1, e.pick(), "sticks while it answers")
	var order []int
	var untried []bool
	for range 6 {
		e.failed(e.pick())
		order = append(order, e.pick())
		untried = append(untried, e.untried())
	}
	assert.Equal(t, []int{2, 0, 1, 2, 0, 1}, order, "in turn, round and round")
	assert.Equal(t, []bool{true, true, false, true, true, false}, untried, "a backoff once every endpoint failed")

	e.failed(1)
	e.failed(1)
	assert.Equal(t, 2, e.pick(), "attempts that failed together move on once")
	e.answered()
	assert.False(t, e.untried(), "an answer starts the count over")
}

// Having moved, the client tries its first pick again after the failback,
// so that a replica that is back gets its share again.
func TestEndpointsFailBack(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	e := testEndpoints(t, "http://a,http://b", 0, func() time.Time { return now })
	e.failed(0)
	now = now.Add(5*time.Minute - time.Second)
	assert.Equal(t, 1, e.pick())
	now = now.Add(time.Second)
	assert.Equal(t, 0, e.pick(), "back home after the failback")
	e.failed(0)
	now = now.Add(time.Minute)
	assert.Equal(t, 1, e.pick(), "home still failing: away for another failback")
}

func TestBackoffIsJitteredAndCapped(t *testing.T) {
	for attempt, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second} {
		assert.Equal(t, want/2, Backoff(time.Second, 30*time.Second, attempt, 0), "attempt %d, least", attempt)
		assert.Equal(t, want, Backoff(time.Second, 30*time.Second, attempt, 1), "attempt %d, most", attempt)
		mid := Backoff(time.Second, 30*time.Second, attempt, 0.5)
		assert.Greater(t, mid, want/2)
		assert.Less(t, mid, want)
	}
	assert.Equal(t, 30*time.Second, Backoff(time.Second, 30*time.Second, 1000, 1), "no overflow")
}

func TestParseEndpoints(t *testing.T) {
	e := testEndpoints(t, "https://a.example.org/prefix/, http://b.example.org:8080", 0, time.Now)
	assert.Equal(t, "https://a.example.org/prefix", e.base())
	target, err := http.NewRequest(http.MethodGet, e.urls[0].String()+"/clusters/a%2Fb/assignment?wait=30s", nil)
	require.NoError(t, err)
	moved := e.rebase(target.URL, 1)
	assert.Equal(t, "http://b.example.org:8080/api/v1/clusters/a%2Fb/assignment?wait=30s", moved.String())
	for _, bad := range []string{"http://a,", "http://a,ftp://b", "http://a,,http://b"} {
		_, err := parseEndpoints(bad)
		assert.Error(t, err, bad)
	}
}

// deadURL is an address nobody listens on: connections are refused.
func deadURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + l.Addr().String()
	require.NoError(t, l.Close())
	return url
}

// newClientAt is a client of urls that starts at the first.
func newClientAt(t *testing.T, urls string, opts ...Option) *Client {
	t.Helper()
	c := newTestClient(t, urls, opts...)
	c.endpoints.home, c.endpoints.current = 0, 0
	return c
}

func TestFailsOverOnRefusedConnectionsAndGatewayErrors(t *testing.T) {
	for name, first := range map[string]string{
		"connection refused": deadURL(t),
		"503":                newFakeServer(t, status(http.StatusServiceUnavailable)).URL,
		"502":                newFakeServer(t, status(http.StatusBadGateway)).URL,
		"504":                newFakeServer(t, status(http.StatusGatewayTimeout)).URL,
	} {
		second := newFakeServer(t, jsonAnswer(http.StatusOK, `"v1"`, api.Cluster{ID: clusterID}))
		c := newClientAt(t, first+","+second.URL, WithRetryMax(1))

		cl, _, err := c.GetCluster(context.Background(), clusterID)
		require.NoError(t, err, name)
		assert.Equal(t, clusterID, cl.ID, name)
		assert.Equal(t, second.URL, c.Endpoint(), "%s: the client moved to the second", name)
		_, _, err = c.GetCluster(context.Background(), clusterID)
		require.NoError(t, err, name)
		assert.EqualValues(t, 2, second.attempts.Load(), "%s: and sticks to it", name)
	}
}

func TestAnInternalErrorDoesNotFailOver(t *testing.T) {
	first := newFakeServer(t, status(http.StatusInternalServerError), jsonAnswer(http.StatusOK, "", api.Cluster{ID: clusterID}))
	second := newFakeServer(t, status(http.StatusOK))
	c := newClientAt(t, first.URL+","+second.URL, WithRetryMax(1))

	_, _, err := c.GetCluster(context.Background(), clusterID)
	require.NoError(t, err)
	assert.Equal(t, first.URL, c.Endpoint(), "a 500 is the request's, not the replica's: retried where it was")
	assert.Zero(t, second.attempts.Load())
}

// A long-poll whose replica goes away resumes on the next with its ETag.
func TestLongPollResumesOnTheNextEndpointWithItsETag(t *testing.T) {
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The replica dies mid-poll: the connection drops without an answer.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(first.Close)
	var ifNoneMatch, wait string
	second := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		ifNoneMatch, wait = r.Header.Get("If-None-Match"), r.URL.Query().Get("wait")
		w.WriteHeader(http.StatusNotModified)
	})
	c := newClientAt(t, first.URL+","+second.URL, WithRetryMax(1))

	res, err := c.GetAssignment(context.Background(), clusterID, AssignmentOptions{IfNoneMatch: `"a7"`, Wait: 30 * time.Second})
	require.NoError(t, err)
	assert.True(t, res.NotModified)
	assert.Equal(t, `"a7"`, ifNoneMatch)
	assertWaitWithin(t, wait, 30*time.Second)
	assert.Equal(t, second.URL, c.Endpoint())
}

// Every endpoint down: the client tries each once per round, and waits a
// backoff between rounds, not between endpoints.
func TestAllEndpointsDownBacksOffBetweenRounds(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	answer := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			hits = append(hits, name)
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	a, b := newFakeServer(t, answer("a")), newFakeServer(t, answer("b"))
	c := newClientAt(t, a.URL+","+b.URL, WithRetryMax(3), WithRetryWait(200*time.Millisecond, time.Second))

	start := time.Now()
	_, _, err := c.GetCluster(context.Background(), clusterID)
	elapsed := time.Since(start)

	assert.Equal(t, http.StatusServiceUnavailable, StatusCode(err))
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"a", "b", "a", "b"}, hits)
	// One backoff, after the first round (attempt 1: 200ms·2, jittered to
	// 200–400ms); none between a and b.
	assert.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
	assert.Less(t, elapsed, 900*time.Millisecond)
}

func TestNewRejectsABadURLAmongSeveral(t *testing.T) {
	_, err := New("https://a.example.org,kube-registry", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"kube-registry"`)
	assert.False(t, strings.Contains(err.Error(), "a.example.org"), "names the bad one only")
}

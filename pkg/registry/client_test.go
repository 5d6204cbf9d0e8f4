package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

const clusterID = "aws:123456789012:eu-central-1:kube-1"

// fakeServer answers with the handler of the attempt number (1-based); the
// last handler answers every later attempt.
type fakeServer struct {
	*httptest.Server
	attempts atomic.Int32
}

func newFakeServer(t *testing.T, handlers ...http.HandlerFunc) *fakeServer {
	t.Helper()
	f := &fakeServer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.attempts.Add(1))
		handlers[min(n, len(handlers))-1](w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func newTestClient(t *testing.T, baseURL string, opts ...Option) *Client {
	t.Helper()
	opts = append([]Option{WithRetryWait(time.Millisecond, 10*time.Millisecond)}, opts...)
	c, err := New(baseURL, "s3cret", opts...)
	require.NoError(t, err)
	return c
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(code) }
}

func jsonAnswer(code int, etag string, v any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func problemAnswer(p api.Problem) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(p.Status)
		_ = json.NewEncoder(w).Encode(p)
	}
}

func TestNewRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "kube-registry", "ftp://example.org", "http://", "http://a b"} {
		_, err := New(u, "")
		assert.Error(t, err, u)
	}
}

func TestGetSendsTokenAndReturnsETag(t *testing.T) {
	var got http.Header
	var path string
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		got, path = r.Header.Clone(), r.URL.Path
		jsonAnswer(http.StatusOK, `"v1"`, api.Cluster{ID: clusterID, Alias: "kube-1"})(w, r)
	})
	c := newTestClient(t, srv.URL+"/", WithUserAgent("caravan-test"))

	cl, etag, err := c.GetCluster(context.Background(), clusterID)

	require.NoError(t, err)
	assert.Equal(t, "kube-1", cl.Alias)
	assert.Equal(t, `"v1"`, etag)
	assert.Equal(t, "Bearer s3cret", got.Get("Authorization"))
	assert.Equal(t, "caravan-test", got.Get("User-Agent"))
	assert.Equal(t, "/api/v1/clusters/"+clusterID, path)
}

func TestRetriesOn503ThenSucceeds(t *testing.T) {
	srv := newFakeServer(t,
		status(http.StatusServiceUnavailable),
		status(http.StatusBadGateway),
		jsonAnswer(http.StatusOK, `"v1"`, api.Cluster{ID: clusterID}),
	)
	c := newTestClient(t, srv.URL)

	cl, _, err := c.GetCluster(context.Background(), clusterID)

	require.NoError(t, err)
	assert.Equal(t, clusterID, cl.ID)
	assert.EqualValues(t, 3, srv.attempts.Load())
}

func TestGivesUpWithTheLastProblem(t *testing.T) {
	srv := newFakeServer(t, problemAnswer(api.Problem{Title: "Database unavailable", Status: http.StatusServiceUnavailable}))
	c := newTestClient(t, srv.URL, WithRetryMax(2))

	_, _, err := c.GetCluster(context.Background(), clusterID)

	var p *api.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, "Database unavailable", p.Title)
	assert.EqualValues(t, 3, srv.attempts.Load())
}

func TestHonoursRetryAfterOn429(t *testing.T) {
	srv := newFakeServer(t,
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		},
		jsonAnswer(http.StatusOK, "", api.Channel{Name: "dev"}),
	)
	c := newTestClient(t, srv.URL)

	start := time.Now()
	ch, _, err := c.GetChannel(context.Background(), "dev")
	elapsed := time.Since(start)

	require.NoError(t, err)
	assert.Equal(t, "dev", ch.Name)
	assert.GreaterOrEqual(t, elapsed, time.Second)
	assert.Less(t, elapsed, 3*time.Second)
	assert.EqualValues(t, 2, srv.attempts.Load())
}

func TestPostNotRetriedOn500(t *testing.T) {
	srv := newFakeServer(t, status(http.StatusInternalServerError), jsonAnswer(http.StatusCreated, "", api.Cluster{}))
	c := newTestClient(t, srv.URL)

	_, _, err := c.CreateCluster(context.Background(), &api.Cluster{ID: clusterID})

	assert.Equal(t, http.StatusInternalServerError, StatusCode(err))
	assert.EqualValues(t, 1, srv.attempts.Load())
}

func TestPostNotRetriedOn429(t *testing.T) {
	srv := newFakeServer(t, status(http.StatusTooManyRequests), jsonAnswer(http.StatusCreated, "", api.Token{}))
	c := newTestClient(t, srv.URL)

	_, err := c.CreateToken(context.Background(), TokenRequest{Name: "ci", Role: api.RoleReader})

	assert.Equal(t, http.StatusTooManyRequests, StatusCode(err))
	assert.EqualValues(t, 1, srv.attempts.Load())
}

func TestPostRetriedWhenTheConnectionWasRefused(t *testing.T) {
	var dials atomic.Int32
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			dials.Add(1)
			return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
		},
	}}
	c := newTestClient(t, "http://registry.invalid", WithHTTPClient(hc), WithRetryMax(2))

	_, _, err := c.CreateCluster(context.Background(), &api.Cluster{ID: clusterID})

	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.EqualValues(t, 3, dials.Load())
}

func TestDecommissionClusterPostsTheConfirmationAndIsRetried(t *testing.T) {
	confirmed := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	var method, path, contentType string
	var body []byte
	srv := newFakeServer(t,
		status(http.StatusServiceUnavailable),
		func(w http.ResponseWriter, r *http.Request) {
			method, path, contentType = r.Method, r.URL.EscapedPath(), r.Header.Get("Content-Type")
			body, _ = io.ReadAll(r.Body)
			jsonAnswer(http.StatusOK, `"v2"`, api.Cluster{ID: clusterID, LifecycleStatus: api.LifecycleDecommissionRequested, DecommissionConfirmedAt: &confirmed})(w, r)
		},
	)
	c := newTestClient(t, srv.URL)

	cl, err := c.DecommissionCluster(context.Background(), clusterID)

	require.NoError(t, err)
	require.NotNil(t, cl.DecommissionConfirmedAt)
	assert.Equal(t, confirmed, *cl.DecommissionConfirmedAt)
	assert.EqualValues(t, 2, srv.attempts.Load(), "confirming twice keeps the first confirmation, so a 503 is retried")
	assert.Equal(t, http.MethodPost, method)
	assert.Equal(t, "/api/v1/clusters/aws:123456789012:eu-central-1:kube-1/decommission", path)
	assert.Equal(t, "application/json", contentType)
	assert.JSONEq(t, `{"confirm":true}`, string(body))
}

func TestDecommissionClusterConflict(t *testing.T) {
	srv := newFakeServer(t, problemAnswer(api.Problem{
		Type: api.ProblemDecommissionNotRequested, Title: "Decommission not requested", Status: http.StatusConflict, Field: "lifecycle_status",
	}))
	c := newTestClient(t, srv.URL)

	_, err := c.DecommissionCluster(context.Background(), clusterID)

	assert.True(t, IsConflict(err), "%v", err)
	var p *api.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, api.ProblemDecommissionNotRequested, p.Type)
	assert.EqualValues(t, 1, srv.attempts.Load())
}

func TestPatchRetriedOn503OnlyWithIfMatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ifMatch  string
		attempts int32
		wantErr  bool
	}{
		{name: "with If-Match", ifMatch: `"v1"`, attempts: 2},
		{name: "without If-Match", attempts: 1, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ifMatch, contentType string
			var body []byte
			srv := newFakeServer(t,
				status(http.StatusServiceUnavailable),
				func(w http.ResponseWriter, r *http.Request) {
					ifMatch, contentType = r.Header.Get("If-Match"), r.Header.Get("Content-Type")
					body, _ = io.ReadAll(r.Body)
					jsonAnswer(http.StatusOK, `"v2"`, api.Cluster{ID: clusterID})(w, r)
				},
			)
			c := newTestClient(t, srv.URL)

			_, etag, err := c.PatchCluster(context.Background(), clusterID, map[string]any{"config_items": map[string]any{"k": nil}}, tc.ifMatch)

			assert.Equal(t, tc.attempts, srv.attempts.Load())
			if tc.wantErr {
				assert.Equal(t, http.StatusServiceUnavailable, StatusCode(err))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, `"v2"`, etag)
			assert.Equal(t, tc.ifMatch, ifMatch)
			assert.Equal(t, "application/merge-patch+json", contentType)
			assert.JSONEq(t, `{"config_items":{"k":null}}`, string(body), "the replay carries the whole body")
		})
	}
}

func TestPatchRejectsANonObject(t *testing.T) {
	srv := newFakeServer(t, status(http.StatusOK))
	c := newTestClient(t, srv.URL)

	for _, patch := range []any{json.RawMessage(`[1]`), []byte(`{"a":`), "text", nil} {
		_, _, err := c.PatchChannel(context.Background(), "dev", patch, "")
		assert.Error(t, err, patch)
	}
	assert.Zero(t, srv.attempts.Load())
}

func TestProblemJSONDecoded(t *testing.T) {
	want := api.Problem{
		Type:   api.ProblemTypeBase + "invalid",
		Title:  "Invalid cluster",
		Status: http.StatusUnprocessableEntity,
		Detail: "2 fields are invalid",
		Field:  "alias",
		Errors: []api.FieldError{{Field: "alias", Detail: "must be a DNS label"}, {Field: "region", Detail: "must be an AWS region"}},
	}
	srv := newFakeServer(t, problemAnswer(want))
	c := newTestClient(t, srv.URL)

	_, _, err := c.CreateCluster(context.Background(), &api.Cluster{})

	var p *api.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, want, *p)
	assert.Contains(t, err.Error(), "Invalid cluster: 2 fields are invalid")
}

func TestProblemFromPlainAnswer(t *testing.T) {
	srv := newFakeServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "no such cluster\n")
	})
	c := newTestClient(t, srv.URL)

	_, _, err := c.GetCluster(context.Background(), clusterID)

	var p *api.Problem
	require.ErrorAs(t, err, &p)
	assert.Equal(t, api.Problem{Type: "about:blank", Title: "Not Found", Status: http.StatusNotFound, Detail: "no such cluster"}, *p)
	assert.True(t, IsNotFound(err))
	assert.False(t, IsConflict(err))
}

func TestStatusHelpers(t *testing.T) {
	wrap := func(code int) error { return fmt.Errorf("context: %w", &api.Problem{Status: code}) }
	assert.True(t, IsNotFound(wrap(http.StatusNotFound)))
	assert.True(t, IsConflict(wrap(http.StatusConflict)))
	assert.True(t, IsPreconditionFailed(wrap(http.StatusPreconditionFailed)))
	assert.False(t, IsPreconditionFailed(errors.New("connection reset")))
	assert.Zero(t, StatusCode(nil))
}

func TestPathSegmentsAreEscaped(t *testing.T) {
	var escaped string
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		escaped = r.URL.EscapedPath()
		w.WriteHeader(http.StatusNoContent)
	})
	c := newTestClient(t, srv.URL)

	require.NoError(t, c.DeleteNodePool(context.Background(), clusterID, "a/b c?", ""))

	assert.Equal(t, "/api/v1/clusters/aws:123456789012:eu-central-1:kube-1/node-pools/a%2Fb%20c%3F", escaped)
}

func TestListQueryAndAll(t *testing.T) {
	var queries []string
	srv := newFakeServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			queries = append(queries, r.URL.RawQuery)
			jsonAnswer(http.StatusOK, "", api.List[api.Cluster]{Items: []api.Cluster{{ID: "a"}}, Next: "c1"})(w, r)
		},
		func(w http.ResponseWriter, r *http.Request) {
			queries = append(queries, r.URL.RawQuery)
			jsonAnswer(http.StatusOK, "", api.List[api.Cluster]{Items: []api.Cluster{{ID: "b"}}})(w, r)
		},
	)
	c := newTestClient(t, srv.URL)
	ctx := context.Background()

	got, err := All(func(p Page) (*api.List[api.Cluster], error) {
		p.Limit = 1
		return c.ListClusters(ctx, ClusterFilter{Channel: "dev", LifecycleStatus: "ready"}, p)
	})

	require.NoError(t, err)
	assert.Equal(t, []api.Cluster{{ID: "a"}, {ID: "b"}}, got)
	assert.Equal(t, []string{
		"channel=dev&lifecycle_status=ready&limit=1",
		"channel=dev&continue=c1&lifecycle_status=ready&limit=1",
	}, queries)
}

func TestAllStopsOnARepeatedCursor(t *testing.T) {
	calls := 0
	_, err := All(func(Page) (*api.List[int], error) {
		calls++
		return &api.List[int]{Items: []int{1}, Next: "same"}, nil
	})
	assert.ErrorContains(t, err, "repeated the cursor")
	assert.Equal(t, 2, calls)
}

func TestEmptyListHasNoNilItems(t *testing.T) {
	srv := newFakeServer(t, jsonAnswer(http.StatusOK, "", map[string]any{}))
	c := newTestClient(t, srv.URL)

	l, err := c.ListChannels(context.Background(), Page{})

	require.NoError(t, err)
	assert.NotNil(t, l.Items)
}

func TestAssignment(t *testing.T) {
	var ifNoneMatch []string
	var waits []string
	srv := newFakeServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			ifNoneMatch, waits = append(ifNoneMatch, r.Header.Get("If-None-Match")), append(waits, r.URL.Query().Get("wait"))
			jsonAnswer(http.StatusOK, `"a1"`, api.Assignment{Channel: api.AssignedChannel{Name: "dev", Branch: "dev"}})(w, r)
		},
		func(w http.ResponseWriter, r *http.Request) {
			ifNoneMatch, waits = append(ifNoneMatch, r.Header.Get("If-None-Match")), append(waits, r.URL.Query().Get("wait"))
			w.Header().Set("ETag", `"a1"`)
			w.WriteHeader(http.StatusNotModified)
		},
	)
	c := newTestClient(t, srv.URL)
	ctx := context.Background()

	first, err := c.GetAssignment(ctx, clusterID, AssignmentOptions{})
	require.NoError(t, err)
	assert.False(t, first.NotModified)
	assert.Equal(t, `"a1"`, first.ETag)
	assert.Equal(t, "dev", first.Assignment.Channel.Branch)

	second, err := c.GetAssignment(ctx, clusterID, AssignmentOptions{IfNoneMatch: first.ETag, Wait: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, &AssignmentResult{ETag: `"a1"`, NotModified: true}, second)

	assert.Equal(t, []string{"", `"a1"`}, ifNoneMatch)
	require.Len(t, waits, 2)
	assert.Empty(t, waits[0], "a poll without wait asks for none")
	assertWaitWithin(t, waits[1], time.Minute)
}

// assertWaitWithin checks a long-poll's wait parameter: the caller's wait
// less at most a tenth.
func assertWaitWithin(t *testing.T, raw string, wait time.Duration) {
	t.Helper()
	d, err := time.ParseDuration(raw)
	require.NoError(t, err, "wait=%s", raw)
	assert.LessOrEqual(t, d, wait)
	assert.GreaterOrEqual(t, d, wait-wait/10)
}

// Regression: agents a change answered together asked for the same wait
// and came back together, each time it ran out: the fleet polled and
// reported in lockstep. Each poll's wait is jittered.
func TestLongPollWaitsAreJittered(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]bool{}
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen[r.URL.Query().Get("wait")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNotModified)
	})
	c := newTestClient(t, srv.URL)
	for range 20 {
		_, err := c.GetAssignment(context.Background(), clusterID, AssignmentOptions{IfNoneMatch: `"a1"`, Wait: 30 * time.Second})
		require.NoError(t, err)
	}
	assert.Greater(t, len(seen), 10, "20 polls asked for as many different waits: %v", seen)
	for raw := range seen {
		assertWaitWithin(t, raw, 30*time.Second)
	}
}

func TestJitteredWait(t *testing.T) {
	assert.Equal(t, 30*time.Second, jitteredWait(30*time.Second, 0))
	assert.Equal(t, 28500*time.Millisecond, jitteredWait(30*time.Second, 0.5))
	assert.Equal(t, 27003*time.Millisecond, jitteredWait(30*time.Second, 0.999))
	assert.Zero(t, jitteredWait(0, 0.5), "no wait stays none")
}

func TestLongPollOutlastsTheAttemptTimeout(t *testing.T) {
	srv := newFakeServer(t, func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusNotModified)
	})
	c := newTestClient(t, srv.URL, WithTimeout(100*time.Millisecond), WithRetryMax(0))

	res, err := c.GetAssignment(context.Background(), clusterID, AssignmentOptions{IfNoneMatch: `"a1"`, Wait: time.Second})

	require.NoError(t, err)
	assert.True(t, res.NotModified)
}

func TestHungAttemptIsAbandonedAndRetried(t *testing.T) {
	srv := newFakeServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		},
		status(http.StatusNoContent),
	)
	c := newTestClient(t, srv.URL, WithTimeout(100*time.Millisecond))

	require.NoError(t, c.DeleteChannel(context.Background(), "dev", `"v1"`))
	assert.EqualValues(t, 2, srv.attempts.Load())
}

func TestCanceledContextStopsRetries(t *testing.T) {
	srv := newFakeServer(t, status(http.StatusServiceUnavailable))
	c := newTestClient(t, srv.URL, WithRetryWait(time.Second, time.Second), WithRetryMax(10))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	_, _, err := c.GetCluster(ctx, clusterID)

	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 1, srv.attempts.Load())
}

func TestPutClusterStatus(t *testing.T) {
	var got api.ClusterStatus
	srv := newFakeServer(t, status(http.StatusServiceUnavailable), func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewDecoder(r.Body).Decode(&got)
		w.WriteHeader(http.StatusNoContent)
	})
	c := newTestClient(t, srv.URL)

	require.NoError(t, c.PutClusterStatus(context.Background(), clusterID, &api.ClusterStatus{Phase: api.PhaseIdle}))
	assert.Equal(t, api.PhaseIdle, got.Phase)
	assert.EqualValues(t, 2, srv.attempts.Load(), "a status report is idempotent")
}

func TestAssignmentRegistryTime(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.UTC)
	srv := newFakeServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set(api.RegistryTimeHeader, at.Format(time.RFC3339Nano))
			jsonAnswer(http.StatusOK, `"a1"`, api.Assignment{})(w, r)
		},
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(api.RegistryTimeHeader, at.Add(time.Second).Format(time.RFC3339Nano))
			w.WriteHeader(http.StatusNotModified)
		},
		func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set(api.RegistryTimeHeader, "yesterday")
			w.WriteHeader(http.StatusNotModified)
		},
		status(http.StatusNotModified),
	)
	c := newTestClient(t, srv.URL)
	ctx := context.Background()
	got, err := c.GetAssignment(ctx, clusterID, AssignmentOptions{})
	require.NoError(t, err)
	assert.True(t, at.Equal(got.RegistryTime), "a 200 carries it: %s", got.RegistryTime)
	assert.Equal(t, 123456789, got.RegistryTime.Nanosecond(), "with nanoseconds")
	got, err = c.GetAssignment(ctx, clusterID, AssignmentOptions{IfNoneMatch: `"a1"`})
	require.NoError(t, err)
	assert.True(t, at.Add(time.Second).Equal(got.RegistryTime), "a 304 too")
	for _, what := range []string{"malformed", "absent"} {
		got, err = c.GetAssignment(ctx, clusterID, AssignmentOptions{IfNoneMatch: `"a1"`})
		require.NoError(t, err)
		assert.True(t, got.RegistryTime.IsZero(), "%s: the zero time", what)
	}
}

func TestFreezeCalls(t *testing.T) {
	until := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var bodies []map[string]any
	var requests []string
	srv := newFakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.Method+" "+r.URL.RequestURI())
		switch r.Method {
		case http.MethodPost:
			var b map[string]any
			require.NoError(t, json.NewDecoder(r.Body).Decode(&b))
			bodies = append(bodies, b)
			jsonAnswer(http.StatusCreated, `"f1"`, api.Freeze{ID: "0123456789abcdef", Reason: "cyber week", Channel: "stable", Until: until})(w, r)
		case http.MethodDelete:
			assert.Equal(t, `"f1"`, r.Header.Get("If-Match"))
			w.WriteHeader(http.StatusNoContent)
		case http.MethodGet:
			if r.URL.Path == "/api/v1/freezes" {
				jsonAnswer(http.StatusOK, "", api.List[api.Freeze]{Items: []api.Freeze{{ID: "0123456789abcdef"}}})(w, r)
				return
			}
			jsonAnswer(http.StatusOK, `"f1"`, api.Freeze{ID: "0123456789abcdef"})(w, r)
		}
	})
	c := newTestClient(t, srv.URL)
	ctx := context.Background()

	f, etag, err := c.CreateFreeze(ctx, &api.Freeze{Reason: "cyber week", Channel: "stable", Until: until, By: "ignored", ID: "ignored"})
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", f.ID)
	assert.Equal(t, `"f1"`, etag)
	since := until.Add(-time.Hour)
	_, _, err = c.CreateFreeze(ctx, &api.Freeze{Reason: "r", All: true, Since: since, Until: until})
	require.NoError(t, err)
	assert.Equal(t, []map[string]any{
		{"reason": "cyber week", "channel": "stable", "until": "2026-12-01T00:00:00Z"},
		{"reason": "r", "all": true, "since": "2026-11-30T23:00:00Z", "until": "2026-12-01T00:00:00Z"},
	}, bodies, "only what a user sets is sent; since only when set")

	l, err := c.ListFreezes(ctx, FreezeFilter{Active: true}, Page{Limit: 5})
	require.NoError(t, err)
	assert.Len(t, l.Items, 1)
	_, err = c.ListFreezes(ctx, FreezeFilter{}, Page{})
	require.NoError(t, err)
	got, etag, err := c.GetFreeze(ctx, "0123456789abcdef")
	require.NoError(t, err)
	assert.Equal(t, "0123456789abcdef", got.ID)
	require.NoError(t, c.DeleteFreeze(ctx, got.ID, etag))
	assert.Equal(t, []string{
		"POST /api/v1/freezes", "POST /api/v1/freezes",
		"GET /api/v1/freezes?active=true&limit=5", "GET /api/v1/freezes",
		"GET /api/v1/freezes/0123456789abcdef", "DELETE /api/v1/freezes/0123456789abcdef",
	}, requests)
}

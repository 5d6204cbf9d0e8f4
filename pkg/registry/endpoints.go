package registry

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// defaultFailback is how long a client that moved off its first endpoint
// stays before it tries that one again.
const defaultFailback = 5 * time.Minute

// parseEndpoints reads the registry's base URLs: one, or several
// separated by commas (replicas of one registry, without a load balancer
// in front of them). Each is an absolute http(s) URL.
func parseEndpoints(baseURLs string) ([]*url.URL, error) {
	var out []*url.URL
	for raw := range strings.SplitSeq(baseURLs, ",") {
		raw = strings.TrimSpace(raw)
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("registry URL %q: %w", raw, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("registry URL %q: must be an absolute http(s) URL", raw)
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + apiPrefix
		u.RawPath = ""
		out = append(out, u)
	}
	return out, nil
}

// endpoints are the registry's base URLs and which one a client uses: it
// starts at a random one, so that a fleet's agents spread over the
// replicas, sticks to it while it answers, and moves to the next when an
// attempt fails for the endpoint's sake (failsOver). Having moved, it tries
// its first pick again after failback, so that a replica that is back gets
// its share again.
type endpoints struct {
	urls     []*url.URL
	now      func() time.Time
	failback time.Duration

	mu      sync.Mutex
	home    int
	current int
	// moves counts the moves since the last answer of any endpoint: a
	// multiple of len(urls) means every one failed once more.
	moves   int
	movedAt time.Time
}

func newEndpoints(urls []*url.URL, home int, failback time.Duration, now func() time.Time) *endpoints {
	return &endpoints{urls: urls, now: now, failback: failback, home: home, current: home}
}

// pick is the endpoint the next attempt goes to.
func (e *endpoints) pick() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.current != e.home && e.now().Sub(e.movedAt) >= e.failback {
		e.current, e.moves = e.home, 0
	}
	return e.current
}

// failed records that an attempt to endpoint i failed for the endpoint's
// sake. Only the first failure of the current endpoint moves on: attempts
// under way at once fail together and must not skip the next one.
func (e *endpoints) failed(i int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i != e.current {
		return
	}
	e.current = (e.current + 1) % len(e.urls)
	e.moves++
	e.movedAt = e.now()
}

// answered records that endpoint i answered.
func (e *endpoints) answered() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.moves = 0
}

// untried reports whether the current endpoint has not failed since every
// endpoint last did: a retry goes there at once, without a backoff.
func (e *endpoints) untried() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.moves%len(e.urls) != 0
}

// backoff is the wait before a retry, as retryablehttp's Backoff: none
// while the endpoint in use has not failed since every one last did, else
// the server's Retry-After when it gave one, else a jittered exponential
// backoff.
func (e *endpoints) backoff(minWait, maxWait time.Duration, attempt int, resp *http.Response) time.Duration {
	if e.untried() {
		return 0
	}
	if resp != nil && resp.Header.Get("Retry-After") != "" {
		return retryablehttp.DefaultBackoff(minWait, maxWait, attempt, resp)
	}
	return Backoff(minWait, maxWait, attempt, rand.Float64())
}

// base is the URL in use now, as given (without /api/v1).
func (e *endpoints) base() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := *e.urls[e.current]
	u.Path = strings.TrimSuffix(u.Path, apiPrefix)
	return u.String()
}

// rebase moves target, made against endpoint 0, to endpoint i.
func (e *endpoints) rebase(target *url.URL, i int) *url.URL {
	from, to := e.urls[0], e.urls[i]
	out := *target
	out.Scheme, out.Host, out.User = to.Scheme, to.Host, to.User
	out.Path = to.Path + strings.TrimPrefix(target.Path, from.Path)
	out.RawPath = ""
	if target.RawPath != "" {
		out.RawPath = to.EscapedPath() + strings.TrimPrefix(target.RawPath, from.EscapedPath())
	}
	return &out
}

// failsOver reports whether an attempt's outcome is the endpoint's fault,
// so that the next attempt goes to another: no connection, a timeout, or
// a gateway or the replica saying it cannot serve (502, 503, 504).
func failsOver(resp *http.Response, err error) bool {
	if err != nil {
		return true
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// failoverTransport sends each attempt to the endpoint in use and moves
// on when it fails.
type failoverTransport struct {
	endpoints *endpoints
	next      http.RoundTripper
}

func (t *failoverTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	i := t.endpoints.pick()
	out := req.Clone(req.Context())
	out.URL = t.endpoints.rebase(req.URL, i)
	out.Host = ""
	resp, err := t.next.RoundTrip(out)
	switch {
	case err != nil && req.Context().Err() != nil:
		// The caller gave up: no fault of the endpoint.
	case failsOver(resp, err):
		t.endpoints.failed(i)
	default:
		t.endpoints.answered()
	}
	return resp, err
}

// Backoff is a jittered exponential backoff: before retry attempt n
// (from 0) it waits between half and all of minWait·2ⁿ, capped at maxWait.
// jitter, in [0, 1), picks where; spread so, clients that failed together
// do not come back together.
func Backoff(minWait, maxWait time.Duration, attempt int, jitter float64) time.Duration {
	d := min(minWait, maxWait)
	for range attempt {
		if d >= maxWait/2 {
			d = maxWait
			break
		}
		d *= 2
	}
	half := d / 2
	return half + time.Duration(jitter*float64(d-half))
}

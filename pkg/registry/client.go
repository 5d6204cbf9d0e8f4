// Package registry is the client of the caravan-central REST API, shared by
// the caravan command line and the in-cluster agent.
//
// Calls retry transient failures (connection errors, 5xx, and 429 after its
// Retry-After) only when a replay cannot apply a change twice: GET, PUT and
// DELETE always, PATCH only with If-Match, POST only when the connection was
// never established. Failed answers are *api.Problem errors.
//
// A client may be given several base URLs, the replicas of one registry:
// it sticks to one while it answers and moves to the next on a connection
// error, a timeout, 502, 503 or 504; a retry goes to the next one at once,
// and waits a jittered exponential backoff only once every one failed.
package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

const (
	apiPrefix        = "/api/v1"
	defaultUserAgent = "caravan-registry-client"
	defaultTimeout   = 30 * time.Second
	defaultRetryMax  = 4
	defaultWaitMin   = 500 * time.Millisecond
	defaultWaitMax   = 15 * time.Second
	mediaJSON        = "application/json"
	mediaMergePatch  = "application/merge-patch+json"
	mediaProblem     = "application/problem+json"
)

// Client talks to one caravan-central, through one of its replicas. It is
// safe for concurrent use.
//
// Every Get, Create, Update and Patch returns the resource with its ETag.
// Update, Patch and Delete send ifMatch as If-Match when it is not empty, so
// that they fail with 412 (see IsPreconditionFailed) when the resource changed
// since the caller read it. A patch is a JSON merge patch (RFC 7396): raw
// JSON ([]byte, json.RawMessage) or a value that encodes to a JSON object,
// where null removes a key.
type Client struct {
	// base is where requests are made against: the first endpoint, which
	// the failover transport moves each attempt to the endpoint in use.
	base      string
	endpoints *endpoints
	token     string
	userAgent string
	http      *retryablehttp.Client
}

type settings struct {
	httpClient *http.Client
	retryMax   int
	waitMin    time.Duration
	waitMax    time.Duration
	timeout    time.Duration
	logger     *slog.Logger
	userAgent  string
	failback   time.Duration
}

// Option changes a setting of New.
type Option func(*settings)

// WithHTTPClient makes the client send its requests through hc, for example
// to trust a private certificate authority. hc is not modified. Leave its
// Timeout 0: it would also cut long polls short; WithTimeout bounds attempts.
func WithHTTPClient(hc *http.Client) Option {
	return func(s *settings) { s.httpClient = hc }
}

// WithRetryMax sets how many times a failed request is retried; 0 disables retries.
func WithRetryMax(n int) Option {
	return func(s *settings) { s.retryMax = n }
}

// WithRetryWait bounds the jittered exponential backoff between retries. A
// Retry-After header of the server takes precedence over it. With several
// endpoints a retry goes to the next one without waiting, until every one
// failed.
func WithRetryWait(minWait, maxWait time.Duration) Option {
	return func(s *settings) { s.waitMin, s.waitMax = minWait, maxWait }
}

// WithTimeout bounds each attempt of a request, from sending it to reading
// the whole answer; 0 means no bound. Long polls get their wait on top.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) { s.timeout = d }
}

// WithLogger logs requests, failures and retries to l.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) { s.logger = l }
}

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option {
	return func(s *settings) { s.userAgent = ua }
}

// WithFailback sets how long a client that moved off the endpoint it
// started at stays away before it tries that one again (5 minutes by
// default), so that a replica back from a failure gets its share again.
func WithFailback(d time.Duration) Option {
	return func(s *settings) { s.failback = d }
}

// New returns a client of the registry at baseURLs (scheme and host,
// optionally a path prefix; several replicas separated by commas) that
// authenticates with the bearer token.
func New(baseURLs, token string, opts ...Option) (*Client, error) {
	urls, err := parseEndpoints(baseURLs)
	if err != nil {
		return nil, err
	}
	s := settings{
		retryMax:  defaultRetryMax,
		waitMin:   defaultWaitMin,
		waitMax:   defaultWaitMax,
		timeout:   defaultTimeout,
		userAgent: defaultUserAgent,
		failback:  defaultFailback,
	}
	for _, opt := range opts {
		opt(&s)
	}
	eps := newEndpoints(urls, rand.IntN(len(urls)), s.failback, time.Now)
	rc := &retryablehttp.Client{
		HTTPClient:   withTransports(s.httpClient, eps, s.timeout),
		RetryWaitMin: s.waitMin,
		RetryWaitMax: s.waitMax,
		RetryMax:     s.retryMax,
		CheckRetry:   checkRetry,
		Backoff:      eps.backoff,
		// The last answer of a request that exhausted its retries still
		// carries the server's problem document, so it is handed back as is.
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	if s.logger != nil {
		rc.Logger = s.logger
	}
	return &Client{
		base:      urls[0].String(),
		endpoints: eps,
		token:     token,
		userAgent: s.userAgent,
		http:      rc,
	}, nil
}

// Endpoint is the base URL the client sends its requests to now: one of
// those it was given.
func (c *Client) Endpoint() string { return c.endpoints.base() }

// withTransports copies hc (or a fresh pooled client) with a transport
// that sends each attempt to the endpoint in use and bounds it.
// http.Client.Timeout cannot do the latter: it is one value for every
// request, and long polls need a longer one.
func withTransports(hc *http.Client, eps *endpoints, timeout time.Duration) *http.Client {
	if hc == nil {
		hc = cleanhttp.DefaultPooledClient()
	}
	c := *hc
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &failoverTransport{endpoints: eps, next: &timeoutTransport{next: next, timeout: timeout}}
	return &c
}

// request is one call of the API. path is relative to /api/v1 and already escaped.
type request struct {
	method      string
	path        string
	query       url.Values
	body        []byte
	contentType string
	ifMatch     string
	ifNoneMatch string
	longPoll    time.Duration
	// idempotent marks a POST that a replay cannot apply twice, so that it
	// is retried like a PUT.
	idempotent bool
}

// do sends r and returns the answer when it is 2xx or 304; the caller closes
// its body. Any other answer becomes an error wrapping an *api.Problem.
func (c *Client) do(ctx context.Context, r request) (*http.Response, error) {
	target := c.base + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}
	ctx = withRetryMode(ctx, retryModeOf(r))
	ctx = withLongPoll(ctx, r.longPoll)
	var body any
	if r.body != nil {
		body = r.body
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, r.method, target, body)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", r.method, r.path, err)
	}
	req.Header.Set("Accept", mediaJSON+", "+mediaProblem)
	req.Header.Set("User-Agent", c.userAgent)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if r.body != nil {
		req.Header.Set("Content-Type", r.contentType)
	}
	if r.ifMatch != "" {
		req.Header.Set("If-Match", r.ifMatch)
	}
	if r.ifNoneMatch != "" {
		req.Header.Set("If-None-Match", r.ifNoneMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		// err is a *url.Error, which names method and URL already.
		return nil, fmt.Errorf("calling the registry: %w", err)
	}
	if resp.StatusCode/100 == 2 || resp.StatusCode == http.StatusNotModified {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, fmt.Errorf("%s %s: %w", r.method, r.path, problemFrom(resp))
}

// call sends r and decodes a 2xx answer into a new T. It also returns the ETag.
func call[T any](ctx context.Context, c *Client, r request) (*T, string, error) {
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	v, err := decode[T](resp)
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: %w", r.method, r.path, err)
	}
	return v, resp.Header.Get("ETag"), nil
}

// callNoContent sends r and discards a 2xx answer.
func (c *Client) callNoContent(ctx context.Context, r request) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading answer: %w", r.method, r.path, err)
	}
	return nil
}

func decode[T any](resp *http.Response) (*T, error) {
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("answer %d has no body", resp.StatusCode)
		}
		return nil, fmt.Errorf("decoding answer %d: %w", resp.StatusCode, err)
	}
	return &v, nil
}

func jsonRequest(method, path string, v any) (request, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return request{}, fmt.Errorf("encoding %s %s: %w", method, path, err)
	}
	return request{method: method, path: path, body: body, contentType: mediaJSON}, nil
}

// mergePatchRequest accepts a patch as raw JSON ([]byte, json.RawMessage) or
// as any value that encodes to a JSON object.
func mergePatchRequest(path string, patch any, ifMatch string) (request, error) {
	var body []byte
	switch p := patch.(type) {
	case json.RawMessage:
		body = p
	case []byte:
		body = p
	default:
		var err error
		if body, err = json.Marshal(p); err != nil {
			return request{}, fmt.Errorf("encoding merge patch for %s: %w", path, err)
		}
	}
	if trimmed := bytes.TrimSpace(body); len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return request{}, fmt.Errorf("merge patch for %s: must be a JSON object", path)
	}
	return request{method: http.MethodPatch, path: path, body: body, contentType: mediaMergePatch, ifMatch: ifMatch}, nil
}

// resourcePath joins escaped segments: ids such as
// aws:123456789012:eu-central-1:kube-1 must stay one segment whatever they hold.
func resourcePath(segments ...string) string {
	var b strings.Builder
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

package registry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

// retryMode says when a request may be sent again. retryablehttp hands
// CheckRetry no request when the attempt failed without an answer, so the
// mode travels in the request's context.
type retryMode int

const (
	// retryUnsent: a replay could apply a change twice, so the request is
	// retried only when it certainly never reached the server. It is the
	// zero value so that a request without a mode is never replayed.
	retryUnsent retryMode = iota
	// retryIdempotent: a replay has the same effect as one request, so
	// connection errors, 5xx and 429 are all retried.
	retryIdempotent
)

type retryModeKey struct{}

type longPollKey struct{}

func withRetryMode(ctx context.Context, m retryMode) context.Context {
	return context.WithValue(ctx, retryModeKey{}, m)
}

// retryModeOf classifies a request. A PATCH with If-Match is safe to replay:
// once the first attempt applied, the ETag no longer matches and the replay
// gets 412 instead of patching again. A POST is safe when its operation is
// idempotent, such as confirming a decommission.
func retryModeOf(r request) retryMode {
	if r.idempotent {
		return retryIdempotent
	}
	switch r.method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodOptions:
		return retryIdempotent
	case http.MethodPatch:
		if r.ifMatch != "" {
			return retryIdempotent
		}
	}
	return retryUnsent
}

func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	mode, _ := ctx.Value(retryModeKey{}).(retryMode)
	if mode == retryUnsent {
		return err != nil && neverSent(err), nil
	}
	if err != nil {
		// The default policy knows which transport errors are permanent
		// (bad certificates, bad scheme, redirect loops).
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	code := resp.StatusCode
	return code == http.StatusTooManyRequests || code == 0 || (code >= 500 && code != http.StatusNotImplemented), nil
}

// neverSent reports whether err happened while connecting, before any byte
// of the request was written.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func withLongPoll(ctx context.Context, wait time.Duration) context.Context {
	if wait <= 0 {
		return ctx
	}
	return context.WithValue(ctx, longPollKey{}, wait)
}

// timeoutTransport bounds each attempt by its own deadline, so that a hung
// attempt is abandoned and retried while the caller's context spans them all.
type timeoutTransport struct {
	next    http.RoundTripper
	timeout time.Duration
}

func (t *timeoutTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.timeout <= 0 {
		return t.next.RoundTrip(req)
	}
	timeout := t.timeout
	if wait, ok := req.Context().Value(longPollKey{}).(time.Duration); ok {
		timeout += wait
	}
	ctx, cancel := context.WithTimeout(req.Context(), timeout)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose keeps the attempt's deadline alive while the body is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

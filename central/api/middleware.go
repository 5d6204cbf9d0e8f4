package api

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/caravan-gitops/caravan/central/auth"
)

type contextKey int

const (
	principalKey contextKey = iota
	requestIDKey
	loggerKey
)

// plain registers a route that needs no token: probes, metrics, the spec.
func (s *Server) plain(pattern string, h http.HandlerFunc) {
	s.mux.Handle(pattern, s.observe(h))
}

// route registers a route that needs a token granting access.
func (s *Server) route(pattern string, access auth.Access, h http.HandlerFunc) {
	s.mux.Handle(pattern, s.observe(s.authorize(access, checkText(h))))
}

func (s *Server) authorize(access auth.Access, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authn.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if errors.Is(err, auth.ErrUnauthenticated) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="caravan"`)
			writeProblem(w, r, problem(http.StatusUnauthorized, "Unauthenticated", "Authorization", err.Error()))
			return
		}
		if err != nil {
			// The token could not be checked: a retry may succeed, a 401 would
			// make agents think their credentials are bad.
			loggerFrom(r.Context()).Error("checking a token failed", "error", err)
			w.Header().Set("Retry-After", "5")
			writeProblem(w, r, problem(http.StatusServiceUnavailable, "Service unavailable", "", "the token could not be checked; retry"))
			return
		}
		auth.MarkAuthenticated(r.Context())
		if holder, ok := r.Context().Value(principalKey).(*auth.Principal); ok {
			*holder = p
		}
		if !auth.Permit(p, access, r.PathValue("id")) {
			writeProblem(w, r, problem(http.StatusForbidden, "Forbidden", "", "the "+p.Role+" token "+strconv.Quote(p.Name)+" may not "+r.Method+" "+r.URL.Path))
			return
		}
		h(w, r)
	}
}

// principalFrom returns who sent the request; observe puts an empty holder
// into every request's context and authorize fills it, so that the access
// log names the caller too.
func principalFrom(ctx context.Context) auth.Principal {
	if p, ok := ctx.Value(principalKey).(*auth.Principal); ok {
		return *p
	}
	return auth.Principal{}
}

func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

func loggerFrom(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

type statusRecorder struct {
	http.ResponseWriter
	ctx      context.Context
	status   int
	hijacked bool
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack marks the request as taken over: whoever took it logs and counts it.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, buf, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err == nil {
		r.hijacked = true
	}
	return conn, buf, err
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.answer(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.answer(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// answer records the status as the header is written. A connection that
// has not authenticated yet is closed after its answer, so that it gives
// its place among the unauthenticated connections (auth.ConnGuard) to the
// next one instead of holding it while idle.
func (r *statusRecorder) answer(code int) {
	r.status = code
	if auth.Unauthenticated(r.ctx) {
		r.Header().Set("Connection", "close")
	}
}

// maxBody bounds request bodies; the largest resource is far smaller.
const maxBody = 1 << 20

// observe gives every request an id, a logger, a body limit, metrics and an access log line.
func (s *Server) observe(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 64 {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		log := s.log.With("request_id", id)
		ctx := context.WithValue(context.WithValue(r.Context(), requestIDKey, id), loggerKey, log)
		ctx = context.WithValue(ctx, principalKey, &auth.Principal{})
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			r.Body = s.bodyDeadline(w, r.Body)
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		rec := &statusRecorder{ResponseWriter: w, ctx: ctx}
		h(rec, r.WithContext(ctx))
		if rec.hijacked {
			return
		}
		elapsed := time.Since(start)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		s.metrics.observe(route, metricMethod(r.Method), rec.status, elapsed)
		level := slog.LevelInfo
		if rec.status < 400 && (r.Method == http.MethodGet || r.Pattern == "PUT /api/v1/clusters/{id}/status") {
			// Polls and heartbeats come from every agent all the time.
			level = slog.LevelDebug
		}
		if rec.status >= 500 {
			level = slog.LevelError
		}
		log.Log(ctx, level, "request", "method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status,
			"duration_ms", float64(elapsed.Microseconds())/1000, "principal", principalFrom(ctx).Name)
	})
}

// bodyDeadline bounds the time the client takes to send body: a client
// trickling a byte now and then would otherwise hold its connection, and
// net/http reads an unread body after the answer too. The deadline is
// lifted once the body is read, so that it cannot cut a slow answer short;
// requests without a body, such as long-polls, never get one.
func (s *Server) bodyDeadline(w http.ResponseWriter, body io.ReadCloser) io.ReadCloser {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.bodyTimeout)) != nil {
		return body
	}
	return &deadlineBody{ReadCloser: body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
}

type deadlineBody struct {
	io.ReadCloser
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && b.lift != nil {
		b.lift()
		b.lift = nil
	}
	return n, err
}

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// metricMethod bounds the method label: any client can send any method
// token, and each would otherwise become a new series.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

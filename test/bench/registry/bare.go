//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
)

// bareWaitingMetric is the bare server's gauge of held requests.
const bareWaitingMetric = "bare_long_polls_waiting"

// serveBare is the baseline caravan-central is compared with: a net/http
// server doing the least any Go server can for the same requests. It answers
// 304 with an ETag, or, when the request has ?wait=..., holds it that long
// (or until the client leaves) in its handler, as the least a long-poll
// costs in net/http. It runs in its
// own process, like caravan-central, so both compete with the load
// generator alike and their memory is read the same way.
func serveBare(addr string) error {
	var waiting atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { writeBareMetrics(w, waiting.Load()) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		if wait, err := time.ParseDuration(r.URL.Query().Get("wait")); err == nil {
			waiting.Add(1)
			select {
			case <-r.Context().Done():
			case <-time.After(wait):
			}
			waiting.Add(-1)
		}
		w.WriteHeader(http.StatusNotModified)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return fmt.Errorf("bare server on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stopping the bare server: %w", err)
	}
	return nil
}

// writeBareMetrics writes the few metrics the benchmark reads, under the
// names caravan-central's Prometheus Go collector gives them.
func writeBareMetrics(w http.ResponseWriter, waiting int64) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	fmt.Fprintf(w, "%s %d\n%s %d\n%s %d\n%s %d\n", bareWaitingMetric, waiting,
		heapMetric, m.HeapInuse, stackMetric, m.StackInuse, goroutinesMetric, runtime.NumGoroutine())
}

// Package central runs the registry: the store, the API server and its
// HTTP listener, with graceful shutdown.
package central

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	centralapi "github.com/caravan-gitops/caravan/central/api"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Config is how caravan-central serves.
type Config struct {
	Listen        string
	Database      string
	TLSCertFile   string
	TLSKeyFile    string
	InsecureHTTP  bool
	RepositoryURL string
	MaxWait       time.Duration
	Logger        *slog.Logger
	// Ready is called with the listening address once the server accepts requests.
	Ready func(addr string)
}

// DefaultChannels is the promotion path of a new registry.
func DefaultChannels(repositoryURL string) []api.Channel {
	now := time.Now().UTC().Truncate(time.Millisecond)
	var out []api.Channel
	for i, name := range []string{"dev", "alpha", "beta", "stable"} {
		out = append(out, api.Channel{Name: name, Branch: name, Position: i, RepositoryURL: repositoryURL, CreatedAt: now, UpdatedAt: now})
	}
	return out
}

// Run serves the registry until ctx ends, then shuts down gracefully:
// waiting long-polls answer 304 and requests under way finish.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if err := checkTransport(cfg); err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.Database, store.WithLogger(log))
	if err != nil {
		return fmt.Errorf("opening database: %w", err)
	}
	defer st.Close()
	if err := st.SeedChannels(ctx, DefaultChannels(cfg.RepositoryURL), "caravan-central"); err != nil {
		return fmt.Errorf("seeding default channels: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler := centralapi.New(centralapi.Options{Store: st, Logger: log, MaxWait: cfg.MaxWait, RepositoryURL: cfg.RepositoryURL, Registerer: reg, Gatherer: reg})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- serve(srv, ln, cfg) }()
	log.Info("caravan-central serving", "address", ln.Addr().String(), "database", st.Dialect(), "tls", cfg.TLSCertFile != "")
	if cfg.Ready != nil {
		cfg.Ready(ln.Addr().String())
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: ending long-polls, finishing requests under way")
	handler.BeginShutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

func serve(srv *http.Server, ln net.Listener, cfg Config) error {
	var err error
	if cfg.TLSCertFile != "" {
		err = srv.ServeTLS(ln, cfg.TLSCertFile, cfg.TLSKeyFile)
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// checkTransport refuses plain HTTP beyond loopback: tokens would cross the
// network in clear text.
func checkTransport(cfg Config) error {
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.TLSCertFile != "" || cfg.InsecureHTTP {
		return nil
	}
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("refusing plain HTTP on %s, which is not a loopback address: give --tls-cert and --tls-key, or --insecure-http behind a TLS-terminating proxy", cfg.Listen)
}

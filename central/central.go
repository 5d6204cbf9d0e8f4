// Package central runs the registry: the store, the API server and its
// HTTP listener, with graceful shutdown.
package central

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	centralapi "github.com/caravan-gitops/caravan/central/api"
	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/central/ui"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/version"
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
	// MaxWaitingPolls and MaxWaitingPollsPerToken bound the long-polls
	// waiting at once, in all and of one token (20,000 and 100 when zero).
	MaxWaitingPolls         int
	MaxWaitingPollsPerToken int
	// MaxUnauthenticatedConns and MaxUnauthenticatedConnsPerIP bound the
	// connections that have not presented a valid token or session yet, in
	// all and per client address (1,024 and 128 when zero, no limit when
	// negative): beyond the first, new connections wait to be accepted;
	// beyond the second, they are closed at once (auth.ConnGuard).
	MaxUnauthenticatedConns      int
	MaxUnauthenticatedConnsPerIP int
	// BodyTimeout bounds the time a client takes to send a request body (30s when zero).
	BodyTimeout time.Duration
	// SessionTTL is how long a web UI sign-in lasts (12h when zero).
	SessionTTL time.Duration
	// PollSweep is how often waiting long-polls are checked for clients
	// that left (2s when zero).
	PollSweep time.Duration
	// Git holds the read-only credentials the channels' heads are read with,
	// every GitRefresh (30s when zero).
	Git        gitauth.Credentials
	GitRefresh time.Duration
	// HeartbeatTimeout is how long after its last report a cluster is
	// silent, and no evidence for the promotion gate
	// (channels.DefaultHeartbeatTimeout when zero).
	HeartbeatTimeout time.Duration
	// WebhookSecret authenticates git webhooks (--webhook-secret-file):
	// the HMAC-SHA256 key of GitHub's and the plain payload's signature,
	// GitLab's token. Empty turns POST /api/v1/webhooks/git off (404).
	WebhookSecret string
	// AdminToken, when set, is the secret of the admin token AdminTokenName
	// (--admin-token-file), made or given this secret on start.
	AdminToken string
	Logger     *slog.Logger
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

// AdminTokenName is the registry's name of the admin token whose secret
// --admin-token-file holds.
const AdminTokenName = "bootstrap-admin"

// ensureAdminToken gives the registry the admin token of --admin-token-file,
// with the rules of store.EnsureAdminToken.
func ensureAdminToken(ctx context.Context, st *store.Store, secret string, log *slog.Logger) error {
	if secret == "" {
		return nil
	}
	t, outcome, err := st.EnsureAdminToken(ctx, AdminTokenName, secret, "caravan-central --admin-token-file")
	if err != nil {
		return fmt.Errorf("--admin-token-file: %w", err)
	}
	if outcome == store.AdminTokenRevoked {
		log.Warn("the admin token of --admin-token-file was revoked and stays revoked; write a new secret into the file and restart to have a valid one", "token", t.Name, "id", t.ID)
		return nil
	}
	log.Info("admin token of --admin-token-file", "token", t.Name, "id", t.ID, "outcome", string(outcome))
	return nil
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
	if err := st.ReconcilePublications(ctx); err != nil {
		return fmt.Errorf("deciding what the channels publish: %w", err)
	}
	if err := ensureAdminToken(ctx, st, cfg.AdminToken, log); err != nil {
		return err
	}
	// A head read from git, periodically or for a webhook, is recorded in
	// the database: the clusters of the channels that publish it wake on
	// every replica.
	announce := func(repo, branch string, head api.ChannelHead) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, err := st.SetChannelHead(ctx, repo, branch, head.Commit)
		return err
	}
	heads := channels.NewHeads(cfg.Git, cmp.Or(cfg.GitRefresh, 30*time.Second), channels.WithLogger(log), channels.WithOnChange(announce))
	stopHeads := readHeads(ctx, heads, st)
	defer stopHeads()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	webUI := ui.New(ui.Options{Store: st, Logger: log, Heads: heads, SessionTTL: cfg.SessionTTL, HeartbeatTimeout: cfg.HeartbeatTimeout})
	handler := centralapi.New(centralapi.Options{
		Store: st, Logger: log, MaxWait: cfg.MaxWait, RepositoryURL: cfg.RepositoryURL, Heads: heads, Registerer: reg, Gatherer: reg, UI: webUI,
		MaxWaitingPolls: cfg.MaxWaitingPolls, MaxWaitingPollsPerToken: cfg.MaxWaitingPollsPerToken, PollSweep: cfg.PollSweep, BodyTimeout: cfg.BodyTimeout,
		HeartbeatTimeout: cfg.HeartbeatTimeout, WebhookSecret: []byte(cfg.WebhookSecret),
	})
	guard := auth.NewConnGuard(connLimit(cfg.MaxUnauthenticatedConns, 1024), connLimit(cfg.MaxUnauthenticatedConnsPerIP, 128))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "caravan_central_connections_refused_total",
		Help: "Connections closed at accept because too many connections from their address had not authenticated yet.",
	}, func() float64 { return float64(guard.Refused()) }), prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "caravan_central_connections_accept_waits_total",
		Help: "Times the next connection waited to be accepted until one of those that had not authenticated yet did, or closed.",
	}, func() float64 { return float64(guard.Waited()) }))
	tcp, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", cfg.Listen, err)
	}
	ln, err := listener(tcp, guard, handler, cfg)
	if err != nil {
		tcp.Close()
		return err
	}
	// No ReadTimeout or WriteTimeout: long-polls hold their response for
	// minutes. Headers have ReadHeaderTimeout and bodies the API's body
	// deadline; a connection is idle for IdleTimeout at most.
	srv := &http.Server{
		Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: maxHeaderBytes,
		ConnContext: guard.ConnContext, ConnState: guard.ConnState,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- serve(srv, ln) }()
	log.Info("caravan-central serving", "version", version.String(), "address", tcp.Addr().String(), "database", st.Dialect(), "tls", cfg.TLSCertFile != "")
	if cfg.Ready != nil {
		cfg.Ready(tcp.Addr().String())
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

// maxHeaderBytes bounds a request's header: the registry's requests carry
// a token and a few entity tags, far less.
const maxHeaderBytes = 64 << 10

// connLimit is a limit of Config: zero means def, negative no limit (0 for auth.ConnGuard).
func connLimit(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// listener is what the http.Server serves: the TCP listener, with at most
// so many unauthenticated connections (guard), then TLS when configured,
// then the connections of answered long-polls given back. TLS comes before
// the long-polls' connections, which have had their handshake; so the
// server cannot be given the certificate itself (ServeTLS).
func listener(tcp net.Listener, guard *auth.ConnGuard, handler *centralapi.Server, cfg Config) (net.Listener, error) {
	ln := guard.Listener(tcp)
	if cfg.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12})
	}
	return handler.Listener(ln), nil
}

func serve(srv *http.Server, ln net.Listener) error {
	err := srv.Serve(ln)
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

// readHeads reads the channels' branch heads in the background until the
// function it returns is called, which waits for the reading to stop.
func readHeads(ctx context.Context, heads *channels.Heads, st *store.Store) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		heads.Run(ctx, st.AllChannels)
	}()
	return func() {
		cancel()
		<-done
	}
}

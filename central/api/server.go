// Package api serves the registry's REST API, its OpenAPI spec, health
// endpoints and metrics.
package api

import (
	"cmp"
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// OpenAPISpec is the registry's API description, served at /api/v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPISpec []byte

// Options configure a Server.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger
	// Now is the clock; tests pass a fake one.
	Now func() time.Time
	// RepositoryURL is the config repo a new channel follows unless it names its own.
	RepositoryURL string
	// MaxWait bounds the long-poll wait a client may ask for.
	MaxWait time.Duration
	// MaxWaitingPolls bounds the long-polls waiting at once (20,000 when
	// zero), MaxWaitingPollsPerToken those of one token (100 when zero);
	// beyond either a poll is answered 503 with Retry-After.
	MaxWaitingPolls         int
	MaxWaitingPollsPerToken int
	// PollSweep is how often waiting polls are checked for clients that
	// closed their connection (2s when zero).
	PollSweep time.Duration
	// BodyTimeout bounds the time a client takes to send a request's body
	// (30s when zero); the request is then answered 400 and its connection closed.
	BodyTimeout time.Duration
	// HeartbeatTimeout is how long after its last report a cluster is
	// silent to the promotion gate (channels.DefaultHeartbeatTimeout when zero).
	HeartbeatTimeout time.Duration
	// Heads reads the channels' branch heads; nil reads them anonymously,
	// only when asked for.
	Heads *channels.Heads
	// WebhookSecret authenticates git webhooks (POST /api/v1/webhooks/git);
	// empty turns them off (404).
	WebhookSecret []byte
	// Registerer receives the server's metrics; nil means a private registry.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// UI is the web UI, served beside the API; nil serves none.
	UI UI
}

// UI is a web UI: request patterns (outside /api/ and /metrics) and their
// handlers, which check their own sign-in.
type UI interface {
	Routes() map[string]http.HandlerFunc
}

// Server is the registry's HTTP handler.
type Server struct {
	store         *store.Store
	authn         *auth.Authenticator
	log           *slog.Logger
	now           func() time.Time
	maxWait       time.Duration
	repositoryURL string
	metrics       *metrics
	mux           *http.ServeMux
	closing       chan struct{}
	parked        parkedPolls
	// resumer takes answered polls' connections back; nil closes them.
	resumer *resumingListener
	// checks are the parked polls woken, for the workers to check.
	checks        *checkQueue
	waiting       waitingSlots
	sweepOnce     sync.Once
	pollSweep     time.Duration
	bodyTimeout   time.Duration
	heads         *channels.Heads
	webhookSecret []byte
	webhooks      *prometheus.CounterVec
	// heartbeatTimeout is the promotion gate's, zero for its default.
	heartbeatTimeout time.Duration
}

// New builds a Server and its routes.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxWait == 0 {
		o.MaxWait = 5 * time.Minute
	}
	if o.Heads == nil {
		o.Heads = channels.NewHeads(gitauth.Credentials{}, 30*time.Second, channels.WithLogger(o.Logger))
	}
	if o.Registerer == nil {
		reg := prometheus.NewRegistry()
		o.Registerer, o.Gatherer = reg, reg
	}
	s := &Server{
		store: o.Store, authn: auth.NewAuthenticator(o.Store, o.Now), log: o.Logger, now: o.Now,
		maxWait: o.MaxWait, repositoryURL: o.RepositoryURL, metrics: newMetrics(o.Registerer, o.Store), mux: http.NewServeMux(), closing: make(chan struct{}),
		heads: o.Heads, waiting: waitingSlots{maxTotal: cmp.Or(o.MaxWaitingPolls, 20000), maxToken: cmp.Or(o.MaxWaitingPollsPerToken, 100)},
		pollSweep: cmp.Or(o.PollSweep, 2*time.Second), bodyTimeout: cmp.Or(o.BodyTimeout, 30*time.Second),
		heartbeatTimeout: o.HeartbeatTimeout, checks: newCheckQueue(),
	}
	s.webhookSecret, s.webhooks = o.WebhookSecret, newWebhookMetrics(o.Registerer)
	s.routes(promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}), o.UI)
	return s
}

// ServeHTTP serves the registry.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// BeginShutdown ends every waiting long-poll with 304 (unless its
// assignment changed); call it before http.Server.Shutdown, which then waits
// for the requests under way but knows nothing of parked polls.
func (s *Server) BeginShutdown() {
	close(s.closing)
	s.answerParked()
}

func (s *Server) routes(metricsHandler http.Handler, ui UI) {
	s.plain("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.plain("GET /readyz", s.ready)
	s.plain("GET /metrics", metricsHandler.ServeHTTP)
	s.plain("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(OpenAPISpec)
	})

	s.resourceRoutes("/api/v1/infrastructure-accounts", "{id}", accountResource(s))
	s.resourceRoutes("/api/v1/clusters", "{id}", clusterResource(s))
	s.resourceRoutes("/api/v1/clusters/{id}/node-pools", "{name}", nodePoolResource(s))
	s.resourceRoutes("/api/v1/channels", "{name}", channelResource(s))
	s.resourceRoutes("/api/v1/clusters/{id}/blocks", "{block_id}", blockResource(s))

	s.route("POST /api/v1/clusters/{id}/decommission", auth.Write, s.confirmDecommission)
	s.route("GET /api/v1/clusters/{id}/assignment", auth.AgentAssignment, s.getAssignment)
	s.route("PUT /api/v1/clusters/{id}/status", auth.AgentStatus, s.putStatus)
	s.route("GET /api/v1/clusters/{id}/status", auth.Read, s.getStatus)
	s.route("GET /api/v1/clusters/{id}/status/history", auth.Read, s.getStatusHistory)
	s.route("POST /api/v1/clusters/{id}/plans", auth.Write, s.createPlan)
	s.route("GET /api/v1/clusters/{id}/plans", auth.Read, s.listPlans)
	s.route("GET /api/v1/clusters/{id}/plans/{plan_id}", auth.Read, s.getPlan)
	s.route("PUT /api/v1/clusters/{id}/plans/{plan_id}", auth.AgentStatus, s.reportPlan)
	s.route("GET /api/v1/channels/{name}/rollout", auth.Read, s.getRollout)
	s.route("GET /api/v1/channels/{name}/history", auth.Read, s.getHistory)
	s.route("GET /api/v1/channels/{name}/promotion", auth.Read, s.getPromotionGate)
	s.route("POST /api/v1/channels/{name}/promotions", auth.Write, s.recordPromotion)
	s.freezeRoutes()
	s.route("GET /api/v1/audit", auth.Read, s.listAudit)
	s.route("GET /api/v1/tokens", auth.Read, s.listTokens)
	s.route("POST /api/v1/tokens", auth.Write, s.createToken)
	s.route("GET /api/v1/tokens/{token_id}", auth.Read, s.getToken)
	// The webhook's secret is its authentication: no token.
	s.plain("POST /api/v1/webhooks/git", checkText(s.receiveGitWebhook))
	s.route("DELETE /api/v1/tokens/{token_id}", auth.Write, s.revokeToken)

	if ui != nil {
		for pattern, h := range ui.Routes() {
			s.mux.Handle(pattern, s.observe(h))
		}
	}
	s.plain("/", s.noRoute)
}

// noRoute answers what no route matched: 405 with Allow when the path
// exists for other methods, else 404, both as problems.
func (s *Server) noRoute(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := s.mux.Handler(probe); pattern != "/" && pattern != "" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeProblem(w, r, problem(http.StatusMethodNotAllowed, "Method not allowed", "", r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allowed, ", ")))
		return
	}
	writeProblem(w, r, problem(http.StatusNotFound, "Not found", "", "no route for "+r.Method+" "+r.URL.Path))
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		writeProblem(w, r, problem(http.StatusServiceUnavailable, "Not ready", "", err.Error()))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

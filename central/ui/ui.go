// Package ui serves caravan-central's web UI: server-rendered HTML pages of
// the fleet, a cluster and the channels, read straight from the store, with
// sign-in by API token and blocking and unblocking for admins.
package ui

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

//go:embed templates
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Options configure the UI.
type Options struct {
	Store  *store.Store
	Logger *slog.Logger
	// Now is the clock; tests pass a fake one.
	Now func() time.Time
	// Heads reads the channels' branch heads; share the API server's, so
	// that both show the same heads. Nil reads them anonymously, only when
	// the channels page is shown.
	Heads *channels.Heads
	// SessionTTL is how long a sign-in lasts (12h when zero).
	SessionTTL time.Duration
	// HeartbeatTimeout is how long after its last report a cluster is
	// silent to the promotion gate (channels.DefaultHeartbeatTimeout when zero).
	HeartbeatTimeout time.Duration
}

// UI is the web UI's handlers.
type UI struct {
	store *store.Store
	authn *auth.Authenticator
	log   *slog.Logger
	now   func() time.Time
	heads *channels.Heads
	pages map[string]*template.Template
	// sessionTTL is how long a sign-in lasts; signins limits sign-in attempts per address.
	sessionTTL time.Duration
	signins    *rateLimit
	// heartbeatTimeout is the promotion gate's, zero for its default.
	heartbeatTimeout time.Duration
}

// New builds the UI.
func New(o Options) *UI {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Heads == nil {
		o.Heads = channels.NewHeads(gitauth.Credentials{}, 30*time.Second, channels.WithLogger(o.Logger))
	}
	return &UI{
		store: o.Store, authn: auth.NewAuthenticator(o.Store, o.Now), log: o.Logger, now: o.Now,
		heads: o.Heads, pages: parsePages(), sessionTTL: cmp.Or(o.SessionTTL, 12*time.Hour), signins: newRateLimit(signinBurst, signinEvery),
		heartbeatTimeout: o.HeartbeatTimeout,
	}
}

// Routes are the UI's request patterns and handlers, for the registry's mux;
// none of them lies under /api/ or /metrics.
func (u *UI) Routes() map[string]http.HandlerFunc {
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err)
	}
	return map[string]http.HandlerFunc{
		"GET /{$}":                                   u.page(u.fleet),
		"GET /clusters/{id}":                         u.page(u.cluster),
		"POST /clusters/{id}/blocks":                 u.action(u.block),
		"POST /clusters/{id}/blocks/{block}/unblock": u.action(u.unblock),
		"GET /channels":                              u.page(u.showChannels),
		"GET /signin":                                u.signinForm,
		"POST /signin":                               u.signin,
		"POST /signout":                              u.signout,
		"GET /static/":                               staticFile(static),
	}
}

// staticFile serves the files of fsys, never a listing of a folder (404).
func staticFile(fsys fs.FS) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/static/")
		f, err := fsys.Open(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		info, err := f.Stat()
		content, seekable := f.(io.ReadSeeker)
		if err != nil || info.IsDir() || !seekable {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, info.Name(), info.ModTime(), content)
	}
}

// parsePages parses each page's template together with the layout; the
// templates are embedded, so an error is a bug that any test reveals.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	for _, name := range []string{"fleet", "cluster", "channels", "signin", "error"} {
		pages[name] = template.Must(template.New(name).Funcs(templateFuncs).ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

// frame is what the layout around every page shows.
type frame struct {
	Title string
	// Nav names the menu entry of this page.
	Nav    string
	Viewer *session
}

// render writes a page; it renders into a buffer first so that a template
// error becomes a clean 500 rather than half a page.
func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", data); err != nil {
		u.log.Error("rendering a web UI page failed", "page", name, "path", r.URL.Path, "error", err)
		http.Error(w, "the page could not be rendered; see the server log", http.StatusInternalServerError)
		return
	}
	securityHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// securityHeaders keep pages out of frames and caches and allow no script:
// the UI has none, so injected markup could not run any either.
func securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

type errorPage struct {
	frame
	Status int
	Detail string
}

// fail shows an error page, with the status the API would answer for err.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, viewer *session, err error) {
	status, detail := http.StatusInternalServerError, "the server failed to answer; see its log"
	var p *api.Problem
	var verr *api.ValidationError
	var inUse *store.InUseError
	switch {
	case errors.As(err, &p):
		status, detail = p.Status, p.Detail
	case errors.As(err, &verr):
		status, detail = http.StatusUnprocessableEntity, verr.Error()
	case errors.Is(err, store.ErrNotFound):
		status, detail = http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrStale), errors.Is(err, store.ErrExists):
		status, detail = http.StatusConflict, err.Error()+"; reload the page and try again"
	case errors.As(err, &inUse):
		status, detail = http.StatusConflict, inUse.Reason
	default:
		u.log.Error("web UI request failed", "path", r.URL.Path, "error", err)
	}
	u.showError(w, r, viewer, status, detail)
}

func (u *UI) showError(w http.ResponseWriter, r *http.Request, viewer *session, status int, detail string) {
	u.render(w, r, status, "error", errorPage{frame: frame{Title: http.StatusText(status), Viewer: viewer}, Status: status, Detail: detail})
}

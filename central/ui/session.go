package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
)

const (
	// sessionCookie holds the secret of a server-side session (see
	// store.CreateSession), never the API token itself: sign-out and the
	// session's expiry end it on the server, so a copied cookie stops
	// working too. The API never reads cookies, only the Authorization
	// header, so the cookie cannot be used against /api/ by another site.
	sessionCookie = "caravan_session"
	// signinCookie holds the nonce of the sign-in form, so that another
	// site cannot sign a browser in with a token of its choice.
	signinCookie = "caravan_signin"
	signinTTL    = 15 * time.Minute
	csrfField    = "csrf"
)

// session is a signed-in viewer.
type session struct {
	auth.Principal
	// CSRF is the token every form of this session carries.
	CSRF string
}

// CanWrite says whether the viewer may block and unblock.
func (s *session) CanWrite() bool { return auth.Permit(s.Principal, auth.Write, "") }

// csrfToken is the session's form token: an HMAC of the token's id keyed
// with the session's secret. Only the cookie's holder and the server know
// the secret, and every replica of the registry can check the token
// without sharing a key.
func csrfToken(secret, tokenID string) string {
	key := sha256.Sum256([]byte(secret))
	mac := hmac.New(sha256.New, key[:])
	mac.Write([]byte("caravan-ui-csrf\x00" + tokenID))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// errNoSession means the request carries no session cookie of a live
// session of a valid token.
var errNoSession = errors.New("not signed in")

// session reads the viewer from the session cookie.
func (u *UI) session(r *http.Request) (*session, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || c.Value == "" || !store.ValidText(c.Value) {
		return nil, errNoSession
	}
	t, err := u.store.SessionToken(r.Context(), c.Value)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	auth.MarkAuthenticated(r.Context())
	p := auth.Principal{TokenID: t.ID, Name: t.Name, Role: t.Role, ClusterID: t.ClusterID}
	return &session{Principal: p, CSRF: csrfToken(c.Value, p.TokenID)}, nil
}

// viewerOrFail returns the signed-in viewer allowed to read the registry;
// it has answered the request when it returns nil. Without a session it
// sends the browser to sign in and then on to the page next.
func (u *UI) viewerOrFail(w http.ResponseWriter, r *http.Request, next string) *session {
	s, err := u.session(r)
	switch {
	case errors.Is(err, errNoSession):
		clearCookie(w, r, sessionCookie, "/")
		http.Redirect(w, r, "/signin?next="+url.QueryEscape(next), http.StatusSeeOther)
		return nil
	case err != nil:
		u.log.Error("checking a web UI session failed", "error", err)
		w.Header().Set("Retry-After", "5")
		u.showError(w, r, nil, http.StatusServiceUnavailable, "the token could not be checked; retry")
		return nil
	case !auth.Permit(s.Principal, auth.Read, ""):
		u.showError(w, r, nil, http.StatusForbidden, "the "+s.Role+" token "+strconv.Quote(s.Name)+" may not read the registry")
		return nil
	}
	return s
}

// page guards a page: the viewer must be signed in with a token that may read.
func (u *UI) page(h func(w http.ResponseWriter, r *http.Request, viewer *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if viewer := u.viewerOrFail(w, r, r.URL.RequestURI()); viewer != nil && u.validText(w, r, viewer) {
			h(w, r, viewer)
		}
	}
}

// action guards a form post that changes a cluster: the viewer must be
// signed in, the form must carry the session's CSRF token, and the token
// must be allowed to write. A post without a session is not replayed
// after the sign-in, which leads back to the cluster's page.
func (u *UI) action(h func(w http.ResponseWriter, r *http.Request, viewer *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		viewer := u.viewerOrFail(w, r, clusterPath(r.PathValue("id")))
		if viewer == nil || !u.validText(w, r, viewer) {
			return
		}
		if !hmac.Equal([]byte(r.PostFormValue(csrfField)), []byte(viewer.CSRF)) {
			u.showError(w, r, viewer, http.StatusForbidden, "the form's csrf token is missing or wrong; reload the page and try again")
			return
		}
		if !auth.Permit(viewer.Principal, auth.Write, r.PathValue("id")) {
			u.showError(w, r, viewer, http.StatusForbidden, "the "+viewer.Role+" token "+strconv.Quote(viewer.Name)+" may not change the registry; an admin token may")
			return
		}
		h(w, r, viewer)
	}
}

// validText refuses a request whose path, query or form holds a NUL
// character or invalid UTF-8, which no stored value has (and PostgreSQL
// refuses to compare with): 404 for a path value, 400 for a field. It has
// answered the request when it reports false.
func (u *UI) validText(w http.ResponseWriter, r *http.Request, viewer *session) bool {
	for _, name := range []string{"id", "block"} {
		if !store.ValidText(r.PathValue(name)) {
			u.showError(w, r, viewer, http.StatusNotFound, name+" holds a NUL character or invalid UTF-8, which no "+name+" of the registry does")
			return false
		}
	}
	if err := r.ParseForm(); err != nil {
		u.showError(w, r, viewer, http.StatusBadRequest, "the form could not be read: "+err.Error())
		return false
	}
	for name, values := range r.Form {
		for _, v := range values {
			if !store.ValidText(v) {
				u.showError(w, r, viewer, http.StatusBadRequest, name+": must be UTF-8 text without NUL characters")
				return false
			}
		}
	}
	return true
}

type signinPage struct {
	frame
	Nonce string
	Next  string
	Error string
}

func (u *UI) signinForm(w http.ResponseWriter, r *http.Request) {
	u.showSignin(w, r, http.StatusOK, "")
}

// showSignin renders the sign-in form with a fresh nonce, also set as a cookie.
func (u *UI) showSignin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	nonce, err := randomNonce()
	if err != nil {
		u.fail(w, r, nil, err)
		return
	}
	setCookie(w, r, &http.Cookie{Name: signinCookie, Value: nonce, Path: "/signin", MaxAge: int(signinTTL.Seconds())})
	next := r.FormValue("next")
	if !localPath(next) {
		next = "/"
	}
	u.render(w, r, status, "signin", signinPage{frame: frame{Title: "Sign in"}, Nonce: nonce, Next: next, Error: problem})
}

func (u *UI) signin(w http.ResponseWriter, r *http.Request) {
	if wait := u.signins.take(clientIP(r), u.now()); wait > 0 {
		seconds := int(math.Ceil(wait.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
		u.showSignin(w, r, http.StatusTooManyRequests, "Too many sign-in attempts from your address: wait "+strconv.Itoa(seconds)+"s and try again.")
		return
	}
	nonce, err := r.Cookie(signinCookie)
	if err != nil || nonce.Value == "" || !hmac.Equal([]byte(nonce.Value), []byte(r.PostFormValue("nonce"))) {
		u.showSignin(w, r, http.StatusForbidden, "The sign-in form expired or came from another site: sign in again.")
		return
	}
	secret := strings.TrimSpace(r.PostFormValue("token"))
	if secret == "" {
		u.showSignin(w, r, http.StatusUnprocessableEntity, "token: paste an API token (cvn_...).")
		return
	}
	p, err := u.authn.Authenticate(r.Context(), "Bearer "+secret)
	if errors.Is(err, auth.ErrUnauthenticated) {
		u.showSignin(w, r, http.StatusUnauthorized, "token: not a valid token; it is unknown or revoked.")
		return
	}
	if err != nil {
		u.log.Error("checking a token at sign-in failed", "error", err)
		u.showSignin(w, r, http.StatusServiceUnavailable, "The token could not be checked; retry.")
		return
	}
	if !auth.Permit(p, auth.Read, "") {
		u.showSignin(w, r, http.StatusForbidden, "token: the "+p.Role+" token "+strconv.Quote(p.Name)+" may not read the registry; sign in with a reader or admin token.")
		return
	}
	sessionSecret, _, err := u.store.CreateSession(r.Context(), p.TokenID, u.sessionTTL)
	if err != nil {
		u.log.Error("starting a web UI session failed", "error", err)
		u.showSignin(w, r, http.StatusServiceUnavailable, "The session could not be started; retry.")
		return
	}
	auth.MarkAuthenticated(r.Context())
	clearCookie(w, r, signinCookie, "/signin")
	setCookie(w, r, &http.Cookie{Name: sessionCookie, Value: sessionSecret, Path: "/", MaxAge: int(u.sessionTTL.Seconds())})
	next := r.PostFormValue("next")
	if !localPath(next) {
		next = "/"
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) signout(w http.ResponseWriter, r *http.Request) {
	viewer, err := u.session(r)
	if err == nil && !hmac.Equal([]byte(r.PostFormValue(csrfField)), []byte(viewer.CSRF)) {
		u.showError(w, r, viewer, http.StatusForbidden, "the form's csrf token is missing or wrong; reload the page and try again")
		return
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := u.store.DeleteSession(r.Context(), c.Value); err != nil {
			u.fail(w, r, viewer, err)
			return
		}
	}
	clearCookie(w, r, sessionCookie, "/")
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// localPath accepts only a path of this site, so that ?next= cannot send a
// signed-in viewer elsewhere. Browsers drop tabs and line breaks from a
// URL and read a backslash as a slash, so "/\t/evil.example" would lead to
// //evil.example: a path with any control character, space or backslash
// is refused whole.
func localPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || !utf8.ValidString(p) {
		return false
	}
	for _, r := range p {
		if r <= ' ' || r == 0x7f || r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return false
		}
	}
	return true
}

// clientIP is the address the request came from (a proxy's, behind one).
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func randomNonce() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// setCookie sets a cookie that scripts cannot read and other sites cannot
// send, Secure when the browser reached us over TLS (directly or through a
// TLS-terminating proxy).
func setCookie(w http.ResponseWriter, r *http.Request, c *http.Cookie) {
	c.HttpOnly = true
	c.SameSite = http.SameSiteStrictMode
	c.Secure = r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	http.SetCookie(w, c)
}

func clearCookie(w http.ResponseWriter, r *http.Request, name, path string) {
	if _, err := r.Cookie(name); err != nil {
		return
	}
	setCookie(w, r, &http.Cookie{Name: name, Value: "", Path: path, MaxAge: -1})
}

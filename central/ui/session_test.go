package ui_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPagesRedirectToSignIn(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)
	for _, path := range []string{"/", "/channels", clusterPath(testDev.ID), "/?phase=failed"} {
		p := b.get(path)
		assert.Equal(t, http.StatusSeeOther, p.Status, path)
		assert.Equal(t, "/signin?next="+url.QueryEscape(path), p.Header.Get("Location"), path)
	}
	p := b.post(clusterPath(testDev.ID)+"/blocks", url.Values{"reason": {"not signed in"}})
	assert.Equal(t, http.StatusSeeOther, p.Status)
	assert.Equal(t, "/signin?next="+url.QueryEscape(clusterPath(testDev.ID)), p.Header.Get("Location"), "back to the cluster's page after the sign-in")
	assert.Empty(t, f.blocks(t, testDev.ID))

	b.hc.Jar.SetCookies(mustURL(t, f.srv.URL), []*http.Cookie{{Name: "caravan_session", Value: "cvn_notatoken"}})
	p = b.get("/")
	assert.Equal(t, http.StatusSeeOther, p.Status, "a cookie with an unknown token is no session")
	assert.Contains(t, p.Header.Values("Set-Cookie"), "caravan_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", "the bad cookie is dropped")
}

func TestSignInKeepsASessionInAStrictCookie(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)
	p := b.signIn(f.reader)
	require.Equal(t, http.StatusSeeOther, p.Status, p.Body)
	assert.Equal(t, "/", p.Header.Get("Location"))
	session := cookieNamed(t, p, "caravan_session")
	assert.NotContains(t, session.Value, f.reader, "the cookie holds a session, never the API token")
	assert.True(t, strings.HasPrefix(session.Value, "cvs_"), session.Value)
	assert.Equal(t, int((12 * time.Hour).Seconds()), session.MaxAge)
	assert.True(t, session.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, session.SameSite)
	assert.Equal(t, "/", session.Path)
	assert.False(t, session.Secure, "the test server speaks plain HTTP")

	fleet := b.get("/")
	require.Equal(t, http.StatusOK, fleet.Status)
	assert.Contains(t, fleet.Body, "ui-reader")
	assert.Contains(t, fleet.Body, "test-dev")

	behindTLSProxy := newBrowser(t, f).signIn(f.reader, "X-Forwarded-Proto", "https")
	require.Equal(t, http.StatusSeeOther, behindTLSProxy.Status)
	assert.True(t, cookieNamed(t, behindTLSProxy, "caravan_session").Secure, "Secure when the browser came over TLS")
}

func TestSignInRefusals(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)

	p := b.signIn("cvn_notatoken")
	assert.Equal(t, http.StatusUnauthorized, p.Status)
	assert.Contains(t, p.Body, "token: not a valid token")

	p = b.signIn(f.agent)
	assert.Equal(t, http.StatusForbidden, p.Status)
	assert.Contains(t, p.Body, `the agent token &#34;ui-agent&#34; may not read the registry`)

	p = b.signIn("")
	assert.Equal(t, http.StatusUnprocessableEntity, p.Status)
	assert.Contains(t, p.Body, "token: paste an API token")

	// Another site posting a token of its choice has no nonce cookie.
	p = newBrowser(t, f).post("/signin", url.Values{"token": {f.admin}, "nonce": {"guessed"}})
	assert.Equal(t, http.StatusForbidden, p.Status)
	assert.Contains(t, p.Body, "came from another site")
	assert.False(t, setsCookie(p, "caravan_session"), "no session: %q", p.Header.Values("Set-Cookie"))

	assert.Equal(t, http.StatusSeeOther, b.get("/").Status, "none of these signed in")
}

func TestSignInGoesBackOnlyToThisSite(t *testing.T) {
	f := startFleet(t)
	attempt := 0
	for next, want := range map[string]string{
		"/channels":                "/channels",
		"//evil.example/":          "/",
		"https://evil.example/":    "/",
		`/\evil.example`:           "/",
		clusterPath(testDev.ID):    clusterPath(testDev.ID),
		"/?channel=dev&phase=idle": "/?channel=dev&phase=idle",
		// Browsers drop tabs and line breaks and read \ as /.
		"/\t/evil.example":   "/",
		"/\n/evil.example":   "/",
		"/\r\n/evil.example": "/",
		"/\x00/evil.example": "/",
		"/\x7f/evil.example": "/",
		"/ /evil.example":    "/",
		"/\\/evil.example":   "/",
		"/a\\b":              "/",
	} {
		// Each from an address of its own, under the sign-in limit.
		attempt++
		b := newBrowserFrom(t, f, "127.0.1."+strconv.Itoa(attempt))
		form := b.get("/signin?next=" + url.QueryEscape(next))
		p := b.post("/signin", url.Values{"token": {f.reader}, "nonce": {hiddenField(t, form.Body, "nonce")}, "next": {next}})
		require.Equal(t, http.StatusSeeOther, p.Status)
		assert.Equal(t, want, p.Header.Get("Location"), "next=%s", next)
	}
}

func TestSignOut(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, b.signIn(f.reader).Status)
	csrf := hiddenField(t, b.get("/").Body, "csrf")

	p := b.post("/signout", url.Values{})
	assert.Equal(t, http.StatusForbidden, p.Status, "sign-out without the csrf token")
	require.Equal(t, http.StatusOK, b.get("/").Status, "still signed in")

	p = b.post("/signout", url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, p.Status)
	assert.Equal(t, "/signin", p.Header.Get("Location"))
	assert.Equal(t, http.StatusSeeOther, b.get("/").Status, "signed out")
}

func TestBlockNeedsTheSessionsCSRFToken(t *testing.T) {
	f := startFleet(t)
	admin := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, admin.signIn(f.admin).Status)
	csrf := hiddenField(t, admin.get(clusterPath(testDev.ID)).Body, "csrf")

	other := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, other.signIn(f.reader).Status)
	otherCSRF := hiddenField(t, other.get("/").Body, "csrf")
	require.NotEqual(t, csrf, otherCSRF, "each session has its own csrf token")

	blocks := clusterPath(testDev.ID) + "/blocks"
	for name, form := range map[string]url.Values{
		"without a csrf token":         {"reason": {"no token"}},
		"with a wrong csrf token":      {"reason": {"wrong token"}, "csrf": {strings.Repeat("A", len(csrf))}},
		"with another session's token": {"reason": {"other session"}, "csrf": {otherCSRF}},
	} {
		p := admin.post(blocks, form)
		assert.Equal(t, http.StatusForbidden, p.Status, name)
		assert.Contains(t, p.Body, "csrf token is missing or wrong", name)
	}
	assert.Empty(t, f.blocks(t, testDev.ID), "no refused post blocked the cluster")

	p := admin.post(blocks, url.Values{"reason": {"investigating an incident"}, "csrf": {csrf}, "for": {"2h"}})
	require.Equal(t, http.StatusSeeOther, p.Status, p.Body)
	assert.Equal(t, clusterPath(testDev.ID), p.Header.Get("Location"))
	got := f.blocks(t, testDev.ID)
	require.Len(t, got, 1)
	assert.Equal(t, "investigating an incident", got[0].Reason)
	assert.Equal(t, "ui-admin", got[0].By)
	require.NotNil(t, got[0].Until)
	assert.Equal(t, got[0].Since.Add(2*time.Hour), *got[0].Until)
	audit := f.blockAudit(t)
	require.NotEmpty(t, audit)
	assert.Equal(t, "ui-admin", audit[0].Actor)
	assert.Equal(t, "create", audit[0].Action)
	assert.Equal(t, testDev.ID+"/"+got[0].ID, audit[0].ResourceID)

	unblock := clusterPath(testDev.ID) + "/blocks/" + got[0].ID + "/unblock"
	assert.Equal(t, http.StatusForbidden, admin.post(unblock, url.Values{}).Status, "unblock without the csrf token")
	require.Len(t, f.blocks(t, testDev.ID), 1)
	p = admin.post(unblock, url.Values{"csrf": {csrf}})
	require.Equal(t, http.StatusSeeOther, p.Status, p.Body)
	assert.Empty(t, f.blocks(t, testDev.ID))
	assert.Equal(t, "delete", f.blockAudit(t)[0].Action)
	assert.Equal(t, "ui-admin", f.blockAudit(t)[0].Actor)
}

func TestReaderCannotBlock(t *testing.T) {
	f := startFleet(t)
	reader := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, reader.signIn(f.reader).Status)
	p := reader.get(clusterPath(testDev.ID))
	require.Equal(t, http.StatusOK, p.Status)
	assert.NotContains(t, p.Body, `class="block"`, "no block form for a reader")
	csrf := hiddenField(t, p.Body, "csrf")

	p = reader.post(clusterPath(testDev.ID)+"/blocks", url.Values{"reason": {"reader"}, "csrf": {csrf}})
	assert.Equal(t, http.StatusForbidden, p.Status)
	assert.Contains(t, p.Body, "may not change the registry")
	assert.Empty(t, f.blocks(t, testDev.ID))
}

func TestBlockFormErrorsNameTheField(t *testing.T) {
	f := startFleet(t)
	admin := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, admin.signIn(f.admin).Status)
	csrf := hiddenField(t, admin.get(clusterPath(testDev.ID)).Body, "csrf")
	blocks := clusterPath(testDev.ID) + "/blocks"

	p := admin.post(blocks, url.Values{"reason": {"  "}, "csrf": {csrf}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.Status)
	assert.Contains(t, p.Body, "reason: must say why updates are blocked")

	p = admin.post(blocks, url.Values{"reason": {"kept in the form"}, "for": {"soon"}, "csrf": {csrf}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.Status)
	assert.Contains(t, p.Body, "for: must be a duration such as 2h or 30m, got soon")
	assert.Contains(t, p.Body, `value="kept in the form"`, "what was typed is kept")

	p = admin.post(blocks, url.Values{"reason": {"no such pool"}, "node_pool": {"gpu"}, "csrf": {csrf}})
	assert.Equal(t, http.StatusUnprocessableEntity, p.Status)
	assert.Contains(t, p.Body, "node_pool: no node pool")
	assert.Empty(t, f.blocks(t, testDev.ID))

	p = admin.post("/clusters/aws:111111111111:eu-central-1:nowhere/blocks", url.Values{"reason": {"x"}, "csrf": {csrf}})
	assert.Equal(t, http.StatusNotFound, p.Status)
}

func cookieNamed(t *testing.T, p page, name string) *http.Cookie {
	t.Helper()
	for _, raw := range p.Header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(raw)
		require.NoError(t, err)
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cookie %s set; Set-Cookie: %q", name, p.Header.Values("Set-Cookie"))
	return nil
}

func setsCookie(p page, name string) bool {
	for _, raw := range p.Header.Values("Set-Cookie") {
		if strings.HasPrefix(raw, name+"=") {
			return true
		}
	}
	return false
}

func mustURL(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

func TestSignInIsRateLimitedPerAddress(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)
	var limited page
	attempts := 0
	for attempts < 30 {
		attempts++
		p := b.signIn("cvn_wrongguess")
		if p.Status == http.StatusTooManyRequests {
			limited = p
			break
		}
		require.Equal(t, http.StatusUnauthorized, p.Status, p.Body)
	}
	require.Equal(t, http.StatusTooManyRequests, limited.Status, "no limit after %d attempts", attempts)
	assert.GreaterOrEqual(t, attempts, 11, "ten attempts are allowed at once")
	retry, err := strconv.Atoi(limited.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", limited.Header.Get("Retry-After"))
	assert.Positive(t, retry)
	assert.Contains(t, limited.Body, "Too many sign-in attempts")
	p := b.signIn(f.reader)
	assert.Equal(t, http.StatusTooManyRequests, p.Status, "a valid token waits its turn too")
	assert.False(t, setsCookie(p, "caravan_session"))

	other := newBrowserFrom(t, f, "127.0.0.2")
	assert.Equal(t, http.StatusSeeOther, other.signIn(f.reader).Status, "another address is not limited")
}

func TestStaticServesFilesNotFolders(t *testing.T) {
	f := startFleet(t)
	b := newBrowser(t, f)
	css := b.get("/static/caravan.css")
	assert.Equal(t, http.StatusOK, css.Status)
	assert.Contains(t, css.Header.Get("Content-Type"), "text/css")
	for _, dir := range []string{"/static/", "/static/nothing.css"} {
		p := b.get(dir)
		assert.Equal(t, http.StatusNotFound, p.Status, dir)
		assert.NotContains(t, p.Body, "caravan.css", "%s lists no folder", dir)
	}
}

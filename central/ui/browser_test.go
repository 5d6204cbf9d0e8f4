package ui_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// chromium starts Debian's headless Chromium for the test; the browser
// ends with the test.
func chromium(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: run test/deps.sh, which installs Debian's chromium package (%v)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		// The tests run as root, where Chromium's sandbox refuses to start.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancelTimeout := context.WithTimeout(context.Background(), 3*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancelTimeout()
	})
	return browserCtx
}

// tab drives one browser tab through the UI of a fleet.
type tab struct {
	t   *testing.T
	ctx context.Context
	f   *fleet
}

// open loads a page of the UI and returns the HTTP status it came with.
func (b tab) open(path string) int {
	b.t.Helper()
	res, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(b.f.srv.URL+path))
	require.NoError(b.t, err, "opening %s", path)
	return int(res.Status)
}

// follow runs steps that load a new page (a click on a link or a submit
// button) and returns the new page's status.
func (b tab) follow(steps ...chromedp.Action[chromedp.Void]) int {
	b.t.Helper()
	res, err := chromedp.RunResponse(b.ctx, steps...)
	require.NoError(b.t, err)
	return int(res.Status)
}

func (b tab) click(selector string) int {
	b.t.Helper()
	return b.follow(chromedp.Click(chromedp.CSS(selector)))
}

func (b tab) text(selector string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(selector)))
	require.NoError(b.t, err, "reading the text of %s", selector)
	return s
}

func (b tab) count(selector string) int {
	b.t.Helper()
	n, err := chromedp.Run(b.ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(selector)+`).length`))
	require.NoError(b.t, err)
	return n
}

// path is the current page's path and query.
func (b tab) path() string {
	b.t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	require.NoError(b.t, err)
	u, err := url.Parse(loc)
	require.NoError(b.t, err)
	return u.RequestURI()
}

func (b tab) signIn(token string) {
	b.t.Helper()
	require.Equal(b.t, http.StatusOK, b.open("/"))
	require.Equal(b.t, "/signin?next=%2F", b.path(), "a page without a session sends the browser to the sign-in form")
	require.NoError(b.t, chromedp.Do(b.ctx, chromedp.SendKeys(chromedp.CSS("#token"), token)))
	require.Equal(b.t, http.StatusOK, b.click("form.signin button"))
	require.Equal(b.t, "/", b.path())
}

func (b tab) signOut() {
	b.t.Helper()
	require.Equal(b.t, http.StatusOK, b.click("form.signout button"))
	require.Equal(b.t, "/signin", b.path())
}

// apiGet reads the registry's API with a bearer token.
func apiGet(t *testing.T, f *fleet, token, path string, into any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, "GET %s: %s", path, body)
	require.NoError(t, json.Unmarshal(body, into))
}

func TestInChromium(t *testing.T) {
	f := startFleet(t)
	b := tab{t: t, ctx: chromium(t), f: f}
	b.signIn(f.admin)
	assert.Contains(t, b.text("header"), "ui-admin")

	t.Run("fleet", func(t *testing.T) {
		b := tab{t: t, ctx: b.ctx, f: f}
		clusters := b.text("table.clusters")
		for _, want := range []string{"test-dev", "production-stable", testDev.ID, "rolling-nodes", "failed", "Stack nodepool-workers rolled back", f.devHead[:8] + "#bbbb2222"} {
			assert.Contains(t, clusters, want)
		}
		assert.Equal(t, 8, b.count("table.clusters tbody tr"))
		background, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector(".phase-failed")).backgroundColor`))
		require.NoError(t, err)
		assert.Equal(t, "rgb(198, 40, 40)", background, "failed is red: the stylesheet loads under the page's CSP")

		banner := b.text("section.freezes")
		for _, want := range []string{
			"Frozen: channel alpha", "until " + ts(f.alphaFreeze.Until), "Alpha hardware swap", "by ops",
			"Freeze from " + ts(f.productionFreeze.Since) + ": environment production", "Cyber Week", "by sales-ops",
		} {
			assert.Contains(t, banner, want)
		}
		assert.Equal(t, 1, b.count("section.freezes li.freeze-active"))
		assert.Equal(t, 1, b.count("section.freezes li.freeze-scheduled"))
		assert.Equal(t, 2, b.count("table.clusters td.window-frozen"), "the alpha clusters")
		assert.Equal(t, 2, b.count("table.clusters td.window-closed"), "test-dev and production-stable")
		assert.Equal(t, 1, b.count("table.clusters td.window-invalid"), "production-beta")
		assert.Equal(t, 3, b.count("table.clusters td.window-open"))
		assert.Contains(t, clusters, "opens "+ts(f.opens))
		assert.Contains(t, clusters, "frozen until "+ts(f.alphaFreeze.Until))
		assert.Contains(t, clusters, "waiting-for-window")
		colour, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("td.window-frozen")).color`))
		require.NoError(t, err)
		assert.Equal(t, "rgb(2, 119, 189)", colour, "a frozen window is blue")
		assert.Equal(t, 1, b.count("table.clusters td.drift-fight"), "test-dev fights the autoscaler")
		assert.Contains(t, b.text("table.clusters td.drift-fight"), "1 fight, 4 corrected")
		fight, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`(() => { const s = getComputedStyle(document.querySelector("td.drift-fight")); return s.color + " " + s.fontWeight })()`))
		require.NoError(t, err)
		assert.Equal(t, "rgb(198, 40, 40) 600", fight, "a fight stands out: red and bold")
		assert.Equal(t, 1, b.count("table.clusters td.drift-report"))

		require.NoError(t, chromedp.Do(b.ctx, chromedp.SetValue(chromedp.CSS(`select[name="phase"]`), "waiting-for-window")))
		require.Equal(t, http.StatusOK, b.click("form.filters button"))
		assert.Equal(t, 1, b.count("table.clusters tbody tr"))
		assert.Contains(t, b.text("table.clusters"), "production-stable")
		require.Equal(t, http.StatusOK, b.click(`table.clusters a[href="/clusters/`+productionProd.ID+`"]`))
		assert.Contains(t, b.text("dl.fields dd.next-window"), ts(f.opens), "the waiting cluster says when its window opens")
		assert.Contains(t, b.text("table.freezes"), "Cyber Week")
		require.Equal(t, http.StatusOK, b.open("/"))

		require.NoError(t, chromedp.Do(b.ctx, chromedp.SetValue(chromedp.CSS(`select[name="phase"]`), "failed")))
		require.Equal(t, http.StatusOK, b.click("form.filters button"))
		assert.Contains(t, b.path(), "phase=failed")
		assert.Equal(t, 1, b.count("table.clusters tbody tr"))
		assert.Contains(t, b.text("table.clusters"), "production-dev")
	})

	t.Run("cluster", func(t *testing.T) {
		b := tab{t: t, ctx: b.ctx, f: f}
		require.Equal(t, http.StatusOK, b.open("/?q=test-dev"))
		require.Equal(t, http.StatusOK, b.click(`table.clusters a[href="/clusters/`+testDev.ID+`"]`))
		main := b.text("main")
		for _, want := range []string{
			testDev.ID, "https://test-dev.demo.caravan.local", "db_password", "(encrypted, fingerprint",
			"workers", "5 nodes, 2 outdated, 1 draining", "held by drain_grace_period",
			f.devHead + "#bbbb2222", f.first[:8] + "#aaaa1111", "changed config_items", "Not blocked.",
			f.window, "daily 01:00-05:00 Europe/Berlin", "opens " + ts(f.opens), "No freeze covers this cluster.",
		} {
			assert.Contains(t, main, want)
		}
		assert.Contains(t, b.text("table.pools"), "roll paused until", "the system pool waits for its node update window")
		assert.NotContains(t, main, "AQICAH", "the ciphertext is masked")
		assert.Equal(t, 4, b.count(`svg.bar rect`), "the bars of the workers pool (up to date, draining, waiting) and the system pool (waiting)")
		drift := b.text("section.drift")
		for _, want := range []string{"Mode\nenabled", "Detected\n5", "Corrected\n4", "Fights", "hpa-controller", "ConfigMap kube-system/coredns-custom", "recreated"} {
			assert.Contains(t, drift, want)
		}
		assert.Equal(t, 1, b.count("table.drift-fights tbody tr.drift-fight"))
		assert.Contains(t, b.text("table.drift-fights"), "Deployment kube-system/coredns\tspec.replicas\thpa-controller\t3\t")
		assert.Equal(t, 2, b.count("table.drift-recent tbody tr"), "the recent detections, newest first")
	})

	t.Run("block and unblock", func(t *testing.T) {
		b := tab{t: t, ctx: b.ctx, f: f}
		require.Equal(t, http.StatusOK, b.open("/clusters/"+testDev.ID))
		require.NoError(t, chromedp.Do(b.ctx, chromedp.SendKeys(chromedp.CSS(`form.block input[name="reason"]`), "investigating an incident")))
		require.Equal(t, http.StatusOK, b.click("button.block"))
		assert.Equal(t, "/clusters/"+testDev.ID, b.path())
		blocks := b.text("table.blocks")
		assert.Contains(t, blocks, "investigating an incident")
		assert.Contains(t, blocks, "ui-admin")

		var assignment api.Assignment
		apiGet(t, f, f.agent, "/api/v1/clusters/"+testDev.ID+"/assignment", &assignment)
		require.Len(t, assignment.Blocks, 1, "the agent's assignment carries the block")
		assert.Equal(t, "investigating an incident", assignment.Blocks[0].Reason)
		assert.Equal(t, "ui-admin", assignment.Blocks[0].By)
		var audit api.List[api.AuditEntry]
		apiGet(t, f, f.admin, "/api/v1/audit?resource_type=block", &audit)
		require.NotEmpty(t, audit.Items)
		assert.Equal(t, "ui-admin", audit.Items[0].Actor)
		assert.Equal(t, "create", audit.Items[0].Action)
		assert.Contains(t, b.text("table.audit"), "reason: investigating an incident", "the cluster's audit shows the block")

		require.Equal(t, http.StatusOK, b.click("button.unblock"))
		assert.Contains(t, b.text("table.blocks"), "Not blocked.")
		apiGet(t, f, f.agent, "/api/v1/clusters/"+testDev.ID+"/assignment", &assignment)
		assert.Empty(t, assignment.Blocks)
		apiGet(t, f, f.admin, "/api/v1/audit?resource_type=block", &audit)
		assert.Equal(t, "delete", audit.Items[0].Action)
		assert.Equal(t, "ui-admin", audit.Items[0].Actor)
	})

	t.Run("channels", func(t *testing.T) {
		b := tab{t: t, ctx: b.ctx, f: f}
		require.Equal(t, http.StatusOK, b.click(`header nav a[href="/channels"]`))
		dev := b.text("#channel-dev")
		for _, want := range []string{
			"Head " + f.devHead[:8] + " Four DNS replicas", "2 clusters in service · 1 on the head · 1 with problems",
			"Promotion to alpha: gate not met", productionDev.ID + ": reports a problem: Stack nodepool-workers rolled back", "test-dev",
		} {
			assert.Contains(t, dev, want)
		}
		assert.Contains(t, dev, "channel alpha is frozen until", "the gate into alpha names the freeze")
		assert.Contains(t, b.text("#channel-alpha ul.freezes"), "Frozen: channel alpha")
		assert.Contains(t, b.text("#channel-beta"), "Promotion to stable: gate met")
		stable := b.text("#channel-stable")
		assert.Contains(t, stable, "production-stable")
		assert.Contains(t, stable, "waiting for window (opens "+ts(f.opens)+")")
		assert.Contains(t, stable, "1 waiting for a window (the first opens "+ts(f.opens)+")")
		assert.Equal(t, 1, b.count("#channel-stable svg.bar rect.seg-waiting"))
		assert.Equal(t, 4, b.count("section.channel svg.bar"), "a rollout bar per channel")
	})

	b.signOut()
	require.Equal(t, http.StatusOK, b.open("/channels"))
	assert.Equal(t, "/signin?next=%2Fchannels", b.path(), "signed out")

	t.Run("reader", func(t *testing.T) {
		b := tab{t: t, ctx: b.ctx, f: f}
		blockFromTheAPI(t, f)
		b.signIn(f.reader)
		require.Equal(t, http.StatusOK, b.open("/clusters/"+testDev.ID))
		assert.Contains(t, b.text("table.blocks"), "set through the API")
		assert.Zero(t, b.count("form.block"), "no block form for a reader")
		assert.Zero(t, b.count("button.unblock"), "no unblock button for a reader")

		// A reader who makes the form by hand is refused, even with the
		// session's own CSRF token.
		forged := `(() => {
			const form = document.createElement("form");
			form.method = "post";
			form.action = location.pathname + "/blocks";
			for (const [name, value] of [["reason", "a reader's block"], ["csrf", document.querySelector('form.signout input[name="csrf"]').value]]) {
				const input = document.createElement("input");
				input.name = name;
				input.value = value;
				form.appendChild(input);
			}
			document.body.appendChild(form);
			form.submit();
		})()`
		assert.Equal(t, http.StatusForbidden, b.follow(chromedp.Evaluate[chromedp.Void](forged)))
		assert.Contains(t, b.text("main"), "may not change the registry")
		blocks := f.blocks(t, testDev.ID)
		require.Len(t, blocks, 1)
		assert.Equal(t, "set through the API", blocks[0].Reason)
	})
}

// blockFromTheAPI blocks test-dev through the REST API, as the CLI would.
func blockFromTheAPI(t *testing.T, f *fleet) {
	t.Helper()
	body := `{"reason":"set through the API"}`
	req, err := http.NewRequest(http.MethodPost, f.srv.URL+"/api/v1/clusters/"+testDev.ID+"/blocks", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+f.admin)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusCreated, res.StatusCode)
}

// TestHeldHeadInChromium: the channels page shows, in a browser, the head
// that stable's enforced gate holds after a plain push, and why.
func TestHeldHeadInChromium(t *testing.T) {
	f := startFleet(t)
	pushed := f.push(t, "stable", "Pushed by hand")
	b := tab{t: t, ctx: chromium(t), f: f}
	b.signIn(f.reader)
	require.Equal(t, http.StatusOK, b.click(`header nav a[href="/channels"]`))

	publication := b.text("#channel-stable div.publication")
	assert.Contains(t, publication, "Published "+f.first[:8]+" gate enforced, since ")
	held := b.text("#channel-stable p.held")
	assert.Contains(t, held, "Held "+pushed[:8]+" since ")
	assert.Contains(t, held, pushed[:7]+" arrived on branch stable without a promotion from beta (a push to the branch): its agents keep "+f.first[:7])
	assert.Contains(t, held, `caravan promote beta stable --commit `+pushed+` --override-gate --reason "..."`)
	assert.Equal(t, 1, b.count("p.held"), "only stable holds its head")
	border, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("p.held")).borderLeftColor`))
	require.NoError(t, err)
	assert.Equal(t, "rgb(239, 108, 0)", border, "a held head stands out: the stylesheet loads under the page's CSP")
	assert.Contains(t, b.text("#channel-dev div.publication"), "Published "+f.devHead[:8]+" gate advisory")
}

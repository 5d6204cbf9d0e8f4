package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/central/ui"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func signedIn(t *testing.T, f *fleet, token string) *browser {
	t.Helper()
	b := newBrowser(t, f)
	require.Equal(t, http.StatusSeeOther, b.signIn(token).Status)
	return b
}

// aliases lists the cluster aliases a fleet page shows, in order.
func aliases(body string) []string {
	var out []string
	for _, m := range clusterLink.FindAllStringSubmatch(body, -1) {
		out = append(out, m[1])
	}
	return out
}

var clusterLink = regexp.MustCompile(`<td><a href="/clusters/[^"]+">([^<]+)</a>`)

func TestFleetFilters(t *testing.T) {
	f := startFleet(t)
	b := signedIn(t, f, f.reader)

	all := b.get("/")
	require.Equal(t, http.StatusOK, all.Status)
	assert.Len(t, aliases(all.Body), 8)
	assert.Contains(t, all.Body, `<span class="phase phase-failed">failed</span>`)
	assert.Contains(t, all.Body, `<span class="phase phase-busy">rolling-nodes</span>`)
	assert.Contains(t, all.Body, "Stack nodepool-workers rolled back", "problems are shown")
	assert.Contains(t, all.Body, f.devHead[:8]+"#bbbb2222", "the short version")

	for query, want := range map[string][]string{
		"channel=dev":                       {"test-dev", "production-dev"},
		"environment=production":            {"production-alpha", "production-beta", "production-dev", "production-stable"},
		"phase=failed":                      {"production-dev"},
		"phase=unknown&environment=test":    {"test-alpha", "test-stable"},
		"q=STABLE":                          {"test-stable", "production-stable"},
		"q=222222222222%3Aeu-central-1%3Ap": {"production-alpha", "production-beta", "production-dev", "production-stable"},
		"channel=beta&phase=idle":           {"test-beta", "production-beta"},
		"channel=alpha&phase=idle":          nil,
	} {
		p := b.get("/?" + query)
		require.Equal(t, http.StatusOK, p.Status, query)
		assert.Equal(t, want, aliases(p.Body), query)
	}

	p := b.get("/?phase=sleeping")
	assert.Equal(t, http.StatusBadRequest, p.Status)
	assert.Contains(t, p.Body, "phase must be one of idle,")
	p = b.get("/?continue=%25%25")
	assert.Equal(t, http.StatusBadRequest, p.Status)
	assert.Contains(t, p.Body, "continue is not a cursor this server issued")
}

func TestFleetPages(t *testing.T) {
	f := startFleet(t)
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 60 {
		alias := fmt.Sprintf("extra-%02d", i)
		c := api.Cluster{
			ID: "aws:111111111111:eu-central-1:" + alias, InfrastructureAccount: "aws:111111111111", Region: "eu-central-1",
			APIServerURL: "https://" + alias + ".example.org", Environment: "test", Channel: "alpha", CreatedAt: now, UpdatedAt: now,
		}
		c.Normalize()
		_, err := store.CreateCluster(ctx, f.store, c, "ui-test")
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, f.store.PutStatus(ctx, c.ID, api.ClusterStatus{Phase: api.PhaseApplying, CurrentVersion: "c0ffee#1", ReceivedAt: now}, "ui-test"))
		}
	}
	b := signedIn(t, f, f.reader)

	first := b.get("/?channel=alpha")
	require.Equal(t, http.StatusOK, first.Status)
	shown := aliases(first.Body)
	require.Len(t, shown, 50)
	assert.NotContains(t, first.Body, "First page")
	next := regexp.MustCompile(`<a rel="next" href="([^"]+)">`).FindStringSubmatch(first.Body)
	require.NotNil(t, next, "a next page link")
	second := b.get(strings.ReplaceAll(next[1], "&amp;", "&"))
	require.Equal(t, http.StatusOK, second.Status)
	shown = append(shown, aliases(second.Body)...)
	assert.Len(t, shown, 62, "60 extra clusters and the demo's two alpha ones, each once")
	assert.Contains(t, second.Body, `href="/?channel=alpha">First page`)
	assert.NotContains(t, second.Body, `rel="next"`)

	// Filtered in memory, a page still fills up from several store pages.
	applying := b.get("/?phase=applying")
	require.Equal(t, http.StatusOK, applying.Status)
	assert.Len(t, aliases(applying.Body), 30)
	assert.NotContains(t, applying.Body, `rel="next"`)
}

func TestClusterPage(t *testing.T) {
	f := startFleet(t)
	p := signedIn(t, f, f.reader).get(clusterPath(testDev.ID))
	require.Equal(t, http.StatusOK, p.Status)
	for _, want := range []string{
		"test-dev", testDev.ID, "https://test-dev.demo.caravan.local", "aws:111111111111",
		`<code>cluster_dns_zone</code>`, "test-dev.demo.caravan.local",
		"m6i.xlarge, m5.xlarge", "5 nodes, 2 outdated, 1 draining", "held by drain_grace_period",
		f.devHead + "#bbbb2222", f.first[:8] + "#aaaa1111", "v0.test",
		"update", "ui-test", "changed config_items", "create", "demo-seed",
	} {
		assert.Contains(t, p.Body, want)
	}
	assert.Contains(t, p.Body, "<title>3 up to date</title>", "the node pool bar")
	assert.Equal(t, http.StatusNotFound, signedIn(t, f, f.reader).get("/clusters/aws:111111111111:eu-central-1:nowhere").Status)
}

func TestEncryptedConfigItemsAreMasked(t *testing.T) {
	f := startFleet(t)
	b := signedIn(t, f, f.admin)
	p := b.get(clusterPath(testDev.ID))
	require.Equal(t, http.StatusOK, p.Status)
	assert.NotContains(t, p.Body, strings.TrimPrefix(ciphertext, "aws:kms:")[:12], "no part of the ciphertext")
	assert.Regexp(t, `<code>db_password</code></td><td class="encrypted"><code>aws:kms:… \(encrypted, fingerprint [0-9a-f]{8}\)</code>`, p.Body)
	assert.Regexp(t, `<code>bootstrap_secret</code> = <code class="encrypted">aws:kms:… \(encrypted, fingerprint [0-9a-f]{8}\)</code>`, p.Body)
	assert.Contains(t, p.Body, `<code>node_volume_size</code> = <code>100</code>`, "plain values are shown")
	for _, path := range []string{"/", "/channels"} {
		assert.NotContains(t, b.get(path).Body, "AQICAH", path)
	}
}

func TestChannelsPage(t *testing.T) {
	f := startFleet(t)
	p := signedIn(t, f, f.reader).get("/channels")
	require.Equal(t, http.StatusOK, p.Status)
	sections := map[string]string{}
	for _, name := range []string{"dev", "alpha", "beta", "stable"} {
		start := strings.Index(p.Body, `<section class="channel" id="channel-`+name+`"`)
		require.GreaterOrEqual(t, start, 0, "a section for channel %s", name)
		sections[name] = p.Body[start : start+strings.Index(p.Body[start:], "</section>")]
	}

	dev := sections["dev"]
	assert.Contains(t, dev, `<code title="`+f.devHead+`">`+f.devHead[:8]+`</code> Four DNS replicas`, "the head read from git")
	assert.Contains(t, dev, "2 clusters in service · 1 on the head · 1 with problems")
	assert.Contains(t, dev, "Promotion to alpha: gate not met")
	assert.Contains(t, dev, "<li>"+productionDev.ID+": reports a problem: Stack nodepool-workers rolled back</li>")
	assert.Equal(t, 2, strings.Count(dev, `<rect class="seg-`), "a bar segment for the cluster on the head and one for the one with problems")

	assert.Contains(t, sections["alpha"], "Promotion to beta: gate not met")
	assert.Contains(t, sections["alpha"], testDev.ID[:len(testDev.ID)-len("dev")]+"alpha: silent: it has never reported", "a cluster that never reported is no evidence, and named")
	assert.Contains(t, sections["alpha"], "2 not reporting")

	beta := sections["beta"]
	assert.Contains(t, beta, "Promotion to stable: gate met")
	assert.Contains(t, beta, "(soak 24h)")
	assert.Contains(t, beta, "2 clusters in service · 2 on the head")

	stable := sections["stable"]
	assert.NotContains(t, stable, "Promotion to", "the last channel promotes nowhere")
	opens := ts(f.opens)
	assert.Contains(t, stable, "2 clusters in service · 1 waiting for a window (the first opens "+opens+") · 1 not reporting")
	assert.Contains(t, stable, `<rect class="seg-waiting" x="0.00" y="0" width="50.00" height="10"><title>1 waiting for a window (the first opens `+opens+`)</title></rect>`)
	assert.Contains(t, rowOf(t, stable, "production-stable"), `<span class="phase phase-waiting">waiting-for-window</span><div class="waiting">waiting for window (opens `+opens+`)</div>`)
}

// TestChannelsPageShowsAHeldHead: a push to stable, whose gate is
// enforced, is held with the reason; the agents keep the commit published.
func TestChannelsPageShowsAHeldHead(t *testing.T) {
	f := startFleet(t)
	pushed := f.push(t, "stable", "Pushed by hand")
	p := signedIn(t, f, f.reader).get("/channels")
	require.Equal(t, http.StatusOK, p.Status)
	start := strings.Index(p.Body, `<section class="channel" id="channel-stable"`)
	require.GreaterOrEqual(t, start, 0)
	stable := p.Body[start : start+strings.Index(p.Body[start:], "</section>")]
	assert.Contains(t, stable, `<code title="`+pushed+`">`+pushed[:8]+`</code> Pushed by hand`, "the head read from git")
	assert.Contains(t, stable, `Published <code title="`+f.first+`">`+f.first[:8]+`</code> <span class="legend">gate enforced, since `)
	assert.Contains(t, stable, `<p class="held">Held <code title="`+pushed+`">`+pushed[:8]+`</code> <span class="legend">since `)
	assert.Contains(t, stable, pushed[:7]+" arrived on branch stable without a promotion from beta (a push to the branch): its agents keep "+f.first[:7])
	assert.Contains(t, rowOf(t, stable, "production-stable"), `<span class="legend">current</span>`, "the rollout is about the commit the agents are given, not the held head")
	assert.NotContains(t, p.Body[:start], `class="held"`, "no other channel holds its head")
	assert.Contains(t, p.Body, `Published <code title="`+f.devHead+`">`+f.devHead[:8]+`</code> <span class="legend">gate advisory, since `)
}

// ts is a time as the pages show it.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

// rowOf is the table row of a page that links the cluster with the alias.
func rowOf(t *testing.T, body, alias string) string {
	t.Helper()
	link := strings.Index(body, `">`+alias+`</a>`)
	require.GreaterOrEqual(t, link, 0, "no row of %s", alias)
	start := strings.LastIndex(body[:link], "<tr")
	end := strings.Index(body[link:], "</tr>")
	require.True(t, start >= 0 && end >= 0, "no row of %s", alias)
	return body[start : link+end]
}

func TestFleetShowsWindowsAndFreezes(t *testing.T) {
	f := startFleet(t)
	p := signedIn(t, f, f.reader).get("/")
	require.Equal(t, http.StatusOK, p.Status)

	start := strings.Index(p.Body, `<section class="freezes"`)
	require.GreaterOrEqual(t, start, 0, "a banner of freezes")
	banner := p.Body[start : start+strings.Index(p.Body[start:], "</section>")]
	assert.Less(t, start, strings.Index(p.Body, `<table class="clusters">`), "the banner tops the fleet")
	assert.Regexp(t, `<li class="freeze freeze-active">\s*<strong>Frozen: channel alpha</strong>\s*until `+ts(f.alphaFreeze.Until)+` · Alpha hardware swap <span class="by">by ops</span>`, banner)
	assert.Regexp(t, `<li class="freeze freeze-scheduled">\s*<strong>Freeze from `+ts(f.productionFreeze.Since)+`: environment production</strong>\s*until `+ts(f.productionFreeze.Until)+` · Cyber Week <span class="by">by sales-ops</span>`, banner)

	opens := ts(f.opens)
	for alias, want := range map[string]string{
		"test-dev":          `<td class="window window-closed" title="update windows: ` + f.window + `">opens ` + opens + `</td>`,
		"production-stable": `<td class="window window-closed" title="update windows: ` + f.window + `">opens ` + opens + `</td>`,
		"test-alpha":        `<td class="window window-frozen" title="channel alpha frozen by ops: Alpha hardware swap">frozen until ` + ts(f.alphaFreeze.Until) + `</td>`,
		// The freeze of production takes over where alpha's ends.
		"production-alpha": `<td class="window window-frozen" title="channel alpha frozen by ops: Alpha hardware swap">frozen until ` + ts(f.productionFreeze.Until) + `</td>`,
		"production-beta":  `<td class="window window-invalid" title="update_windows: position `,
		"test-beta":        `<td class="window window-open" title="update windows: always (none set)">open</td>`,
		"production-dev":   `<td class="window window-open" title="update windows: always (none set)">open</td>`,
	} {
		assert.Contains(t, rowOf(t, p.Body, alias), want, alias)
	}
	assert.Contains(t, rowOf(t, p.Body, "production-stable"), `<span class="phase phase-waiting">waiting-for-window</span><div class="legend">opens `+opens+`</div>`)
	assert.Regexp(t, `title="update_windows: position \d+: unknown time zone &#34;Mars/Olympus&#34;[^"]*\(no version starts until it is fixed\)">invalid window</td>`, rowOf(t, p.Body, "production-beta"))

	waiting := signedIn(t, f, f.reader).get("/?phase=waiting-for-window")
	require.Equal(t, http.StatusOK, waiting.Status)
	assert.Equal(t, []string{"production-stable"}, aliases(waiting.Body), "the phase filter knows waiting-for-window")
}

func TestClusterPageShowsWindowsFreezesAndPausedRolls(t *testing.T) {
	f := startFleet(t)
	b := signedIn(t, f, f.reader)
	opens := ts(f.opens)

	dev := b.get(clusterPath(testDev.ID))
	require.Equal(t, http.StatusOK, dev.Status)
	for _, want := range []string{
		`<dt>Update windows</dt><dd>` + f.window + `</dd>`,
		`<dt>Node update windows</dt><dd>daily 01:00-05:00 Europe/Berlin</dd>`,
		`<dt>Next version</dt><dd><span class="window window-closed">opens ` + opens + `</span></dd>`,
		"No freeze covers this cluster.",
		`<div class="legend">2 nodes, 2 outdated, 0 draining</div>`,
		`<div class="paused">roll paused until `,
	} {
		assert.Contains(t, dev.Body, want)
	}
	assert.Regexp(t, `<div class="paused">roll paused until \d{4}-\d\d-\d\d \d\d:00:00Z, when its node update window opens</div>`, dev.Body)
	assert.Equal(t, 1, strings.Count(dev.Body, `class="paused"`), "only the system pool's roll is paused")

	prod := b.get(clusterPath(productionProd.ID))
	require.Equal(t, http.StatusOK, prod.Status)
	assert.Contains(t, prod.Body, `<h1>production-stable <span class="phase phase-waiting">waiting-for-window</span></h1>`)
	assert.Contains(t, prod.Body, `<dt>Window opens</dt><dd class="next-window">`+opens+` <span class="legend">a new version waits for the update window</span></dd>`)
	assert.Contains(t, prod.Body, `<dt>Node update windows</dt><dd>always (none set)</dd>`)
	assert.Regexp(t, `<tr class="freeze-scheduled">\s*<td>environment production <span class="legend">\(to come\)</span></td>\s*<td>Cyber Week</td>\s*<td>sales-ops</td>\s*<td>`+ts(f.productionFreeze.Since)+`</td>\s*<td>`+ts(f.productionFreeze.Until)+`</td>`, prod.Body)

	alpha := b.get(clusterPath(demoCluster("production-alpha").ID))
	require.Equal(t, http.StatusOK, alpha.Status)
	assert.Contains(t, alpha.Body, `<dt>Next version</dt><dd><span class="window window-frozen">frozen until `+ts(f.productionFreeze.Until)+`</span></dd>`)
	assert.Regexp(t, `<tr class="freeze-active">\s*<td>channel alpha</td>\s*<td>Alpha hardware swap</td>\s*<td>ops</td>`, alpha.Body)
	assert.Contains(t, alpha.Body, "<td>Cyber Week</td>")

	beta := b.get(clusterPath(demoCluster("production-beta").ID))
	require.Equal(t, http.StatusOK, beta.Status)
	assert.Regexp(t, `<span class="window window-invalid">invalid window</span> <span class="error">update_windows: position \d+: unknown time zone &#34;Mars/Olympus&#34;`, beta.Body)

	open := b.get(clusterPath(demoCluster("test-beta").ID))
	assert.Contains(t, open.Body, `<dt>Next version</dt><dd><span class="window window-open">may start now</span></dd>`)
}

func TestChannelsPageShowsFreezes(t *testing.T) {
	f := startFleet(t)
	p := signedIn(t, f, f.reader).get("/channels")
	require.Equal(t, http.StatusOK, p.Status)
	section := func(name string) string {
		start := strings.Index(p.Body, `<section class="channel" id="channel-`+name+`"`)
		require.GreaterOrEqual(t, start, 0)
		return p.Body[start : start+strings.Index(p.Body[start:], "</section>")]
	}
	active := `<li class="freeze freeze-active"><strong>Frozen: channel alpha</strong> until ` + ts(f.alphaFreeze.Until) + ` · Alpha hardware swap <span class="by">by ops</span></li>`
	toCome := `<li class="freeze freeze-scheduled"><strong>Freeze from ` + ts(f.productionFreeze.Since) + `: environment production</strong> until ` + ts(f.productionFreeze.Until) + ` · Cyber Week <span class="by">by sales-ops</span></li>`
	assert.Contains(t, section("alpha"), active)
	assert.Contains(t, section("alpha"), toCome, "the production clusters of alpha are frozen later")
	for _, name := range []string{"dev", "beta", "stable"} {
		assert.NotContains(t, section(name), "channel alpha</strong>", name)
		assert.Contains(t, section(name), toCome, name)
	}
	assert.Contains(t, section("dev"), "<li>channel alpha is frozen until "+f.alphaFreeze.Until.Format(time.RFC3339)+" by ops: Alpha hardware swap</li>",
		"the gate on promoting into alpha names the freeze")
	assert.NotContains(t, section("beta"), "is frozen", "stable is not frozen yet")
}

func TestRoutesLeaveTheAPIAlone(t *testing.T) {
	for pattern := range ui.New(ui.Options{}).Routes() {
		_, path, _ := strings.Cut(pattern, " ")
		assert.False(t, strings.HasPrefix(path, "/api/") || slices.Contains([]string{"/metrics", "/healthz", "/readyz", "/"}, path), pattern)
	}
}

func TestUIStaysOutOfTheAPI(t *testing.T) {
	f := startFleet(t)
	b := signedIn(t, f, f.admin)
	for path, want := range map[string]int{
		"/api/v1/clusters":    http.StatusUnauthorized, // the session cookie is no API credential
		"/api/v1/nothing":     http.StatusNotFound,
		"/metrics":            http.StatusOK,
		"/static/caravan.css": http.StatusOK,
	} {
		assert.Equal(t, want, b.get(path).Status, path)
	}
	p := b.get("/")
	assert.Contains(t, p.Header.Get("Content-Security-Policy"), "default-src 'none'")
	assert.Equal(t, "no-store", p.Header.Get("Cache-Control"))
}

func TestFleetShowsDrift(t *testing.T) {
	f := startFleet(t)
	p := signedIn(t, f, f.reader).get("/")
	require.Equal(t, http.StatusOK, p.Status)
	assert.Contains(t, p.Body, "<th>Problems</th><th>Drift</th><th>Heartbeat</th>")
	for alias, want := range map[string]string{
		"test-dev": `<td class="drift drift-fight" title="left alone, another manager keeps changing them back: Deployment kube-system/coredns (with hpa-controller); ` +
			`drift_correction enabled: 5 detected, 4 corrected">1 fight, 4 corrected</td>`,
		"test-beta":         `<td class="drift drift-report" title="drift_correction report: 2 detected, 0 corrected">report: 2</td>`,
		"production-beta":   `<td class="drift drift-disabled" title="drift_correction disabled: 0 detected, 0 corrected">disabled</td>`,
		"production-stable": `<td class="drift drift-enabled" title="drift_correction enabled: 0 detected, 0 corrected">0 corrected</td>`,
		"production-dev":    `<td class="drift drift-unknown" title="the agent reports no drift">–</td>`,
		"test-alpha":        `<td class="drift drift-unknown">–</td><td>never reported</td>`,
	} {
		assert.Contains(t, rowOf(t, p.Body, alias), want, alias)
	}
}

func TestClusterPageShowsDrift(t *testing.T) {
	f := startFleet(t)
	b := signedIn(t, f, f.reader)
	section := func(body string) string {
		t.Helper()
		start := strings.Index(body, `<section class="drift">`)
		require.GreaterOrEqual(t, start, 0, "a drift section")
		return body[start : start+strings.Index(body[start:], "</section>")]
	}

	dev := b.get(clusterPath(testDev.ID))
	require.Equal(t, http.StatusOK, dev.Status)
	drift := section(dev.Body)
	assert.Contains(t, drift, `<dt>Mode</dt><dd>enabled <span class="legend">config item drift_correction`)
	assert.Contains(t, drift, `<dt>Detected</dt><dd>5 <span class="legend">`)
	assert.Contains(t, drift, `<dt>Corrected</dt><dd>4 <span class="legend">`)
	assert.Regexp(t, `<tr class="drift-fight"><td>Deployment kube-system/coredns</td><td>spec.replicas</td><td>hpa-controller</td><td>3</td><td>[^<]+</td><td>`+ts(f.fightUntil)+`</td></tr>`, drift)
	assert.Regexp(t, `<tr><td>[^<]+</td><td>Deployment kube-system/coredns</td><td>corrected</td><td>spec.replicas</td><td>hpa-controller</td></tr>\s*`+
		`<tr><td>[^<]+</td><td>ConfigMap kube-system/coredns-custom</td><td>recreated</td><td></td><td></td></tr>`, drift, "newest first")

	beta := section(b.get(clusterPath(demoCluster("test-beta").ID)).Body)
	assert.Contains(t, beta, `<dt>Mode</dt><dd>report `)
	assert.NotContains(t, beta, "Fights", "no fight, no table of fights")
	assert.Contains(t, beta, "No drift seen.")
	assert.Contains(t, section(b.get(clusterPath(productionDev.ID)).Body), "The agent reports no drift.")
	assert.Contains(t, section(b.get(clusterPath(demoCluster("test-alpha").ID)).Body), "The agent has not reported yet.")
}

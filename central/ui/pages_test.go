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
	assert.Contains(t, sections["alpha"], testDev.ID[:len(testDev.ID)-len("dev")]+"alpha: has not reported a version")
	assert.Contains(t, sections["alpha"], "2 not reporting")

	beta := sections["beta"]
	assert.Contains(t, beta, "Promotion to stable: gate met")
	assert.Contains(t, beta, "(soak 24h)")
	assert.Contains(t, beta, "2 clusters in service · 2 on the head")

	stable := sections["stable"]
	assert.NotContains(t, stable, "Promotion to", "the last channel promotes nowhere")
	assert.Contains(t, stable, "1 on the head · 1 not reporting")
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

package ui_test

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/central/demo"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// The demo fleet's clusters this package's tests look at.
var (
	testDev        = demoCluster("test-dev")
	productionDev  = demoCluster("production-dev")
	productionProd = demoCluster("production-stable")
)

// ciphertext is an encrypted config item value; no page may show it.
const ciphertext = "aws:kms:AQICAHhSecretCiphertextThatMustNeverReachABrowser0123456789=="

func demoCluster(alias string) api.Cluster {
	for _, c := range demo.Clusters() {
		if c.Alias == alias {
			return c
		}
	}
	panic("no demo cluster " + alias)
}

// fleet is a running registry seeded with the demo fleet, statuses and
// encrypted config items, and tokens of each role with known names. Its
// channels follow a config repo on a real git server, where dev is one
// commit ahead of the other branches.
type fleet struct {
	srv    *centraltest.Server
	git    *gitserver.Server
	store  *store.Store
	admin  string
	reader string
	agent  string
	// first is the commit every branch starts from, devHead dev's head.
	first, devHead string
	// window is the update window of test-dev and production-stable,
	// closed now, which opens at opens.
	window string
	opens  time.Time
	// alphaFreeze is in force; productionFreeze is to come.
	alphaFreeze, productionFreeze api.Freeze
	// fightUntil is when test-dev's agent corrects the object it fights over again.
	fightUntil time.Time
}

func startFleet(t *testing.T) *fleet {
	t.Helper()
	git := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644))
	first, err := git.CreateRepo("config", src, "dev", "alpha", "beta", "stable")
	require.NoError(t, err)
	devHead, err := git.Commit("config", "dev", "Four DNS replicas", map[string][]byte{"config-defaults.yaml": []byte("coredns_replicas: \"4\"\n")})
	require.NoError(t, err)
	srv := centraltest.Start(t, func(c *central.Config) {
		c.RepositoryURL = git.RepoURL("config")
		c.Git = gitauth.Credentials{Username: git.User, Password: git.Password}
		c.WebhookSecret = webhookSecret
	})
	ctx := context.Background()
	st, err := store.Open(ctx, srv.Database)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = demo.Seed(ctx, st)
	require.NoError(t, err)
	f := &fleet{srv: srv, git: git, store: st, first: first, devHead: devHead}
	f.admin = f.token(t, "ui-admin", api.RoleAdmin, "")
	f.reader = f.token(t, "ui-reader", api.RoleReader, "")
	f.agent = f.token(t, "ui-agent", api.RoleAgent, testDev.ID)
	f.encryptConfigItems(t)
	f.scheduleFleet(t)
	f.reportStatus(t)
	return f
}

// webhookSecret signs the fleet's git webhooks.
const webhookSecret = "ui-webhook-secret"

// push commits to branch on the git server and announces it with a
// webhook, so that the registry reads the branch at once, as after a plain
// git push; it returns the commit.
func (f *fleet) push(t *testing.T, branch, message string) string {
	t.Helper()
	commit, err := f.git.Commit("config", branch, message, map[string][]byte{"pushed/" + branch: []byte(message)})
	require.NoError(t, err)
	f.srv.AnnouncePush(t, webhookSecret, branch)
	return commit
}

// closedWindow is a one-hour weekly window that opens a few hours from
// now, so that it is closed now whatever the day and hour, and when it opens.
func closedWindow(now time.Time) (string, time.Time) {
	opens := now.UTC().Add(3 * time.Hour).Truncate(time.Hour)
	return fmt.Sprintf("%s %02d:00-%02d:00 UTC", opens.Weekday().String()[:3], opens.Hour(), opens.Hour()+1), opens
}

// scheduleFleet gives test-dev and production-stable an update window that
// is closed now (opening at f.opens) and test-dev node update windows;
// production-beta a window that does not parse (written to the store as a
// registry without the check would have kept it); a freeze of channel
// alpha in force and one of environment production to come.
func (f *fleet) scheduleFleet(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	var window string
	window, f.opens = closedWindow(now)
	f.window = window
	for id, items := range map[string]map[string]string{
		testDev.ID:                        {api.ConfigUpdateWindows: window, api.ConfigNodeUpdateWindows: "daily 01:00-05:00 Europe/Berlin"},
		productionProd.ID:                 {api.ConfigUpdateWindows: window},
		demoCluster("production-beta").ID: {api.ConfigUpdateWindows: "Mon-Fri 08:00-17:00 Mars/Olympus"},
	} {
		rec, err := store.Get(ctx, f.store, store.Clusters, id)
		require.NoError(t, err)
		c := rec.Value
		c.ConfigItems = maps.Clone(c.ConfigItems)
		if c.ConfigItems == nil {
			c.ConfigItems = map[string]string{}
		}
		maps.Copy(c.ConfigItems, items)
		_, err = store.Update(ctx, f.store, store.Clusters, store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}, rec.Revision, rec.Value, c, "ui-test")
		require.NoError(t, err)
	}
	f.alphaFreeze = api.Freeze{Reason: "Alpha hardware swap", By: "ops", Channel: "alpha", Since: now.Add(-time.Hour), Until: now.Add(48 * time.Hour)}
	f.productionFreeze = api.Freeze{Reason: "Cyber Week", By: "sales-ops", Environment: "production", Since: now.Add(24 * time.Hour), Until: now.Add(72 * time.Hour)}
	for _, fr := range []*api.Freeze{&f.alphaFreeze, &f.productionFreeze} {
		id, err := store.NewFreezeID(time.Now())
		require.NoError(t, err)
		fr.ID, fr.CreatedAt, fr.UpdatedAt = id, now, now
		_, err = store.Create(ctx, f.store, store.Freezes, store.Ref{Key: id}, *fr, fr.By)
		require.NoError(t, err)
	}
}

func (f *fleet) token(t *testing.T, name, role, clusterID string) string {
	t.Helper()
	tok, err := f.store.CreateToken(context.Background(), name, role, clusterID, "ui-test")
	require.NoError(t, err)
	return tok.Secret
}

// encryptConfigItems gives test-dev and its workers pool an aws:kms: value.
func (f *fleet) encryptConfigItems(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	rec, err := store.Get(ctx, f.store, store.Clusters, testDev.ID)
	require.NoError(t, err)
	c := rec.Value
	c.ConfigItems = map[string]string{"db_password": ciphertext}
	for k, v := range rec.Value.ConfigItems {
		c.ConfigItems[k] = v
	}
	_, err = store.Update(ctx, f.store, store.Clusters, store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}, rec.Revision, rec.Value, c, "ui-test")
	require.NoError(t, err)

	poolKey := store.NodePoolKey(testDev.ID, "workers")
	pool, err := store.Get(ctx, f.store, store.NodePools, poolKey)
	require.NoError(t, err)
	p := pool.Value
	p.ConfigItems = map[string]string{"node_volume_size": "100", "bootstrap_secret": ciphertext}
	_, err = store.Update(ctx, f.store, store.NodePools, store.Ref{Key: poolKey, Parent: testDev.ID}, pool.Revision, pool.Value, p, "ui-test")
	require.NoError(t, err)
}

// reportStatus records what agents would report: test-dev rolls its
// workers on dev's head (its system pool's roll paused until its node
// update window opens), production-dev failed on it, the beta clusters have
// run the first commit for two days, production-stable runs it and waits
// for its update window to take a new version, and the alpha clusters never
// reported. Their drift: test-dev corrected some and fights
// the autoscaler over coredns' replicas, test-beta only reports it,
// production-beta does not watch it, production-stable saw none, and
// production-dev's agent does not report drift.
func (f *fleet) reportStatus(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	forced := now.Add(90 * time.Minute)
	// The system pool's roll waits for its node update window.
	paused := now.Add(5 * time.Hour).Truncate(time.Hour)
	type report struct {
		ago    time.Duration
		status api.ClusterStatus
	}
	testBeta := api.ClusterStatus{Phase: api.PhaseIdle, CurrentVersion: f.first + "#eeee5555", Drift: &api.DriftStatus{Mode: api.DriftReport, Detected: 2}}
	productionBeta := api.ClusterStatus{Phase: api.PhaseIdle, CurrentVersion: f.first + "#ffff6666", Drift: &api.DriftStatus{Mode: api.DriftDisabled}}
	reports := map[string][]report{
		testDev.ID: {
			{2 * time.Minute, api.ClusterStatus{Phase: api.PhaseIdle, CurrentVersion: f.first + "#aaaa1111"}},
			{time.Minute, api.ClusterStatus{Phase: api.PhaseRollingNodes, CurrentVersion: f.devHead + "#bbbb2222", NodePools: []api.NodePoolProgress{
				{Name: "workers", NodesTotal: 5, Outdated: 2, Draining: 1, NextForcedEviction: &forced, HeldBy: "drain_grace_period"},
				{Name: "system", NodesTotal: 2, Outdated: 2, NextWindow: &paused},
			}, Drift: f.testDevDrift(now)}},
		},
		productionDev.ID: {{time.Minute, api.ClusterStatus{Phase: api.PhaseFailed, CurrentVersion: f.devHead + "#cccc3333", Problems: []api.StatusProblem{
			{Type: "https://caravan.io/problems/stack-failed", Title: "Stack nodepool-workers rolled back", Detail: "LaunchTemplate: instance type not offered", Since: now},
		}}}},
		// The beta clusters run their version for two days and still
		// report it (a heartbeat, no new history entry): soaked evidence.
		demoCluster("test-beta").ID:       {{48 * time.Hour, testBeta}, {time.Minute, testBeta}},
		demoCluster("production-beta").ID: {{48 * time.Hour, productionBeta}, {time.Minute, productionBeta}},
		productionProd.ID: {
			{time.Hour, api.ClusterStatus{Phase: api.PhaseIdle, CurrentVersion: f.first + "#dddd4444"}},
			{time.Minute, api.ClusterStatus{Phase: api.PhaseWaitingForWindow, CurrentVersion: f.first + "#dddd4444", NextVersion: f.first + "#99998888", NextWindow: &f.opens,
				Drift: &api.DriftStatus{Mode: api.DriftEnabled}}},
		},
	}
	for id, rs := range reports {
		for _, r := range rs {
			st := r.status
			st.AgentVersion, st.Heartbeat, st.ReceivedAt = "v0.test", now, now.Add(-r.ago)
			require.NoError(t, f.store.PutStatus(ctx, id, st, "ui-agent"))
		}
	}
}

// testDevDrift is test-dev's drift: a fight with the autoscaler, which the
// agent corrected three times before it stopped, and a re-created object.
func (f *fleet) testDevDrift(now time.Time) *api.DriftStatus {
	f.fightUntil = now.Add(time.Hour)
	return &api.DriftStatus{
		Mode: api.DriftEnabled, Detected: 5, Corrected: 4,
		Recent: []api.DriftCorrection{
			{Object: "Deployment kube-system/coredns", Action: api.DriftCorrected, Fields: []string{"spec.replicas"}, Manager: "hpa-controller", At: now.Add(-2 * time.Minute)},
			{Object: "ConfigMap kube-system/coredns-custom", Action: api.DriftRecreated, At: now.Add(-time.Hour)},
		},
		Fights: []api.DriftFight{{Object: "Deployment kube-system/coredns", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Corrections: 3,
			Since: now.Add(-10 * time.Minute), Until: f.fightUntil}},
	}
}

// blocks lists the blocks of a cluster straight from the store.
func (f *fleet) blocks(t *testing.T, clusterID string) []api.Block {
	t.Helper()
	recs, _, err := store.List(context.Background(), f.store, store.Blocks, store.Filter{Parent: clusterID, Limit: 100})
	require.NoError(t, err)
	out := make([]api.Block, len(recs))
	for i, r := range recs {
		out[i] = r.Value
	}
	return out
}

// blockAudit lists the audit entries of blocks, newest first.
func (f *fleet) blockAudit(t *testing.T) []api.AuditEntry {
	t.Helper()
	entries, _, err := f.store.Audit(context.Background(), store.AuditFilter{ResourceType: "block", Limit: 100})
	require.NoError(t, err)
	return entries
}

// browser is an HTTP client that keeps cookies and does not follow
// redirects, so that tests see each answer.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func newBrowser(t *testing.T, f *fleet) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, base: f.srv.URL, hc: &http.Client{
		Jar: jar, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// newBrowserFrom is a browser whose connections come from the loopback
// address ip, such as 127.0.0.2: the server sees another client address.
func newBrowserFrom(t *testing.T, f *fleet, ip string) *browser {
	b := newBrowser(t, f)
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	b.hc.Transport = &http.Transport{DialContext: dialer.DialContext}
	return b
}

type page struct {
	Status int
	Header http.Header
	Body   string
}

func (b *browser) get(path string, headers ...string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	require.NoError(b.t, err)
	return b.do(req, headers)
}

func (b *browser) post(path string, form url.Values, headers ...string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req, headers)
}

func (b *browser) do(req *http.Request, headers []string) page {
	b.t.Helper()
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := b.hc.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	return page{Status: res.StatusCode, Header: res.Header, Body: string(body)}
}

// signIn loads the sign-in form and sends token with the form's nonce.
func (b *browser) signIn(token string, headers ...string) page {
	b.t.Helper()
	form := b.get("/signin", headers...)
	require.Equal(b.t, http.StatusOK, form.Status)
	return b.post("/signin", url.Values{"token": {token}, "nonce": {hiddenField(b.t, form.Body, "nonce")}, "next": {"/"}}, headers...)
}

// hiddenField reads the value of the first hidden input named name.
func hiddenField(t *testing.T, body, name string) string {
	t.Helper()
	marker := `name="` + name + `" value="`
	i := strings.Index(body, marker)
	require.GreaterOrEqual(t, i, 0, "no hidden field %s in:\n%s", name, body)
	rest := body[i+len(marker):]
	return rest[:strings.Index(rest, `"`)]
}

func clusterPath(id string) string { return "/clusters/" + id }

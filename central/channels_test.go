package central_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

const clusterC = "aws:123456789012:eu-central-1:kube-c"

// channelFleet is a registry whose channels follow a config repo on a real
// git server, with clusters on dev and alpha. Every branch holds the first
// commit; dev holds dns on top.
type channelFleet struct {
	t     *testing.T
	srv   *centraltest.Server
	admin *client
	git   *gitserver.Server
	url   string
	first string
	dns   string
	store *store.Store
}

func startChannelFleet(t *testing.T, opts ...centraltest.Option) *channelFleet {
	t.Helper()
	git := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644))
	first, err := git.CreateRepo("config", src, "dev", "alpha", "beta", "stable")
	require.NoError(t, err)
	withGit := func(c *central.Config) {
		c.Git = gitauth.Credentials{Username: git.User, Password: git.Password}
		c.GitRefresh = time.Hour
	}
	srv := centraltest.Start(t, append(opts, withGit)...)
	f := &channelFleet{t: t, srv: srv, admin: newClient(t, srv, srv.AdminToken), git: git, url: git.RepoURL("config"), first: first}
	f.dns = f.commit("dev", "four DNS replicas")
	for _, ch := range []string{"dev", "alpha", "beta", "stable"} {
		f.admin.must(http.StatusOK, "PATCH", "/api/v1/channels/"+ch, map[string]any{"repository_url": f.url})
	}
	seed(t, f.admin)
	f.admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterC, "alpha"))
	f.store, err = store.Open(context.Background(), srv.Database)
	require.NoError(t, err)
	t.Cleanup(func() { f.store.Close() })
	return f
}

// commit pushes a commit to branch.
func (f *channelFleet) commit(branch, message string) string {
	f.t.Helper()
	c, err := f.git.Commit("config", branch, message, map[string][]byte{"changes/" + strings.ReplaceAll(message, " ", "-"): []byte(message)})
	require.NoError(f.t, err)
	return c
}

// ran records, as an agent's report received at the given time, that the
// cluster runs commit.
func (f *channelFleet) ran(clusterID, commit string, at time.Time, problems ...string) {
	f.t.Helper()
	st := api.ClusterStatus{CurrentVersion: commit + "#h1", NextVersion: commit + "#h1", Phase: api.PhaseIdle,
		Heartbeat: at, ReceivedAt: at, NodePools: []api.NodePoolProgress{}, Problems: []api.StatusProblem{}}
	for _, p := range problems {
		st.Problems = append(st.Problems, api.StatusProblem{Type: "https://caravan.io/problems/apply", Title: p, Since: at})
	}
	require.NoError(f.t, f.store.PutStatus(context.Background(), clusterID, st, "agent"))
}

func (f *channelFleet) channels() map[string]api.Channel {
	f.t.Helper()
	var l api.List[api.Channel]
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels", nil).json(f.t, &l)
	out := map[string]api.Channel{}
	for _, c := range l.Items {
		out[c.Name] = c
	}
	return out
}

func TestChannelsRolloutGateAndHistoryOverRecordedStatus(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testRolloutGateAndHistory(t, startChannelFleet(t)) })
	t.Run("postgres", func(t *testing.T) {
		testRolloutGateAndHistory(t, startChannelFleet(t, centraltest.WithDatabase(pg.NewDatabase(t))))
	})
}

func testRolloutGateAndHistory(t *testing.T, f *channelFleet) {
	dns := f.dns
	start := time.Now().UTC().Truncate(time.Millisecond)
	f.ran(clusterA, f.first, start.Add(-3*time.Hour))
	f.ran(clusterB, f.first, start.Add(-3*time.Hour))
	f.ran(clusterA, dns, start.Add(-2*time.Hour))
	f.ran(clusterB, dns, start.Add(-30*time.Minute))
	// Each agent reported since, with nothing new: fresh evidence.
	f.ran(clusterA, dns, start)
	f.ran(clusterB, dns, start)

	chans := f.channels()
	dev := chans["dev"]
	require.NotNil(t, dev.Head)
	assert.Equal(t, dns, dev.Head.Commit, "the list shows each channel's head")
	assert.Equal(t, "four DNS replicas", dev.Head.Subject)
	assert.Equal(t, "Caravan Test", dev.Head.Author)
	assert.Empty(t, dev.Head.Error)
	assert.Equal(t, &api.ClusterCounts{Total: 2, Current: 2}, dev.Clusters)
	assert.Equal(t, f.first, chans["alpha"].Head.Commit)
	assert.Equal(t, &api.ClusterCounts{Total: 1}, chans["alpha"].Clusters, "kube-c never reported")

	var rollout api.ChannelRollout
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/rollout", nil).json(t, &rollout)
	assert.Equal(t, dns, rollout.Commit)
	assert.Equal(t, api.ClusterCounts{Total: 2, Current: 2}, rollout.Counts)
	require.Len(t, rollout.Clusters, 2)
	assert.Equal(t, clusterA, rollout.Clusters[0].ID)
	assert.Equal(t, api.RolloutCurrent, rollout.Clusters[0].State)
	assert.Equal(t, dns+"#h1", rollout.Clusters[0].Version)
	assert.True(t, start.Add(-2*time.Hour).Equal(*rollout.Clusters[0].Since), "since when kube-a runs the head")
	assert.True(t, start.Add(-30*time.Minute).Equal(*rollout.Clusters[1].Since))
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/rollout?commit="+f.first, nil).json(t, &rollout)
	assert.Equal(t, api.ClusterCounts{Total: 2, Older: 2}, rollout.Counts, "against an older commit both run another one")

	gate := func() api.PromotionGate {
		var g api.PromotionGate
		f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/promotion?to=alpha", nil).json(t, &g)
		return g
	}
	g := gate()
	assert.True(t, g.Met, "dev soaks nothing by default: %v", g.Reasons)
	assert.Equal(t, dns, g.Commit, "without a commit the gate is about the head")
	assert.Equal(t, "0s", g.Soak)
	require.Len(t, g.Evidence, 2)

	f.admin.must(http.StatusOK, "PATCH", "/api/v1/channels/dev", map[string]any{"promotion_soak": "1h"})
	g = gate()
	assert.False(t, g.Met)
	require.Len(t, g.Reasons, 1)
	assert.True(t, strings.HasPrefix(g.Reasons[0], clusterB+": has run "+dns[:7]+" for 30m"), g.Reasons[0])
	assert.True(t, strings.HasSuffix(g.Reasons[0], ", less than the soak of 1h"), g.Reasons[0])

	agent := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterA))
	agent.must(http.StatusOK, "PUT", "/api/v1/clusters/"+clusterA+"/status", map[string]any{
		"phase": "failed", "current_version": dns + "#h1",
		"problems": []map[string]any{{"type": "https://caravan.io/problems/apply", "title": "Apply failed"}},
	})
	g = gate()
	assert.Contains(t, g.Reasons, clusterA+": reports a problem: Apply failed", "a problem reported through the agent API holds the promotion back")
	assert.Equal(t, 1, f.channels()["dev"].Clusters.Problem)

	var history api.ChannelHistory
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/history", nil).json(t, &history)
	assert.Empty(t, history.Error)
	assert.Equal(t, 2, history.Total)
	require.Len(t, history.Commits, 2)
	assert.Equal(t, dns, history.Commits[0].Commit)
	assert.Equal(t, "four DNS replicas", history.Commits[0].Subject)
	assert.Equal(t, 2, history.Commits[0].Clusters)
	assert.True(t, start.Add(-2*time.Hour).Equal(*history.Commits[0].FirstReachedAt))
	assert.True(t, start.Add(-30*time.Minute).Equal(*history.Commits[0].AllReachedAt))
	assert.Equal(t, f.first, history.Commits[1].Commit)
	assert.True(t, start.Add(-3*time.Hour).Equal(*history.Commits[1].AllReachedAt))
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/history?limit=1", nil).json(t, &history)
	assert.Len(t, history.Commits, 1)

	var rec api.Promotion
	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels/alpha/promotions", map[string]any{
		"from": "dev", "commit": dns, "previous_commit": f.first, "override_reason": "hotfix for incident 4711",
	}).json(t, &rec)
	assert.Equal(t, "dev", rec.From)
	assert.Equal(t, "alpha", rec.To)
	assert.False(t, rec.GateMet)
	assert.NotEmpty(t, rec.GateReasons)
	var audit api.List[api.AuditEntry]
	f.admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=channel&resource_id=alpha", nil).json(t, &audit)
	require.NotEmpty(t, audit.Items)
	assert.Equal(t, "promote", audit.Items[0].Action)
	var after api.Promotion
	raw, err := json.Marshal(audit.Items[0].After)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(raw, &after))
	assert.Equal(t, "hotfix for incident 4711", after.OverrideReason, "the audit log keeps why the gate was overridden")
	assert.Equal(t, dns, after.Commit)
	assert.Equal(t, f.first, after.PreviousCommit)
	assert.NotEmpty(t, audit.Items[0].Actor)
}

func TestChannelsReportAnUnreadableRepositoryPerChannel(t *testing.T) {
	f := startChannelFleet(t)
	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels", map[string]any{
		"name": "elsewhere", "branch": "main", "position": 9, "repository_url": "http://127.0.0.1:1/config.git",
	})
	chans := f.channels()
	assert.Contains(t, chans["elsewhere"].Head.Error, "127.0.0.1:1")
	assert.Equal(t, f.dns, chans["dev"].Head.Commit, "the other channels are read all the same")
	assert.Empty(t, chans["dev"].Head.Error)

	var history api.ChannelHistory
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/elsewhere/history", nil).json(t, &history)
	assert.Contains(t, history.Error, "127.0.0.1:1")
	assert.Empty(t, history.Commits)

	var g api.PromotionGate
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/elsewhere/promotion?to=dev", nil).json(t, &g)
	assert.False(t, g.Met)
	assert.Empty(t, g.Commit)
	assert.Contains(t, g.Reasons[0], "the head of channel elsewhere is unknown")
}

func TestChannelsReadTheirHeadsAgainAfterARecordedPromotion(t *testing.T) {
	f := startChannelFleet(t)
	assert.Equal(t, f.first, f.channels()["alpha"].Head.Commit)
	next := f.commit("alpha", "pushed by hand")
	assert.Equal(t, f.first, f.channels()["alpha"].Head.Commit, "heads are cached for --git-refresh")
	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": next})
	assert.Equal(t, next, f.channels()["alpha"].Head.Commit, "a promotion makes the registry read the branch again")
}

func TestChannelEndpointsRefuseBadInputNamingTheField(t *testing.T) {
	f := startChannelFleet(t)
	sha := strings.Repeat("a", 40)
	cases := []struct {
		method, path string
		body         any
		status       int
		field        string
	}{
		{"GET", "/api/v1/channels/nope/rollout", nil, 404, ""},
		{"GET", "/api/v1/channels/nope/history", nil, 404, ""},
		{"GET", "/api/v1/channels/nope/promotion?to=alpha", nil, 404, ""},
		{"POST", "/api/v1/channels/nope/promotions", map[string]any{"from": "dev", "commit": sha}, 404, ""},
		{"GET", "/api/v1/channels/dev/rollout?commit=abc123", nil, 400, "commit"},
		{"GET", "/api/v1/channels/dev/rollout?commit=" + strings.ToUpper(sha), nil, 400, "commit"},
		{"GET", "/api/v1/channels/dev/history?limit=0", nil, 400, "limit"},
		{"GET", "/api/v1/channels/dev/history?limit=201", nil, 400, "limit"},
		{"GET", "/api/v1/channels/dev/history?limit=ten", nil, 400, "limit"},
		{"GET", "/api/v1/channels/dev/promotion", nil, 400, "to"},
		{"GET", "/api/v1/channels/dev/promotion?to=alpha&commit=HEAD", nil, 400, "commit"},
		{"GET", "/api/v1/channels/dev/promotion?to=nope", nil, 422, "to"},
		{"GET", "/api/v1/channels/dev/promotion?to=dev", nil, 422, "to"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": "abc"}, 422, "commit"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": sha, "previous_commit": "x"}, 422, "previous_commit"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": sha, "override_reason": "  "}, 422, "override_reason"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "nope", "commit": sha}, 422, "from"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "alpha", "commit": sha}, 422, "from"},
		{"POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": sha, "by": "me"}, 400, "by"},
		{"PATCH", "/api/v1/channels/dev", `{"promotion_soak":"1 day"}`, 422, "promotion_soak"},
		{"PATCH", "/api/v1/channels/dev", `{"promotion_soak":"-1h"}`, 422, "promotion_soak"},
		{"PATCH", "/api/v1/channels/dev", `{"promotion_soak":"9000h"}`, 422, "promotion_soak"},
	}
	for _, tc := range cases {
		p := f.admin.must(tc.status, tc.method, tc.path, tc.body).problem(t)
		if tc.field != "" {
			assert.Equal(t, tc.field, p["field"], "%s %s", tc.method, tc.path)
		}
	}

	reader := newClient(t, f.srv, f.srv.Token(t, api.RoleReader, ""))
	reader.must(http.StatusOK, "GET", "/api/v1/channels/dev/promotion?to=alpha", nil)
	reader.must(http.StatusForbidden, "POST", "/api/v1/channels/alpha/promotions", map[string]any{"from": "dev", "commit": sha})
	newClient(t, f.srv, "").must(http.StatusUnauthorized, "GET", "/api/v1/channels/dev/rollout", nil)
}

func TestChannelReadOnlyFieldsAreNotStored(t *testing.T) {
	f := startChannelFleet(t)
	var ch api.Channel
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/beta", nil).json(t, &ch)
	require.NotNil(t, ch.Head)
	assert.Empty(t, ch.PromotionSoak, "beta sets no soak of its own")
	ch.Head.Commit, ch.PromotionSoak = strings.Repeat("f", 40), "90m"
	f.admin.must(http.StatusOK, "PUT", "/api/v1/channels/beta", ch)

	var audit api.List[api.AuditEntry]
	f.admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=channel&resource_id=beta", nil).json(t, &audit)
	after, err := json.Marshal(audit.Items[0].After)
	require.NoError(t, err)
	assert.NotContains(t, string(after), `"head"`, "what the registry reads from git is not stored")
	assert.Contains(t, string(after), `"promotion_soak":"90m"`)
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/beta", nil).json(t, &ch)
	assert.Equal(t, f.first, ch.Head.Commit)
}

func TestServeReadsChannelHeadsWithTheGitCredentialFiles(t *testing.T) {
	git := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "README.md"), []byte("config\n"), 0o644))
	first, err := git.CreateRepo("config", src, "dev", "alpha", "beta", "stable")
	require.NoError(t, err)
	dir := t.TempDir()
	passwordFile := filepath.Join(dir, "password")
	require.NoError(t, os.WriteFile(passwordFile, []byte(git.Password+"\n"), 0o600))
	db := "sqlite://" + filepath.Join(dir, "c.db")

	_, err = runCommand(t, "serve", "--database", db, "--git-refresh", "0s")
	assert.ErrorContains(t, err, "--git-refresh must be positive")
	_, err = runCommand(t, "serve", "--database", db, "--git-password-file", filepath.Join(dir, "missing"))
	assert.ErrorContains(t, err, "--git-password-file")

	s := serve(t, "--database", db, "--repository-url", git.RepoURL("config"), "--git-username", git.User, "--git-password-file", passwordFile)
	token, err := runCommand(t, "token", "create", "--database", db, "--role", "reader", "--name", "reader")
	require.NoError(t, err)
	admin := s.client(t, strings.TrimSpace(token))
	var l api.List[api.Channel]
	admin.must(http.StatusOK, "GET", "/api/v1/channels", nil).json(t, &l)
	require.Len(t, l.Items, 4)
	for _, ch := range l.Items {
		assert.Empty(t, ch.Head.Error, ch.Name)
		assert.Equal(t, first, ch.Head.Commit, "%s is read with the password from its file", ch.Name)
	}
}

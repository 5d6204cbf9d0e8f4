package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

const (
	devCluster1  = "aws:123456789012:eu-central-1:dev-1"
	devCluster2  = "aws:123456789012:eu-central-1:dev-2"
	alphaCluster = "aws:123456789012:eu-central-1:alpha-1"
)

// promotionFleet is a registry whose channels follow a config repo on a
// real git server (dev holds one commit more than the other branches),
// with two clusters on dev and one on alpha, and the operator's git
// credentials in the environment.
type promotionFleet struct {
	*e2e
	git   *gitserver.Server
	store *store.Store
	first string
	dns   string
}

func startPromotionFleet(t *testing.T) *promotionFleet {
	t.Helper()
	isolate(t)
	git := gitserver.Start(t)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644))
	first, err := git.CreateRepo("config", src, "dev", "alpha", "beta", "stable")
	require.NoError(t, err)
	f := &promotionFleet{e2e: &e2e{t: t, dir: t.TempDir()}, git: git, first: first}
	f.dns = f.commit("dev", "four DNS replicas")
	srv := centraltest.Start(t, func(c *central.Config) {
		c.RepositoryURL = git.RepoURL("config")
		c.Git = gitauth.Credentials{Username: git.User, Password: git.Password}
		c.GitRefresh = time.Hour
		c.WebhookSecret = webhookSecret
	})
	f.server = srv
	t.Setenv(envGitUsername, git.User)
	t.Setenv(envGitPassword, git.Password)
	f.run("accounts", "create", "-f", f.file("account.yaml", "id: aws:123456789012\nname: team-a\nowner: team-a\nenvironment: test\n"))
	for id, ch := range map[string]string{devCluster1: "dev", devCluster2: "dev", alphaCluster: "alpha"} {
		f.run("clusters", "create", "-f", f.file("cluster.yaml", `id: `+id+`
infrastructure_account: aws:123456789012
region: eu-central-1
api_server_url: https://`+id[strings.LastIndex(id, ":")+1:]+`.example.org
environment: test
channel: `+ch+`
lifecycle_status: ready
`))
	}
	f.store, err = store.Open(context.Background(), srv.Database)
	require.NoError(t, err)
	t.Cleanup(func() { f.store.Close() })
	return f
}

func (f *promotionFleet) commit(branch, message string) string {
	f.t.Helper()
	c, err := f.git.Commit("config", branch, message, map[string][]byte{"changes/" + strings.ReplaceAll(message, " ", "-"): []byte(message)})
	require.NoError(f.t, err)
	return c
}

// webhookSecret signs the promotion fleet's git webhooks.
const webhookSecret = "promote-webhook-secret"

// forcePush points branch at commit on the git server, as a push does
// whatever the branch held.
func (f *promotionFleet) forcePush(branch, commit string) {
	f.t.Helper()
	out, err := exec.Command("git", "--git-dir", filepath.Join(f.git.Root, "config.git"), "update-ref", "refs/heads/"+branch, commit).CombinedOutput()
	require.NoError(f.t, err, "%s", out)
}

// head is the commit branch points to on the git server.
func (f *promotionFleet) head(branch string) string {
	f.t.Helper()
	commit, err := f.branchHead(branch)
	require.NoError(f.t, err)
	return commit
}

// branchHead is head for a goroutine that cannot end the test.
func (f *promotionFleet) branchHead(branch string) (string, error) {
	out, err := exec.Command("git", "--git-dir", filepath.Join(f.git.Root, "config.git"), "rev-parse", "refs/heads/"+branch).Output()
	if err != nil {
		return "", fmt.Errorf("reading the head of branch %s: %w", branch, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// ran records, as an agent's report received at the given time, that the
// cluster runs commit, with the problems given.
func (f *promotionFleet) ran(clusterID, commit string, at time.Time, problems ...string) {
	f.t.Helper()
	require.NoError(f.t, f.store.PutStatus(context.Background(), clusterID, idleOn(commit, at, problems...), "agent"))
}

// idleOn is an agent's report, made at the given time, that its cluster
// runs commit, with the problems given.
func idleOn(commit string, at time.Time, problems ...string) api.ClusterStatus {
	st := api.ClusterStatus{CurrentVersion: commit + "#0123456789abcdef", NextVersion: commit + "#0123456789abcdef", Phase: api.PhaseIdle,
		Heartbeat: at, ReceivedAt: at, NodePools: []api.NodePoolProgress{}, Problems: []api.StatusProblem{}}
	for _, p := range problems {
		st.Problems = append(st.Problems, api.StatusProblem{Type: "https://caravan.io/problems/apply", Title: p, Since: at})
	}
	return st
}

// reported records a fresh report of the cluster (received now) that
// says what its last one said: an agent that is alive, with nothing new.
func (f *promotionFleet) reported(clusterIDs ...string) {
	f.t.Helper()
	for _, id := range clusterIDs {
		st, err := f.store.Status(context.Background(), id)
		require.NoError(f.t, err)
		st.Heartbeat, st.ReceivedAt = time.Now(), time.Now()
		require.NoError(f.t, f.store.PutStatus(context.Background(), id, st, "agent"))
	}
}

// promotions are the promotions recorded in the audit log, newest first.
func (f *promotionFleet) promotions() []api.Promotion {
	f.t.Helper()
	admin, err := registry.New(f.server.URL, f.server.AdminToken)
	require.NoError(f.t, err)
	l, err := admin.ListAudit(context.Background(), registry.AuditFilter{ResourceType: "channel"}, registry.Page{})
	require.NoError(f.t, err)
	var out []api.Promotion
	for _, e := range l.Items {
		if e.Action != "promote" {
			continue
		}
		raw, err := json.Marshal(e.After)
		require.NoError(f.t, err)
		var p api.Promotion
		require.NoError(f.t, json.Unmarshal(raw, &p))
		out = append(out, p)
	}
	return out
}

// agent is a registry client with the agent token of the cluster.
func (f *promotionFleet) agent(clusterID string) *registry.Client {
	f.t.Helper()
	cl, err := registry.New(f.server.URL, f.server.Token(f.t, api.RoleAgent, clusterID))
	require.NoError(f.t, err)
	return cl
}

// assigned is the commit the cluster's assignment gives its agent, with
// the assignment's ETag.
func (f *promotionFleet) assigned(agent *registry.Client, clusterID string) (commit, etag string, err error) {
	res, err := agent.GetAssignment(context.Background(), clusterID, registry.AssignmentOptions{})
	if err != nil {
		return "", "", err
	}
	return res.Assignment.Channel.Commit, res.ETag, nil
}

// nextAssignment long-polls the cluster's assignment as its agent does,
// until it differs from the one with etag, and sends that one, or why the
// long-poll failed.
func (f *promotionFleet) nextAssignment(agent *registry.Client, clusterID, etag string) <-chan polled {
	next := make(chan polled, 1)
	go func() {
		for {
			res, err := agent.GetAssignment(f.t.Context(), clusterID, registry.AssignmentOptions{IfNoneMatch: etag, Wait: 30 * time.Second})
			if err != nil || !res.NotModified {
				next <- polled{res, err}
				return
			}
		}
	}()
	return next
}

// polled is the answer to a long-poll.
type polled struct {
	*registry.AssignmentResult
	err error
}

// publication is what the registry publishes on the channel, as
// `caravan channels get` shows it.
func (f *promotionFleet) publication(channel string) *api.ChannelPublication {
	f.t.Helper()
	var ch api.Channel
	require.NoError(f.t, json.Unmarshal([]byte(f.run("channels", "get", channel, "-o", "json")), &ch))
	require.NotNil(f.t, ch.Publication, "channel %s", channel)
	return ch.Publication
}

// proxyRecords starts a reverse proxy in front of the registry and returns
// its URL. When a promotion's record (POST .../promotions) passes, it runs
// before ahead of forwarding the request, and after once the registry has
// answered, ahead of passing the answer back: a change the test makes
// there lands between what promote checked and what it records, or
// between the record and what promote reads next.
func (f *promotionFleet) proxyRecords(before func(), after func(status int)) string {
	f.t.Helper()
	target, err := url.Parse(f.server.URL)
	require.NoError(f.t, err)
	isRecord := func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/promotions")
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(res *http.Response) error {
		if after != nil && isRecord(res.Request) {
			after(res.StatusCode)
		}
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if before != nil && isRecord(r) {
			before()
		}
		proxy.ServeHTTP(w, r)
	}))
	f.t.Cleanup(srv.Close)
	return srv.URL
}

// tryVia runs caravan as the admin against the registry at serverURL.
func (f *promotionFleet) tryVia(serverURL string, args ...string) (int, string, string) {
	f.t.Helper()
	return run(f.t, "", append(args, "--server", serverURL, "--token", f.server.AdminToken)...)
}

// soakedOnDev has both clusters of dev run dev's head for an hour and
// report now: the gate from dev is met for it.
func (f *promotionFleet) soakedOnDev() {
	f.t.Helper()
	f.ran(devCluster1, f.dns, time.Now().Add(-time.Hour))
	f.ran(devCluster2, f.dns, time.Now().Add(-time.Hour))
	f.reported(devCluster1, devCluster2)
}

func TestPromoteWithTheGateMet(t *testing.T) {
	f := startPromotionFleet(t)
	f.ran(devCluster1, f.dns, time.Now().Add(-time.Hour))
	f.ran(devCluster2, f.dns, time.Now().Add(-time.Minute))
	f.reported(devCluster1)

	out := f.run("promote", "dev", "alpha")
	assert.Contains(t, out, "promotion gate dev -> alpha, commit "+f.dns[:7]+", soak 0s, heartbeat timeout 1m30s")
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+`+f.dns[:7]+`#0123456\s+1h\s+\d+s\s+-\s+yes\s+-$`, out)
	assert.Contains(t, out, "verdict: met")
	assert.Contains(t, out, "promoted "+f.dns[:7]+" (four DNS replicas) from dev to alpha, which was at "+f.first[:7])
	assert.Equal(t, f.dns, f.head("alpha"), "alpha's branch is fast-forwarded to dev's head")

	recorded := f.promotions()
	require.Len(t, recorded, 1)
	assert.Equal(t, "dev", recorded[0].From)
	assert.Equal(t, "alpha", recorded[0].To)
	assert.Equal(t, f.dns, recorded[0].Commit)
	assert.Equal(t, f.first, recorded[0].PreviousCommit)
	assert.True(t, recorded[0].GateMet)
	assert.Empty(t, recorded[0].OverrideReason)

	assert.Contains(t, f.run("promote", "dev", "alpha"), "alpha is at "+f.dns[:7]+" already: nothing to promote")
	assert.Len(t, f.promotions(), 1, "nothing pushed, nothing recorded")
}

func TestPromoteRefusedWhenTheGateIsNotMet(t *testing.T) {
	f := startPromotionFleet(t)
	f.ran(devCluster1, f.dns, time.Now().Add(-time.Hour))
	f.ran(devCluster2, f.first, time.Now().Add(-time.Hour), "Stack rollback")
	f.reported(devCluster1, devCluster2)

	code, stdout, stderr := f.try("", "promote", "dev", "alpha")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "verdict: not met")
	assert.Contains(t, stdout, "  - "+devCluster2+": runs "+f.first[:7]+", not "+f.dns[:7]+"; reports a problem: Stack rollback")
	assert.Contains(t, stderr, "the promotion gate of dev to alpha is not met")
	assert.Contains(t, stderr, "--override-gate")
	assert.Equal(t, f.first, f.head("alpha"), "nothing is pushed")
	assert.Empty(t, f.promotions())

	code, stdout, _ = f.try("", "promote", "dev", "alpha", "--dry-run")
	assert.Equal(t, ExitError, code, "a dry run tells that the promotion would be refused")
	assert.Contains(t, stdout, "dry run: nothing changed")
}

func TestPromoteOverridingTheGateKeepsTheReason(t *testing.T) {
	f := startPromotionFleet(t)
	f.ran(devCluster1, f.dns, time.Now().Add(-time.Hour), "Apply failed")

	out := f.run("promote", "dev", "alpha", "--override-gate", "--reason", "fix for incident 4711, checked by hand")
	assert.Contains(t, out, "verdict: not met")
	assert.Contains(t, out, "overriding the gate: fix for incident 4711, checked by hand")
	assert.Equal(t, f.dns, f.head("alpha"))
	recorded := f.promotions()
	require.Len(t, recorded, 1)
	assert.Equal(t, "fix for incident 4711, checked by hand", recorded[0].OverrideReason, "the audit log keeps the reason")
	assert.False(t, recorded[0].GateMet)
	assert.Contains(t, recorded[0].GateReasons, devCluster2+": silent: it has never reported")
}

func TestPromoteRefusesANonFastForward(t *testing.T) {
	f := startPromotionFleet(t)
	hotfix := f.commit("alpha", "hotfix on alpha")
	f.soakedOnDev()

	code, stdout, stderr := f.try("", "promote", "dev", "alpha")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "verdict: met")
	assert.Contains(t, stderr, "alpha (at "+hotfix[:7]+") is not an ancestor of "+f.dns[:7])
	assert.Contains(t, stderr, "merge alpha into dev first")
	assert.Equal(t, hotfix, f.head("alpha"), "the branch keeps its commit")
	assert.Empty(t, f.promotions())
}

func TestPromoteDryRunChangesNothing(t *testing.T) {
	f := startPromotionFleet(t)
	f.soakedOnDev()

	out := f.run("promote", "dev", "alpha", "--dry-run")
	assert.Contains(t, out, "verdict: met")
	assert.Contains(t, out, "dry run: nothing changed")
	assert.Equal(t, f.first, f.head("alpha"))
	assert.Empty(t, f.promotions())

	var result promotion
	require.NoError(t, json.Unmarshal([]byte(f.run("promote", "dev", "alpha", "--dry-run", "-o", "json")), &result))
	assert.True(t, result.Gate.Met)
	assert.Equal(t, f.dns, result.Gate.Commit)
	assert.Len(t, result.Gate.Evidence, 2)
	assert.False(t, result.Pushed)
}

func TestPromoteAnOlderCommitWithASoak(t *testing.T) {
	f := startPromotionFleet(t)
	newer := f.commit("dev", "five DNS replicas")
	f.run("channels", "patch", "alpha", "--patch", `{"promotion_soak":"2h"}`)
	f.ran(alphaCluster, f.dns, time.Now().Add(-3*time.Hour))
	f.ran(devCluster1, f.dns, time.Now().Add(-4*time.Hour))
	f.ran(devCluster2, f.dns, time.Now().Add(-4*time.Hour))
	f.reported(alphaCluster, devCluster1, devCluster2)
	f.run("promote", "dev", "alpha", "--commit", f.dns)
	assert.Equal(t, f.dns, f.head("alpha"), "a commit older than dev's head")
	assert.Equal(t, newer, f.head("dev"))

	var result promotion
	require.NoError(t, json.Unmarshal([]byte(f.run("promote", "alpha", "beta", "-o", "json")), &result))
	assert.True(t, result.Pushed)
	assert.Equal(t, "2h", result.Gate.Soak, "alpha's own soak")
	assert.Equal(t, f.dns, result.Promotion.Commit)
	assert.Equal(t, f.dns, f.head("beta"))
}

// TestPromoteGateNamesSilentClusters: a cluster whose agent died after
// reporting idle is no evidence, however long it ran the commit; the gate
// names it with the age of its last report until it reports again.
func TestPromoteGateNamesSilentClusters(t *testing.T) {
	f := startPromotionFleet(t)
	f.ran(devCluster1, f.dns, time.Now().Add(-3*time.Hour))
	f.ran(devCluster2, f.dns, time.Now().Add(-3*time.Hour))
	f.reported(devCluster2)
	silent := devCluster1 + ": silent for 3h: no report within the heartbeat timeout of 1m30s"

	code, stdout, stderr := f.try("", "promote", "dev", "alpha", "--dry-run")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "promotion gate dev -> alpha, commit "+f.dns[:7]+", soak 0s, heartbeat timeout 1m30s\n")
	assert.Regexp(t, `(?m)^CLUSTER\s+VERSION\s+SINCE\s+REPORTED\s+PROBLEMS\s+MET\s+REASON$`, stdout)
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+`+f.dns[:7]+`#0123456\s+3h\s+3h \(silent\)\s+-\s+no\s+silent for 3h: no report within the heartbeat timeout of 1m30s$`, stdout)
	assert.Regexp(t, `(?m)^`+devCluster2+`\s+`+f.dns[:7]+`#0123456\s+3h\s+\d+s\s+-\s+yes\s+-$`, stdout, "the cluster that still reports is evidence")
	assert.Contains(t, stdout, "verdict: not met\n  - "+silent+"\n")
	assert.NotContains(t, stdout, "  - "+devCluster2)
	assert.Contains(t, stderr, "dry run: the promotion would be refused: the promotion gate of dev to alpha is not met")

	code, stdout, _ = f.try("", "promote", "dev", "alpha", "--dry-run", "-o", "json")
	assert.Equal(t, ExitError, code)
	var result promotion
	require.NoError(t, json.Unmarshal([]byte(stdout), &result))
	assert.False(t, result.Gate.Met)
	assert.Equal(t, "1m30s", result.Gate.HeartbeatTimeout)
	assert.Equal(t, []string{silent}, result.Gate.Reasons)
	require.Len(t, result.Gate.Evidence, 2)
	for _, e := range result.Gate.Evidence {
		require.NotNil(t, e.LastReport, e.Cluster)
		assert.Equal(t, e.Cluster == devCluster1, e.Silent, e.Cluster)
		assert.Equal(t, e.Cluster == devCluster2, e.Met, e.Cluster)
		if e.Silent {
			assert.WithinDuration(t, time.Now().Add(-3*time.Hour), *e.LastReport, time.Minute, "the registry's time of receipt of the last report")
		}
	}

	code, stdout, _ = f.try("", "promote", "alpha", "beta", "--dry-run")
	assert.Equal(t, ExitError, code)
	assert.Regexp(t, `(?m)^`+alphaCluster+`\s+-\s+-\s+never\s+-\s+no\s+silent: it has never reported$`, stdout, "a cluster that never reported is silent too")

	f.reported(devCluster1)
	out := f.run("promote", "dev", "alpha", "--dry-run")
	assert.Contains(t, out, "verdict: met", "after a fresh report the cluster is evidence again")
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+`+f.dns[:7]+`#0123456\s+3h\s+\d+s\s+-\s+yes\s+-$`, out, "its soak still counts from when it began to run the commit")
	assert.Equal(t, f.first, f.head("alpha"), "a dry run pushes nothing")
}

func TestPromoteUsageErrors(t *testing.T) {
	isolate(t)
	for _, args := range [][]string{
		{"promote", "dev"},
		{"promote", "dev", "dev"},
		{"promote", "dev", "alpha", "--commit", "abc123"},
		{"promote", "dev", "alpha", "--override-gate"},
		{"promote", "dev", "alpha", "--override-gate", "--reason", " "},
		{"promote", "dev", "alpha", "--reason", "why not"},
		{"channels", "rollout", "dev", "--commit", "HEAD"},
	} {
		code, _, stderr := run(t, "", append(args, "--server", "http://127.0.0.1:1", "--token", "t")...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}
}

func TestChannelsListHistoryAndRollout(t *testing.T) {
	f := startPromotionFleet(t)
	now := time.Now()
	f.ran(devCluster1, f.first, now.Add(-5*time.Hour))
	f.ran(devCluster1, f.dns, now.Add(-2*time.Hour))
	f.ran(devCluster2, f.first, now.Add(-5*time.Hour), "Stack rollback")
	f.run("channels", "create", "-f", f.file("broken.yaml", "name: broken\nbranch: main\nposition: 9\nrepository_url: http://127.0.0.1:1/config.git\n"))

	lines := strings.Split(strings.TrimSpace(f.run("channels", "list")), "\n")
	require.Len(t, lines, 6)
	assert.Regexp(t, `^NAME\s+BRANCH\s+GATE\s+HEAD\s+PUBLISHED\s+SUBJECT\s+AUTHOR\s+AGE\s+CURRENT\s+OLDER\s+PROBLEM$`, lines[0])
	assert.Regexp(t, `^dev\s+dev\s+advisory\s+`+f.dns[:7]+`\s+`+f.dns[:7]+`\s+four DNS replicas\s+Caravan Test\s+\d+s\s+1/2\s+1\s+1$`, lines[1])
	assert.Regexp(t, `^alpha\s+alpha\s+advisory\s+`+f.first[:7]+`\s+`+f.first[:7]+`\s+Initial configuration\s+Caravan Test\s+\d+s\s+0/1\s+0\s+0$`, lines[2])
	assert.Regexp(t, `^stable\s+stable\s+enforced\s+`+f.first[:7]+`\s+`+f.first[:7]+`\s+Initial configuration\s+`, lines[4])
	assert.Regexp(t, `^broken\s+main\s+advisory\s+-\s+-\s+unreadable: .*127\.0\.0\.1:1.*\s+-\s+-\s+0/0\s+0\s+0$`, lines[5], "an unreadable repository is reported on its channel alone")
	wide := f.run("channels", "list", "-o", "wide")
	assert.Regexp(t, `(?m)^beta\s+.*\s+2\s+24h\s+`+regexp.QuoteMeta(f.git.RepoURL("config"))+`$`, wide)

	history := strings.Split(strings.TrimSpace(f.run("channels", "history", "dev")), "\n")
	require.Len(t, history, 3)
	assert.Regexp(t, `^COMMIT\s+SUBJECT\s+AUTHOR\s+AGE\s+REACHED\s+FIRST\s+ALL$`, history[0])
	assert.Regexp(t, `^`+f.dns[:7]+`\s+four DNS replicas\s+Caravan Test\s+\d+s\s+1/2\s+2h\s+-$`, history[1])
	assert.Regexp(t, `^`+f.first[:7]+`\s+Initial configuration\s+Caravan Test\s+\d+s\s+2/2\s+5h\s+5h$`, history[2])
	code, _, stderr := f.try("", "channels", "history", "broken")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "the registry cannot read the branch main of channel broken")

	rollout := f.run("channels", "rollout", "dev")
	assert.Contains(t, rollout, "channel dev, commit "+f.dns[:7]+" (head: four DNS replicas): 1/2 current, 1 older, 1 reporting a problem\n")
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+current\s+`+f.dns[:7]+`#0123456\s+idle\s+2h\s+-$`, rollout)
	assert.Regexp(t, `(?m)^`+devCluster2+`\s+older\s+`+f.first[:7]+`#0123456\s+idle\s+5h\s+Stack rollback$`, rollout)
	older := f.run("channels", "rollout", "dev", "--commit", f.first)
	assert.Contains(t, older, "channel dev, commit "+f.first[:7]+": 1/2 current, 1 older")
}

func TestPromoteIntoAFrozenChannel(t *testing.T) {
	f := startPromotionFleet(t)
	f.soakedOnDev()
	freeze := f.createFreeze("--reason", "Cyber Week", "--channel", "alpha", "--until", "24h")
	f.createFreeze("--reason", "only production", "--channel", "alpha", "--environment", "production", "--until", "24h")
	f.createFreeze("--reason", "to come", "--all", "--from", "30h", "--until", "31h")

	code, stdout, stderr := f.try("", "promote", "dev", "alpha")
	assert.Equal(t, ExitError, code)
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+`+f.dns[:7]+`#0123456\s+1h\s+\d+s\s+-\s+yes\s+-$`, stdout, "every cluster of dev is fine")
	assert.Regexp(t, `\nalpha is frozen:\nFREEZE\s+SCOPE\s+UNTIL\s+BY\s+REASON\n`+freeze+`\s+channel alpha\s+20\S+Z\s+admin-\S+\s+Cyber Week\nverdict: not met\n`, stdout,
		"the freezes of alpha, and only those that hold all of it now")
	assert.Regexp(t, `  - channel alpha is frozen until 20\S+Z by admin-\S+: Cyber Week\n`, stdout)
	assert.Regexp(t, `^Error: alpha is frozen until 20\S+ \S+ UTC \(channel alpha, by admin-\S+: Cyber Week\), so the promotion from dev is refused; to promote anyway, say why: --override-gate --reason "\.\.\."\n$`, stderr)
	assert.Equal(t, f.first, f.head("alpha"), "nothing is pushed")
	assert.Empty(t, f.promotions())

	code, stdout, _ = f.try("", "promote", "dev", "alpha", "--dry-run", "-o", "json")
	assert.Equal(t, ExitError, code)
	var result promotion
	require.NoError(t, json.Unmarshal([]byte(stdout), &result))
	require.Len(t, result.Gate.Freezes, 1)
	assert.Equal(t, freeze, result.Gate.Freezes[0].ID)
	assert.False(t, result.Gate.Met)

	out := f.run("promote", "dev", "alpha", "--override-gate", "--reason", "hotfix for incident 4711, cleared with the freeze's owner")
	assert.Contains(t, out, "alpha is frozen:")
	assert.Contains(t, out, "overriding the gate: hotfix for incident 4711, cleared with the freeze's owner")
	assert.Contains(t, out, "promoted "+f.dns[:7]+" (four DNS replicas) from dev to alpha")
	assert.Equal(t, f.dns, f.head("alpha"))
	recorded := f.promotions()
	require.Len(t, recorded, 1)
	assert.Equal(t, "hotfix for incident 4711, cleared with the freeze's owner", recorded[0].OverrideReason)
	assert.False(t, recorded[0].GateMet)
	require.Len(t, recorded[0].GateReasons, 1)
	assert.Contains(t, recorded[0].GateReasons[0], "channel alpha is frozen until ")

	f.run("freeze", "delete", freeze)
	f.ran(alphaCluster, f.dns, time.Now().Add(-2*time.Hour))
	f.reported(alphaCluster)
	f.run("channels", "patch", "alpha", "--patch", `{"promotion_soak":"1h"}`)
	assert.Contains(t, f.run("promote", "alpha", "beta", "--dry-run"), "verdict: met", "a freeze of alpha does not hold promotion out of it")
}

func TestRolloutShowsClustersWaitingForAWindow(t *testing.T) {
	f := startPromotionFleet(t)
	now := time.Now()
	opens := now.Add(3 * time.Hour).UTC().Truncate(time.Minute)
	f.ran(devCluster1, f.dns, now.Add(-2*time.Hour))
	st := api.ClusterStatus{CurrentVersion: f.first + "#0123456789abcdef", NextVersion: f.dns + "#0123456789abcdef", Phase: api.PhaseWaitingForWindow,
		NextWindow: &opens, Heartbeat: now, ReceivedAt: now, NodePools: []api.NodePoolProgress{}, Problems: []api.StatusProblem{}}
	require.NoError(t, f.store.PutStatus(context.Background(), devCluster2, st, "agent"))

	rollout := f.run("channels", "rollout", "dev")
	assert.Contains(t, rollout, "channel dev, commit "+f.dns[:7]+" (head: four DNS replicas): 1/2 current, 1 older, 0 reporting a problem, 1 waiting for a window\n")
	assert.Regexp(t, `(?m)^`+devCluster2+`\s+older\s+`+f.first[:7]+`#0123456\s+waiting for window \(opens `+regexp.QuoteMeta(clock(opens))+`\)\s+\S+\s+-$`, rollout)
	assert.Regexp(t, `(?m)^`+devCluster1+`\s+current\s+`+f.dns[:7]+`#0123456\s+idle\s+2h\s+-$`, rollout)

	var r api.ChannelRollout
	require.NoError(t, json.Unmarshal([]byte(f.run("channels", "rollout", "dev", "-o", "json")), &r))
	for _, c := range r.Clusters {
		if c.ID == devCluster2 {
			require.NotNil(t, c.NextWindow)
			assert.Equal(t, opens, c.NextWindow.UTC())
		}
	}
}

// TestAPushToAnEnforcedChannelIsHeldUntilAnOverride: a commit pushed to
// stable by hand reaches no agent; the command line shows it held, and
// promoting it with an override, which pushes nothing, lets it through.
func TestAPushToAnEnforcedChannelIsHeldUntilAnOverride(t *testing.T) {
	f := startPromotionFleet(t)
	pushed := f.commit("stable", "pushed by hand")
	f.server.AnnouncePush(t, webhookSecret, "stable")

	lines := strings.Split(strings.TrimSpace(f.run("channels", "list")), "\n")
	require.Len(t, lines, 6)
	assert.Regexp(t, `^stable\s+stable\s+enforced\s+`+pushed[:7]+`\s+`+f.first[:7]+` held\s+pushed by hand\s+`, lines[4])
	assert.Regexp(t, `^stable holds its head `+pushed[:7]+` \(for \d+s\): `+pushed[:7]+` arrived on branch stable without a promotion from beta \(a push to the branch\): its agents keep `+f.first[:7]+` until a promotion records it; caravan promote beta stable --commit `+pushed+` --override-gate --reason "\.\.\." lets it through$`, lines[5])
	var stable api.Channel
	require.NoError(t, json.Unmarshal([]byte(f.run("channels", "get", "stable", "-o", "json")), &stable))
	require.NotNil(t, stable.Publication)
	assert.Equal(t, f.first, stable.Publication.Commit)
	require.NotNil(t, stable.Publication.Held)
	assert.Equal(t, pushed, stable.Publication.Held.Commit)

	code, stdout, _ := f.try("", "promote", "beta", "stable", "--dry-run")
	assert.Equal(t, ExitError, code, "beta has no clusters: no evidence")
	assert.Regexp(t, `(?m)^stable holds its head `+pushed[:7]+` back from its agents since 20\S+ \S+ UTC: `+pushed[:7]+` arrived on branch stable without a promotion from beta \(a push to the branch\): its agents keep `+f.first[:7]+` until`, stdout)
	code, stdout, _ = f.try("", "promote", "dev", "stable", "--dry-run")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "  - the gate of channel stable is enforced: it takes promotions from beta, the channel before it, not from dev\n")

	out := f.run("promote", "beta", "stable", "--commit", pushed, "--override-gate", "--reason", "hotfix for incident 4711, pushed by hand")
	assert.Contains(t, out, "stable is at "+pushed[:7]+" already, held back from its agents: recorded the promotion")
	assert.Equal(t, pushed, f.head("stable"), "nothing was pushed")
	recorded := f.promotions()
	require.Len(t, recorded, 1)
	assert.Equal(t, pushed, recorded[0].Commit)
	assert.Equal(t, "hotfix for incident 4711, pushed by hand", recorded[0].OverrideReason)
	lines = strings.Split(strings.TrimSpace(f.run("channels", "list")), "\n")
	require.Len(t, lines, 5, "nothing is held any more")
	assert.Regexp(t, `^stable\s+stable\s+enforced\s+`+pushed[:7]+`\s+`+pushed[:7]+`\s+pushed by hand\s+`, lines[4])
}

// TestPromotingTheHeldHeadWithTheGateMetPushesNothing: beta's head pushed
// to stable by hand is held; once the gate from beta is met for it, a
// plain promote records it and the registry publishes it.
func TestPromotingTheHeldHeadWithTheGateMetPushesNothing(t *testing.T) {
	f := startPromotionFleet(t)
	betaCluster := "aws:123456789012:eu-central-1:beta-1"
	f.run("clusters", "create", "-f", f.file("beta.yaml", `id: `+betaCluster+`
infrastructure_account: aws:123456789012
region: eu-central-1
api_server_url: https://beta-1.example.org
environment: test
channel: beta
lifecycle_status: ready
`))
	f.run("channels", "patch", "beta", "--patch", `{"promotion_soak":"1h"}`)
	fix := f.commit("beta", "a fix on beta")
	f.server.AnnouncePush(t, webhookSecret, "beta")
	f.forcePush("stable", fix)
	f.server.AnnouncePush(t, webhookSecret, "stable")
	f.ran(betaCluster, fix, time.Now().Add(-2*time.Hour))
	f.reported(betaCluster)

	var result promotion
	require.NoError(t, json.Unmarshal([]byte(f.run("promote", "beta", "stable", "-o", "json")), &result))
	assert.True(t, result.Gate.Met, "%v", result.Gate.Reasons)
	assert.Equal(t, fix, result.Gate.Commit)
	require.NotNil(t, result.Gate.ToPublication)
	require.NotNil(t, result.Gate.ToPublication.Held, "stable held beta's head when the gate was checked")
	assert.False(t, result.Pushed, "stable's branch had the commit already")
	require.NotNil(t, result.Promotion)
	assert.True(t, result.Promotion.GateMet)
	require.NotNil(t, result.Published)
	assert.Equal(t, fix, result.Published.Commit, "the registry publishes it")
	assert.Nil(t, result.Published.Held)
}

// TestPromoteRecordedBeforeTheRegistryReadsTheHead: promote records the
// promotion into alpha (gate enforced) right after its push, before the
// registry has read alpha's new head. The registry takes the record while
// it still publishes the old head, and publishes the promoted commit as
// soon as it reads the head (the record makes it read the branch again on
// the next request, here promote's own): agents are given it, and it is
// never shown as held.
func TestPromoteRecordedBeforeTheRegistryReadsTheHead(t *testing.T) {
	f := startPromotionFleet(t)
	f.run("channels", "patch", "alpha", "--patch", `{"gate":"enforced"}`)
	f.soakedOnDev()
	agent := f.agent(alphaCluster)
	commit, etag, err := f.assigned(agent, alphaCluster)
	require.NoError(t, err)
	require.Equal(t, f.first, commit)
	next := f.nextAssignment(agent, alphaCluster, etag)

	// atRecord is what the registry and the git server held when the
	// registry had answered the record.
	type atRecord struct {
		status    int
		branch    string
		published api.ChannelPublication
		assigned  string
	}
	seen := make(chan atRecord, 1)
	proxy := f.proxyRecords(nil, func(status int) {
		at := atRecord{status: status}
		var err error
		at.branch, err = f.branchHead("alpha")
		assert.NoError(t, err)
		pubs, err := f.store.Publications(context.Background())
		assert.NoError(t, err)
		at.published = pubs["alpha"]
		at.assigned, _, err = f.assigned(agent, alphaCluster)
		assert.NoError(t, err)
		seen <- at
	})

	code, stdout, stderr := f.tryVia(proxy, "promote", "dev", "alpha", "-o", "json")
	require.Equal(t, ExitOK, code, stderr)
	var at atRecord
	select {
	case at = <-seen:
	default:
		require.Fail(t, "the promotion's record did not pass the proxy")
	}
	assert.Equal(t, http.StatusCreated, at.status, "the record is accepted")
	assert.Equal(t, f.dns, at.branch, "alpha's branch was pushed before the record")
	assert.Equal(t, f.first, at.published.Commit, "the registry had not read alpha's new head when it took the record")
	assert.Nil(t, at.published.Held, "the head the registry had read is published, nothing is held")
	assert.Equal(t, f.dns, at.published.Promoted, "the record lets the promoted commit through once the registry reads it")
	assert.Equal(t, f.first, at.assigned, "alpha's agents still had the old head")

	var result promotion
	require.NoError(t, json.Unmarshal([]byte(stdout), &result))
	assert.True(t, result.Pushed)
	require.NotNil(t, result.Promotion)
	assert.True(t, result.Promotion.GateMet)
	require.NotNil(t, result.Published)
	assert.Equal(t, f.dns, result.Published.Commit, "read after the record, alpha publishes the promoted commit")
	assert.Nil(t, result.Published.Held)

	select {
	case p := <-next:
		require.NoError(t, p.err)
		assert.Equal(t, f.dns, p.Assignment.Channel.Commit, "the long-poll of alpha's agent is answered with the promoted commit")
		assert.Equal(t, api.GateEnforced, p.Assignment.Channel.Gate)
	case <-time.After(time.Minute):
		require.Fail(t, "alpha's agent was not given a new assignment within a minute")
	}
	f.server.AnnouncePush(t, webhookSecret, "alpha")
	published := f.publication("alpha")
	assert.Equal(t, f.dns, published.Commit, "a later read of the head keeps it published")
	assert.Nil(t, published.Held)
	recorded := f.promotions()
	require.Len(t, recorded, 1)
	assert.Equal(t, f.dns, recorded[0].Commit)
	assert.True(t, recorded[0].GateMet)
}

// TestPromoteHeldWhenAClusterFailsBeforeTheRecord: the gate is met when
// promote checks it, but a cluster of dev reports a problem before the
// record reaches the registry. The registry records the promotion with
// the verdict it finds then, not met, and holds the pushed commit back
// from alpha's agents (gate enforced); promote says so and exits 1. The
// push stays: alpha's branch holds the commit, which an override with a
// reason lets through.
func TestPromoteHeldWhenAClusterFailsBeforeTheRecord(t *testing.T) {
	f := startPromotionFleet(t)
	f.run("channels", "patch", "alpha", "--patch", `{"gate":"enforced"}`)
	f.soakedOnDev()
	failing := f.agent(devCluster2)
	proxy := f.proxyRecords(func() {
		st := idleOn(f.dns, time.Now(), "Apply failed")
		assert.NoError(t, failing.PutClusterStatus(context.Background(), devCluster2, &st), "the report of a failure on dev")
	}, nil)

	code, stdout, stderr := f.tryVia(proxy, "promote", "dev", "alpha")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "verdict: met\n", "the gate was met when promote checked it")
	assert.Contains(t, stdout, "promoted "+f.dns[:7]+" (four DNS replicas) from dev to alpha, which was at "+f.first[:7]+"\n")
	failed := devCluster2 + ": reports a problem: Apply failed"
	assert.Regexp(t, `^Error: the registry holds `+f.dns[:7]+` back from the agents of alpha: the promotion of `+f.dns[:7]+` from dev recorded by admin-\S+ at 20\S+Z did not meet the gate \(`+
		regexp.QuoteMeta(failed)+`\) and gave no override reason: its agents keep `+f.first[:7]+`; caravan promote dev alpha --commit `+f.dns+` --override-gate --reason "\.\.\." lets it through\n$`, stderr)
	assert.Equal(t, f.dns, f.head("alpha"), "the push is not undone")

	recorded := f.promotions()
	require.Len(t, recorded, 1, "the registry records a promotion whose branch has moved, whatever its verdict")
	assert.Equal(t, "dev", recorded[0].From)
	assert.Equal(t, f.dns, recorded[0].Commit)
	assert.Equal(t, f.first, recorded[0].PreviousCommit)
	assert.False(t, recorded[0].GateMet, "the verdict when the registry recorded it")
	assert.Equal(t, []string{failed}, recorded[0].GateReasons)
	assert.Empty(t, recorded[0].OverrideReason)
	published := f.publication("alpha")
	assert.Equal(t, f.first, published.Commit)
	require.NotNil(t, published.Held)
	assert.Equal(t, f.dns, published.Held.Commit)
	commit, _, err := f.assigned(f.agent(alphaCluster), alphaCluster)
	require.NoError(t, err)
	assert.Equal(t, f.first, commit, "alpha's agents keep the commit they had")

	out := f.run("promote", "dev", "alpha", "--commit", f.dns, "--override-gate", "--reason", "the failure on dev-2 is its own, checked by hand")
	assert.Contains(t, out, "alpha is at "+f.dns[:7]+" already, held back from its agents: recorded the promotion")
	assert.Equal(t, f.dns, f.publication("alpha").Commit)
}

// TestPromoteIntoAChannelFrozenBeforeTheRecord: a freeze of alpha created
// after promote checked the gate refuses the record, which the registry
// takes into a frozen channel only with an override reason. promote says
// that the record failed and exits 1; the push stays, and once the
// registry reads alpha's head it holds it back (gate enforced) as a push
// without a promotion, until an override records it.
func TestPromoteIntoAChannelFrozenBeforeTheRecord(t *testing.T) {
	f := startPromotionFleet(t)
	f.run("channels", "patch", "alpha", "--patch", `{"gate":"enforced"}`)
	f.soakedOnDev()
	admin, err := registry.New(f.server.URL, f.server.AdminToken)
	require.NoError(t, err)
	frozen := make(chan string, 1)
	proxy := f.proxyRecords(func() {
		fz, _, err := admin.CreateFreeze(context.Background(), &api.Freeze{Channel: "alpha", Reason: "Cyber Week", Until: time.Now().Add(24 * time.Hour)})
		if assert.NoError(t, err, "freezing alpha") {
			frozen <- fz.ID
		}
	}, nil)

	code, stdout, stderr := f.tryVia(proxy, "promote", "dev", "alpha")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, "verdict: met\n", "alpha was not frozen when promote checked the gate")
	var freeze string
	select {
	case freeze = <-frozen:
	default:
		require.Fail(t, "the promotion's record did not pass the proxy")
	}
	assert.Regexp(t, `^Error: alpha now points to `+f.dns[:7]+`, but recording the promotion in the registry failed: POST /channels/alpha/promotions: Channel frozen: channel alpha is frozen until 20\S+Z by admin-\S+: Cyber Week \(freeze `+regexp.QuoteMeta(freeze)+`\); a promotion into a frozen channel is recorded only with override_reason\n$`, stderr)
	assert.Equal(t, f.dns, f.head("alpha"), "the push is not undone")
	assert.Empty(t, f.promotions(), "nothing is recorded")

	f.server.AnnouncePush(t, webhookSecret, "alpha")
	published := f.publication("alpha")
	assert.Equal(t, f.first, published.Commit)
	require.NotNil(t, published.Held)
	assert.Equal(t, f.dns, published.Held.Commit)
	assert.Contains(t, published.Held.Reason, f.dns[:7]+" arrived on branch alpha without a promotion from dev")

	out := f.run("promote", "dev", "alpha", "--commit", f.dns, "--override-gate", "--reason", "hotfix for incident 4711, cleared with the freeze's owner")
	assert.Contains(t, out, "alpha is at "+f.dns[:7]+" already, held back from its agents: recorded the promotion")
	assert.Equal(t, f.dns, f.publication("alpha").Commit)
}

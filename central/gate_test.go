package central_test

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const clusterD = "aws:123456789012:eu-central-1:kube-d"

// forcePush points branch at commit on the git server, as a force-push does.
func (f *channelFleet) forcePush(branch, commit string) {
	f.t.Helper()
	out, err := exec.Command("git", "--git-dir", filepath.Join(f.git.Root, "config.git"), "update-ref", "refs/heads/"+branch, commit).CombinedOutput()
	require.NoError(f.t, err, "%s", out)
}

func (f *channelFleet) channel(name string) api.Channel {
	f.t.Helper()
	var ch api.Channel
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/"+name, nil).json(f.t, &ch)
	return ch
}

func assignedChannel(t *testing.T, agent *client, clusterID string) (api.AssignedChannel, string) {
	t.Helper()
	r := agent.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterID+"/assignment", nil)
	var a api.Assignment
	r.json(t, &a)
	return a.Channel, r.Header.Get("ETag")
}

func TestEnforcedGateHoldsPushedHeadsUntilAPromotionRecordsThem(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testEnforcedGate(t, startChannelFleet(t, withWebhookSecret)) })
	t.Run("postgres", func(t *testing.T) {
		testEnforcedGate(t, startChannelFleet(t, withWebhookSecret, centraltest.WithDatabase(pg.NewDatabase(t))))
	})
}

func testEnforcedGate(t *testing.T, f *channelFleet) {
	f.admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterD, "stable"))
	agent := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterD))
	stable := f.channel("stable")
	assert.Equal(t, api.GateEnforced, stable.Gate, "stable's gate is enforced by default")
	assert.Equal(t, api.GateAdvisory, f.channel("beta").Gate)
	require.NotNil(t, stable.Publication)
	assert.Equal(t, api.ChannelPublication{Gate: api.GateEnforced, Commit: f.first, PublishedAt: stable.Publication.PublishedAt}, *stable.Publication)
	got, etag := assignedChannel(t, agent, clusterD)
	assert.Equal(t, api.AssignedChannel{Name: "stable", Branch: "stable", RepositoryURL: f.url, Commit: f.first, Gate: api.GateEnforced}, got)

	waiting := poll(agent, clusterD, etag, "60s")
	pushed := f.commit("stable", "pushed by hand")
	f.srv.AnnouncePush(t, webhookSecret, "stable")
	stable = f.channel("stable")
	assert.Equal(t, pushed, stable.Head.Commit, "the channel shows the new head")
	require.NotNil(t, stable.Publication.Held, "and holds it")
	assert.Equal(t, pushed, stable.Publication.Held.Commit)
	assert.Contains(t, stable.Publication.Held.Reason, "arrived on branch stable without a promotion from beta")
	assert.Contains(t, stable.Publication.Held.Reason, "caravan promote beta stable --commit "+pushed+" --override-gate --reason")
	assert.Equal(t, f.first, stable.Publication.Commit)
	got, _ = assignedChannel(t, agent, clusterD)
	assert.Equal(t, f.first, got.Commit, "the agents keep the published commit")

	var gate api.PromotionGate
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/beta/promotion?to=stable", nil).json(t, &gate)
	require.NotNil(t, gate.ToPublication)
	require.NotNil(t, gate.ToPublication.Held, "the gate view shows the held head of the target")
	assert.Equal(t, pushed, gate.ToPublication.Held.Commit)
	var history api.ChannelHistory
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/stable/history", nil).json(t, &history)
	require.NotNil(t, history.Publication)
	assert.Equal(t, pushed, history.Publication.Held.Commit, "and the history view")
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/promotion?to=stable", nil).json(t, &gate)
	assert.False(t, gate.Met)
	assert.Contains(t, gate.Reasons, "the gate of channel stable is enforced: it takes promotions from beta, the channel before it, not from dev")

	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels/stable/promotions", map[string]any{
		"from": "beta", "commit": pushed, "override_reason": "hotfix for incident 4711, verified by hand",
	})
	assert.Equal(t, pushed, assignedCommit(t, answered(t, waiting, "recording the override")), "the override publishes the held head to the waiting poll")
	stable = f.channel("stable")
	assert.Nil(t, stable.Publication.Held)
	assert.Equal(t, pushed, stable.Publication.Commit)
	assert.Equal(t, pushed, stable.Publication.Promoted)

	// A force-push rewinds the branch: the published commit is gone from it.
	f.forcePush("stable", f.first)
	f.srv.AnnouncePush(t, webhookSecret, "stable")
	stable = f.channel("stable")
	require.NotNil(t, stable.Publication.Held)
	assert.Equal(t, f.first, stable.Publication.Held.Commit, "the rewound head is not published")
	assert.Contains(t, stable.Publication.Problem, "the published commit "+pushed[:7]+" is no longer on branch stable")
	got, _ = assignedChannel(t, agent, clusterD)
	assert.Equal(t, pushed, got.Commit)

	// A restarted registry publishes and holds what it did.
	f.srv.Stop(t)
	f.srv = centraltest.Start(t, centraltest.WithDatabase(f.srv.Database), withWebhookSecret, func(c *central.Config) {
		c.Git, c.GitRefresh = f.credentials(), time.Hour
	})
	f.admin = newClient(t, f.srv, f.srv.AdminToken)
	agent = newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterD))
	got, etag = assignedChannel(t, agent, clusterD)
	assert.Equal(t, pushed, got.Commit)
	assert.Equal(t, f.first, f.channel("stable").Publication.Held.Commit)

	waiting = poll(agent, clusterD, etag, "60s")
	f.admin.must(http.StatusOK, "PATCH", "/api/v1/channels/stable", map[string]any{"gate": "advisory"})
	var a api.Assignment
	answered(t, waiting, "switching the gate to advisory").json(t, &a)
	assert.Equal(t, api.AssignedChannel{Name: "stable", Branch: "stable", RepositoryURL: f.url, Commit: f.first, Gate: api.GateAdvisory}, a.Channel,
		"switching the gate to advisory publishes the head")
	assert.Nil(t, f.channel("stable").Publication.Held)
}

func TestChannelGateRefusesOtherValuesNamingTheField(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	for _, tc := range []struct {
		method, path string
		body         string
	}{
		{"POST", "/api/v1/channels", `{"name":"canary","branch":"canary","gate":"strict"}`},
		{"PATCH", "/api/v1/channels/beta", `{"gate":"Enforced"}`},
		{"PUT", "/api/v1/channels/beta", `{"branch":"beta","gate":"off"}`},
	} {
		p := admin.must(http.StatusUnprocessableEntity, tc.method, tc.path, tc.body).problem(t)
		assert.Equal(t, "gate", p["field"], "%s %s", tc.method, tc.path)
		assert.Contains(t, p["detail"], "must be enforced or advisory")
	}
	var ch api.Channel
	admin.must(http.StatusCreated, "POST", "/api/v1/channels", `{"name":"canary","branch":"canary","position":5}`).json(t, &ch)
	assert.Equal(t, api.GateAdvisory, ch.Gate, "left out: the default of the name")
	admin.must(http.StatusOK, "PATCH", "/api/v1/channels/canary", `{"gate":"enforced"}`).json(t, &ch)
	assert.Equal(t, api.GateEnforced, ch.Gate)
	admin.must(http.StatusOK, "PATCH", "/api/v1/channels/canary", `{"gate":null}`).json(t, &ch)
	assert.Equal(t, api.GateAdvisory, ch.Gate, "null is the default again")
	admin.must(http.StatusOK, "GET", "/api/v1/channels/dev", nil).json(t, &ch)
	require.NotNil(t, ch.Publication)
	assert.Equal(t, api.GateAdvisory, ch.Publication.Gate)
}

// TestAPromotionOnOneReplicaPublishesOnTheOther: with PostgreSQL replicas,
// a held head let through on one replica answers the polls waiting on the
// other.
func TestAPromotionOnOneReplicaPublishesOnTheOther(t *testing.T) {
	db := pg.NewDatabase(t)
	f := startChannelFleet(t, withWebhookSecret, centraltest.WithDatabase(db))
	f.admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterD, "stable"))
	other := centraltest.Start(t, centraltest.WithDatabase(db), withWebhookSecret, func(c *central.Config) {
		c.Git, c.GitRefresh = f.credentials(), time.Hour
	})
	agent := newClient(t, other, other.Token(t, api.RoleAgent, clusterD))
	pushed := f.commit("stable", "pushed by hand")
	f.srv.AnnouncePush(t, webhookSecret, "stable")
	got, etag := assignedChannel(t, agent, clusterD)
	require.Equal(t, f.first, got.Commit, "the other replica holds the head too")

	waiting := poll(agent, clusterD, etag, "60s")
	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels/stable/promotions", map[string]any{
		"from": "beta", "commit": pushed, "override_reason": "hotfix for incident 4711",
	})
	assert.Equal(t, pushed, assignedCommit(t, answered(t, waiting, "a promotion recorded on the other replica")))
}

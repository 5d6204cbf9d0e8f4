package channels

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// recordedFleet is a channel's status history as the registry records it:
// kube-1 took B a while after A, kube-2 is still on A and failing, kube-3
// never reported, kube-4 is being set up and kube-5 took B with a new
// assignment later.
func recordedFleet() []Cluster {
	failing := member("kube-2", commitA+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(5*time.Hour))}, "Stack rollback")
	failing.Status.NextVersion = commitB + "#h1"
	failing.Status.Heartbeat = ago(10 * time.Second)
	return []Cluster{
		member("kube-1", commitB+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(5*time.Hour)), ran(commitB+"#h1", ago(2*time.Hour))}),
		failing,
		member("kube-3", "", nil),
		withLifecycle(member("kube-4", commitB+"#h1", nil), api.LifecycleRequested),
		member("kube-5", commitB+"#h2", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(time.Hour)), ran(commitB+"#h2", ago(time.Minute))}),
	}
}

func TestRolloutOfTheHead(t *testing.T) {
	head := api.ChannelHead{Commit: commitB, Subject: "four DNS replicas"}
	r := Rollout(api.Channel{Name: "dev", Branch: "develop"}, head, "", recordedFleet())

	assert.Equal(t, "dev", r.Channel)
	assert.Equal(t, "develop", r.Branch)
	assert.Equal(t, commitB, r.Commit, "without a commit the rollout is the head's")
	assert.Equal(t, &head, r.Head)
	assert.Equal(t, api.ClusterCounts{Total: 4, Current: 2, Older: 1, Problem: 1}, r.Counts)
	require.Len(t, r.Clusters, 4, "the cluster being set up is left out")

	states := map[string]string{}
	for _, c := range r.Clusters {
		states[c.Alias] = c.State
	}
	assert.Equal(t, map[string]string{"kube-1": "current", "kube-2": "older", "kube-3": "unreported", "kube-5": "current"}, states)

	kube1, kube2, kube3, kube5 := r.Clusters[0], r.Clusters[1], r.Clusters[2], r.Clusters[3]
	assert.Equal(t, ago(2*time.Hour), *kube1.Since, "since the commit became current")
	assert.Equal(t, ago(time.Hour), *kube5.Since, "a new assignment of the same commit does not count as new")
	assert.Equal(t, commitA+"#h1", kube2.Version)
	assert.Equal(t, commitB+"#h1", kube2.NextVersion)
	assert.Equal(t, api.PhaseIdle, kube2.Phase)
	assert.Equal(t, ago(10*time.Second), *kube2.Heartbeat)
	require.Len(t, kube2.Problems, 1)
	assert.Equal(t, "Stack rollback", kube2.Problems[0].Title)
	assert.Empty(t, kube3.Version)
	assert.Empty(t, kube3.Phase)
	assert.Nil(t, kube3.Since)
	assert.Nil(t, kube3.Heartbeat)
	assert.NotNil(t, kube3.Problems, "problems is a list, empty when there are none")
}

func TestRolloutOfAnotherCommit(t *testing.T) {
	r := Rollout(api.Channel{Name: "dev", Branch: "dev"}, api.ChannelHead{Commit: commitB}, commitA, recordedFleet())
	assert.Equal(t, commitA, r.Commit)
	assert.Equal(t, api.ClusterCounts{Total: 4, Current: 1, Older: 2, Problem: 1}, r.Counts)
}

func TestRolloutWithAnUnknownHead(t *testing.T) {
	r := Rollout(api.Channel{Name: "dev", Branch: "dev"}, api.ChannelHead{Error: "listing: connection refused"}, "", recordedFleet())
	assert.Empty(t, r.Commit)
	assert.Equal(t, api.ClusterCounts{Total: 4, Problem: 1}, r.Counts, "nothing counts as current or older against an unknown commit")
	for _, c := range r.Clusters {
		if c.Alias == "kube-3" {
			assert.Equal(t, api.RolloutUnreported, c.State)
			continue
		}
		assert.Equal(t, api.RolloutUnknown, c.State, c.Alias)
	}
}

func TestCountsOfAnEmptyChannel(t *testing.T) {
	assert.Equal(t, api.ClusterCounts{}, Counts(nil, commitA))
	r := Rollout(api.Channel{Name: "beta"}, api.ChannelHead{Commit: commitA}, "", nil)
	assert.NotNil(t, r.Clusters, "clusters is a list, empty for an empty channel")
}

func TestCommitOf(t *testing.T) {
	assert.Equal(t, commitA, CommitOf(commitA+"#h1"))
	assert.Equal(t, commitA, CommitOf(commitA))
	assert.Empty(t, CommitOf(""))
}

func TestRolloutSaysWhenAWaitingClusterOpens(t *testing.T) {
	opens := now.Add(time.Hour)
	waiting := withPhase(member("kube-1", commitA+"#h1", nil), api.PhaseWaitingForWindow)
	waiting.Status.NextWindow = &opens
	stale := member("kube-2", commitA+"#h1", nil)
	stale.Status.NextWindow = &opens // a leftover beside another phase
	r := Rollout(api.Channel{Name: "dev"}, api.ChannelHead{Commit: commitB}, "", []Cluster{waiting, stale})
	require.Len(t, r.Clusters, 2)
	require.NotNil(t, r.Clusters[0].NextWindow)
	assert.True(t, opens.Equal(*r.Clusters[0].NextWindow))
	assert.Nil(t, r.Clusters[1].NextWindow, "only while the phase is waiting-for-window")
}

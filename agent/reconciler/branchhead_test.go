package reconciler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// headClock is a reconciler on a fake clock, with its source metrics.
type headClock struct {
	r       *Reconciler
	now     time.Time
	metrics *prometheus.Registry
}

func newHeadClock() *headClock {
	c := &headClock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC), metrics: prometheus.NewRegistry()}
	c.r = New(Config{ClusterID: "c1"}, nil, nil, nil, nil, nil, logr.Discard(), NewMetrics(prometheus.NewRegistry())).
		WithSourceMetrics(NewSourceMetrics(c.metrics))
	c.r.now = func() time.Time { return c.now }
	c.r.branch.spread = 0
	return c
}

func (c *headClock) pick(t *testing.T, repo Source, a *api.Assignment) headChoice {
	t.Helper()
	choice, err := c.r.pickHead(context.Background(), repo, a, followRegistry)
	require.NoError(t, err)
	return choice
}

// counter reads a counter of the source metrics; 0 before it counted.
func (c *headClock) counter(t *testing.T, name string) float64 {
	t.Helper()
	families, err := c.metrics.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func channelAt(commit, gate string) *api.Assignment {
	return &api.Assignment{Channel: api.AssignedChannel{Name: "stable", Branch: "stable", Commit: commit, Gate: gate}}
}

// The agent lists its branch only while the registry cannot be reached,
// a git_poll_interval after it went away and then every git_poll_interval;
// under an advisory gate it takes the listed head, under an enforced one
// it keeps the published head and counts each new head it holds back.
func TestPickHeadListsOnlyWhileTheRegistryIsAway(t *testing.T) {
	c := newHeadClock()
	repo := &headSource{head: "listed1"}

	assert.Equal(t, headChoice{Commit: "p1"}, c.pick(t, repo, channelAt("p1", "")))
	assert.Zero(t, repo.listed(), "the registry names the head")
	assert.True(t, c.r.nextListing().IsZero(), "no listing is due while the registry answers")

	c.r.registryDown.Store(true)
	assert.Equal(t, headChoice{Commit: "p1"}, c.pick(t, repo, channelAt("p1", "")))
	assert.Equal(t, c.now.Add(defaultGitPollInterval), c.r.nextListing(), "the first listing a git_poll_interval after the registry went away")
	c.now = c.now.Add(defaultGitPollInterval - time.Second)
	assert.Equal(t, headChoice{Commit: "p1"}, c.pick(t, repo, channelAt("p1", "")))
	assert.Zero(t, repo.listed())
	c.now = c.now.Add(time.Second)
	assert.Equal(t, headChoice{Commit: "listed1"}, c.pick(t, repo, channelAt("p1", "")), "advisory: the listed head")
	assert.Equal(t, 1, repo.listed())
	assert.Equal(t, c.now.Add(defaultGitPollInterval), c.r.nextListing())

	c.r.registryDown.Store(false)
	assert.Equal(t, headChoice{Commit: "p2"}, c.pick(t, repo, channelAt("p2", api.GateEnforced)), "the registry is back")
	assert.True(t, c.r.nextListing().IsZero())

	c.r.registryDown.Store(true)
	enforcedAt := channelAt("p2", api.GateEnforced)
	enforcedAt.ConfigItems = map[string]string{ConfigGitPollInterval: "1m"}
	assert.Equal(t, headChoice{Commit: "p2"}, c.pick(t, repo, enforcedAt))
	for range 2 {
		c.now = c.now.Add(time.Minute)
		assert.Equal(t, headChoice{Commit: "p2", HeldBack: "listed1"}, c.pick(t, repo, enforcedAt), "enforced: the published head stays")
	}
	assert.Equal(t, 3, repo.listed(), "git_poll_interval of the config item")
	assert.InDelta(t, 1, c.counter(t, "caravan_agent_unpublished_heads_total"), 0, "one held-back head, counted once")
	repo.set("listed2")
	c.now = c.now.Add(time.Minute)
	assert.Equal(t, headChoice{Commit: "p2", HeldBack: "listed2"}, c.pick(t, repo, enforcedAt))
	assert.InDelta(t, 2, c.counter(t, "caravan_agent_unpublished_heads_total"), 0)
	assert.InDelta(t, 4, c.counter(t, "caravan_agent_git_ref_listings_total"), 0, "every listing is counted")
}

// A registry that publishes no head: the agent lists at once, then every
// git_poll_interval, taking what it listed meanwhile.
func TestPickHeadWithoutAPublishedHead(t *testing.T) {
	c := newHeadClock()
	repo := &headSource{head: "listed1"}
	assert.Equal(t, headChoice{Commit: "listed1"}, c.pick(t, repo, channelAt("", "")))
	repo.set("listed2")
	c.now = c.now.Add(defaultGitPollInterval / 2)
	assert.Equal(t, headChoice{Commit: "listed1"}, c.pick(t, repo, channelAt("", "")), "not listed again before git_poll_interval")
	c.now = c.now.Add(defaultGitPollInterval / 2)
	assert.Equal(t, headChoice{Commit: "listed2"}, c.pick(t, repo, channelAt("", "")))
	assert.Equal(t, 2, repo.listed())

	other := channelAt("", "")
	other.Channel.Branch = "beta"
	c.pick(t, repo, other)
	assert.Equal(t, 3, repo.listed(), "another branch is listed at once")
}

// An enforced gate with no head published yet: nothing is listed and no
// commit chosen; the reconcile keeps the cluster's version.
func TestPickHeadEnforcedBeforeAnyHeadIsPublished(t *testing.T) {
	c := newHeadClock()
	repo := &headSource{head: "listed1"}
	assert.Equal(t, headChoice{}, c.pick(t, repo, channelAt("", api.GateEnforced)))
	assert.Zero(t, repo.listed())
}

// branchSource holds one commit on its branch and counts the reads.
type branchSource struct {
	headSource
	holds string
	reads int
}

func (s *branchSource) FetchOnBranch(_ context.Context, branch, commit string) (*configrepo.Snapshot, error) {
	s.reads++
	if commit != s.holds {
		return nil, fmt.Errorf("%s is not on branch %s: %w", commit, branch, configrepo.ErrNotOnBranch)
	}
	return &configrepo.Snapshot{Commit: commit}, nil
}

// A commit the branch does not hold is looked for again only a
// git_poll_interval later: the registry naming it at every poll does not
// make the agent fetch at every poll.
func TestFetchCommitRemembersARefusal(t *testing.T) {
	c := newHeadClock()
	repo := &branchSource{holds: "good"}
	a := channelAt("forged", "")
	for range 3 {
		_, err := c.r.fetchCommit(context.Background(), repo, a, "forged")
		require.ErrorIs(t, err, configrepo.ErrNotOnBranch)
	}
	assert.Equal(t, 1, repo.reads)
	c.now = c.now.Add(defaultGitPollInterval)
	_, err := c.r.fetchCommit(context.Background(), repo, a, "forged")
	require.ErrorIs(t, err, configrepo.ErrNotOnBranch)
	assert.Equal(t, 2, repo.reads, "looked for again a git_poll_interval later")
	snap, err := c.r.fetchCommit(context.Background(), repo, channelAt("good", ""), "good")
	require.NoError(t, err)
	assert.Equal(t, "good", snap.Commit)
}

package channels

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

var (
	commitA = strings.Repeat("a", 40)
	commitB = strings.Repeat("b", 40)
	// now is the fixed clock of the pure tests.
	now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func ago(d time.Duration) time.Time { return now.Add(-d) }

// ran is one history entry: the cluster ran version from at on.
func ran(version string, at time.Time) api.StatusHistoryEntry {
	return api.StatusHistoryEntry{Time: at, CurrentVersion: version, NextVersion: version, Phase: api.PhaseIdle}
}

// lastReport is when the registry received the last report of a member:
// well within the default heartbeat timeout.
var lastReport = ago(time.Minute)

// member is a cluster in service whose last report, received a minute
// ago, is version in phase idle, with the problems given, and whose
// history is entries; without any of these it never reported.
func member(id, version string, entries []api.StatusHistoryEntry, problems ...string) Cluster {
	c := Cluster{ID: "aws:123456789012:eu-central-1:" + id, Alias: id, LifecycleStatus: api.LifecycleReady, History: entries}
	if version == "" && len(entries) == 0 && problems == nil {
		return c
	}
	c.Status = &api.ClusterStatus{CurrentVersion: version, Phase: api.PhaseIdle, Problems: []api.StatusProblem{}, Heartbeat: lastReport, ReceivedAt: lastReport}
	for _, p := range problems {
		c.Status.Problems = append(c.Status.Problems, api.StatusProblem{Type: "https://caravan.io/problems/x", Title: p, Since: ago(time.Minute)})
	}
	return c
}

func withPhase(c Cluster, phase string) Cluster {
	s := *c.Status
	s.Phase = phase
	c.Status = &s
	return c
}

func withLifecycle(c Cluster, status string) Cluster {
	c.LifecycleStatus = status
	return c
}

func channel(name, soak string) api.Channel {
	return api.Channel{Name: name, Branch: name, PromotionSoak: soak}
}

func TestGate(t *testing.T) {
	onA := func(id string, d time.Duration, problems ...string) Cluster {
		return member(id, commitA+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(48*time.Hour)), ran(commitA+"#h1", ago(d))}, problems...)
	}
	cases := []struct {
		name     string
		from     api.Channel
		commit   string
		headErr  string
		clusters []Cluster
		met      bool
		reasons  []string
	}{
		{
			name: "every cluster runs the commit, healthy, past the soak",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour), onA("kube-2", 90*time.Minute)},
			met:      true, reasons: []string{},
		},
		{
			name: "a soak just reached is enough",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", time.Hour)},
			met:      true, reasons: []string{},
		},
		{
			name: "a cluster still on an older commit",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour), member("kube-2", commitB+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(48*time.Hour))})},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-2: runs bbbbbbb, not aaaaaaa"},
		},
		{
			name: "a cluster that never reported",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour), member("kube-2", "", nil)},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-2: silent: it has never reported"},
		},
		{
			name: "a cluster on the commit reporting a problem",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour, "Stack rollback")},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: reports a problem: Stack rollback"},
		},
		{
			name: "several problems are all named",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour, "Stack rollback", "Apply failed")},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: reports 2 problems: Stack rollback; Apply failed"},
		},
		{
			name: "the phase failed counts as a problem",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{withPhase(onA("kube-1", 2*time.Hour), api.PhaseFailed)},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: is in phase failed"},
		},
		{
			name: "a cluster on the commit for less than the soak",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 2*time.Hour), onA("kube-2", 25*time.Minute)},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-2: has run aaaaaaa for 25m, less than the soak of 1h"},
		},
		{
			name: "beta soaks a day by default",
			from: channel("beta", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 23*time.Hour)},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: has run aaaaaaa for 23h, less than the soak of 24h"},
		},
		{
			name: "a channel of another name soaks a day too",
			from: channel("canary", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", 25*time.Hour)},
			met:      true, reasons: []string{},
		},
		{
			name: "a channel's own promotion_soak wins over the default",
			from: channel("beta", "10m"), commit: commitA,
			clusters: []Cluster{onA("kube-1", 11*time.Minute)},
			met:      true, reasons: []string{},
		},
		{
			name: "dev has no soak: a commit just arrived may go on",
			from: channel("dev", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", time.Second)},
			met:      true, reasons: []string{},
		},
		{
			name: "without soak a history that does not go back far enough is no obstacle",
			from: channel("dev", ""), commit: commitA,
			clusters: []Cluster{member("kube-1", commitA+"#h1", nil)},
			met:      true, reasons: []string{},
		},
		{
			name: "with a soak an unknown start holds the promotion back",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{member("kube-1", commitA+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(time.Hour))})},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: its status history does not show since when it runs aaaaaaa"},
		},
		{
			name: "a new assignment on the same commit keeps the soak running",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{member("kube-1", commitA+"#h2", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(2*time.Hour)), ran(commitA+"#h2", ago(time.Minute))})},
			met:      true, reasons: []string{},
		},
		{
			name: "a rollback in between starts the soak over",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{member("kube-1", commitA+"#h1", []api.StatusHistoryEntry{
				ran(commitA+"#h1", ago(5*time.Hour)), ran(commitB+"#h1", ago(3*time.Hour)), ran(commitA+"#h1", ago(10*time.Minute)),
			})},
			reasons: []string{"aws:123456789012:eu-central-1:kube-1: has run aaaaaaa for 10m, less than the soak of 1h"},
		},
		{
			name: "a start in the future (clock skew) has run for nothing yet",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{onA("kube-1", -time.Minute)},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: has run aaaaaaa for 0s, less than the soak of 1h"},
		},
		{
			name: "every reason of one cluster is given",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{member("kube-1", commitB+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(time.Hour))}, "Apply failed")},
			reasons:  []string{"aws:123456789012:eu-central-1:kube-1: runs bbbbbbb, not aaaaaaa; reports a problem: Apply failed"},
		},
		{
			name: "clusters not in service are left out",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{
				onA("kube-1", 2*time.Hour),
				withLifecycle(member("kube-2", "", nil), api.LifecycleRequested),
				withLifecycle(member("kube-3", commitB+"#h1", nil, "Stack deleted"), api.LifecycleDecommissionRequested),
				withLifecycle(member("kube-4", commitB+"#h1", nil), api.LifecycleDecommissioned),
			},
			met: true, reasons: []string{},
		},
		{
			name: "a channel without clusters in service shows nothing",
			from: channel("alpha", ""), commit: commitA,
			clusters: []Cluster{withLifecycle(onA("kube-1", 2*time.Hour), api.LifecycleRequested)},
			reasons:  []string{"channel alpha has no clusters in service: nothing shows that the commit works"},
		},
		{
			name: "an unknown head leaves nothing to decide on",
			from: channel("alpha", ""), headErr: "listing https://git.example.org/config.git: connection refused",
			clusters: []Cluster{onA("kube-1", 2*time.Hour)},
			reasons: []string{
				"the head of channel alpha is unknown (listing https://git.example.org/config.git: connection refused): name the commit to promote",
				"aws:123456789012:eu-central-1:kube-1: the commit to promote is unknown",
			},
		},
		{
			name:     "a head not read yet says so",
			from:     channel("alpha", ""),
			clusters: []Cluster{member("kube-1", "", nil)},
			reasons: []string{
				"the head of channel alpha is unknown (not read yet): name the commit to promote",
				"aws:123456789012:eu-central-1:kube-1: silent: it has never reported",
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := Gate(GateInput{From: tc.from, To: channel("next", ""), Commit: tc.commit, HeadError: tc.headErr, Clusters: tc.clusters, Now: now})
			assert.Equal(t, tc.met, g.Met)
			assert.Equal(t, tc.reasons, g.Reasons)
			assert.Equal(t, tc.from.Name, g.From)
			assert.Equal(t, "next", g.To)
			assert.Equal(t, tc.commit, g.Commit)
			assert.Equal(t, now, g.CheckedAt)
			assert.Equal(t, "1m30s", g.HeartbeatTimeout, "the default: 3 × the agent's interval")
			assert.Len(t, g.Evidence, len(InService(tc.clusters)), "one piece of evidence per cluster in service")
			for _, e := range g.Evidence {
				assert.Equal(t, e.Met, e.Reason == "", "%s: a cluster holds the promotion back exactly when it says why", e.Cluster)
			}
		})
	}
}

func TestGateEvidence(t *testing.T) {
	problem := api.StatusProblem{Type: "https://caravan.io/problems/x", Title: "Apply failed", Since: ago(time.Minute)}
	c := member("kube-1", commitA+"#h2", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(3*time.Hour)), ran(commitA+"#h2", ago(time.Hour))}, "Apply failed")
	g := Gate(GateInput{From: channel("alpha", ""), To: channel("beta", ""), Commit: commitA, Clusters: []Cluster{c}, Now: now})
	require.Len(t, g.Evidence, 1)
	since := ago(3 * time.Hour)
	assert.Equal(t, api.GateEvidence{
		Cluster: c.ID, Alias: "kube-1", Version: commitA + "#h2", Phase: api.PhaseIdle, Since: &since,
		Problems: []api.StatusProblem{problem}, LastReport: &lastReport, Met: false, Reason: "reports a problem: Apply failed",
	}, g.Evidence[0])
	assert.Equal(t, "1h", g.Soak)
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * time.Second: "1m30s", time.Hour: "1h", 24 * time.Hour: "24h", 90 * time.Minute: "1h30m",
		25*time.Minute + 400*time.Millisecond: "25m", 1500 * time.Millisecond: "1.5s", time.Hour + 5*time.Second: "1h0m5s",
	} {
		assert.Equal(t, want, FormatDuration(d), "%v", d)
	}
}

func TestGateHeldByFreezesOfTheTargetChannel(t *testing.T) {
	onA := member("kube-1", commitA+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(48*time.Hour))})
	until := now.Add(24 * time.Hour)
	freezes := []api.Freeze{
		{ID: "f-stable", Reason: "cyber week", By: "alice", Channel: "stable", Since: ago(time.Hour), Until: until},
		{ID: "f-fleet", Reason: "all hands", By: "bob", All: true, Since: ago(2 * time.Hour), Until: until},
		{ID: "f-source", Reason: "x", By: "bob", Channel: "beta", Since: ago(time.Hour), Until: until},
		{ID: "f-env", Reason: "x", By: "bob", Environment: "production", Since: ago(time.Hour), Until: until},
		{ID: "f-part", Reason: "x", By: "bob", Channel: "stable", Environment: "production", Since: ago(time.Hour), Until: until},
		{ID: "f-later", Reason: "x", By: "bob", Channel: "stable", Since: now.Add(time.Hour), Until: until},
		{ID: "f-ended", Reason: "x", By: "bob", Channel: "stable", Since: ago(2 * time.Hour), Until: now},
	}
	g := Gate(GateInput{From: channel("beta", "1h"), To: channel("stable", ""), Commit: commitA, Clusters: []Cluster{onA}, Freezes: freezes, Now: now})
	assert.False(t, g.Met)
	var ids []string
	for _, f := range g.Freezes {
		ids = append(ids, f.ID)
	}
	assert.Equal(t, []string{"f-fleet", "f-stable"}, ids, "in force, covering the whole target channel, by start")
	assert.Equal(t, []string{
		"channel stable is frozen (the whole fleet is) until 2026-03-02T12:00:00Z by bob: all hands",
		"channel stable is frozen until 2026-03-02T12:00:00Z by alice: cyber week",
	}, g.Reasons)
	assert.True(t, g.Evidence[0].Met, "the clusters' evidence is untouched")

	g = Gate(GateInput{From: channel("beta", "1h"), To: channel("stable", ""), Commit: commitA, Clusters: []Cluster{onA}, Freezes: freezes[2:], Now: now})
	assert.True(t, g.Met, "%v", g.Reasons)
	assert.NotNil(t, g.Freezes)
	assert.Empty(t, g.Freezes)
}

func TestGateEvidenceOfAClusterWaitingForItsWindow(t *testing.T) {
	opens := now.Add(3 * time.Hour)
	waiting := withPhase(member("kube-1", commitB+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(48*time.Hour))}), api.PhaseWaitingForWindow)
	waiting.Status.NextWindow = &opens
	g := Gate(GateInput{From: channel("beta", "1h"), To: channel("stable", ""), Commit: commitA, Clusters: []Cluster{waiting}, Now: now})
	assert.False(t, g.Met)
	assert.Equal(t, "runs bbbbbbb, not aaaaaaa; waits for its update window, which opens at 2026-03-01T15:00:00Z", g.Evidence[0].Reason)

	waiting.Status.NextWindow = nil
	g = Gate(GateInput{From: channel("beta", "1h"), To: channel("stable", ""), Commit: commitA, Clusters: []Cluster{waiting}, Now: now})
	assert.Equal(t, "runs bbbbbbb, not aaaaaaa; waits for its update window", g.Evidence[0].Reason)

	onA := withPhase(member("kube-1", commitA+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(48*time.Hour))}), api.PhaseWaitingForWindow)
	onA.Status.NextWindow = &opens
	g = Gate(GateInput{From: channel("beta", "1h"), To: channel("stable", ""), Commit: commitA, Clusters: []Cluster{onA}, Now: now})
	assert.True(t, g.Met, "a cluster that runs the commit and waits for a newer one holds nothing back: %v", g.Reasons)
}

// TestGateCountsOnlyClustersThatReportedInTime decides with a fake clock:
// a cluster is evidence only while the registry received its last report
// within the heartbeat timeout, whatever that report says.
func TestGateCountsOnlyClustersThatReportedInTime(t *testing.T) {
	const id = "aws:123456789012:eu-central-1:"
	// reportedAgo runs commitA for two days, its last report received d ago.
	reportedAgo := func(name string, d time.Duration) Cluster {
		c := member(name, commitA+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(48*time.Hour))})
		c.Status.ReceivedAt, c.Status.Heartbeat = ago(d), ago(d)
		return c
	}
	cases := []struct {
		name     string
		timeout  time.Duration
		clusters []Cluster
		met      bool
		silent   []bool
		reasons  []string
	}{
		{
			name:     "a report a second ago is fresh",
			clusters: []Cluster{reportedAgo("kube-1", time.Second)},
			met:      true, silent: []bool{false}, reasons: []string{},
		},
		{
			name:     "a report exactly one timeout ago is still fresh",
			clusters: []Cluster{reportedAgo("kube-1", 90*time.Second)},
			met:      true, silent: []bool{false}, reasons: []string{},
		},
		{
			name:     "a report just older than the timeout is silent",
			clusters: []Cluster{reportedAgo("kube-1", 91*time.Second)},
			silent:   []bool{true},
			reasons:  []string{id + "kube-1: silent for 1m31s: no report within the heartbeat timeout of 1m30s"},
		},
		{
			name:     "an agent that died after reporting idle is named with the age of its last report",
			clusters: []Cluster{reportedAgo("kube-1", 2*time.Hour+13*time.Second)},
			silent:   []bool{true},
			reasons:  []string{id + "kube-1: silent for 2h: no report within the heartbeat timeout of 1m30s"},
		},
		{
			name:     "silent for days",
			clusters: []Cluster{reportedAgo("kube-1", 75*time.Hour)},
			silent:   []bool{true},
			reasons:  []string{id + "kube-1: silent for 3d3h: no report within the heartbeat timeout of 1m30s"},
		},
		{
			name:     "a cluster that never reported is silent",
			clusters: []Cluster{member("kube-1", "", nil)},
			silent:   []bool{true},
			reasons:  []string{id + "kube-1: silent: it has never reported"},
		},
		{
			name:     "mixed: only the silent ones are named, each once",
			clusters: []Cluster{reportedAgo("kube-1", 10*time.Second), reportedAgo("kube-2", 3*time.Hour), member("kube-3", "", nil), reportedAgo("kube-4", 80*time.Second)},
			silent:   []bool{false, true, true, false},
			reasons: []string{
				id + "kube-2: silent for 3h: no report within the heartbeat timeout of 1m30s",
				id + "kube-3: silent: it has never reported",
			},
		},
		{
			name: "a silent cluster's last report still tells what else holds it back",
			clusters: []Cluster{func() Cluster {
				c := member("kube-1", commitB+"#h1", []api.StatusHistoryEntry{ran(commitB+"#h1", ago(48*time.Hour))}, "Apply failed")
				c.Status.ReceivedAt = ago(5 * time.Minute)
				return c
			}()},
			silent:  []bool{true},
			reasons: []string{id + "kube-1: silent for 5m: no report within the heartbeat timeout of 1m30s; runs bbbbbbb, not aaaaaaa; reports a problem: Apply failed"},
		},
		{
			name:     "a longer timeout of the registry's keeps a slower agent fresh",
			timeout:  10 * time.Minute,
			clusters: []Cluster{reportedAgo("kube-1", 9*time.Minute), reportedAgo("kube-2", 11*time.Minute)},
			silent:   []bool{false, true},
			reasons:  []string{id + "kube-2: silent for 11m: no report within the heartbeat timeout of 10m"},
		},
		{
			name: "the registry's receipt counts, not the agent's clock",
			clusters: []Cluster{func() Cluster {
				c := reportedAgo("kube-1", 3*time.Hour)
				c.Status.Heartbeat = now // an agent clock running ahead
				return c
			}(), func() Cluster {
				c := reportedAgo("kube-2", 10*time.Second)
				c.Status.Heartbeat = ago(3 * time.Hour) // an agent clock running behind
				return c
			}()},
			silent:  []bool{true, false},
			reasons: []string{id + "kube-1: silent for 3h: no report within the heartbeat timeout of 1m30s"},
		},
		{
			name: "a report without a time of receipt is no evidence",
			clusters: []Cluster{func() Cluster {
				c := reportedAgo("kube-1", 0)
				c.Status.ReceivedAt = time.Time{}
				return c
			}()},
			silent:  []bool{true},
			reasons: []string{id + "kube-1: silent: the registry does not know when it last reported"},
		},
		{
			name:     "a receipt in the future (another replica's clock) is fresh",
			clusters: []Cluster{reportedAgo("kube-1", -time.Minute)},
			met:      true, silent: []bool{false}, reasons: []string{},
		},
		{
			name: "a silent cluster not in service is left out",
			clusters: []Cluster{
				reportedAgo("kube-1", time.Second),
				withLifecycle(reportedAgo("kube-2", 3*time.Hour), api.LifecycleDecommissionRequested),
				withLifecycle(member("kube-3", "", nil), api.LifecycleRequested),
			},
			met: true, silent: []bool{false}, reasons: []string{},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := Gate(GateInput{From: channel("alpha", ""), To: channel("beta", ""), Commit: commitA, Clusters: tc.clusters, Now: now, HeartbeatTimeout: tc.timeout})
			assert.Equal(t, tc.met, g.Met)
			assert.Equal(t, tc.reasons, g.Reasons)
			timeout := "1m30s"
			if tc.timeout != 0 {
				timeout = FormatDuration(tc.timeout)
			}
			assert.Equal(t, timeout, g.HeartbeatTimeout)
			require.Len(t, g.Evidence, len(tc.silent))
			for i, e := range g.Evidence {
				assert.Equal(t, tc.silent[i], e.Silent, "%s silent", e.Cluster)
				if e.Silent {
					assert.False(t, e.Met, "%s: a silent cluster is no evidence", e.Cluster)
					assert.Contains(t, e.Reason, "silent")
				}
				if c := tc.clusters[i]; c.Status != nil && !c.Status.ReceivedAt.IsZero() {
					require.NotNil(t, e.LastReport)
					assert.Equal(t, c.Status.ReceivedAt, *e.LastReport, "the registry's time of receipt")
				} else {
					assert.Nil(t, e.LastReport)
				}
			}
		})
	}
}

func TestFormatAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1500 * time.Millisecond: "1s", 91 * time.Second: "1m31s", 5 * time.Minute: "5m",
		2*time.Hour + 13*time.Second: "2h", 5*time.Hour + 13*time.Minute + 59*time.Second: "5h13m",
		47 * time.Hour: "47h", 48 * time.Hour: "2d", 75 * time.Hour: "3d3h",
	} {
		assert.Equal(t, want, formatAge(d), "%v", d)
	}
}

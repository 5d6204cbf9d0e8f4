package reconciler

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/window"
)

func TestVersionChangesWithCommitAndAssignment(t *testing.T) {
	a := &api.Assignment{ConfigItems: map[string]string{"a": "1"}}
	v := Version("abc", a)
	assert.Regexp(t, `^abc#[0-9a-f]{12}$`, v)
	assert.Equal(t, v, Version("abc", &api.Assignment{ConfigItems: map[string]string{"a": "1"}}))
	assert.NotEqual(t, v, Version("abd", a), "a new commit is a new version")
	assert.NotEqual(t, v, Version("abc", &api.Assignment{ConfigItems: map[string]string{"a": "2"}}), "a config item change is a new version")
}

func TestDecide(t *testing.T) {
	a := &api.Assignment{}
	v := Version("c1", a)
	blocked := &api.Assignment{Blocks: []api.Block{{By: "ops", Reason: "incident"}}}
	poolBlocked := &api.Assignment{Blocks: []api.Block{{By: "ops", Reason: "pool", NodePool: "workers"}}}
	decommission := &api.Assignment{Cluster: api.AssignedCluster{LifecycleStatus: api.LifecycleDecommissionRequested}}
	decommissioned := &api.Assignment{Cluster: api.AssignedCluster{LifecycleStatus: api.LifecycleDecommissioned}}
	cases := []struct {
		name   string
		spec   clusterconfig.Spec
		a      *api.Assignment
		st     clusterconfig.Status
		action Action
		reason string
	}{
		{"new cluster", clusterconfig.Spec{}, a, clusterconfig.Status{}, Converge, "new version"},
		{"at the version", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: v}, Nothing, "at the version"},
		{"known broken", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: "old", FailedVersion: v, NextVersion: v}, Nothing, "failed to render"},
		{"back to the current version after one that failed", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: v, NextVersion: "broken"}, Converge, "back to the current version after broken did not complete"},
		{"back after a render failure", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: v, NextVersion: "broken", FailedVersion: "broken"}, Converge, "back to the current version"},
		{"a block holds the way back", clusterconfig.Spec{}, blocked, clusterconfig.Status{CurrentVersion: Version("c1", blocked), NextVersion: "broken"}, Blocked, "incident"},
		{"suspended beats all", clusterconfig.Spec{Suspend: true, Block: &clusterconfig.Block{Reason: "x"}}, blocked, clusterconfig.Status{}, Suspended, "suspend"},
		{"blocked in the cluster", clusterconfig.Spec{Block: &clusterconfig.Block{Reason: "migration"}}, a, clusterconfig.Status{}, Blocked, "blocked in the cluster: migration"},
		{"blocked at the registry", clusterconfig.Spec{}, blocked, clusterconfig.Status{}, Blocked, "blocked at the registry by ops: incident"},
		{"blocked even at the version", clusterconfig.Spec{}, blocked, clusterconfig.Status{CurrentVersion: Version("c1", blocked)}, Blocked, "incident"},
		{"a pool block does not stop manifests", clusterconfig.Spec{}, poolBlocked, clusterconfig.Status{}, Converge, "new version"},
		{"pools to retire at the version", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: v, PendingNodePools: []string{"old"}}, NodeWork, "retired"},
		{"nodes to roll at the version", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: v, Rolls: []nodes.RollState{{Pool: "workers", Target: 3}}}, NodeWork, "rolled"},
		{"a new version before retiring", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: "older", PendingNodePools: []string{"old"}}, Converge, "new version"},
		{"decommission requested", clusterconfig.Spec{}, decommission, clusterconfig.Status{CurrentVersion: Version("c1", decommission)}, Decommission, "decommission"},
		{"decommissioned stays so", clusterconfig.Spec{}, decommissioned, clusterconfig.Status{}, Decommission, "decommission"},
		{"a block holds a decommission", clusterconfig.Spec{Block: &clusterconfig.Block{Reason: "wait"}}, decommission, clusterconfig.Status{}, Blocked, "wait"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.spec, c.a, "c1", c.st, time.Now())
			assert.Equal(t, c.action, d.Action)
			assert.Contains(t, d.Reason, c.reason)
			assert.Equal(t, Version("c1", c.a), d.Version)
		})
	}
}

func TestVersionLeavesTheWindowsOut(t *testing.T) {
	a := &api.Assignment{ConfigItems: map[string]string{"a": "1"}, NodePools: []api.AssignedNodePool{{Name: "p", ConfigItems: map[string]string{"a": "1"}}}}
	windowed := &api.Assignment{
		ConfigItems: map[string]string{"a": "1", api.ConfigUpdateWindows: "Mon 08:00-09:00 UTC"},
		NodePools:   []api.AssignedNodePool{{Name: "p", ConfigItems: map[string]string{"a": "1", api.ConfigNodeUpdateWindows: "Sat 00:00-06:00 UTC"}}},
	}
	assert.Equal(t, Version("c", a), Version("c", windowed), "a window says when, not what: no version of its own")
	assert.Contains(t, windowed.ConfigItems, api.ConfigUpdateWindows, "the assignment itself keeps its windows")
	assert.Contains(t, windowed.NodePools[0].ConfigItems, api.ConfigNodeUpdateWindows)
	frozen := &api.Assignment{ConfigItems: map[string]string{"a": "1"}, NodePools: a.NodePools, Freezes: []api.Freeze{{ID: "f"}}}
	assert.NotEqual(t, Version("c", a), Version("c", frozen), "a freeze, like a block, is part of what the agent converges to")
}

// Monday 2026-12-07 is the day of these cases.
func TestDecideWithWindowsAndFreezes(t *testing.T) {
	monday := func(h, m int) time.Time { return time.Date(2026, 12, 7, h, m, 0, 0, time.UTC) }
	office := &api.Assignment{ConfigItems: map[string]string{api.ConfigUpdateWindows: "Mon-Fri 08:00-17:00 UTC"}}
	v := Version("c1", office)
	freeze := api.Freeze{ID: "f1", By: "alice", Reason: "cyber week", All: true, Since: monday(0, 0), Until: monday(12, 0)}
	frozen := &api.Assignment{ConfigItems: office.ConfigItems, Freezes: []api.Freeze{freeze}}
	bad := &api.Assignment{ConfigItems: map[string]string{api.ConfigUpdateWindows: "Mnn 08:00-09:00 UTC"}}

	cases := []struct {
		name   string
		spec   clusterconfig.Spec
		a      *api.Assignment
		st     clusterconfig.Status
		now    time.Time
		action Action
		next   time.Time
		reason string
	}{
		{"inside the window a new version starts", clusterconfig.Spec{}, office, clusterconfig.Status{}, monday(9, 0), Converge, time.Time{}, "new version"},
		{"before the window it waits for the opening", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: "old"}, monday(7, 30), WaitForWindow, monday(8, 0), "opens at 2026-12-07T08:00:00Z"},
		{"after the window it waits for the next day", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: "old"}, monday(17, 0), WaitForWindow, monday(8, 0).AddDate(0, 0, 1), "update window"},
		{"a version under way finishes after the window closed", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: "old", NextVersion: v}, monday(18, 0), Converge, time.Time{}, "under way"},
		{"another version under way does not open the window", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: "old", NextVersion: "other"}, monday(18, 0), WaitForWindow, monday(8, 0).AddDate(0, 0, 1), "update window"},
		{"at the version nothing waits", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: v}, monday(18, 0), Nothing, time.Time{}, "at the version"},
		{"the way back to the current version does not wait for the window", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: v, NextVersion: "broken"}, monday(18, 0), Converge, time.Time{}, "back to the current version"},
		{"node work of the current version goes on outside the window", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: v, Rolls: []nodes.RollState{{Pool: "p"}}}, monday(18, 0), NodeWork, time.Time{}, "rolled"},
		{"a known broken version does not wait", clusterconfig.Spec{}, office, clusterconfig.Status{CurrentVersion: "old", FailedVersion: v}, monday(18, 0), Nothing, time.Time{}, "failed to render"},
		{"a freeze holds even inside the window", clusterconfig.Spec{}, frozen, clusterconfig.Status{CurrentVersion: "old"}, monday(9, 0), Blocked, time.Time{}, "frozen at the registry (the whole fleet) until 2026-12-07T12:00:00Z by alice: cyber week"},
		{"a freeze holds at the version too", clusterconfig.Spec{}, frozen, clusterconfig.Status{CurrentVersion: Version("c1", frozen)}, monday(9, 0), Blocked, time.Time{}, "cyber week"},
		{"an ended freeze, by the agent's clock, holds nothing", clusterconfig.Spec{}, frozen, clusterconfig.Status{CurrentVersion: "old"}, monday(12, 0), Converge, time.Time{}, "new version"},
		{"a block wins over the window", clusterconfig.Spec{Block: &clusterconfig.Block{Reason: "migration"}}, office, clusterconfig.Status{}, monday(9, 0), Blocked, time.Time{}, "migration"},
		{"a window that does not parse holds every new version", clusterconfig.Spec{}, bad, clusterconfig.Status{CurrentVersion: "old"}, monday(9, 0), WaitForWindow, time.Time{}, "does not parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Decide(c.spec, c.a, "c1", c.st, c.now)
			assert.Equal(t, c.action, d.Action, d.Reason)
			assert.Contains(t, d.Reason, c.reason)
			assert.True(t, c.next.Equal(d.NextWindow), "next window %s, want %s", d.NextWindow, c.next)
		})
	}
	d := Decide(clusterconfig.Spec{}, bad, "c1", clusterconfig.Status{}, monday(9, 0))
	require.Error(t, d.WindowErr)
	var perr *window.ParseError
	assert.True(t, errors.As(d.WindowErr, &perr), "the parse error, with its position, reaches the problem: %v", d.WindowErr)
	assert.Contains(t, d.WindowErr.Error(), "update_windows")
}

func TestClockSkewIsAProblemBeyondAMinute(t *testing.T) {
	var c clockSkew
	local := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	c.observe(time.Time{}, local)
	assert.Empty(t, c.problems(), "an answer without the registry's time tells nothing")
	c.observe(local.Add(-59*time.Second), local)
	assert.Empty(t, c.problems(), "59 s is within the bound")
	c.observe(local.Add(-61*time.Second), local)
	p := c.problems()
	require.Len(t, p, 1)
	assert.Equal(t, api.ProblemTypeBase+"clock-skew", p[0].Type)
	assert.Contains(t, p[0].Detail, "1m1s ahead of the registry's")
	assert.Equal(t, local, p[0].Since)
	c.observe(local.Add(5*time.Minute), local.Add(time.Minute))
	p = c.problems()
	require.Len(t, p, 1)
	assert.Contains(t, p[0].Detail, "4m0s behind")
	assert.Equal(t, local, p[0].Since, "the problem keeps its start while it lasts")
	c.observe(local.Add(2*time.Minute), local.Add(2*time.Minute))
	assert.Empty(t, c.problems(), "a fixed clock ends the problem")
}

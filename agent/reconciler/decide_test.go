package reconciler

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
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
		{"known broken", clusterconfig.Spec{}, a, clusterconfig.Status{CurrentVersion: "old", FailedVersion: v}, Nothing, "failed to render"},
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
			d := Decide(c.spec, c.a, "c1", c.st)
			assert.Equal(t, c.action, d.Action)
			assert.Contains(t, d.Reason, c.reason)
			assert.Equal(t, Version("c1", c.a), d.Version)
		})
	}
}

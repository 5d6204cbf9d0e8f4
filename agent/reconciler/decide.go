package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Version is what the agent converges to: "<commit>#<hash of the
// assignment>", so that a changed config item is a new version just like a
// new commit.
func Version(commit string, a *api.Assignment) string {
	b, _ := json.Marshal(a)
	sum := sha256.Sum256(b)
	return commit + "#" + hex.EncodeToString(sum[:])[:12]
}

// Action is what a reconcile does.
type Action int

// The actions of a reconcile.
const (
	// Nothing: the cluster is at the version, or the version is known broken.
	Nothing Action = iota
	// Suspended: the ClusterConfig asks for no reconciling at all.
	Suspended
	// Blocked: a block forbids any change.
	Blocked
	// Converge: render and apply the version.
	Converge
	// NodeWork: the cluster is at the version, and node pools that left the
	// registry still have nodes to drain or stacks to delete, or outdated
	// nodes are being replaced.
	NodeWork
	// Decommission: tear the cluster's stacks down.
	Decommission
)

// Decision is a reconcile's action, the version and why.
type Decision struct {
	Action  Action
	Version string
	Reason  string
}

// Decide chooses what to do, from the in-cluster spec, the assignment, the
// branch head and the previous status alone.
func Decide(spec clusterconfig.Spec, a *api.Assignment, head string, st clusterconfig.Status) Decision {
	version := Version(head, a)
	switch {
	case spec.Suspend:
		return Decision{Action: Suspended, Version: version, Reason: "suspended in the cluster (ClusterConfig spec.suspend)"}
	case spec.Block != nil:
		return Decision{Action: Blocked, Version: version, Reason: "blocked in the cluster: " + spec.Block.Reason}
	}
	for _, b := range a.Blocks {
		if b.NodePool == "" {
			return Decision{Action: Blocked, Version: version, Reason: fmt.Sprintf("blocked at the registry by %s: %s", b.By, b.Reason)}
		}
	}
	switch a.Cluster.LifecycleStatus {
	case api.LifecycleDecommissionRequested, api.LifecycleDecommissioned:
		return Decision{Action: Decommission, Version: version, Reason: "the registry asks to decommission the cluster"}
	}
	switch version {
	case st.CurrentVersion:
		if len(st.PendingNodePools) > 0 || len(st.Rolls) > 0 {
			return Decision{Action: NodeWork, Version: version, Reason: "node pools are being retired or rolled"}
		}
		return Decision{Action: Nothing, Version: version, Reason: "at the version"}
	case st.FailedVersion:
		return Decision{Action: Nothing, Version: version, Reason: "the version failed to render; waiting for a new commit or assignment"}
	}
	return Decision{Action: Converge, Version: version, Reason: "new version"}
}

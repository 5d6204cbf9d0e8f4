package reconciler

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/window"
)

// Version is what the agent converges to: "<commit>#<hash of the
// assignment>", so that a changed config item is a new version just like a
// new commit. The update windows are left out: they say when a version may
// start, not what it is, so a new window never makes a version of its own.
func Version(commit string, a *api.Assignment) string {
	b, _ := json.Marshal(withoutWindows(a))
	sum := sha256.Sum256(b)
	return commit + "#" + hex.EncodeToString(sum[:])[:12]
}

// withoutWindows is the assignment without its window config items, at
// the cluster and at every pool.
func withoutWindows(a *api.Assignment) *api.Assignment {
	plain := *a
	plain.ConfigItems = dropWindows(a.ConfigItems)
	plain.NodePools = make([]api.AssignedNodePool, len(a.NodePools))
	for i, p := range a.NodePools {
		p.ConfigItems = dropWindows(p.ConfigItems)
		plain.NodePools[i] = p
	}
	if a.NodePools == nil {
		plain.NodePools = nil
	}
	return &plain
}

func dropWindows(items map[string]string) map[string]string {
	_, u := items[api.ConfigUpdateWindows]
	_, n := items[api.ConfigNodeUpdateWindows]
	if !u && !n {
		return items
	}
	out := maps.Clone(items)
	delete(out, api.ConfigUpdateWindows)
	delete(out, api.ConfigNodeUpdateWindows)
	return out
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
	// WaitForWindow: a new version waits for the cluster's update window.
	// Node work of the current version goes on meanwhile.
	WaitForWindow
)

// Decision is a reconcile's action, the version and why.
type Decision struct {
	Action  Action
	Version string
	Reason  string
	// NextWindow is when the update window opens, for WaitForWindow; zero
	// when the window does not parse (WindowErr), and then no version starts.
	NextWindow time.Time
	WindowErr  error
}

// Decide chooses what to do, from the in-cluster spec, the assignment, the
// branch head, the previous status and the agent's clock alone.
func Decide(spec clusterconfig.Spec, a *api.Assignment, head string, st clusterconfig.Status, now time.Time) Decision {
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
	for _, f := range a.Freezes {
		if f.ActiveAt(now) {
			return Decision{Action: Blocked, Version: version, Reason: FrozenReason(f)}
		}
	}
	switch a.Cluster.LifecycleStatus {
	case api.LifecycleDecommissionRequested, api.LifecycleDecommissioned:
		return Decision{Action: Decommission, Version: version, Reason: "the registry asks to decommission the cluster"}
	}
	switch version {
	case st.CurrentVersion:
		if interrupted(st, version) {
			// A version that failed may have left some of its objects or
			// stacks behind: coming back to the current version is a
			// converge, like a drift correction restoring what was
			// approved, and not held by a window.
			return Decision{Action: Converge, Version: version, Reason: "back to the current version after " + st.NextVersion + " did not complete"}
		}
		if len(st.PendingNodePools) > 0 || len(st.Rolls) > 0 {
			return Decision{Action: NodeWork, Version: version, Reason: "node pools are being retired or rolled"}
		}
		return Decision{Action: Nothing, Version: version, Reason: "at the version"}
	case st.FailedVersion:
		return Decision{Action: Nothing, Version: version, Reason: "the version failed to render; waiting for a new commit or assignment"}
	case st.NextVersion:
		// Under way when the window closed: it finishes, never half-applied.
		return Decision{Action: Converge, Version: version, Reason: "finishing the version under way"}
	}
	return decideWindow(a.ConfigItems[api.ConfigUpdateWindows], version, now)
}

// interrupted reports whether another version than this one was started
// and did not complete: failed to render, to update a stack, to apply or to
// become healthy.
func interrupted(st clusterconfig.Status, version string) bool {
	return st.NextVersion != "" && st.NextVersion != version
}

// decideWindow lets a new version start inside the update window, and
// otherwise names the next opening. A window that does not parse (the
// registry refuses such values, so it came from an older registry) holds
// every version: when it is unclear whether a change is allowed, none is.
func decideWindow(windows, version string, now time.Time) Decision {
	s, err := window.Parse(windows)
	if err != nil {
		err = fmt.Errorf("config item %s %q: %w", api.ConfigUpdateWindows, windows, err)
		return Decision{Action: WaitForWindow, Version: version, Reason: "the update window does not parse; no new version starts", WindowErr: err}
	}
	if s.Contains(now) {
		return Decision{Action: Converge, Version: version, Reason: "new version"}
	}
	next := s.NextOpening(now)
	return Decision{Action: WaitForWindow, Version: version, NextWindow: next,
		Reason: fmt.Sprintf("new version waits for the update window (%s), which opens at %s", windows, next.UTC().Format(time.RFC3339))}
}

// FrozenReason says why a freeze holds the cluster.
func FrozenReason(f api.Freeze) string {
	return fmt.Sprintf("frozen at the registry (%s) until %s by %s: %s", f.Scope(), f.Until.UTC().Format(time.RFC3339), f.By, f.Reason)
}

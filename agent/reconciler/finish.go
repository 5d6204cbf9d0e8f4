package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Condition types, per the kstatus conventions.
const (
	ReadyCondition       = "Ready"
	ReconcilingCondition = "Reconciling"
	StalledCondition     = "Stalled"
)

// Reason is why a condition is as it is, and why an Event was recorded:
// one of the constants here or in events.go, never a message's wording, so
// that alerts and tests can match on it.
type Reason string

// The conditions' reasons, which their Events share.
const (
	ReasonApplied   Reason = "Applied"
	ReasonUpToDate  Reason = "UpToDate"
	ReasonFailed    Reason = "ReconciliationFailed"
	ReasonBlocked   Reason = "Blocked"
	ReasonBroken    Reason = "RenderFailed"
	ReasonSuspended Reason = "Suspended"
	// ReasonWaitingForWindow: the cluster is at an approved version and a
	// newer one waits for the update window.
	ReasonWaitingForWindow Reason = "WaitingForWindow"
	// ReasonDecommissioning: the cluster's stacks are being deleted.
	ReasonDecommissioning Reason = "Decommissioning"
	// ReasonRollingNodes: outdated nodes are being replaced, or the nodes
	// of retired pools drained; the cluster is Reconciling meanwhile.
	ReasonRollingNodes Reason = "RollingNodes"
	// ReasonProgressing: a version is being rendered, or its manifests
	// applied (stage.go).
	ReasonProgressing Reason = "Progressing"
	// ReasonUpdatingInfrastructure: the cluster's CloudFormation stacks are
	// being brought to a version.
	ReasonUpdatingInfrastructure Reason = "UpdatingInfrastructure"
	// ReasonWaitingForHealth: a version's objects are applied and the agent
	// waits for them to become healthy.
	ReasonWaitingForHealth Reason = "WaitingForHealth"
)

func metaTime(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

// finish writes the outcome of a reconcile in one place: the ClusterConfig
// status and conditions, an Event, the metrics and the registry's status.
func (r *Reconciler) finish(ctx context.Context, cc *clusterconfig.ClusterConfig, o *outcome) {
	before := cc.DeepCopyObject().(*clusterconfig.ClusterConfig)
	now := r.now()
	if o.problem != nil {
		o.problem.Since = problemSince(cc.Status.Problems, *o.problem, now)
		o.status.Problems = []api.StatusProblem{*o.problem}
	} else if !o.keepProblems && !o.appliedNow {
		o.status.Problems = nil
	}
	cc.Status = o.status
	cc.Status.FormatVersion = clusterconfig.StatusFormat
	cc.Status.ObservedGeneration = cc.Generation
	r.setConditions(cc, o)
	r.config = nil
	held := progressHeld(before.Status, cc.Status, r.statusWritten, now)
	if held {
		r.config = before
	} else if err := r.writeStatus(ctx, before, cc); err != nil {
		r.log.Error(err, "writing the ClusterConfig status")
	} else {
		r.config = cc
	}
	r.emit(before, cc, o)
	r.metrics.record(o, now)
	var problems []api.StatusProblem
	if o.blockReason != "" {
		problems = append(problems, api.StatusProblem{Type: api.ProblemTypeBase + "blocked", Title: o.blockReason, Since: now})
	}
	problems = append(problems, r.clock.problems()...)
	if r.drift != nil {
		problems = append(problems, r.drift.Problems()...)
	}
	r.report(ctx, cc.Status, o.phase, problems, o.pools...)
	r.wakeAt = nodes.NextWake(o.pools)
	if held {
		// The progress held back is written at the reconcile this wakes.
		r.wakeAt = earliest(r.wakeAt, r.statusWritten.Add(progressWriteInterval))
	}
	r.windowAt = time.Time{}
	if o.waiting != nil {
		r.windowAt = o.waiting.NextWindow
	}
}

// writeStatus patches the status when it changed; a steady-state reconcile
// changes nothing and so writes nothing.
func (r *Reconciler) writeStatus(ctx context.Context, before, cc *clusterconfig.ClusterConfig) error {
	if sameJSON(before.Status, cc.Status) {
		return nil
	}
	if err := r.kube.Status().Patch(ctx, cc, client.MergeFrom(before)); err != nil {
		return err
	}
	r.statusWritten = r.now()
	return nil
}

// progressWriteInterval is the least time between two status writes that
// change only the node pools' progress: while a node drains, the loop
// runs at each pod that leaves and each decision on a refused pod, and
// each moves the next forced eviction.
const progressWriteInterval = 5 * time.Second

// progressHeld says whether a status that changed only in its progress,
// the node pools' counts and next forced eviction and the conditions'
// messages that tell them, waits: when the last write was less than
// progressWriteInterval ago. A change of anything else (the rolls, a
// condition's status or reason, a version) is written at once, and with it
// the progress.
func progressHeld(before, after clusterconfig.Status, written, now time.Time) bool {
	if now.Sub(written) >= progressWriteInterval || sameJSON(before, after) {
		return false
	}
	return sameJSON(withoutProgress(before), withoutProgress(after))
}

func withoutProgress(st clusterconfig.Status) clusterconfig.Status {
	st.NodePools = nil
	st.Conditions = slices.Clone(st.Conditions)
	for i := range st.Conditions {
		st.Conditions[i].Message = ""
	}
	return st
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// sameJSON compares statuses as the API server stores them: what encodes
// the same is the same, whatever the types inside (equality.Semantic knows
// no time.Time).
func sameJSON(a, b clusterconfig.Status) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}

// problemSince keeps the start of a problem that is still there.
func problemSince(previous []api.StatusProblem, p api.StatusProblem, now time.Time) time.Time {
	for _, old := range previous {
		if old.Type == p.Type && old.Title == p.Title && !old.Since.IsZero() {
			return old.Since
		}
	}
	return now
}

// setConditions sets the conditions for an outcome from none, keeping the
// transition time of each whose status did not change: kstatus and alerts
// read it as how long a condition has held, and a time that moved at each
// reconcile would also make each one write the status.
func (r *Reconciler) setConditions(cc *clusterconfig.ClusterConfig, o *outcome) {
	previous := slices.Clone(cc.Status.Conditions)
	conditions.Delete(cc, ReconcilingCondition)
	conditions.Delete(cc, StalledCondition)
	switch {
	case o.suspended:
		conditions.MarkUnknown(cc, ReadyCondition, string(ReasonSuspended), "%s", o.blockReason)
	case o.blockReason != "":
		conditions.MarkFalse(cc, ReadyCondition, string(ReasonBlocked), "%s", o.blockReason)
	case o.problem != nil && o.stalled:
		conditions.MarkStalled(cc, string(ReasonBroken), "%s", o.problem.Detail)
		conditions.MarkFalse(cc, ReadyCondition, string(ReasonBroken), "%s: %s", o.problem.Title, o.problem.Detail)
	case o.problem != nil:
		conditions.MarkReconciling(cc, string(ReasonFailed), "retrying %s", o.status.NextVersion)
		conditions.MarkFalse(cc, ReadyCondition, string(ReasonFailed), "%s: %s", o.problem.Title, o.problem.Detail)
	case o.phase == api.PhaseRollingNodes:
		// kstatus reads Reconciling=True as InProgress: the version is
		// applied, its nodes are not all replaced yet.
		conditions.MarkReconciling(cc, string(ReasonRollingNodes), "at version %s; %s", o.status.CurrentVersion, rollSummary(o.pools))
		conditions.MarkUnknown(cc, ReadyCondition, string(ReasonRollingNodes), "at version %s; %s", o.status.CurrentVersion, rollSummary(o.pools))
	case o.phase == api.PhaseDecommissioning || o.phase == api.PhaseDecommissioned:
		conditions.MarkFalse(cc, ReadyCondition, string(ReasonDecommissioning), "the registry asks to decommission the cluster (%s)", o.phase)
	case o.appliedNow:
		conditions.MarkTrue(cc, ReadyCondition, string(ReasonApplied), "applied version %s", o.status.CurrentVersion)
	case o.waiting != nil:
		// Ready stays true: the cluster runs an approved version, and a
		// closed window is the owners' wish, not a fault to alert on.
		conditions.MarkTrue(cc, ReadyCondition, string(ReasonWaitingForWindow), "at version %s; %s", o.status.CurrentVersion, o.waiting.Reason)
	case o.status.CurrentVersion != "":
		conditions.MarkTrue(cc, ReadyCondition, string(ReasonUpToDate), "at version %s", o.status.CurrentVersion)
	}
	keepTransitionTimes(cc.Status.Conditions, previous)
}

// keepTransitionTimes gives each condition whose status is the one it had
// before that condition's transition time.
func keepTransitionTimes(now, before []metav1.Condition) {
	for i := range now {
		if old := apimeta.FindStatusCondition(before, now[i].Type); old != nil && old.Status == now[i].Status {
			now[i].LastTransitionTime = old.LastTransitionTime
		}
	}
}

// rollSummary says what a roll has left, pool by pool.
func rollSummary(pools []api.NodePoolProgress) string {
	parts := make([]string, 0, len(pools))
	for _, p := range pools {
		if p.Outdated > 0 || p.Draining > 0 {
			parts = append(parts, fmt.Sprintf("pool %s: %d of %d nodes outdated, %d draining", p.Name, p.Outdated, p.NodesTotal, p.Draining))
		}
	}
	if len(parts) == 0 {
		return "replacing nodes"
	}
	return strings.Join(parts, "; ")
}

func (r *Reconciler) emit(before, cc *clusterconfig.ClusterConfig, o *outcome) {
	switch {
	case o.problem != nil:
		events.Publish(r.events, failedEvent(cc, o.problem))
	case o.sameObjects:
		events.Publish(r.events, sameObjectsEvent(cc, o.status.CurrentVersion))
	case o.appliedNow:
		events.Publish(r.events, appliedEvent(cc, o.status.CurrentVersion, o.changes))
	case o.blockReason != "":
		events.Publish(r.events, blockedEvent(cc, o.blockReason, o.held))
	case o.waiting != nil && !sameTime(before.Status.NextWindow, cc.Status.NextWindow):
		events.Publish(r.events, waitingForWindowEvent(cc, o.waiting))
	}
}

func sameTime(a, b *metav1.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(b)
}

// report sends the status to the registry; a registry outage is logged and
// never stops the cluster's own reconciling.
func (r *Reconciler) report(ctx context.Context, st clusterconfig.Status, phase string, extra []api.StatusProblem, pools ...api.NodePoolProgress) {
	problems := append(append([]api.StatusProblem{}, st.Problems...), extra...)
	var next *time.Time
	if st.NextWindow != nil {
		next = &st.NextWindow.Time
	}
	var drifted *api.DriftStatus
	if r.drift != nil {
		drifted = r.drift.Status()
	}
	err := r.registry.PutClusterStatus(ctx, r.cfg.ClusterID, &api.ClusterStatus{
		CurrentVersion: st.CurrentVersion, NextVersion: st.NextVersion, LastVersion: st.LastVersion, Phase: phase,
		Problems: problems, NodePools: pools, AgentVersion: r.cfg.AgentVersion, Heartbeat: r.now().UTC(), NextWindow: next,
		Drift: drifted,
	})
	if err != nil && ctx.Err() == nil {
		r.log.Info("reporting status to the registry failed", "error", err.Error())
	}
}

package reconciler

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Event reasons of a reconcile beyond the condition reasons (finish.go),
// which its Events share.
const (
	// ReasonStackUpdated: a CloudFormation stack converged on a version.
	ReasonStackUpdated Reason = "StackUpdated"
	// ReasonNodePoolRetired: a node pool gone from the registry was
	// drained and its stack deleted.
	ReasonNodePoolRetired Reason = "NodePoolRetired"
)

func failedEvent(cc *clusterconfig.ClusterConfig, p *api.StatusProblem) events.Event {
	return events.Event{Regarding: cc, Type: corev1.EventTypeWarning, Reason: string(ReasonFailed), Action: "Reconcile",
		Message: p.Title + ": " + p.Detail}
}

func sameObjectsEvent(cc *clusterconfig.ClusterConfig, version string) events.Event {
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonApplied), Action: "Apply",
		Message: fmt.Sprintf("version %s renders the same objects as the last one; nothing to apply", version)}
}

// appliedEvent says what the apply of version changed, if it is known.
func appliedEvent(cc *clusterconfig.ClusterConfig, version string, changes *apply.Result) events.Event {
	summary := ""
	if changes != nil {
		summary = "; " + changes.Applied.String()
		if changes.Pruned != nil && len(changes.Pruned.Entries) > 0 {
			summary += "; pruned: " + changes.Pruned.String()
		}
	}
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonApplied), Action: "Apply",
		Message: fmt.Sprintf("applied version %s%s", version, summary)}
}

// blockedEvent says why the cluster is held and, when held names one, the
// version that waits for the block to be lifted: a new commit shows in an
// Event of its own.
func blockedEvent(cc *clusterconfig.ClusterConfig, reason, held string) events.Event {
	message := reason
	if held != "" {
		message = fmt.Sprintf("%s; version %s waits until the hold ends", reason, held)
	}
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonBlocked), Action: "Reconcile", Message: message}
}

func waitingForWindowEvent(cc *clusterconfig.ClusterConfig, d *Decision) events.Event {
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonWaitingForWindow), Action: "Reconcile", Message: d.Reason}
}

func stackUpdatedEvent(cc *clusterconfig.ClusterConfig, stack string, action cloud.Action, version string) events.Event {
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonStackUpdated), Action: "UpdateStack",
		Message: fmt.Sprintf("stack %s: %s for version %s", stack, action, version)}
}

func nodePoolRetiredEvent(cc *clusterconfig.ClusterConfig, pool, stack string) events.Event {
	return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: string(ReasonNodePoolRetired), Action: "Retire",
		Message: fmt.Sprintf("node pool %s left the registry: its nodes were drained and stack %s deleted", pool, stack)}
}

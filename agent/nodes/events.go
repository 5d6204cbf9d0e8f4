package nodes

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/agent/events"
)

// Event reasons of a node roll.
const (
	// ReasonDrainStarted: an outdated node was selected for replacement.
	ReasonDrainStarted = "DrainStarted"
	// ReasonInstanceTerminated: a drained node's instance was terminated.
	ReasonInstanceTerminated = "InstanceTerminated"
	// ReasonForcedEviction: a pod whose eviction a PodDisruptionBudget
	// refused was deleted, every rule of the drain SLA allowing it.
	ReasonForcedEviction = "ForcedEviction"
	// ReasonForceEvictionScheduled: a refused pod will be deleted not
	// before the time its forecast names.
	ReasonForceEvictionScheduled = "ForceEvictionScheduled"
)

func drainStartedEvent(n *corev1.Node, pods int) events.Event {
	return events.Event{Regarding: n, Type: corev1.EventTypeNormal, Reason: ReasonDrainStarted, Action: "Drain",
		Message: fmt.Sprintf("outdated node selected for replacement; %d pods to move", pods)}
}

func instanceTerminatedEvent(n *corev1.Node) events.Event {
	return events.Event{Regarding: n, Type: corev1.EventTypeNormal, Reason: ReasonInstanceTerminated, Action: "Terminate",
		Message: fmt.Sprintf("drained; instance %s terminated", InstanceID(n.Spec.ProviderID))}
}

func forcedEvictionEvent(pod *corev1.Pod, n *corev1.Node) events.Event {
	return events.Event{Regarding: pod, Related: n, Type: corev1.EventTypeWarning, Reason: ReasonForcedEviction, Action: "Delete",
		Message: "deleted after its PodDisruptionBudget refused the eviction: every rule of the drain SLA allows it"}
}

// forceEvictionScheduledEvent says when a refused pod may be forced:
// forecast is its ForceEvictAfterAnnotation, d the decision that holds it.
func forceEvictionScheduledEvent(pod *corev1.Pod, forecast string, d Decision) events.Event {
	return events.Event{Regarding: pod, Type: corev1.EventTypeNormal, Reason: ReasonForceEvictionScheduled, Action: "Drain",
		Message: fmt.Sprintf("its PodDisruptionBudget refuses the eviction; it will be deleted not before %s (held by %s)", forecast, d.Rule)}
}

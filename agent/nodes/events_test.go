package nodes

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/events"
)

// The roll's Events keep the reasons and messages that users, alerts and
// the roll benchmark read.
func TestRollEvents(t *testing.T) {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/i-0123"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	for _, c := range []struct {
		got  events.Event
		want events.Event
	}{
		{drainStartedEvent(n, 3), events.Event{Regarding: n, Type: corev1.EventTypeNormal, Reason: "DrainStarted", Action: "Drain",
			Message: "outdated node selected for replacement; 3 pods to move"}},
		{instanceTerminatedEvent(n), events.Event{Regarding: n, Type: corev1.EventTypeNormal, Reason: "InstanceTerminated", Action: "Terminate",
			Message: "drained; instance i-0123 terminated"}},
		{forcedEvictionEvent(pod, n), events.Event{Regarding: pod, Related: n, Type: corev1.EventTypeWarning, Reason: "ForcedEviction", Action: "Delete",
			Message: "deleted after its PodDisruptionBudget refused the eviction: every rule of the drain SLA allows it"}},
		{forceEvictionScheduledEvent(pod, "2024-03-01T12:00:00Z", Decision{Action: Wait, Rule: RuleGracePeriod}),
			events.Event{Regarding: pod, Type: corev1.EventTypeNormal, Reason: "ForceEvictionScheduled", Action: "Drain",
				Message: "its PodDisruptionBudget refuses the eviction; it will be deleted not before 2024-03-01T12:00:00Z (held by drain_grace_period)"}},
	} {
		assert.Equal(t, c.want, c.got, c.want.Reason)
	}
}

package reconciler

import (
	"testing"

	"github.com/fluxcd/pkg/ssa"
	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// A reconcile's Events keep their reasons and messages.
func TestReconcileEvents(t *testing.T) {
	cc := &clusterconfig.ClusterConfig{}
	normal := func(reason, action, message string) events.Event {
		return events.Event{Regarding: cc, Type: corev1.EventTypeNormal, Reason: reason, Action: action, Message: message}
	}
	changes := &apply.Result{Applied: ssa.NewChangeSet(), Pruned: ssa.NewChangeSet()}
	for _, c := range []struct {
		got, want events.Event
	}{
		{failedEvent(cc, &api.StatusProblem{Title: "The version cannot be rendered", Detail: "100% broken"}),
			events.Event{Regarding: cc, Type: corev1.EventTypeWarning, Reason: "ReconciliationFailed", Action: "Reconcile",
				Message: "The version cannot be rendered: 100% broken"}},
		{sameObjectsEvent(cc, "abc#123"), normal("Applied", "Apply", "version abc#123 renders the same objects as the last one; nothing to apply")},
		{appliedEvent(cc, "abc#123", nil), normal("Applied", "Apply", "applied version abc#123")},
		{appliedEvent(cc, "abc#123", changes), normal("Applied", "Apply", "applied version abc#123; "+changes.Applied.String())},
		{blockedEvent(cc, "blocked: incident 42", ""), normal("Blocked", "Reconcile", "blocked: incident 42")},
		{blockedEvent(cc, "blocked: incident 42", "abc#123"), normal("Blocked", "Reconcile", "blocked: incident 42; version abc#123 waits until the hold ends")},
		{waitingForWindowEvent(cc, &Decision{Reason: "waiting for the update window"}), normal("WaitingForWindow", "Reconcile", "waiting for the update window")},
		{stackUpdatedEvent(cc, "caravan-c1", cloud.Update, "abc#123"), normal("StackUpdated", "UpdateStack", "stack caravan-c1: update for version abc#123")},
		{nodePoolRetiredEvent(cc, "workers", "caravan-c1-workers"),
			normal("NodePoolRetired", "Retire", "node pool workers left the registry: its nodes were drained and stack caravan-c1-workers deleted")},
	} {
		assert.Equal(t, c.want, c.got, c.want.Message)
	}
}

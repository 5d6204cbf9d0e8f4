// Package events records the agent's Kubernetes Events. Each package that
// records some names their reasons as constants and builds them in its own
// events.go, one constructor per Event (as Karpenter's events packages do);
// Publish hands them to the recorder. A reason or a message is then never
// written where the Event is recorded, and a test can read what an Event
// says without a recorder.
package events

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
)

// Recorder records Events: client-go's events recorder, as the agent's
// wiring makes it.
type Recorder = events.EventRecorder

// Event is one Kubernetes Event about Regarding, and Related if set.
type Event struct {
	Regarding runtime.Object
	Related   runtime.Object
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type   string
	Reason string
	// Action is what the agent did, or failed to do, to Regarding.
	Action  string
	Message string
}

// Publish records the Events, in order.
func Publish(r Recorder, evs ...Event) {
	for _, e := range evs {
		r.Eventf(e.Regarding, e.Related, e.Type, e.Reason, e.Action, "%s", e.Message)
	}
}

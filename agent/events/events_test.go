package events

import (
	"testing"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
)

// Publish hands each Event to the recorder as it is: a message is never
// read as a format, so a '%' in it (a problem's detail, a user's reason)
// stays as written.
func TestPublishRecordsTheMessageAsItIs(t *testing.T) {
	r := events.NewFakeRecorder(2)
	r.Verbose = true
	node := &corev1.Node{}
	Publish(r,
		Event{Regarding: node, Type: corev1.EventTypeNormal, Reason: "Reason", Action: "Act", Message: "100% %s done"},
		Event{Regarding: node, Related: node, Type: corev1.EventTypeWarning, Reason: "Other", Action: "Act2", Message: "second"})
	assert.Equal(t, "Normal Reason Act 100% %s done", <-r.Events)
	assert.Equal(t, "Warning Other Act2 second", <-r.Events)
}

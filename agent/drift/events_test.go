package drift

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Drift's Events go on the object and on the ClusterConfig, which names
// the object, with the reasons and messages users and the e2e tests read.
func TestDriftEvents(t *testing.T) {
	obj, cc := &unstructured.Unstructured{}, (&Tracker{}).clusterConfigRef()
	both := func(typ, reason, action, message string) []events.Event {
		return []events.Event{
			{Regarding: obj, Type: typ, Reason: reason, Action: action, Message: message},
			{Regarding: cc, Type: typ, Reason: reason, Action: action, Message: "ConfigMap default/a: " + message},
		}
	}
	corrected := api.DriftCorrection{Object: "ConfigMap default/a", Action: api.DriftCorrected, Fields: []string{"data.mode"}, Manager: "kubectl-edit"}
	reported := api.DriftCorrection{Object: "ConfigMap default/a", Action: api.DriftReported, Fields: []string{"data.mode"}, Manager: "kubectl-edit"}
	fight := api.DriftFight{Object: "ConfigMap default/a", Fields: []string{"data.mode"}, Manager: "hpa", Corrections: 3,
		Until: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)}
	assert.Equal(t, both(corev1.EventTypeNormal, "DriftCorrected", "Correct", describe(corrected)), driftCorrectedEvents(obj, cc, corrected))
	assert.Equal(t, both(corev1.EventTypeWarning, "DriftDetected", "Detect", describe(reported)+"; drift_correction is report"),
		driftDetectedEvents(obj, cc, reported, ""))
	assert.Equal(t, both(corev1.EventTypeWarning, "DriftHeld", "Detect", describe(reported)+"; held, blocked: incident 42"),
		driftDetectedEvents(obj, cc, reported, "blocked: incident 42"))
	assert.Equal(t, both(corev1.EventTypeWarning, "DriftFight", "Correct",
		"hpa changed [data.mode] back 3 times; Caravan stopped correcting it until 2024-03-01T12:00:00Z or a version that changes it"),
		driftFightEvents(obj, cc, fight))
}

package drift

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Event reasons of drift correction. Each Event is recorded twice: on the
// object, and on the ClusterConfig with the object's name in front.
const (
	ReasonDriftCorrected = "DriftCorrected"
	ReasonDriftDetected  = "DriftDetected"
	ReasonDriftHeld      = "DriftHeld"
	ReasonDriftFight     = "DriftFight"
)

// onBoth is an Event on the object, and the same on the ClusterConfig cc,
// naming the object.
func onBoth(obj, cc runtime.Object, object string, e events.Event) []events.Event {
	onConfig := e
	e.Regarding = obj
	onConfig.Regarding, onConfig.Message = cc, object+": "+e.Message
	return []events.Event{e, onConfig}
}

// driftCorrectedEvents say what a correction set back, or that it
// re-created the object.
func driftCorrectedEvents(obj, cc runtime.Object, c api.DriftCorrection) []events.Event {
	return onBoth(obj, cc, c.Object, events.Event{Type: corev1.EventTypeNormal, Reason: ReasonDriftCorrected, Action: "Correct",
		Message: describe(c)})
}

// driftDetectedEvents report a drift left in place: held by a block or a
// suspension (held names it), or because drift_correction is report.
func driftDetectedEvents(obj, cc runtime.Object, c api.DriftCorrection, held string) []events.Event {
	reason, note := ReasonDriftDetected, describe(c)
	if held != "" {
		reason, note = ReasonDriftHeld, note+"; held, "+held
	} else {
		note += "; drift_correction is report"
	}
	return onBoth(obj, cc, c.Object, events.Event{Type: corev1.EventTypeWarning, Reason: reason, Action: "Detect", Message: note})
}

// driftFightEvents say that Caravan stopped correcting an object another
// manager keeps changing back.
func driftFightEvents(obj, cc runtime.Object, f api.DriftFight) []events.Event {
	return onBoth(obj, cc, f.Object, events.Event{Type: corev1.EventTypeWarning, Reason: ReasonDriftFight, Action: "Correct",
		Message: fightDetail(f)})
}

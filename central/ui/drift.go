package ui

import (
	"fmt"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// driftView is a cluster's drift in one cell of the fleet: its fights
// first, which need a person, then what the mode made of the drift. Title
// says more, for a tooltip.
type driftView struct {
	// Class colours the state: drift-fight, drift-enabled, drift-report,
	// drift-disabled, or drift-unknown when the agent reports no drift.
	Class string
	Text  string
	Title string
}

func driftOf(s *api.ClusterStatus) driftView {
	if s == nil || s.Drift == nil {
		return driftView{Class: "drift-unknown", Text: "–", Title: "the agent reports no drift"}
	}
	d := s.Drift
	v := driftView{Class: "drift-" + d.Mode, Title: fmt.Sprintf("drift_correction %s: %d detected, %d corrected", d.Mode, d.Detected, d.Corrected)}
	v.Text = d.Summary()
	if len(d.Fights) == 0 {
		return v
	}
	fights := make([]string, len(d.Fights))
	for i, f := range d.Fights {
		fights[i] = f.Object
		if f.Manager != "" {
			fights[i] += " (with " + f.Manager + ")"
		}
	}
	v.Class = "drift-fight"
	v.Title = "left alone, another manager keeps changing them back: " + strings.Join(fights, ", ") + "; " + v.Title
	return v
}

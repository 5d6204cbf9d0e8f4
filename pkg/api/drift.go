package api

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// Drift correction modes, the values of the config item drift_correction.
const (
	// DriftEnabled corrects drift as soon as the agent sees it.
	DriftEnabled = "enabled"
	// DriftReport detects and reports drift and changes nothing.
	DriftReport = "report"
	// DriftDisabled neither reports nor corrects; the watches stay, for
	// the applies that skip what is unchanged.
	DriftDisabled = "disabled"
)

// ProblemDriftFight is the problem type of an object whose fields another
// field manager keeps changing back; the agent stopped correcting it.
const ProblemDriftFight = ProblemTypeBase + "drift-fight"

// DriftKeep is how many recent corrections a status keeps.
const DriftKeep = 20

// DriftStatus is what an agent found and corrected between versions: hand
// edits and deletions of the objects it applied.
type DriftStatus struct {
	// Mode is the config item drift_correction in force.
	Mode string `json:"mode"`
	// Detected counts drifted objects since the agent started leading;
	// Corrected those it re-applied or re-created.
	Detected  int64 `json:"detected"`
	Corrected int64 `json:"corrected"`
	// Recent are the last DriftKeep detections, newest first.
	Recent []DriftCorrection `json:"recent,omitempty"`
	// Fights are the objects the agent stopped correcting because another
	// field manager changes them back again and again.
	Fights []DriftFight `json:"fights,omitempty"`
}

// DriftCorrection is one drifted object and what the agent did about it.
type DriftCorrection struct {
	// Object names it as "Kind namespace/name" ("Kind name" when cluster-scoped).
	Object string `json:"object"`
	// Action is corrected (re-applied), recreated (it had been deleted) or
	// reported (drift_correction is report, or a block holds corrections).
	Action string `json:"action"`
	// Fields are the fields Caravan sets that another manager had changed,
	// as field paths (spec.replicas, data.key).
	Fields []string `json:"fields,omitempty"`
	// Manager is the field manager that had changed them, when known.
	Manager string    `json:"manager,omitempty"`
	At      time.Time `json:"at"`
}

// Drift correction actions.
const (
	DriftCorrected = "corrected"
	DriftRecreated = "recreated"
	DriftReported  = "reported"
)

// DriftFight is an object another field manager keeps changing back.
type DriftFight struct {
	Object      string    `json:"object"`
	Fields      []string  `json:"fields,omitempty"`
	Manager     string    `json:"manager,omitempty"`
	Corrections int       `json:"corrections"`
	Since       time.Time `json:"since"`
	// Until is when the agent tries to correct the object again, unless a
	// version that changes it comes first.
	Until time.Time `json:"until"`
}

// DriftedObject is an object whose live state differs from the cluster's
// version right now, as a plan reports it.
type DriftedObject struct {
	Object  string   `json:"object"`
	Fields  []string `json:"fields,omitempty"`
	Manager string   `json:"manager,omitempty"`
	// Deleted: the object is missing from the cluster.
	Deleted bool `json:"deleted,omitempty"`
	// Held says why it is not corrected: one of DriftHolds, or empty when
	// it is about to be.
	Held string `json:"held,omitempty"`
}

// Why a drifted object is not corrected.
const (
	// DriftHeldReport: drift_correction is report.
	DriftHeldReport = DriftReport
	// DriftHeldDisabled: drift_correction is disabled.
	DriftHeldDisabled = DriftDisabled
	// DriftHeldAnnotation: the object is annotated caravan.io/reconcile: disabled.
	DriftHeldAnnotation = "annotation"
	// DriftHeldFight: another field manager keeps changing it back.
	DriftHeldFight = "fight"
	// DriftHeldBlocked: a block, suspension or freeze holds the cluster.
	DriftHeldBlocked = "blocked"
)

var (
	driftModes   = []string{DriftEnabled, DriftReport, DriftDisabled}
	driftActions = []string{DriftCorrected, DriftRecreated, DriftReported}
	// DriftHolds are the values of DriftedObject.Held.
	DriftHolds = []string{DriftHeldReport, DriftHeldDisabled, DriftHeldAnnotation, DriftHeldFight, DriftHeldBlocked}
)

// Summary says in one short line what the agent found between versions:
// the fights first, since an object another manager keeps changing back
// needs a person, then what the mode made of the drift.
func (d *DriftStatus) Summary() string {
	var parts []string
	switch n := len(d.Fights); {
	case n == 1:
		parts = append(parts, "1 fight")
	case n > 1:
		parts = append(parts, strconv.Itoa(n)+" fights")
	}
	switch d.Mode {
	case DriftDisabled:
		parts = append(parts, "disabled")
	case DriftReport:
		parts = append(parts, "report: "+strconv.FormatInt(d.Detected, 10))
	default:
		parts = append(parts, strconv.FormatInt(d.Corrected, 10)+" corrected")
	}
	return strings.Join(parts, ", ")
}

// validate checks a status report's drift; fields are named as in the
// report's JSON, such as drift.recent[0].action.
func (d *DriftStatus) validate(v *ValidationError) {
	if !slices.Contains(driftModes, d.Mode) {
		v.add("drift.mode", "must be one of %s, got %q", strings.Join(driftModes, ", "), d.Mode)
	}
	for field, n := range map[string]int64{"drift.detected": d.Detected, "drift.corrected": d.Corrected} {
		if n < 0 {
			v.add(field, "must not be negative, got %d", n)
		}
	}
	if len(d.Recent) > DriftKeep {
		v.add("drift.recent", "must list at most the newest %d detections, got %d", DriftKeep, len(d.Recent))
	}
	for i, c := range d.Recent {
		field := "drift.recent[" + strconv.Itoa(i) + "]"
		validateDriftObject(v, field, c.Object, c.Fields)
		if !slices.Contains(driftActions, c.Action) {
			v.add(field+".action", "must be one of %s, got %q", strings.Join(driftActions, ", "), c.Action)
		}
		if c.At.IsZero() {
			v.add(field+".at", "must say when the agent saw the drift")
		}
	}
	for i, f := range d.Fights {
		field := "drift.fights[" + strconv.Itoa(i) + "]"
		validateDriftObject(v, field, f.Object, f.Fields)
		if f.Corrections < 0 {
			v.add(field+".corrections", "must not be negative, got %d", f.Corrections)
		}
		if f.Since.IsZero() {
			v.add(field+".since", "must say when the fight began")
		}
		if f.Until.IsZero() {
			v.add(field+".until", "must say when the agent corrects the object again")
		}
	}
}

// validateDrifted checks the drifted objects of a plan's result.
func validateDrifted(v *ValidationError, drifted []DriftedObject) {
	for i, d := range drifted {
		field := "result.drifted[" + strconv.Itoa(i) + "]"
		validateDriftObject(v, field, d.Object, d.Fields)
		if d.Held != "" && !slices.Contains(DriftHolds, d.Held) {
			v.add(field+".held", "must be empty or one of %s, got %q", strings.Join(DriftHolds, ", "), d.Held)
		}
	}
}

// validateDriftObject checks what every drift entry has: the object's
// name and the paths of its drifted fields.
func validateDriftObject(v *ValidationError, field, object string, fields []string) {
	if strings.TrimSpace(object) == "" {
		v.add(field+".object", "must name the object, such as %q, got %q", "Deployment default/web", object)
	}
	for j, f := range fields {
		if strings.TrimSpace(f) == "" {
			v.add(field+".fields["+strconv.Itoa(j)+"]", "must not be empty")
		}
	}
}

package api

import "time"

// Drift correction modes, the values of the config item drift_correction.
const (
	// DriftEnabled corrects drift as soon as the agent sees it.
	DriftEnabled = "enabled"
	// DriftReport detects and reports drift and changes nothing.
	DriftReport = "report"
	// DriftDisabled neither watches nor corrects.
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
	// Held says why it is not corrected: report, fight, disabled, blocked.
	Held string `json:"held,omitempty"`
}

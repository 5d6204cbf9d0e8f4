package api

import (
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/window"
)

// Config item keys of update windows (package window has the grammar).
// They are read from the registry's config items only, never from a
// commit's config-defaults.yaml: a window says when the agent may look at a
// commit, so no commit can open its own window.
const (
	// ConfigUpdateWindows gates new versions: stacks and manifests.
	ConfigUpdateWindows = "update_windows"
	// ConfigNodeUpdateWindows gates node rolls: a new node is drained only
	// inside one of these windows.
	ConfigNodeUpdateWindows = "node_update_windows"
)

// RegistryTimeHeader is the response header in which the registry sends its
// own clock with every assignment answer (200 and 304), RFC 3339 with
// nanoseconds. It is a header, not a field of the assignment, so that the
// assignment's ETag and the version the agent converges to stay stable.
const RegistryTimeHeader = "Caravan-Registry-Time"

// MaxClockSkew is the largest difference between the registry's clock and
// the agent's that the agent accepts without reporting a problem: windows
// and freezes are evaluated with the agent's clock.
const MaxClockSkew = time.Minute

// Freeze stops every change of the clusters it covers from Since until
// Until: a fleet-wide (All), channel-wide or environment-wide block with an
// end. With both Channel and Environment set it covers the clusters that
// match both. Promotion into a channel a freeze covers is refused unless it
// is overridden with a reason.
type Freeze struct {
	ID          string    `json:"id"`
	Reason      string    `json:"reason"`
	By          string    `json:"by"`
	All         bool      `json:"all,omitempty"`
	Channel     string    `json:"channel,omitempty"`
	Environment string    `json:"environment,omitempty"`
	Since       time.Time `json:"since"`
	Until       time.Time `json:"until"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ActiveAt reports whether the freeze is in force at now.
func (f Freeze) ActiveAt(now time.Time) bool {
	return !now.Before(f.Since) && now.Before(f.Until)
}

// Covers reports whether the freeze applies to a cluster of the
// environment that follows the channel.
func (f Freeze) Covers(channel, environment string) bool {
	if f.All {
		return true
	}
	return (f.Channel == "" || f.Channel == channel) && (f.Environment == "" || f.Environment == environment) &&
		(f.Channel != "" || f.Environment != "")
}

// CoversChannel reports whether the freeze holds every cluster of the
// channel, and so promotion into it.
func (f Freeze) CoversChannel(channel string) bool {
	return f.All || f.Channel == channel && f.Environment == ""
}

// Scope says in words what the freeze covers.
func (f Freeze) Scope() string {
	var parts []string
	if f.All {
		return "the whole fleet"
	}
	if f.Channel != "" {
		parts = append(parts, "channel "+f.Channel)
	}
	if f.Environment != "" {
		parts = append(parts, "environment "+f.Environment)
	}
	return strings.Join(parts, ", ")
}

// ClusterSchedule is when a cluster may change: its effective windows, and
// the freezes that cover it now or later. The registry computes it with its
// own clock for views (API, CLI, UI); the agent decides with its own.
type ClusterSchedule struct {
	UpdateWindows     string `json:"update_windows"`
	NodeUpdateWindows string `json:"node_update_windows"`
	// Open: a new version may start now (inside an update window, no freeze).
	Open bool `json:"open"`
	// NextOpening is when a new version may next start, when it may not now.
	NextOpening *time.Time `json:"next_opening,omitempty"`
	// Freezes are the freezes that cover the cluster and have not ended.
	Freezes []Freeze `json:"freezes"`
	// Error names an item whose window does not parse: a version never starts.
	Error string `json:"error,omitempty"`
}

// maxScheduleSteps bounds the walk through windows and freezes: each step
// passes one freeze or one closed stretch of the windows.
const maxScheduleSteps = 64

// ScheduleOf computes a cluster's schedule at now from its effective config
// items, channel, environment and the fleet's freezes.
func ScheduleOf(items map[string]string, channel, environment string, freezes []Freeze, now time.Time) ClusterSchedule {
	s := ClusterSchedule{UpdateWindows: items[ConfigUpdateWindows], NodeUpdateWindows: items[ConfigNodeUpdateWindows], Freezes: []Freeze{}}
	for _, f := range freezes {
		if f.Covers(channel, environment) && now.Before(f.Until) {
			s.Freezes = append(s.Freezes, f)
		}
	}
	slices.SortFunc(s.Freezes, func(x, y Freeze) int { return x.Since.Compare(y.Since) })
	windows, err := window.Parse(s.UpdateWindows)
	if err != nil {
		s.Error = ConfigUpdateWindows + ": " + err.Error()
		return s
	}
	if _, err := window.Parse(s.NodeUpdateWindows); err != nil {
		s.Error = ConfigNodeUpdateWindows + ": " + err.Error()
	}
	at, ok := NextStart(windows, s.Freezes, now)
	switch {
	case ok && !at.After(now):
		s.Open = true
	case ok:
		s.NextOpening = &at
	}
	return s
}

// NextStart is the earliest instant at or after now inside the windows and
// outside every freeze; ok is false when none is found within
// maxScheduleSteps steps.
func NextStart(windows window.Schedule, freezes []Freeze, now time.Time) (time.Time, bool) {
	t := now
	for range maxScheduleSteps {
		t = windows.NextOpening(t)
		if t.IsZero() {
			return time.Time{}, false
		}
		frozen := false
		for _, f := range freezes {
			if f.ActiveAt(t) {
				t, frozen = f.Until, true
			}
		}
		if !frozen {
			return t, true
		}
	}
	return time.Time{}, false
}

// FrozenUntil is when the freezes in force at now let go: the end of the
// chain of freezes, one taking over where another ends; ok is false when
// none is in force.
func FrozenUntil(freezes []Freeze, now time.Time) (until time.Time, ok bool) {
	until = now
	for moved := true; moved; {
		moved = false
		for _, f := range freezes {
			if f.ActiveAt(until) {
				until, ok, moved = f.Until, true, true
			}
		}
	}
	return until, ok
}

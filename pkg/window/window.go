// Package window is the arithmetic of update windows: weekly intervals of
// wall-clock time in IANA time zones, such as
// "Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC".
package window

import (
	"errors"
	"time"
)

// Schedule is a set of weekly windows. The zero Schedule, parsed from "",
// is always open.
type Schedule struct{}

// Parse reads a schedule; "" is always open.
func Parse(s string) (Schedule, error) {
	if s == "" {
		return Schedule{}, nil
	}
	return Schedule{}, errors.New("window: not yet implemented")
}

// Always reports whether the schedule is always open.
func (s Schedule) Always() bool { return true }

// Contains reports whether t is inside one of the schedule's windows.
func (s Schedule) Contains(t time.Time) bool { return true }

// NextOpening is the earliest instant at or after t inside a window.
func (s Schedule) NextOpening(t time.Time) time.Time { return t }

// NextClosing is the first instant after t outside every window, for a t
// inside one; the zero time when the schedule never closes.
func (s Schedule) NextClosing(t time.Time) time.Time { return time.Time{} }

// String is the schedule in its canonical form.
func (s Schedule) String() string { return "" }

package ui

import (
	"context"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// windowView is when a new version may next start on a cluster, in one
// cell: open, the next opening, frozen until when, or a window that does
// not parse. Title says more, for a tooltip.
type windowView struct {
	// Class colours the state: window-open, window-closed, window-frozen,
	// window-invalid, or window-unknown without a schedule.
	Class string
	Text  string
	Title string
}

// windowOf reads the schedule the store computed for a cluster.
func windowOf(s *api.ClusterSchedule, now time.Time) windowView {
	if s == nil {
		return windowView{Class: "window-unknown", Text: "–"}
	}
	windows := "update windows: " + windowsText(s.UpdateWindows)
	switch {
	case s.Error != "":
		return windowView{Class: "window-invalid", Text: "invalid window", Title: s.Error + " (no version starts until it is fixed)"}
	case s.Open:
		return windowView{Class: "window-open", Text: "open", Title: windows}
	}
	if until, ok := api.FrozenUntil(s.Freezes, now); ok {
		var why []string
		for _, f := range s.Freezes {
			if f.ActiveAt(now) {
				why = append(why, f.Scope()+" frozen by "+f.By+": "+f.Reason)
			}
		}
		return windowView{Class: "window-frozen", Text: "frozen until " + timestamp(until), Title: strings.Join(why, "; ")}
	}
	if s.NextOpening != nil {
		return windowView{Class: "window-closed", Text: "opens " + timestamp(*s.NextOpening), Title: windows}
	}
	return windowView{Class: "window-closed", Text: "closed, no opening ahead", Title: windows}
}

// windowsText is a config item of windows as shown: empty means always open.
func windowsText(w string) string {
	if strings.TrimSpace(w) == "" {
		return "always (none set)"
	}
	return w
}

// freezeView is a freeze as the pages list it.
type freezeView struct {
	api.Freeze
	// Active: in force now; otherwise still to come.
	Active bool
}

func freezeViews(freezes []api.Freeze, now time.Time) []freezeView {
	out := make([]freezeView, 0, len(freezes))
	for _, f := range freezes {
		if now.Before(f.Until) {
			out = append(out, freezeView{Freeze: f, Active: f.ActiveAt(now)})
		}
	}
	return out
}

// freezes reads the freezes that have not ended, in force or to come,
// ordered by start.
func (u *UI) freezes(ctx context.Context) ([]freezeView, error) {
	now := u.now()
	fs, err := u.store.CurrentFreezes(ctx, now)
	if err != nil {
		return nil, err
	}
	return freezeViews(fs, now), nil
}

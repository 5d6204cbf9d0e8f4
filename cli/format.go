package cli

import (
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	shortSHALength  = 7
	shortHashLength = 7
	statusUnknown   = "unknown"
)

var (
	clusterColumns     = []string{"ID", "ALIAS", "ENVIRONMENT", "CHANNEL", "VERSION", "STATUS"}
	clusterWideColumns = []string{"REGION", "ACCOUNT", "LIFECYCLE", "PHASE", "HEARTBEAT", "DRIFT", "NODEPOOLS", "NEXT WINDOW"}
)

// shortVersion shortens a version "<commit sha>#<assignment hash>" the way
// git shortens commits: 7 characters of the sha, and 7 of the hash when
// there is one. An empty version, from a cluster that never converged, is "-".
func shortVersion(v string) string {
	if v == "" {
		return "-"
	}
	sha, hash, _ := strings.Cut(v, "#")
	short := truncate(sha, shortSHALength)
	if hash != "" {
		short += "#" + truncate(hash, shortHashLength)
	}
	return short
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// clusterStatusText sums up a cluster's state in one word or title: a block
// matters most, then what went wrong, then what the agent is doing.
func clusterStatusText(s *api.ClusterStatus) string {
	switch {
	case s == nil:
		return statusUnknown
	case s.Phase == api.PhaseBlocked:
		return api.PhaseBlocked
	case len(s.Problems) > 0:
		return s.Problems[0].Title
	case s.Phase == "":
		return statusUnknown
	default:
		return s.Phase
	}
}

func writeClusterTable(w io.Writer, clusters []api.Cluster, wide bool, now time.Time) error {
	header := clusterColumns
	if wide {
		header = append(append([]string{}, clusterColumns...), clusterWideColumns...)
	}
	rows := make([][]string, len(clusters))
	for i, c := range clusters {
		rows[i] = clusterRow(c, wide, now)
	}
	return writeTable(w, header, rows)
}

func clusterRow(c api.Cluster, wide bool, now time.Time) []string {
	var version string
	if c.Status != nil {
		version = c.Status.CurrentVersion
	}
	row := []string{c.ID, c.Alias, c.Environment, c.Channel, shortVersion(version), clusterStatusText(c.Status)}
	if !wide {
		return row
	}
	var phase, heartbeat string
	if c.Status != nil {
		phase = c.Status.Phase
		heartbeat = age(c.Status.Heartbeat, now)
	}
	pools := make([]string, len(c.NodePools))
	for i, p := range c.NodePools {
		pools[i] = p.Name
	}
	return append(row, c.Region, c.InfrastructureAccount, c.LifecycleStatus, phase, heartbeat, driftText(c.Status),
		strings.Join(pools, ","), nextWindow(c.Schedule, now))
}

// driftText sums up in one cell what the agent found between versions;
// an agent that reports no drift gives "-".
func driftText(s *api.ClusterStatus) string {
	if s == nil || s.Drift == nil {
		return ""
	}
	return s.Drift.Summary()
}

// age says how long ago t was, in the largest unit that keeps it readable;
// the zero time, never reported, is empty.
func age(t, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// clock is how the command line writes a time it looks ahead to, such as
// when a window opens: in UTC, to the minute, with the seconds only when a
// time has them (a freeze may end at any second), never in local time.
func clock(t time.Time) string {
	t = t.UTC()
	if t.Second() != 0 || t.Nanosecond() != 0 {
		return t.Format("2006-01-02 15:04:05") + " UTC"
	}
	return t.Format("2006-01-02 15:04") + " UTC"
}

// ahead is a coming time with how long until it: "2026-12-07 08:00 UTC (in 3h)".
func ahead(t, now time.Time) string {
	if !t.After(now) {
		return clock(t) + " (now)"
	}
	return clock(t) + " (in " + age(now, t) + ")"
}

// Freeze states, as freeze list and clusters status show them.
const (
	freezeActive    = "ACTIVE"
	freezeScheduled = "SCHEDULED"
	freezeEnded     = "ENDED"
)

func freezeState(f api.Freeze, now time.Time) string {
	switch {
	case f.ActiveAt(now):
		return freezeActive
	case now.Before(f.Since):
		return freezeScheduled
	default:
		return freezeEnded
	}
}

// Texts of a cluster's NEXT WINDOW.
const (
	windowOpen    = "open"
	windowInvalid = "invalid window"
	windowNever   = "no opening ahead"
)

// nextWindow says in one cell when a new version may next start on a
// cluster, from the schedule the registry computed: open now, the next
// opening, frozen until when, or that its window does not parse (then no
// version starts until the config item is fixed). A registry that sends no
// schedule gives "-".
func nextWindow(s *api.ClusterSchedule, now time.Time) string {
	switch {
	case s == nil:
		return ""
	case s.Error != "":
		return windowInvalid
	case s.Open:
		return windowOpen
	}
	if until, ok := api.FrozenUntil(s.Freezes, now); ok {
		return "frozen until " + clock(until)
	}
	if s.NextOpening != nil {
		return ahead(*s.NextOpening, now)
	}
	return windowNever
}

// windowsText is a config item of windows as shown: empty means always open.
func windowsText(w string) string {
	if strings.TrimSpace(w) == "" {
		return "always (none set)"
	}
	return w
}

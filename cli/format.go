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
	clusterWideColumns = []string{"REGION", "ACCOUNT", "LIFECYCLE", "PHASE", "HEARTBEAT", "NODEPOOLS"}
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
	return append(row, c.Region, c.InfrastructureAccount, c.LifecycleStatus, phase, heartbeat, strings.Join(pools, ","))
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

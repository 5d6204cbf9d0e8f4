package channels

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// GateInput is what the promotion gate decides on.
type GateInput struct {
	From api.Channel
	To   api.Channel
	// Commit is the commit to promote; empty when From's head is unknown,
	// which HeadError then explains.
	Commit    string
	HeadError string
	// Clusters are From's clusters; those not in service are left out.
	Clusters []Cluster
	// Freezes may be the fleet's: the gate takes those in force at Now
	// that cover every cluster of To.
	Freezes []api.Freeze
	Now     time.Time
	// HeartbeatTimeout is how long after the registry received a cluster's
	// last report the cluster counts as silent; DefaultHeartbeatTimeout
	// when zero.
	HeartbeatTimeout time.Duration
}

// AgentInterval is caravan-agent's default --interval: an agent reports
// its status after every long-poll answer, so at least this often.
const AgentInterval = 30 * time.Second

// DefaultHeartbeatTimeout is the registry's default --heartbeat-timeout:
// three of the agent's poll intervals, so that one slow or lost report
// does not make a cluster silent.
const DefaultHeartbeatTimeout = 3 * AgentInterval

// Gate decides whether Commit may be promoted from From to To: no freeze
// in force covers To, every cluster of From in service reported within the
// heartbeat timeout, runs Commit, reports no problem, and has been current
// on it for at least From's promotion soak. A silent cluster (no report
// received within the timeout, or none ever) is no evidence: the gate is
// not met while one is, and its reason says for how long it has been
// silent. The verdict lists every reason against, and the evidence of
// every cluster.
func Gate(in GateInput) api.PromotionGate {
	soak := in.From.Soak()
	timeout := in.HeartbeatTimeout
	if timeout <= 0 {
		timeout = DefaultHeartbeatTimeout
	}
	g := api.PromotionGate{
		From: in.From.Name, To: in.To.Name, Commit: in.Commit, Soak: FormatDuration(soak), HeartbeatTimeout: FormatDuration(timeout),
		Reasons: []string{}, Evidence: []api.GateEvidence{}, Freezes: FreezesOf(in.Freezes, in.To.Name, in.Now), CheckedAt: in.Now,
	}
	for _, f := range g.Freezes {
		g.Reasons = append(g.Reasons, api.FrozenReason(f, in.To.Name))
	}
	if in.Commit == "" {
		g.Reasons = append(g.Reasons, fmt.Sprintf("the head of channel %s is unknown (%s): name the commit to promote", in.From.Name, orUnknown(in.HeadError)))
	}
	clusters := InService(in.Clusters)
	if len(clusters) == 0 {
		g.Reasons = append(g.Reasons, fmt.Sprintf("channel %s has no clusters in service: nothing shows that the commit works", in.From.Name))
	}
	for _, c := range clusters {
		e := evidence(c, in.Commit, soak, timeout, in.Now)
		if !e.Met {
			g.Reasons = append(g.Reasons, c.ID+": "+e.Reason)
		}
		g.Evidence = append(g.Evidence, e)
	}
	g.Met = len(g.Reasons) == 0
	return g
}

// FreezesOf returns the freezes in force at now that hold back promotion
// into channel, ordered by start.
func FreezesOf(freezes []api.Freeze, channel string, now time.Time) []api.Freeze {
	out := []api.Freeze{}
	for _, f := range freezes {
		if f.ActiveAt(now) && f.CoversChannel(channel) {
			out = append(out, f)
		}
	}
	slices.SortStableFunc(out, func(x, y api.Freeze) int { return x.Since.Compare(y.Since) })
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "not read yet"
	}
	return s
}

// evidence is one cluster's part of the verdict, with every reason it
// holds the promotion back for: first its silence, if it is silent, then
// what its last report says against the commit.
func evidence(c Cluster, commit string, soak, timeout time.Duration, now time.Time) api.GateEvidence {
	e := api.GateEvidence{Cluster: c.ID, Alias: c.Alias, Since: c.CurrentSince(), Problems: []api.StatusProblem{}}
	if c.Status != nil {
		e.Version, e.Phase = c.Status.CurrentVersion, c.Status.Phase
		if c.Status.Problems != nil {
			e.Problems = c.Status.Problems
		}
		if !c.Status.ReceivedAt.IsZero() {
			at := c.Status.ReceivedAt
			e.LastReport = &at
		}
	}
	var reasons []string
	if s := silence(c, e.LastReport, timeout, now); s != "" {
		e.Silent = true
		reasons = append(reasons, s)
	}
	runs := commit != "" && CommitOf(e.Version) == commit
	switch {
	case c.Status == nil:
		// Its silence says it all.
	case e.Version == "":
		reasons = append(reasons, "has not reported a version")
	case commit != "" && !runs:
		reasons = append(reasons, fmt.Sprintf("runs %s, not %s", configrepo.Short(CommitOf(e.Version)), configrepo.Short(commit)))
	}
	if w := windowText(c); w != "" && !runs {
		reasons = append(reasons, w)
	}
	if p := problemText(c); p != "" {
		reasons = append(reasons, p)
	}
	if runs {
		if r := soakShortfall(e.Since, commit, soak, now); r != "" {
			reasons = append(reasons, r)
		}
	}
	e.Met = commit != "" && len(reasons) == 0
	e.Reason = strings.Join(reasons, "; ")
	if commit == "" && e.Reason == "" {
		e.Reason = "the commit to promote is unknown"
	}
	return e
}

// silence says that the cluster is silent, and for how long: the registry
// received no report of it within timeout (by its own clock, never the
// agent's), or none ever; empty when it reported in time.
func silence(c Cluster, last *time.Time, timeout time.Duration, now time.Time) string {
	switch {
	case c.Status == nil:
		return "silent: it has never reported"
	case last == nil:
		return "silent: the registry does not know when it last reported"
	}
	if age := now.Sub(*last); age > timeout {
		return fmt.Sprintf("silent for %s: no report within the heartbeat timeout of %s", formatAge(age), FormatDuration(timeout))
	}
	return ""
}

// windowText says that the cluster waits for its update window, and when
// it opens; empty when it does not wait.
func windowText(c Cluster) string {
	if c.Status == nil || c.Status.Phase != api.PhaseWaitingForWindow {
		return ""
	}
	if c.Status.NextWindow == nil {
		return "waits for its update window"
	}
	return "waits for its update window, which opens at " + c.Status.NextWindow.UTC().Format(time.RFC3339)
}

func problemText(c Cluster) string {
	if !c.HasProblem() {
		return ""
	}
	titles := make([]string, len(c.Status.Problems))
	for i, p := range c.Status.Problems {
		titles[i] = p.Title
	}
	switch len(titles) {
	case 0:
		return "is in phase " + api.PhaseFailed
	case 1:
		return "reports a problem: " + titles[0]
	}
	return fmt.Sprintf("reports %d problems: %s", len(titles), strings.Join(titles, "; "))
}

// soakShortfall says why a cluster running the commit has not soaked it
// long enough; empty when it has.
func soakShortfall(since *time.Time, commit string, soak time.Duration, now time.Time) string {
	if soak == 0 {
		return ""
	}
	if since == nil {
		return fmt.Sprintf("its status history does not show since when it runs %s", configrepo.Short(commit))
	}
	if ran := now.Sub(*since); ran < soak {
		return fmt.Sprintf("has run %s for %s, less than the soak of %s", configrepo.Short(commit), FormatDuration(max(ran, 0)), FormatDuration(soak))
	}
	return ""
}

// formatAge writes how long ago something happened, as precisely as a
// reader needs: to the second under an hour (1m31s), to the minute under
// two days (2h, 5h13m), in days and hours beyond (3d, 10d4h).
func formatAge(d time.Duration) string {
	switch {
	case d < time.Hour:
		return FormatDuration(d.Truncate(time.Second))
	case d < 48*time.Hour:
		return FormatDuration(d.Truncate(time.Minute))
	}
	days, hours := d/(24*time.Hour), (d%(24*time.Hour))/time.Hour
	if hours == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, hours)
}

// FormatDuration writes a duration as Go does, without the zero units at
// its end: 1h, 1h30m, 90s, 0s; cut to the second from a minute on.
func FormatDuration(d time.Duration) string {
	if d >= time.Minute {
		d = d.Truncate(time.Second)
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

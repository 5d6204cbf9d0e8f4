package api

import (
	"regexp"
	"strings"
	"time"
)

var (
	commitPattern = regexp.MustCompile(`^[0-9a-f]{40}$`)
	// soakPattern is the part of Go's duration syntax the registry takes:
	// no sign, no leading dot, no µs, so that the OpenAPI spec can say it.
	soakPattern    = regexp.MustCompile(`^(0|([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+)$`)
	maxSoak        = 8760 * time.Hour
	maxReason      = 1024
	defaultSoaks   = map[string]time.Duration{"dev": 0, "alpha": time.Hour, "beta": 24 * time.Hour}
	fallbackSoak   = 24 * time.Hour
	soakFieldError = "must be a duration such as 0, 90m or 24h (at most 8760h), got %q"
)

// ChannelHead is the newest commit of a channel's branch as the registry
// last read it. Error says why it could not be read; the other fields then
// hold the last head read, if any.
type ChannelHead struct {
	Commit    string     `json:"commit,omitempty"`
	Subject   string     `json:"subject,omitempty"`
	Author    string     `json:"author,omitempty"`
	Time      *time.Time `json:"time,omitempty"`
	CheckedAt *time.Time `json:"checked_at,omitempty"`
	Error     string     `json:"error,omitempty"`
}

// ChannelPublication is what the registry publishes to a channel's agents:
// the commit in their assignment (channel.commit), and the branch head it
// holds back from them when that head did not pass the promotion gate.
type ChannelPublication struct {
	// Gate is how the gate binds in effect: the channel's gate, except for
	// the first channel, which has no channel before it and is advisory.
	Gate string `json:"gate"`
	// Commit is the published commit; empty until the branch was read.
	Commit string `json:"commit,omitempty"`
	// PublishedAt is when the registry began to publish Commit.
	PublishedAt *time.Time `json:"published_at,omitempty"`
	// Held is the branch head the registry does not publish, and why;
	// nil while it publishes the head.
	Held *HeldHead `json:"held,omitempty"`
	// Promoted is the commit of the last promotion into the channel that
	// passed the gate (met from the channel before, or overridden with a
	// reason): the registry publishes it once it reads it as the head.
	Promoted string `json:"promoted,omitempty"`
	// Problem says what is wrong with the published commit as git has it
	// now: no longer on the branch after a force-push.
	Problem string `json:"problem,omitempty"`
}

// HeldHead is a branch head that only arrived by a push: no promotion that
// passed the gate records it. The agents keep the published commit until a
// promotion, or an override with a reason, records it.
type HeldHead struct {
	Commit string `json:"commit"`
	Reason string `json:"reason"`
	// Since is when the registry first held this commit.
	Since time.Time `json:"since"`
}

// DefaultGate is the gate of a channel that sets none: enforced for stable,
// where a plain push must not reach production, advisory for the others.
func DefaultGate(channel string) string {
	if channel == "stable" {
		return GateEnforced
	}
	return GateAdvisory
}

// GateSetting is the channel's gate, or the default of its name.
func (c *Channel) GateSetting() string {
	if c.Gate != "" {
		return c.Gate
	}
	return DefaultGate(c.Name)
}

func validateGate(v *ValidationError, field, gate string) {
	if gate != "" && gate != GateEnforced && gate != GateAdvisory {
		v.add(field, "must be %s or %s, got %q", GateEnforced, GateAdvisory, gate)
	}
}

// ClusterCounts sums up a channel's clusters in service against one commit
// (the head unless another is asked for). Problem overlaps the others: a
// cluster on the commit may report a problem too. Total minus Current and
// Older is the clusters that never reported a version.
type ClusterCounts struct {
	Total   int `json:"total"`
	Current int `json:"current"`
	Older   int `json:"older"`
	Problem int `json:"problem"`
}

// Rollout states of a cluster against the commit a rollout is about.
// RolloutUnknown is every reporting cluster's state while the commit is
// unknown: the branch head could not be read.
const (
	RolloutCurrent    = "current"
	RolloutOlder      = "older"
	RolloutUnreported = "unreported"
	RolloutUnknown    = "unknown"
)

// ChannelRollout is where one commit of a channel stands on its clusters.
type ChannelRollout struct {
	Channel  string           `json:"channel"`
	Branch   string           `json:"branch"`
	Commit   string           `json:"commit"`
	Head     *ChannelHead     `json:"head"`
	Counts   ClusterCounts    `json:"counts"`
	Clusters []RolloutCluster `json:"clusters"`
}

// RolloutCluster is one cluster of a rollout. Since is when the commit of
// Version became current on the cluster, as far as its status history goes
// back.
type RolloutCluster struct {
	ID          string          `json:"id"`
	Alias       string          `json:"alias"`
	State       string          `json:"state"`
	Version     string          `json:"version"`
	NextVersion string          `json:"next_version"`
	Phase       string          `json:"phase"`
	Since       *time.Time      `json:"since,omitempty"`
	Heartbeat   *time.Time      `json:"heartbeat,omitempty"`
	Problems    []StatusProblem `json:"problems"`
	// NextWindow is when the cluster's update window opens, while it waits
	// for it (phase waiting-for-window).
	NextWindow *time.Time `json:"next_window,omitempty"`
}

// ChannelHistory is a channel branch's newest commits (first-parent, newest
// first), each with how far it travelled through the channel's clusters.
type ChannelHistory struct {
	Channel string          `json:"channel"`
	Branch  string          `json:"branch"`
	Head    *ChannelHead    `json:"head"`
	Total   int             `json:"total"`
	Commits []HistoryCommit `json:"commits"`
	Error   string          `json:"error,omitempty"`
	// Publication is the commit the channel's agents are given, and the
	// head held back from them, if any.
	Publication *ChannelPublication `json:"publication,omitempty"`
}

// HistoryCommit is one commit of a channel's history. A cluster has reached
// it once it ran it or a newer commit of the branch. Clusters counts those
// that have; AllReachedAt is set once every cluster in service has.
type HistoryCommit struct {
	Commit         string     `json:"commit"`
	Subject        string     `json:"subject"`
	Author         string     `json:"author"`
	Time           time.Time  `json:"time"`
	Clusters       int        `json:"clusters"`
	FirstReachedAt *time.Time `json:"first_reached_at,omitempty"`
	AllReachedAt   *time.Time `json:"all_reached_at,omitempty"`
}

// PromotionGate is the verdict on promoting Commit from one channel to the
// next, with the evidence it rests on: one entry per cluster of From.
type PromotionGate struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Commit string `json:"commit"`
	Soak   string `json:"soak"`
	// HeartbeatTimeout is how long a cluster may go without a report
	// before it is silent, and no evidence.
	HeartbeatTimeout string         `json:"heartbeat_timeout"`
	Met              bool           `json:"met"`
	Reasons          []string       `json:"reasons"`
	Evidence         []GateEvidence `json:"evidence"`
	// Freezes are the freezes in force that cover To: each holds the
	// promotion back (a reason) until it ends or is overridden.
	Freezes   []Freeze  `json:"freezes"`
	CheckedAt time.Time `json:"checked_at"`
	// ToPublication is what To publishes to its agents now, and the head
	// it holds back until a promotion records it.
	ToPublication *ChannelPublication `json:"to_publication,omitempty"`
}

// GateEvidence is what one cluster of the source channel says about the
// commit; Reason says why it holds the promotion back, when it does.
type GateEvidence struct {
	Cluster  string          `json:"cluster"`
	Alias    string          `json:"alias"`
	Version  string          `json:"version"`
	Phase    string          `json:"phase"`
	Since    *time.Time      `json:"since,omitempty"`
	Problems []StatusProblem `json:"problems"`
	// LastReport is when the registry received the cluster's last report,
	// by the registry's clock; absent when it never reported.
	LastReport *time.Time `json:"last_report,omitempty"`
	// Silent is set when no report came within the heartbeat timeout: the
	// cluster is no evidence, and Reason says for how long it is silent.
	Silent bool   `json:"silent"`
	Met    bool   `json:"met"`
	Reason string `json:"reason,omitempty"`
}

// PromotionRequest records a promotion that was pushed: To's branch now
// points at Commit, which was on From's. PreviousCommit is where To's
// branch was before; OverrideReason is required when the gate was not met.
type PromotionRequest struct {
	From           string `json:"from"`
	Commit         string `json:"commit"`
	PreviousCommit string `json:"previous_commit,omitempty"`
	OverrideReason string `json:"override_reason,omitempty"`
}

// Promotion is a recorded promotion, as the audit log keeps it, with the
// gate's verdict when the registry recorded it.
type Promotion struct {
	From           string    `json:"from"`
	To             string    `json:"to"`
	Commit         string    `json:"commit"`
	PreviousCommit string    `json:"previous_commit,omitempty"`
	OverrideReason string    `json:"override_reason,omitempty"`
	GateMet        bool      `json:"gate_met"`
	GateReasons    []string  `json:"gate_reasons"`
	By             string    `json:"by"`
	At             time.Time `json:"at"`
}

// PassedGate reports whether the promotion lets its commit through an
// enforced gate: the gate was met when it was recorded, or overridden with
// a reason.
func (p *Promotion) PassedGate() bool { return p.GateMet || p.OverrideReason != "" }

// ProblemChannelFrozen (409): a promotion into a channel that a freeze in
// force covers was recorded without override_reason.
const ProblemChannelFrozen = ProblemTypeBase + "channel-frozen"

// FrozenReason says how a freeze holds back promotion into channel, as the
// promotion gate lists it: "channel stable is frozen until
// 2026-12-01T00:00:00Z by alice: cyber week".
func FrozenReason(f Freeze, channel string) string {
	scope := ""
	if f.All {
		scope = " (the whole fleet is)"
	}
	return "channel " + channel + " is frozen" + scope + " until " + f.Until.UTC().Format(time.RFC3339) + " by " + f.By + ": " + f.Reason
}

// ValidCommit reports whether s is a full, lower-case git commit id.
func ValidCommit(s string) bool { return commitPattern.MatchString(s) }

// DefaultPromotionSoak is the soak of a channel that sets none: none for
// dev, whose commits are promoted as soon as they run, an hour for alpha
// and a day for beta and every other channel.
func DefaultPromotionSoak(channel string) time.Duration {
	if d, ok := defaultSoaks[channel]; ok {
		return d
	}
	return fallbackSoak
}

// Soak is how long a commit must have been current on every cluster of
// the channel before it may be promoted from it. A validated channel's
// PromotionSoak always parses; anything else falls back to the default.
func (c *Channel) Soak() time.Duration {
	if c.PromotionSoak != "" {
		if d, err := time.ParseDuration(c.PromotionSoak); err == nil {
			return d
		}
	}
	return DefaultPromotionSoak(c.Name)
}

func validatePromotionSoak(v *ValidationError, field, raw string) {
	if !soakPattern.MatchString(raw) {
		v.add(field, soakFieldError, raw)
		return
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d > maxSoak {
		v.add(field, soakFieldError, raw)
	}
}

// Validate checks a promotion record's fields; that the channel From
// exists is the registry's to check.
func (p *PromotionRequest) Validate() error {
	v := &ValidationError{}
	if !dnsLabelPattern.MatchString(p.From) {
		v.add("from", "must be a channel name, got %q", p.From)
	}
	if !ValidCommit(p.Commit) {
		v.add("commit", "must be a full commit id (40 lower-case hex digits), got %q", p.Commit)
	}
	if p.PreviousCommit != "" && !ValidCommit(p.PreviousCommit) {
		v.add("previous_commit", "must be a full commit id (40 lower-case hex digits), got %q", p.PreviousCommit)
	}
	if len(p.OverrideReason) > maxReason {
		v.add("override_reason", "must be at most %d characters", maxReason)
	}
	if p.OverrideReason != "" && strings.TrimSpace(p.OverrideReason) == "" {
		v.add("override_reason", "must say why the gate was overridden")
	}
	return v.err()
}

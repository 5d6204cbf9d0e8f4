package nodes

import (
	"fmt"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// ForceEvictAfterAnnotation is set on a pod whose eviction a
// PodDisruptionBudget refused: the RFC 3339 instant from which the drain SLA
// allows deleting it directly (see ForecastAnnotation).
const ForceEvictAfterAnnotation = "caravan.io/force-evict-after"

// The rules a Decision may name. The time rules carry the name of the
// config item that sets their duration.
const (
	RuleMinPodLifetime              = api.ConfigDrainMinPodLifetime
	RuleGracePeriod                 = api.ConfigDrainGracePeriod
	RuleForceEvictInterval          = api.ConfigDrainForceEvictInterval // on the same node
	RulePDBForceEvictInterval       = api.ConfigDrainForceEvictInterval + "_pdb"
	RuleMinHealthySiblingLifetime   = api.ConfigDrainMinHealthySiblingLifetime
	RuleMinUnhealthySiblingLifetime = api.ConfigDrainMinUnhealthySiblingLifetime
	// RuleNodeNotSelected: the node was not selected for termination, so
	// none of its pods is ever forced.
	RuleNodeNotSelected = "node not selected"
	// RuleSiblingTerminating: another pod of the same PDB is terminating;
	// when it is gone is unknown.
	RuleSiblingTerminating = "pdb_sibling_terminating"
	// RuleTerminating: the pod itself is already terminating.
	RuleTerminating = "terminating"
)

// SLA is the drain SLA as durations.
type SLA struct {
	// MinPodLifetime: a pod younger than this is never forced.
	MinPodLifetime time.Duration
	// GracePeriod: the time after a node is selected before any force.
	GracePeriod time.Duration
	// ForceEvictInterval: the least gap between two forces on one node,
	// and between two forces of pods of one PDB across the cluster.
	ForceEvictInterval time.Duration
	// MinHealthySiblingLifetime: how long every ready sibling must have
	// been ready.
	MinHealthySiblingLifetime time.Duration
	// MinUnhealthySiblingLifetime: how old every non-ready sibling must be.
	MinUnhealthySiblingLifetime time.Duration
}

// ParseSLA reads the durations of an assignment's drain SLA. Unlike
// api.EffectiveDrainSLA, which already dropped bad config items, it is
// strict: a value that is not a non-negative duration is an error naming
// its config item.
func ParseSLA(s api.DrainSLA) (SLA, error) {
	var sla SLA
	for _, f := range []struct {
		key   string
		value string
		into  *time.Duration
	}{
		{api.ConfigDrainMinPodLifetime, s.MinPodLifetime, &sla.MinPodLifetime},
		{api.ConfigDrainGracePeriod, s.GracePeriod, &sla.GracePeriod},
		{api.ConfigDrainForceEvictInterval, s.ForceEvictInterval, &sla.ForceEvictInterval},
		{api.ConfigDrainMinHealthySiblingLifetime, s.MinHealthySiblingLifetime, &sla.MinHealthySiblingLifetime},
		{api.ConfigDrainMinUnhealthySiblingLifetime, s.MinUnhealthySiblingLifetime, &sla.MinUnhealthySiblingLifetime},
	} {
		d, err := time.ParseDuration(f.value)
		if err != nil {
			return SLA{}, fmt.Errorf("drain SLA %s: %w", f.key, err)
		}
		if d < 0 {
			return SLA{}, fmt.Errorf("drain SLA %s: negative duration %q", f.key, f.value)
		}
		*f.into = d
	}
	return sla, nil
}

// NodeState is the drain state of the pod's node, as kept in its annotations.
type NodeState struct {
	Name string
	// DrainStart is when the node was selected for termination; zero if
	// it was not.
	DrainStart time.Time
	// LastForced is the last force termination on this node; zero if none.
	LastForced time.Time
}

// PodState is the pod a drain wants off its node.
type PodState struct {
	Namespace, Name string
	// Created is the pod's creationTimestamp; zero when unknown, and then
	// its lifetime never allows a force.
	Created time.Time
	// Terminating: the pod has a deletion timestamp.
	Terminating bool
	// EvictionRefused: its last eviction was refused by a PDB (429 with
	// the DisruptionBudget cause, or 500 when several PDBs match).
	EvictionRefused bool
}

// Sibling is another pod sharing a PDB with the candidate.
type Sibling struct {
	Name  string
	Ready bool
	// ReadySince is when a ready sibling became ready (the
	// lastTransitionTime of its Ready=True condition); zero when unknown,
	// and then the sibling never allows a force.
	ReadySince time.Time
	// Created counts the age of a sibling that is not ready; zero when
	// unknown, and then the sibling never allows a force.
	Created     time.Time
	Terminating bool
}

// History is what the cluster remembers of forces beyond this node.
type History struct {
	// LastForcedInPDB is the last force of any pod of the same PDB,
	// cluster-wide; zero if none.
	LastForcedInPDB time.Time
}

// Action is what to do with a pod.
type Action int

// The actions of a Decision.
const (
	// Evict: ask the Eviction API, which enforces the PDBs itself.
	Evict Action = iota + 1
	// Force: delete the pod directly, with its own grace period.
	Force
	// Wait: leave the pod alone for now.
	Wait
)

func (a Action) String() string {
	switch a {
	case Evict:
		return "evict"
	case Force:
		return "force"
	case Wait:
		return "wait"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Decision is the verdict on one pod.
type Decision struct {
	Action Action
	// At, for Wait, is the earliest instant a force may be allowed, if
	// nothing else changes; zero when no time can be known (the node is
	// not selected, a sibling or the pod itself is terminating, or a time
	// a rule counts from is unknown).
	At time.Time
	// Rule, for Wait, names the rule holding the pod back: the one whose
	// time is At, the first in the order of the SLA table on a tie.
	Rule string
}

func (d Decision) String() string {
	if d.Action != Wait {
		return d.Action.String()
	}
	if d.At.IsZero() {
		return fmt.Sprintf("wait (%s)", d.Rule)
	}
	return fmt.Sprintf("wait until %s (%s)", d.At.UTC().Format(time.RFC3339Nano), d.Rule)
}

// Decide applies the drain SLA to one pod at now. A pod whose eviction was
// not refused is to be evicted; a refused pod is forced only when every rule
// holds at now, and otherwise waits until the latest of the instants each
// rule allows. Siblings are the other pods sharing a PDB with the pod
// (the pod itself, if listed by name, is skipped). It fails closed: a time
// a rule counts from that is unknown (zero) never satisfies the rule, so
// the pod waits, without a time, under that rule. Decide reads no clock.
func Decide(now time.Time, node NodeState, pod PodState, siblings []Sibling, history History, sla SLA) Decision {
	if pod.Terminating {
		return Decision{Action: Wait, Rule: RuleTerminating}
	}
	if !pod.EvictionRefused {
		return Decision{Action: Evict}
	}
	if node.DrainStart.IsZero() {
		return Decision{Action: Wait, Rule: RuleNodeNotSelected}
	}
	for _, s := range siblings {
		if s.Name != pod.Name && s.Terminating {
			return Decision{Action: Wait, Rule: RuleSiblingTerminating}
		}
	}
	if rule, ok := unknownTime(pod, siblings); ok {
		return Decision{Action: Wait, Rule: rule}
	}

	// The latest of the instants the time rules allow; a later rule takes
	// over only with a strictly later time, so ties go to the table order.
	at, rule := pod.Created.Add(sla.MinPodLifetime), RuleMinPodLifetime
	later := func(t time.Time, r string) {
		if t.After(at) {
			at, rule = t, r
		}
	}
	later(node.DrainStart.Add(sla.GracePeriod), RuleGracePeriod)
	if !node.LastForced.IsZero() {
		later(node.LastForced.Add(sla.ForceEvictInterval), RuleForceEvictInterval)
	}
	if !history.LastForcedInPDB.IsZero() {
		later(history.LastForcedInPDB.Add(sla.ForceEvictInterval), RulePDBForceEvictInterval)
	}
	for _, s := range siblings {
		if s.Name == pod.Name || !s.Ready {
			continue
		}
		later(s.ReadySince.Add(sla.MinHealthySiblingLifetime), RuleMinHealthySiblingLifetime)
	}
	for _, s := range siblings {
		if s.Name == pod.Name || s.Ready {
			continue
		}
		later(s.Created.Add(sla.MinUnhealthySiblingLifetime), RuleMinUnhealthySiblingLifetime)
	}

	if now.Before(at) {
		return Decision{Action: Wait, At: at, Rule: rule}
	}
	return Decision{Action: Force}
}

// unknownTime names the first rule, in the order of the SLA table, whose
// time counts from an instant that is not known: the pod's creation, a
// ready sibling's Ready transition, a sibling's creation. A zero time plus
// a lifetime is long past; taken as it is, it would allow a force.
func unknownTime(pod PodState, siblings []Sibling) (string, bool) {
	if pod.Created.IsZero() {
		return RuleMinPodLifetime, true
	}
	for _, s := range siblings {
		if s.Name != pod.Name && s.Ready && s.ReadySince.IsZero() {
			return RuleMinHealthySiblingLifetime, true
		}
	}
	for _, s := range siblings {
		if s.Name != pod.Name && !s.Ready && s.Created.IsZero() {
			return RuleMinUnhealthySiblingLifetime, true
		}
	}
	return "", false
}

// ForecastAnnotation is the value of ForceEvictAfterAnnotation for a
// decision: its At in RFC 3339 with its fraction of a second, UTC, the
// instant the force is planned for: rounded to the second either way, the
// annotation would promise a force earlier than allowed, or announce one
// later than it comes. It reports false when the decision is not a Wait
// with a known time; the annotation should then be removed.
func ForecastAnnotation(d Decision) (string, bool) {
	if d.Action != Wait || d.At.IsZero() {
		return "", false
	}
	return d.At.UTC().Format(time.RFC3339Nano), true
}

// forecastSlack is how much later than the time a pod carries its force
// may come before the annotation is rewritten: the API keeps the pod's own
// times to the second, and most moves of a forecast are smaller (the force
// interval counted from a deletion's answer rather than from its request).
const forecastSlack = time.Second

// ForecastHolds says whether the forecast a pod carries (written, "" for
// none) still tells a decision's (value, "" for no time known): the same,
// or an instant less than forecastSlack before it. A forecast later than
// the decision's would announce a force after it comes, so it never holds.
func ForecastHolds(written, value string) bool {
	if written == value {
		return true
	}
	if written == "" || value == "" {
		return false
	}
	w, errW := time.Parse(time.RFC3339Nano, written)
	v, errV := time.Parse(time.RFC3339Nano, value)
	if errW != nil || errV != nil {
		return false
	}
	return !w.After(v) && v.Sub(w) < forecastSlack
}

package nodes

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

var base = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

// testSLA is the test environment's default SLA.
var testSLA = SLA{
	MinPodLifetime:              8 * time.Hour,
	GracePeriod:                 2 * time.Hour,
	ForceEvictInterval:          5 * time.Minute,
	MinHealthySiblingLifetime:   time.Hour,
	MinUnhealthySiblingLifetime: time.Hour,
}

func TestDecide(t *testing.T) {
	// Everything allows a force at base: the pod is a day old, the node
	// was selected a day ago, nothing was forced, siblings are old.
	node := NodeState{Name: "n1", DrainStart: base.Add(-24 * time.Hour)}
	pod := PodState{Namespace: "ns", Name: "p", Created: base.Add(-24 * time.Hour), EvictionRefused: true}
	ready := Sibling{Name: "s1", Ready: true, ReadySince: base.Add(-24 * time.Hour), Created: base.Add(-48 * time.Hour)}
	notReady := Sibling{Name: "s2", Created: base.Add(-24 * time.Hour)}
	siblings := []Sibling{ready, notReady}

	with := func(f func(*NodeState, *PodState, *[]Sibling, *History)) (NodeState, PodState, []Sibling, History) {
		n, p, s, h := node, pod, slices.Clone(siblings), History{}
		f(&n, &p, &s, &h)
		return n, p, s, h
	}
	for name, c := range map[string]struct {
		change func(*NodeState, *PodState, *[]Sibling, *History)
		want   Decision
	}{
		"every rule holds": {
			func(*NodeState, *PodState, *[]Sibling, *History) {},
			Decision{Action: Force},
		},
		"eviction not refused": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.EvictionRefused = false; p.Created = base },
			Decision{Action: Evict},
		},
		"pod terminating": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.Terminating = true },
			Decision{Action: Wait, Rule: RuleTerminating},
		},
		"node not selected": {
			func(n *NodeState, _ *PodState, _ *[]Sibling, _ *History) { n.DrainStart = time.Time{} },
			Decision{Action: Wait, Rule: RuleNodeNotSelected},
		},
		"sibling terminating": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) { (*s)[0].Terminating = true },
			Decision{Action: Wait, Rule: RuleSiblingTerminating},
		},
		"the pod itself listed as a terminating sibling is skipped": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				*s = append(*s, Sibling{Name: "p", Terminating: true, Created: base})
			},
			Decision{Action: Force},
		},
		"min pod lifetime": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.Created = base.Add(-time.Hour) },
			Decision{Action: Wait, At: base.Add(7 * time.Hour), Rule: RuleMinPodLifetime},
		},
		"grace period": {
			func(n *NodeState, _ *PodState, _ *[]Sibling, _ *History) { n.DrainStart = base.Add(-time.Hour) },
			Decision{Action: Wait, At: base.Add(time.Hour), Rule: RuleGracePeriod},
		},
		"force interval on the node": {
			func(n *NodeState, _ *PodState, _ *[]Sibling, _ *History) { n.LastForced = base.Add(-time.Minute) },
			Decision{Action: Wait, At: base.Add(4 * time.Minute), Rule: RuleForceEvictInterval},
		},
		"force interval in the PDB": {
			func(_ *NodeState, _ *PodState, _ *[]Sibling, h *History) {
				h.LastForcedInPDB = base.Add(-2 * time.Minute)
			},
			Decision{Action: Wait, At: base.Add(3 * time.Minute), Rule: RulePDBForceEvictInterval},
		},
		"healthy sibling lifetime counts from ready": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				(*s)[0].ReadySince = base.Add(-10 * time.Minute) // created two days ago
			},
			Decision{Action: Wait, At: base.Add(50 * time.Minute), Rule: RuleMinHealthySiblingLifetime},
		},
		// Fail closed (issue 14): an unknown time is "not yet", never
		// the zero time's long past lifetime.
		"a pod without a creation time waits": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.Created = time.Time{} },
			Decision{Action: Wait, Rule: RuleMinPodLifetime},
		},
		"a ready sibling without a ready time waits, however old": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) { (*s)[0].ReadySince = time.Time{} },
			Decision{Action: Wait, Rule: RuleMinHealthySiblingLifetime},
		},
		"a ready sibling without any time waits": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				(*s)[0].ReadySince, (*s)[0].Created = time.Time{}, time.Time{}
			},
			Decision{Action: Wait, Rule: RuleMinHealthySiblingLifetime},
		},
		"a ready sibling with a ready time needs no creation time": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) { (*s)[0].Created = time.Time{} },
			Decision{Action: Force},
		},
		"a sibling not ready without a creation time waits": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) { (*s)[1].Created = time.Time{} },
			Decision{Action: Wait, Rule: RuleMinUnhealthySiblingLifetime},
		},
		"an unknown time hides a known later one": {
			func(n *NodeState, p *PodState, _ *[]Sibling, _ *History) {
				p.Created = time.Time{}
				n.DrainStart = base.Add(-time.Minute) // would allow at base+1h59m
			},
			Decision{Action: Wait, Rule: RuleMinPodLifetime},
		},
		"unknown times: the first rule of the table is named": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				(*s)[0].ReadySince, (*s)[1].Created = time.Time{}, time.Time{}
			},
			Decision{Action: Wait, Rule: RuleMinHealthySiblingLifetime},
		},
		"the pod itself listed without times is skipped": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				*s = append(*s, Sibling{Name: "p"}, Sibling{Name: "p", Ready: true})
			},
			Decision{Action: Force},
		},
		"a terminating sibling wins over an unknown time": {
			func(_ *NodeState, p *PodState, s *[]Sibling, _ *History) {
				p.Created = time.Time{}
				(*s)[1].Terminating = true
			},
			Decision{Action: Wait, Rule: RuleSiblingTerminating},
		},
		"not selected wins over an unknown time": {
			func(n *NodeState, p *PodState, _ *[]Sibling, _ *History) {
				n.DrainStart, p.Created = time.Time{}, time.Time{}
			},
			Decision{Action: Wait, Rule: RuleNodeNotSelected},
		},
		"an unknown creation time does not stop an eviction": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) {
				p.EvictionRefused, p.Created = false, time.Time{}
			},
			Decision{Action: Evict},
		},
		"unhealthy sibling lifetime": {
			func(_ *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				(*s)[1].Created = base.Add(-30 * time.Minute)
			},
			Decision{Action: Wait, At: base.Add(30 * time.Minute), Rule: RuleMinUnhealthySiblingLifetime},
		},
		"the latest rule is named": {
			func(n *NodeState, p *PodState, _ *[]Sibling, _ *History) {
				p.Created = base.Add(-7 * time.Hour)  // allows at base+1h
				n.DrainStart = base.Add(-time.Minute) // allows at base+1h59m
				n.LastForced = base                   // allows at base+5m
			},
			Decision{Action: Wait, At: base.Add(119 * time.Minute), Rule: RuleGracePeriod},
		},
		"a tie goes to the first rule of the table": {
			func(n *NodeState, p *PodState, s *[]Sibling, h *History) {
				n.DrainStart = base.Add(-time.Hour)            // base+1h
				(*s)[1].Created = base                         // base+1h
				h.LastForcedInPDB = base.Add(55 * time.Minute) // base+1h
			},
			Decision{Action: Wait, At: base.Add(time.Hour), Rule: RuleGracePeriod},
		},
		"boundary: now is the earliest instant": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.Created = base.Add(-8 * time.Hour) },
			Decision{Action: Force},
		},
		"boundary: a nanosecond before": {
			func(_ *NodeState, p *PodState, _ *[]Sibling, _ *History) { p.Created = base.Add(-8*time.Hour + 1) },
			Decision{Action: Wait, At: base.Add(1), Rule: RuleMinPodLifetime},
		},
		"not selected wins over a terminating sibling": {
			func(n *NodeState, _ *PodState, s *[]Sibling, _ *History) {
				n.DrainStart = time.Time{}
				(*s)[0].Terminating = true
			},
			Decision{Action: Wait, Rule: RuleNodeNotSelected},
		},
		"a terminating sibling wins over time rules": {
			func(_ *NodeState, p *PodState, s *[]Sibling, _ *History) {
				p.Created = base
				(*s)[1].Terminating = true
			},
			Decision{Action: Wait, Rule: RuleSiblingTerminating},
		},
	} {
		n, p, s, h := with(c.change)
		assert.Equal(t, c.want, Decide(base, n, p, s, h, testSLA), name)
	}
}

func TestForecastAnnotation(t *testing.T) {
	for name, c := range map[string]struct {
		d    Decision
		want string
		ok   bool
	}{
		"wait with a time":            {Decision{Action: Wait, At: base, Rule: RuleGracePeriod}, "2024-03-01T12:00:00Z", true},
		"to the fraction of a second": {Decision{Action: Wait, At: base.Add(time.Millisecond)}, "2024-03-01T12:00:00.001Z", true},
		"in UTC":                      {Decision{Action: Wait, At: base.In(time.FixedZone("x", 3600))}, "2024-03-01T12:00:00Z", true},
		"wait without a time":         {Decision{Action: Wait, Rule: RuleSiblingTerminating}, "", false},
		"force":                       {Decision{Action: Force}, "", false},
		"evict":                       {Decision{Action: Evict}, "", false},
	} {
		got, ok := ForecastAnnotation(c.d)
		assert.Equal(t, c.want, got, name)
		assert.Equal(t, c.ok, ok, name)
	}
}

func TestAForecastHoldsUntilItMovesEarlierOrASecondLater(t *testing.T) {
	at := func(d time.Duration) string { return base.Add(d).UTC().Format(time.RFC3339Nano) }
	for name, c := range map[string]struct {
		written, value string
		holds          bool
	}{
		"the same":                          {at(0), at(0), true},
		"none written, none to write":       {"", "", true},
		"later by the deletion's answer":    {at(0), at(35 * time.Millisecond), true},
		"later by just under a second":      {at(0), at(time.Second - time.Nanosecond), true},
		"later by a second":                 {at(0), at(time.Second), false},
		"later by a force interval":         {at(0), at(5 * time.Minute), false},
		"earlier by a millisecond":          {at(time.Millisecond), at(0), false},
		"none written yet":                  {"", at(0), false},
		"no time known any more":            {at(0), "", false},
		"written by hand, not a time":       {"soon", at(0), false},
		"in another zone, the same instant": {base.In(time.FixedZone("x", 3600)).Format(time.RFC3339Nano), at(0), true},
	} {
		assert.Equal(t, c.holds, ForecastHolds(c.written, c.value), name)
	}
}

func TestParseSLA(t *testing.T) {
	prod, err := ParseSLA(api.DefaultDrainSLA(api.EnvironmentProduction))
	require.NoError(t, err)
	assert.Equal(t, SLA{
		MinPodLifetime:              72 * time.Hour,
		GracePeriod:                 6 * time.Hour,
		ForceEvictInterval:          5 * time.Minute,
		MinHealthySiblingLifetime:   time.Hour,
		MinUnhealthySiblingLifetime: 6 * time.Hour,
	}, prod)

	test, err := ParseSLA(api.DefaultDrainSLA("test"))
	require.NoError(t, err)
	assert.Equal(t, testSLA, test)

	bad := api.DefaultDrainSLA("test")
	bad.MinHealthySiblingLifetime = "an hour"
	_, err = ParseSLA(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), api.ConfigDrainMinHealthySiblingLifetime)

	bad = api.DefaultDrainSLA("test")
	bad.GracePeriod = "-1h"
	_, err = ParseSLA(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), api.ConfigDrainGracePeriod)
}

// scenario is one generated input of Decide.
type scenario struct {
	now      time.Time
	node     NodeState
	pod      PodState
	siblings []Sibling
	history  History
	sla      SLA
}

func (s scenario) decide(now time.Time) Decision {
	return Decide(now, s.node, s.pod, s.siblings, s.history, s.sla)
}

// ruleTimes is the SLA table written out for the test, independently of
// Decide: for each time rule, the instants from which it allows a force.
// A rule whose time counts from an unknown instant has no time here (see
// unknown).
func (s scenario) ruleTimes() map[string][]time.Time {
	r := map[string][]time.Time{
		RuleGracePeriod: {s.node.DrainStart.Add(s.sla.GracePeriod)},
	}
	if !s.pod.Created.IsZero() {
		r[RuleMinPodLifetime] = []time.Time{s.pod.Created.Add(s.sla.MinPodLifetime)}
	}
	if !s.node.LastForced.IsZero() {
		r[RuleForceEvictInterval] = []time.Time{s.node.LastForced.Add(s.sla.ForceEvictInterval)}
	}
	if !s.history.LastForcedInPDB.IsZero() {
		r[RulePDBForceEvictInterval] = []time.Time{s.history.LastForcedInPDB.Add(s.sla.ForceEvictInterval)}
	}
	for _, sib := range s.siblings {
		switch {
		case sib.Name == s.pod.Name:
		case sib.Ready && !sib.ReadySince.IsZero():
			r[RuleMinHealthySiblingLifetime] = append(r[RuleMinHealthySiblingLifetime], sib.ReadySince.Add(s.sla.MinHealthySiblingLifetime))
		case !sib.Ready && !sib.Created.IsZero():
			r[RuleMinUnhealthySiblingLifetime] = append(r[RuleMinUnhealthySiblingLifetime], sib.Created.Add(s.sla.MinUnhealthySiblingLifetime))
		}
	}
	return r
}

// unknown lists the time rules that count from an unknown instant: they
// forbid a force whatever the time.
func (s scenario) unknown() []string {
	var rules []string
	if s.pod.Created.IsZero() {
		rules = append(rules, RuleMinPodLifetime)
	}
	for _, sib := range s.siblings {
		switch {
		case sib.Name == s.pod.Name:
		case sib.Ready && sib.ReadySince.IsZero():
			rules = append(rules, RuleMinHealthySiblingLifetime)
		case !sib.Ready && sib.Created.IsZero():
			rules = append(rules, RuleMinUnhealthySiblingLifetime)
		}
	}
	return rules
}

// forbidden lists every rule that forbids a force at now.
func (s scenario) forbidden(now time.Time) []string {
	var rules []string
	if s.pod.Terminating {
		rules = append(rules, RuleTerminating)
	}
	if s.node.DrainStart.IsZero() {
		rules = append(rules, RuleNodeNotSelected)
	}
	for _, sib := range s.siblings {
		if sib.Name != s.pod.Name && sib.Terminating {
			rules = append(rules, RuleSiblingTerminating)
			break
		}
	}
	rules = append(rules, s.unknown()...)
	for rule, times := range s.ruleTimes() {
		for _, at := range times {
			if now.Before(at) {
				rules = append(rules, rule)
				break
			}
		}
	}
	return rules
}

func generate(r *rand.Rand) scenario {
	// A random instant within ±span of base, at a whole second mostly
	// (as the API server stores times), sometimes with nanoseconds.
	around := func(span time.Duration) time.Time {
		t := base.Add(time.Duration(r.Int64N(int64(2*span))) - span).Truncate(time.Second)
		if r.IntN(8) == 0 {
			t = t.Add(time.Duration(r.IntN(int(time.Second))))
		}
		return t
	}
	between := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(r.Int64N(int64(hi-lo)+1)) }
	s := scenario{
		now: base,
		sla: SLA{
			MinPodLifetime:              between(0, 96*time.Hour),
			GracePeriod:                 between(0, 8*time.Hour),
			ForceEvictInterval:          between(0, 30*time.Minute),
			MinHealthySiblingLifetime:   between(0, 4*time.Hour),
			MinUnhealthySiblingLifetime: between(0, 8*time.Hour),
		},
		pod: PodState{
			Namespace: "ns", Name: "p",
			Terminating:     r.IntN(20) == 0,
			EvictionRefused: r.IntN(10) != 0,
		},
		node: NodeState{Name: "n"},
	}
	if r.IntN(30) != 0 {
		s.pod.Created = around(200 * time.Hour)
	}
	if r.IntN(15) != 0 {
		s.node.DrainStart = around(12 * time.Hour)
	}
	if r.IntN(2) == 0 {
		s.node.LastForced = around(time.Hour)
	}
	if r.IntN(2) == 0 {
		s.history.LastForcedInPDB = around(time.Hour)
	}
	for i := range r.IntN(7) {
		created := around(24 * time.Hour)
		sib := Sibling{Name: "s" + string(rune('a'+i)), Created: created, Ready: r.IntN(3) != 0, Terminating: r.IntN(25) == 0}
		if sib.Ready && r.IntN(30) != 0 {
			sib.ReadySince = created.Add(between(0, 10*time.Minute))
		}
		if r.IntN(50) == 0 {
			sib.Created = time.Time{}
		}
		s.siblings = append(s.siblings, sib)
	}
	if r.IntN(10) == 0 {
		// The pod itself among its siblings: young, not ready, terminating
		// even; Decide must skip it.
		s.siblings = append(s.siblings, Sibling{Name: s.pod.Name, Created: base, Terminating: r.IntN(2) == 0})
	}
	if r.IntN(4) == 0 {
		// Put now exactly on one rule's instant, to test the boundary.
		var all []time.Time
		for _, times := range s.ruleTimes() {
			all = append(all, times...)
		}
		slices.SortFunc(all, time.Time.Compare)
		s.now = all[r.IntN(len(all))]
	}
	return s
}

// TestDecideProperties checks Decide against the SLA table over generated
// scenarios: it never forces when a rule forbids it, forces when none
// does, and its forecast is the earliest instant a force is allowed.
func TestDecideProperties(t *testing.T) {
	const n = 20000
	order := []string{
		RuleMinPodLifetime, RuleGracePeriod, RuleForceEvictInterval, RulePDBForceEvictInterval,
		RuleMinHealthySiblingLifetime, RuleMinUnhealthySiblingLifetime,
	}
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for i := range n {
		s := generate(r)
		d := s.decide(s.now)
		forbidden := s.forbidden(s.now)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("scenario %d: %+v\ndecision %v, forbidden by %v: "+format, append([]any{i, s, d, forbidden}, args...)...)
		}

		// Shuffling the siblings never changes the decision.
		shuffled := s
		shuffled.siblings = slices.Clone(s.siblings)
		r.Shuffle(len(shuffled.siblings), func(a, b int) {
			shuffled.siblings[a], shuffled.siblings[b] = shuffled.siblings[b], shuffled.siblings[a]
		})
		if got := shuffled.decide(s.now); got != d {
			fail("with siblings shuffled: %v", got)
		}

		if s.pod.Terminating {
			counts["wait: terminating"]++
			if d != (Decision{Action: Wait, Rule: RuleTerminating}) {
				fail("a terminating pod must wait")
			}
			continue
		}
		if !s.pod.EvictionRefused {
			counts["evict"]++
			if d.Action != Evict {
				fail("a pod not refused must be evicted")
			}
			continue
		}
		switch d.Action {
		case Force:
			counts["force"]++
			// (a) never a force that a rule forbids.
			if len(forbidden) > 0 {
				fail("forced against a rule")
			}
		case Wait:
			// (c) when every rule allows, it forces.
			if len(forbidden) == 0 {
				fail("waits while every rule allows")
			}
			if d.At.IsZero() {
				counts["wait: "+d.Rule]++
				if !slices.Contains(forbidden, d.Rule) {
					fail("the rule %q does not forbid", d.Rule)
				}
				if d.Rule != RuleNodeNotSelected && d.Rule != RuleSiblingTerminating && !slices.Contains(s.unknown(), d.Rule) {
					fail("no time, yet rule %q has one", d.Rule)
				}
				continue
			}
			counts["wait until: "+d.Rule]++
			if slices.Contains(forbidden, RuleNodeNotSelected) || slices.Contains(forbidden, RuleSiblingTerminating) || len(s.unknown()) > 0 {
				fail("a known time despite a rule without one")
			}
			if !d.At.After(s.now) {
				fail("waits until a past instant")
			}
			// (b) the forecast is the earliest instant a force is allowed.
			if got := s.decide(d.At); got.Action != Force {
				fail("at the forecast: %v", got)
			}
			if len(s.forbidden(d.At)) > 0 {
				fail("rules still forbid at the forecast: %v", s.forbidden(d.At))
			}
			before := d.At.Add(-1)
			if got := s.decide(before); got != d {
				fail("a nanosecond before the forecast: %v", got)
			}
			if len(s.forbidden(before)) == 0 {
				fail("no rule forbids a nanosecond before the forecast")
			}
			// (d) Rule names a rule whose time is At, the first in the
			// table's order.
			times := s.ruleTimes()
			if !slices.ContainsFunc(times[d.Rule], d.At.Equal) {
				fail("the rule %q has no time %v: %v", d.Rule, d.At, times[d.Rule])
			}
			for _, rule := range order {
				if rule == d.Rule {
					break
				}
				if slices.ContainsFunc(times[rule], d.At.Equal) {
					fail("tie: %q comes before %q", rule, d.Rule)
				}
			}
		default:
			fail("a refused pod is never evicted again by Decide")
		}
	}
	t.Logf("%d scenarios: %v", n, counts)
	assert.Positive(t, counts["force"])
	for _, rule := range order {
		assert.Positive(t, counts["wait until: "+rule], rule)
	}
	for _, rule := range []string{RuleMinPodLifetime, RuleMinHealthySiblingLifetime, RuleMinUnhealthySiblingLifetime} {
		assert.Positive(t, counts["wait: "+rule], "an unknown time held back by %s", rule)
	}
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// watchLag is how late a watch may tell this process of a change: the
// facts the bench saw through its watches (a pod's creation, readiness,
// termination and end) are given this much in the roller's favour when a
// force is checked against them. The drain starts and the forces are the
// roller's own Events, on the same clock, and get none.
const watchLag = 50 * time.Millisecond

// force is one forced deletion, from its ForcedEviction Event.
type force struct {
	pod  types.UID
	name string // namespace/name
	app  string // namespace/app: the budget
	kind string
	node string
	at   time.Time
	// recorded is the caravan.io/last-forced-drain value the roller
	// wrote for it, what the rules read of it afterwards.
	recorded time.Time
}

// step is the replacement of one old node, in the order of the roll.
type step struct {
	node, instance string
	surge          time.Time // the SetDesiredCapacity that launched its replacement
	newNode        string
	newReady       time.Time // the replacement's Node first seen Ready
	drainStart     time.Time // the PATCH that started it (just before its DrainStarted Event)
	drainStartRec  time.Time // the caravan.io/drain-start annotation (whole seconds)
	drainEnd       time.Time // the last of its pods gone
	terminate      time.Time // TerminateInstanceInAutoScalingGroup
	gone           time.Time // its Node gone
	pods, forced   int
	// bound is the least time from the drain's start to its end that
	// the rules allowed, given what happened (see lowerBound).
	bound time.Duration
}

// violation counts, by rule, the forces that came before the rule allowed
// them.
type violations struct {
	byRule map[string]int
	total  int
	// forces is how many forces broke at least one rule.
	forces int
	// earliest is how much before its rule's instant the earliest
	// offending force came.
	earliest time.Duration
}

func (v *violations) add(rule string, early time.Duration) {
	v.byRule[rule]++
	v.total++
	v.earliest = max(v.earliest, early)
}

type analysis struct {
	steps  []step
	forces []force
	// events the roller wrote, by reason, as read from the API.
	events map[string]int
	// forcedByKind counts the forced pods by their budget's kind.
	forcedByKind map[string]int
	// podsMoved is the pods that left an old node; movedTwice those of
	// them whose replacement landed on an old node and had to move again.
	podsMoved, movedTwice int
	bound                 time.Duration
	// boundOnInstants is the bound with the sibling rules read on the
	// instants themselves (instantAges).
	boundOnInstants time.Duration
	// exact: against the instants things happened (the Events' and the
	// watches' clocks); recorded: against the timestamps the cluster keeps
	// and the rules read (annotations, creationTimestamp, the Ready
	// condition's lastTransitionTime: whole seconds).
	exact, recorded violations
	// segments of the roll's time, summed over the steps.
	segments []segment
	problems []string
	// The roller's API requests while a node was draining, and how long
	// the nodes drained, summed over the steps.
	drainRequests int
	drainTime     time.Duration
}

type segment struct {
	name, who string
	took      time.Duration
	inBound   bool
}

// analyse reads the roller's Events back from the API and joins them with
// the facts the bench recorded during the roll.
func (w *world) analyse(ctx context.Context, res *rollResult) (*analysis, error) {
	w.stopFacts()
	pods, nodeFacts, pdbs := w.facts.snapshot()
	list, err := w.cp.Client.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the Events: %w", err)
	}
	an := &analysis{events: map[string]int{}, forcedByKind: map[string]int{},
		exact: violations{byRule: map[string]int{}}, recorded: violations{byRule: map[string]int{}}}
	drainStarts := map[string]time.Time{}
	kinds := map[string]string{} // namespace/app -> kind
	for _, a := range apps(w.opts.nodes) {
		kinds[a.namespace+"/"+a.name] = a.label()
	}
	for _, e := range list.Items {
		if e.ReportingController != "caravan-agent" {
			continue
		}
		an.events[e.Reason]++
		at := eventTime(&e)
		switch e.Reason {
		case "DrainStarted":
			drainStarts[e.Regarding.Name] = at
		case "ForcedEviction":
			f := force{pod: e.Regarding.UID, name: e.Regarding.Namespace + "/" + e.Regarding.Name, at: at}
			if e.Related != nil {
				f.node = e.Related.Name
			}
			if p, ok := pods[f.pod]; ok {
				f.app = p.namespace + "/" + p.app
				f.kind = kinds[f.app]
				if f.node == "" {
					f.node = p.node
				}
			}
			an.forces = append(an.forces, f)
			an.forcedByKind[f.kind]++
		}
	}
	// The agent's Events (core/v1) keep whole seconds: a force is timed by
	// its DELETE's arrival at the API server's proxy, a drain's start by
	// the annotation the roller takes just before the PATCH that sets it.
	for i := range an.forces {
		if at := res.counter.deleteOf(an.forces[i].name); !at.IsZero() {
			an.forces[i].at = at
		}
	}
	for name, nf := range nodeFacts {
		if at, err := time.Parse(time.RFC3339Nano, nf.drainStart); err == nil {
			drainStarts[name] = at
		}
	}
	sort.Slice(an.forces, func(i, j int) bool { return an.forces[i].at.Before(an.forces[j].at) })
	for i := range an.forces {
		an.forces[i].recorded = recordedForce(an.forces[i], nodeFacts)
	}

	an.steps = w.steps(res, pods, nodeFacts, drainStarts, an)
	sla := res.sla
	b := newBounds(sla, pods, pdbs, an.forces, apiAges)
	instants := newBounds(sla, pods, pdbs, an.forces, instantAges)
	for i := range an.steps {
		launch := an.steps[i].newReady.Sub(an.steps[i].surge)
		an.steps[i].bound = b.drain(&an.steps[i])
		an.bound += launch + an.steps[i].bound
		an.boundOnInstants += launch + instants.drain(&an.steps[i])
	}
	an.check(sla, pods)
	if err := an.dump(filepath.Join(w.dir, "steps.txt"), b); err != nil {
		return nil, err
	}
	an.segments = segments(res, an.steps)
	for _, s := range an.steps {
		an.drainRequests += res.counter.between(s.drainStart, s.drainEnd).total
		an.drainTime += s.drainEnd.Sub(s.drainStart)
	}
	return an, nil
}

// recordedForce is the last-forced-drain value written for a force: the
// roller writes it just before the deletion, so it is the last one the
// node showed at or before the deletion; the deletion's time when the
// node never showed one.
func recordedForce(f force, nodes map[string]nodeFacts) time.Time {
	rec := f.at
	if nf, ok := nodes[f.node]; ok {
		for _, t := range nf.lastForced {
			if !t.After(f.at) {
				rec = t
			}
		}
	}
	return rec
}

func eventTime(e *eventsv1.Event) time.Time {
	if !e.EventTime.IsZero() {
		return e.EventTime.Time
	}
	return e.DeprecatedFirstTimestamp.Time
}

// steps pairs each old node with the surge that preceded its drain and the
// new node that surge launched, in the order of the drains.
func (w *world) steps(res *rollResult, pods map[types.UID]podFacts, nfs map[string]nodeFacts, drainStarts map[string]time.Time, an *analysis) []step {
	var out []step
	for name, instance := range res.oldNodes {
		s := step{node: name, instance: instance, drainStart: drainStarts[name]}
		nf := nfs[name]
		if s.drainStart.IsZero() {
			s.drainStart = nf.drainingSeen
			an.problems = append(an.problems, fmt.Sprintf("node %s: no DrainStarted Event", name))
		}
		s.drainStartRec, _ = time.Parse(time.RFC3339, nf.drainStart)
		s.gone = nf.gone
		for _, c := range res.timeline {
			if c.Op == "TerminateInstanceInAutoScalingGroup" && c.Instance == instance {
				s.terminate = c.At
				break
			}
		}
		s.drainEnd = s.drainStart
		for _, p := range pods {
			if p.node != name {
				continue
			}
			s.pods++
			an.podsMoved++
			if p.gone.After(s.drainEnd) {
				s.drainEnd = p.gone
			}
			if p.seen.After(res.start) {
				an.movedTwice++
			}
		}
		for _, f := range an.forces {
			if f.node == name {
				s.forced++
			}
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].drainStart.Before(out[j].drainStart) })

	var surges []awsCall
	for _, c := range res.timeline {
		if c.Op == "SetDesiredCapacity" {
			surges = append(surges, c)
		}
	}
	var fresh []nodeFacts
	for name, nf := range nfs {
		if _, old := res.oldNodes[name]; !old && !nf.seen.Before(res.start) {
			fresh = append(fresh, nf)
		}
	}
	sort.Slice(fresh, func(i, j int) bool { return fresh[i].seen.Before(fresh[j].seen) })
	used := map[string]bool{}
	for i := range out {
		s := &out[i]
		// The last surge before the drain, and the first new node after it.
		for _, c := range surges {
			if c.At.Before(s.drainStart) {
				s.surge = c.At
			}
		}
		for _, nf := range fresh {
			if !used[nf.name] && !nf.seen.Before(s.surge) {
				used[nf.name] = true
				s.newNode, s.newReady = nf.name, nf.readySeen
				break
			}
		}
		if s.surge.IsZero() || s.newNode == "" {
			an.problems = append(an.problems, fmt.Sprintf("node %s: no surge or no new node before its drain", s.node))
			s.newReady = s.surge
		}
	}
	if len(surges) != len(out) {
		an.problems = append(an.problems, fmt.Sprintf("%d SetDesiredCapacity calls for %d replaced nodes", len(surges), len(out)))
	}
	return out
}

// bounds computes the least drain time the rules allow a node, from the
// facts of the roll.
type bounds struct {
	sla    nodes.SLA
	pods   map[types.UID]podFacts
	pdbs   map[string][]pdbPoint
	forces []force
	// ages is how the sibling rules read a pod's creation and readiness.
	ages ages
	// at is each forced pod's instant in the bound; leave each other
	// pod's.
	at, leave map[types.UID]time.Time
}

func newBounds(sla nodes.SLA, pods map[types.UID]podFacts, pdbs map[string][]pdbPoint, forces []force, ages ages) *bounds {
	return &bounds{sla: sla, pods: pods, pdbs: pdbs, forces: forces, ages: ages, at: map[types.UID]time.Time{}, leave: map[types.UID]time.Time{}}
}

// ages reads when a pod was created and when it became ready.
type ages func(p podFacts) (created, ready time.Time)

// recordedAges are the seconds the API recorded: a rule read on them
// alone may come up to a second early.
func recordedAges(p podFacts) (time.Time, time.Time) { return p.created, p.readySince }

// apiAges are the ends of the seconds the API recorded: the earliest
// instants from which a reader of the API knows an age has passed, as the
// roller reads them.
func apiAges(p podFacts) (time.Time, time.Time) {
	return endOfSecond(p.created), endOfSecond(p.readySince)
}

// instantAges are the instants themselves, as the watches saw them, which
// no reader of the API can know to within a second.
func instantAges(p podFacts) (time.Time, time.Time) {
	return p.createdAt(watchLag), p.readyAt(watchLag)
}

func endOfSecond(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Second).Add(time.Second)
}

// drain is the least time from the node's drain start to its last pod
// gone: each pod leaves at the earliest instant the rules allow it, then
// takes as long to end as it did (kwok's part). The rules are read as the
// roller reads them, on the timestamps the cluster keeps: the drain's start
// and the last force in whole seconds (the annotations), the pods'
// creationTimestamp and Ready lastTransitionTime.
//
//   - A pod without a budget leaves at the drain's start.
//   - An evicted pod under a budget leaves when its budget last began to
//     allow a disruption before its eviction (or at the drain's start):
//     the Eviction API, not the SLA, held it until then.
//   - The forced pods leave one by one in the order they were forced, the
//     j-th at s_j = the latest of: drain start + grace period; its
//     creation + minimum pod lifetime; the last force in its budget on
//     another node + force interval; s_(j-1) + force interval (same node);
//     and, after a force q of its own budget on this node, s_q + the delay
//     q's aftermath imposed in the roll (q terminating, q's replacement
//     younger than the sibling lifetimes, at least the force interval);
//     then the first instant from there at which no other pod of its
//     budget that existed before its force is terminating or too young.
func (b *bounds) drain(s *step) time.Duration {
	end := s.drainStart
	forced := map[types.UID]bool{}
	var chain []force
	for _, f := range b.forces {
		if f.node == s.node {
			chain = append(chain, f)
			forced[f.pod] = true
		}
	}
	for _, p := range b.pods {
		if p.node != s.node || forced[p.uid] || p.gone.IsZero() {
			continue
		}
		leave := s.drainStart
		if points, ok := b.pdbs[p.namespace+"/"+p.app]; ok {
			leave = latest(leave, allowedSince(points, p.terminating))
		}
		b.leave[p.uid] = leave
		end = latest(end, leave.Add(p.gone.Sub(p.terminating)))
	}
	sla := b.sla
	start := s.drainStartRec
	if start.IsZero() {
		start = s.drainStart
	}
	at := make([]time.Time, len(chain))
	for j, f := range chain {
		p := b.pods[f.pod]
		t := latest(start.Add(sla.GracePeriod), p.created.Add(sla.MinPodLifetime))
		if j > 0 {
			t = latest(t, at[j-1].Add(sla.ForceEvictInterval))
		}
		// Its own replacement, and whatever of its budget came after its
		// force, came of it.
		exclude := b.after(p, f.at)
		for q := range j {
			if chain[q].app != f.app {
				continue
			}
			// q's aftermath, as long as it held p back in the roll; q's
			// replacement is part of it.
			exclude[chain[q].pod] = true
			for uid := range b.after(p, chain[q].at) {
				exclude[uid] = true
			}
			qStart := chain[q].recorded.Add(sla.ForceEvictInterval)
			held := b.siblingsAllow(f.pod, qStart, b.after(p, f.at)).Sub(chain[q].at)
			t = latest(t, at[q].Add(held))
		}
		for _, other := range b.forces {
			if other.app == f.app && other.node != s.node && other.at.Before(f.at) {
				t = latest(t, other.recorded.Add(sla.ForceEvictInterval))
			}
		}
		at[j] = b.siblingsAllow(f.pod, t, exclude)
		b.at[f.pod] = at[j]
		end = latest(end, at[j].Add(p.gone.Sub(p.terminating)))
	}
	return end.Sub(s.drainStart)
}

// after are the other pods of p's budget first seen at or after t.
func (b *bounds) after(p podFacts, t time.Time) map[types.UID]bool {
	out := map[types.UID]bool{}
	for uid, s := range b.pods {
		if uid != p.uid && s.namespace == p.namespace && s.app == p.app && !s.seen.Before(t) {
			out[uid] = true
		}
	}
	return out
}

// allowedSince is when the budget last began to allow a disruption at or
// before t: the start of the last run of disruptionsAllowed > 0 that
// began by then (the eviction itself may have ended the run just before
// the watch saw the pod go).
func allowedSince(points []pdbPoint, t time.Time) time.Time {
	var since, run time.Time
	for _, pt := range points {
		if pt.at.After(t.Add(watchLag)) {
			break
		}
		switch {
		case pt.allowed > 0 && run.IsZero():
			run = pt.at
			since = run
		case pt.allowed <= 0:
			run = time.Time{}
		}
	}
	return since
}

// createdAt and readyAt are the instants a pod was created and became
// ready: when the watch saw it, less its lag, and not before the second
// the API recorded. The API keeps whole seconds; the rules count from the
// instant itself.
func (p podFacts) createdAt(lag time.Duration) time.Time { return instant(p.created, p.seen, lag) }
func (p podFacts) readyAt(lag time.Duration) time.Time {
	return instant(p.readySince, p.readySeen, lag)
}

func instant(recorded, seen time.Time, lag time.Duration) time.Time {
	if seen.IsZero() {
		return recorded
	}
	return latest(recorded, seen.Add(-lag))
}

// siblingsAllow is the first instant from t at which the sibling rules, as
// recorded, allow forcing the pod: no other pod of its Deployment (which
// its budget covers) but those excluded is terminating, every ready one
// has been ready for the healthy sibling lifetime and every other one
// exists for the unhealthy sibling lifetime.
func (b *bounds) siblingsAllow(uid types.UID, t time.Time, exclude map[types.UID]bool) time.Time {
	p := b.pods[uid]
	var sibs []podFacts
	candidates := []time.Time{t}
	for id, s := range b.pods {
		if id == uid || exclude[id] || s.namespace != p.namespace || s.app != p.app {
			continue
		}
		sibs = append(sibs, s)
		created, ready := b.ages(s)
		for _, c := range []time.Time{s.gone, s.seen, s.readySeen,
			created.Add(b.sla.MinUnhealthySiblingLifetime), ready.Add(b.sla.MinHealthySiblingLifetime)} {
			if c.After(t) {
				candidates = append(candidates, c)
			}
		}
	}
	slices.SortFunc(candidates, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range candidates {
		if siblingRule(sibs, c, b.sla, b.ages, watchLag) == "" {
			return c
		}
	}
	return t
}

// siblingRule names the sibling rule that forbids forcing a pod at t, or
// "". Whether a sibling exists, is ready or terminating at t is what the
// watches saw; its lifetimes count from what ages reads. lag is given in
// the roller's favour.
func siblingRule(sibs []podFacts, t time.Time, sla nodes.SLA, ages ages, lag time.Duration) string {
	for _, s := range sibs {
		if s.seen.After(t.Add(-lag)) || !s.gone.IsZero() && !s.gone.After(t.Add(lag)) {
			continue // not there at t
		}
		created, readySince := ages(s)
		switch {
		case !s.terminating.IsZero() && !s.terminating.After(t.Add(-lag)):
			return nodes.RuleSiblingTerminating
		case !s.readySeen.IsZero() && !s.readySeen.After(t):
			if readySince.Add(sla.MinHealthySiblingLifetime).After(t) {
				return nodes.RuleMinHealthySiblingLifetime
			}
		case created.Add(sla.MinUnhealthySiblingLifetime).After(t):
			return nodes.RuleMinUnhealthySiblingLifetime
		}
	}
	return ""
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// check counts the forces that came before a rule allowed them: exactly,
// on the instants things happened; and as recorded, on the timestamps the
// cluster keeps and the rules read.
func (an *analysis) check(sla nodes.SLA, pods map[types.UID]podFacts) {
	starts := map[string]step{}
	for _, s := range an.steps {
		starts[s.node] = s
	}
	for i, f := range an.forces {
		p, ok := pods[f.pod]
		s, selected := starts[f.node]
		if !ok || !selected {
			an.problems = append(an.problems, fmt.Sprintf("forced pod %s on node %s: not a pod of an old node", f.name, f.node))
			continue
		}
		type rule struct {
			name            string
			exact, recorded time.Time
		}
		rules := []rule{
			{nodes.RuleGracePeriod, s.drainStart.Add(sla.GracePeriod), s.drainStartRec.Add(sla.GracePeriod)},
			{nodes.RuleMinPodLifetime, p.seen.Add(sla.MinPodLifetime - watchLag), p.created.Add(sla.MinPodLifetime)},
		}
		for _, prev := range an.forces[:i] {
			// The roller keeps the last force as an annotation on the node
			// and the budget: recorded is the value it wrote.
			if prev.node == f.node {
				rules = append(rules, rule{nodes.RuleForceEvictInterval, prev.at.Add(sla.ForceEvictInterval), prev.recorded.Add(sla.ForceEvictInterval)})
			}
			if prev.app == f.app {
				rules = append(rules, rule{nodes.RulePDBForceEvictInterval, prev.at.Add(sla.ForceEvictInterval), prev.recorded.Add(sla.ForceEvictInterval)})
			}
		}
		exact := map[string]time.Duration{}
		recorded := map[string]bool{}
		for _, r := range rules {
			if early := r.exact.Sub(f.at); early > 0 {
				exact[r.name] = max(exact[r.name], early)
			}
			if r.recorded.After(f.at) {
				recorded[r.name] = true
			}
		}
		var sibs []podFacts
		for id, sib := range pods {
			if id != f.pod && sib.namespace == p.namespace && sib.app == p.app {
				sibs = append(sibs, sib)
			}
		}
		if r := siblingRule(sibs, f.at, sla, instantAges, watchLag); r != "" {
			exact[r] = max(exact[r], 0)
		}
		if r := siblingRule(sibs, f.at, sla, recordedAges, watchLag); r != "" {
			recorded[r] = true
		}
		for name, early := range exact {
			an.exact.add(name, early)
		}
		for name := range recorded {
			an.recorded.add(name, 0)
		}
		if len(exact) > 0 {
			an.exact.forces++
		}
		if len(recorded) > 0 {
			an.recorded.forces++
		}
	}
}

// segments splits the roll's time into what each step waited for, summed
// over the steps; the lower bound is the sum of those marked inBound. A
// step begins when the one before terminated its instance: the roller
// surges again at once, so the old Node's removal overlaps the next
// launch, and only the last one is on the roll's path.
func segments(res *rollResult, steps []step) []segment {
	out := []segment{
		{name: "previous instance terminated (or roll start) → surge", who: "roller"},
		{name: "surge → new node Ready (moto launches, the bridge registers, kwok readies)", who: "infrastructure", inBound: true},
		{name: "new node Ready → drain start (the pass it wakes selects)", who: "roller"},
		{name: "drain start → last pod gone: the least the rules allow", who: "drain SLA, kwok", inBound: true},
		{name: "drain start → last pod gone: beyond that (forces and evictions at the pass after the instant or change)", who: "roller"},
		{name: "last pod gone → instance terminated (the pass it wakes)", who: "roller"},
		{name: "last instance terminated → its Node gone (the bridge deletes it)", who: "bridge"},
		{name: "last Node gone → roll ended (the pass it wakes resumes AZRebalance)", who: "roller"},
	}
	prev := res.start
	for _, s := range steps {
		out[0].took += s.surge.Sub(prev)
		out[1].took += s.newReady.Sub(s.surge)
		out[2].took += s.drainStart.Sub(s.newReady)
		out[3].took += s.bound
		out[4].took += s.drainEnd.Sub(s.drainStart) - s.bound
		out[5].took += s.terminate.Sub(s.drainEnd)
		prev = s.terminate
	}
	if len(steps) > 0 {
		last := steps[len(steps)-1]
		out[6].took = last.gone.Sub(last.terminate)
		prev = last.gone
	}
	out[7].took = res.end.Sub(prev)
	return out
}

// dump writes each step's facts and bound, for a look with -keep.
func (an *analysis) dump(path string, b *bounds) error {
	var sb strings.Builder
	for i, s := range an.steps {
		fmt.Fprintf(&sb, "step %d node %s pods %d forced %d: surge→ready %s, ready→start %s, drain %s (bound %s), end→terminate %s, terminate→gone %s\n",
			i, s.node, s.pods, s.forced, s.newReady.Sub(s.surge), s.drainStart.Sub(s.newReady), s.drainEnd.Sub(s.drainStart), s.bound,
			s.terminate.Sub(s.drainEnd), s.gone.Sub(s.terminate))
		var lines []string
		for _, p := range b.pods {
			if p.node != s.node {
				continue
			}
			rel := func(t time.Time) string {
				if t.IsZero() {
					return "-"
				}
				return t.Sub(s.drainStart).Round(time.Millisecond).String()
			}
			what := "evicted"
			bound := b.leave[p.uid]
			for _, f := range an.forces {
				if f.pod == p.uid {
					what = "forced@" + rel(f.at)
					bound = b.at[p.uid]
				}
			}
			lines = append(lines, fmt.Sprintf("  %s/%s %s: terminating %s gone %s; bound %s", p.namespace, p.name, what, rel(p.terminating), rel(p.gone), rel(bound)))
		}
		slices.Sort(lines)
		sb.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return os.WriteFile(path, []byte(sb.String()), 0o644)
}

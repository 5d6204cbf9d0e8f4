package nodes

import (
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Outcome is what a plan leaves once its commands are made: the rolls
// under way, each pool's progress, and the memory for the next pass.
type Outcome struct {
	Rolls    []RollState
	Progress []api.NodePoolProgress
	Memory   Memory
}

// Plan decides one pass of every pool's roll from a snapshot: the commands
// to make, in order, and what they leave. It is pure; Decide is its
// per-pod kernel, and the forces it plans count in the decisions after
// them (a forced pod is terminating, and its node's and budgets' last
// force is now).
func Plan(s Snapshot, cfg RollConfig) ([]Command, Outcome) {
	p := newPlanner(s)
	p.backstop = cfg.Poll
	for _, spec := range cfg.Pools {
		i := slices.IndexFunc(s.Groups, func(g Group) bool { return g.Pool == spec.Name })
		if i < 0 {
			continue
		}
		var state *RollState
		if j := slices.IndexFunc(s.Rolls, func(r RollState) bool { return r.Pool == spec.Name }); j >= 0 {
			state = &RollState{}
			*state = s.Rolls[j]
		}
		next, progress := p.pool(cfg, view(spec, s.Groups[i], s.Nodes), state)
		if next != nil {
			p.out.Rolls = append(p.out.Rolls, *next)
		}
		p.out.Progress = append(p.out.Progress, progress)
	}
	return p.cmds, p.finish()
}

// PlanRetire decides one pass over the nodes of a pool that left the
// registry: each is selected and its pods moved as the SLA allows; its
// instances end with the pool's stack, which the caller deletes once
// Progress says nothing is left to move.
func PlanRetire(s Snapshot, pool string, sla SLA, backstop time.Duration) ([]Command, Progress, Memory) {
	p := newPlanner(s)
	p.backstop = backstop
	var progress Progress
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Labels[PoolLabel] != pool {
			continue
		}
		progress.Nodes++
		start := p.selectNode(n, len(s.Pods[n.Name]))
		pods, next, _ := p.drain(n, start, sla, false)
		progress.Pods += pods
		progress.Next = earlier(progress.Next, next)
	}
	return p.cmds, progress, p.finish().Memory
}

// planner is one plan in the making.
type planner struct {
	snap     Snapshot
	cmds     []Command
	out      Outcome
	memory   Memory
	backstop time.Duration
	// counts are the budgets' counts now, by key.
	counts map[string]BudgetCounts
	// What the forces planned so far changed: the last force on a node and
	// in a budget, and the pods they made terminating.
	nodeForced   map[string]time.Time
	budgetForced map[string]time.Time
	forced       map[string]bool
	// seen are the pods to move the plan looked at; the refusals of the
	// others are forgotten.
	seen map[types.UID]bool
}

func newPlanner(s Snapshot) *planner {
	p := &planner{snap: s, memory: s.Memory.clone(), counts: map[string]BudgetCounts{},
		nodeForced: map[string]time.Time{}, budgetForced: map[string]time.Time{}, forced: map[string]bool{}, seen: map[types.UID]bool{}}
	for i := range s.Budgets {
		p.counts[budgetKey(&s.Budgets[i])] = countsOf(&s.Budgets[i])
	}
	return p
}

func (p *planner) emit(c Command) { p.cmds = append(p.cmds, c) }

func (p *planner) finish() Outcome {
	for uid := range p.memory.Refusals {
		if !p.seen[uid] {
			delete(p.memory.Refusals, uid)
		}
	}
	p.out.Memory = p.memory
	return p.out
}

// pool plans a step of one pool's roll and returns its state after it.
func (p *planner) pool(cfg RollConfig, v *poolView, state *RollState) (*RollState, api.NodePoolProgress) {
	spec, g := v.spec, v.group
	progress := api.NodePoolProgress{Name: spec.Name, NodesTotal: len(v.nodes), Outdated: len(v.outdated)}
	if v.draining != nil {
		progress.Draining = 1
	}
	if cfg.Blocked[spec.Name] {
		p.stop(v, cfg.HardBlock)
		if !cfg.HardBlock && v.draining != nil {
			// A soft block lets the node being drained finish.
			p.drainStep(v, state, &progress)
		}
		return state, progress
	}
	if len(v.outdated) == 0 && v.draining == nil {
		if state != nil && len(v.leaving) == 0 {
			p.emit(Command{Kind: ResumeRebalance, Pool: spec.Name, Group: g.Name})
			return nil, progress
		}
		return state, progress
	}
	if opens, closed := cfg.Closed[spec.Name]; closed {
		if !opens.IsZero() {
			progress.NextWindow = &opens
		}
		// Outside its window a roll finishes the node being drained and
		// goes on from its marks when the window opens.
		if v.draining != nil {
			p.drainStep(v, state, &progress)
		}
		return state, progress
	}
	if state == nil {
		state = &RollState{Pool: spec.Name, Target: g.Desired, Desired: g.Desired}
		p.emit(Command{Kind: SuspendRebalance, Pool: spec.Name, Group: g.Name})
	} else {
		state.follow(g)
	}
	p.mark(v, cfg.TaintEffect)
	if v.draining == nil && !p.selectNext(cfg, v, state, &progress) {
		return state, progress
	}
	if p.drainStep(v, state, &progress) {
		// The group shrank with the terminated instance: surge again now,
		// so that the next node's replacement launches while this Node goes.
		p.surge(cfg, v, state)
	}
	return state, progress
}

// follow counts the autoscaler's changes into a roll: a desired capacity
// the roll did not set was set by someone else, who moved the size the
// roll ends at by as much. A state of the format before Desired was kept
// takes the group's as its own.
func (s *RollState) follow(g Group) {
	if s.Desired == 0 {
		s.Desired = g.Desired
		return
	}
	if g.Desired != s.Desired {
		s.Target = min(max(s.Target+g.Desired-s.Desired, g.Min), g.Max)
		s.Desired = g.Desired
	}
}

// surge raises the group's desired capacity to what the roll wants now,
// and reports whether it did.
func (p *planner) surge(cfg RollConfig, v *poolView, state *RollState) bool {
	want := Capacity(state.Target, cfg.Surge, len(v.outdated), v.group.Max)
	if v.group.Desired >= want {
		return false
	}
	p.emit(Command{Kind: SetDesiredCapacity, Pool: v.spec.Name, Group: v.group.Name, Desired: want})
	v.group.Desired, state.Desired = want, want
	return true
}

// selectNext surges the group when it needs to and, once every instance
// has a Ready node, picks the next node and starts its drain. It reports
// whether a drain started.
func (p *planner) selectNext(cfg RollConfig, v *poolView, state *RollState, progress *api.NodePoolProgress) bool {
	grew := p.surge(cfg, v, state)
	next, ok := p.choose(v)
	if !ok || grew || v.ready < v.group.Desired {
		return false
	}
	delete(p.memory.Chosen, v.spec.Name)
	n := v.nodes[next.Name]
	p.selectNode(n, next.Pods)
	v.draining, progress.Draining = n, 1
	return true
}

// choose picks the pool's next node to drain, once: while the surge's new
// node launches, so that the drain can start as soon as it is Ready. The
// snapshot holds the pods of the nodes it may choose.
func (p *planner) choose(v *poolView) (Candidate, bool) {
	if id, ok := p.memory.Chosen[v.spec.Name]; ok && slices.Contains(v.outdated, id) {
		if pods, read := p.snap.Pods[v.nodes[id].Name]; read {
			return Candidate{Name: id, Pods: len(pods), Created: v.nodes[id].CreationTimestamp.Time}, true
		}
	}
	var candidates []Candidate
	for _, id := range v.outdated {
		n := v.nodes[id]
		pods, read := p.snap.Pods[n.Name]
		if !read {
			continue
		}
		candidates = append(candidates, Candidate{Name: id, Pods: len(pods), Created: n.CreationTimestamp.Time})
	}
	next, ok := Next(candidates)
	if ok {
		p.memory.Chosen[v.spec.Name] = next.Name
	}
	return next, ok
}

// selectNode starts a node's drain, unless it is under way, and returns
// when the drain started: a drain restarted keeps its first start.
func (p *planner) selectNode(n *corev1.Node, pods int) time.Time {
	if n.Labels[LifecycleLabel] == DrainingValue {
		if start := nodeState(n).DrainStart; !start.IsZero() {
			return start
		}
	}
	p.emit(Command{Kind: StartNodeDrain, Node: n, Pods: pods})
	if start := nodeState(n).DrainStart; !start.IsZero() {
		return start
	}
	return p.snap.Now
}

// mark labels and taints every outdated node, so that new pods avoid them.
func (p *planner) mark(v *poolView, effect corev1.TaintEffect) {
	for _, id := range v.outdated {
		if n := v.nodes[id]; n.Labels[LifecycleLabel] == "" {
			p.emit(Command{Kind: MarkNode, Pool: v.spec.Name, Node: n, Effect: effect})
		}
	}
}

// stop ends a blocked pool's roll for now: nodes only marked are un-marked,
// and with a hard block the node being drained is uncordoned and left.
func (p *planner) stop(v *poolView, hard bool) {
	ids := make([]string, 0, len(v.nodes))
	for id := range v.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		n := v.nodes[id]
		if value := n.Labels[LifecycleLabel]; value == DecommissionValue || value == DrainingValue && hard {
			p.emit(Command{Kind: UnmarkNode, Pool: v.spec.Name, Node: n})
		}
	}
}

// drainStep makes one step of the drain of the pool's draining node and
// reports whether its instance is terminated by it: the group's desired
// capacity goes down by one with it, which the roll counts as its own.
func (p *planner) drainStep(v *poolView, state *RollState, progress *api.NodePoolProgress) bool {
	_, next, terminated := p.drain(v.draining, nodeState(v.draining).DrainStart, v.spec.SLA, true)
	if next != nil {
		at := next.At
		progress.NextForcedEviction, progress.HeldBy = &at, next.Rule
	}
	if !terminated {
		return false
	}
	v.leave(v.draining)
	v.group.Desired--
	if state != nil {
		state.Desired--
		// The terminate, just planned, carries what it leaves.
		p.cmds[len(p.cmds)-1].Desired = state.Desired
	}
	progress.Outdated, progress.Draining = len(v.outdated), 0
	return true
}

// drain plans the moves of a draining node's pods, as far as the SLA
// allows now, and with terminate the end of its instance once none is
// left. It returns how many pods are left to move, the earliest forecast
// force among those that wait, and whether it ends the instance.
func (p *planner) drain(n *corev1.Node, start time.Time, sla SLA, terminate bool) (int, *Decision, bool) {
	pods, read := p.snap.Pods[n.Name]
	if !read {
		return 0, nil, false
	}
	if len(pods) == 0 {
		if !terminate || n.Annotations[TerminatedAnnotation] != "" {
			return 0, nil, false
		}
		p.emit(Command{Kind: TerminateInstance, Node: n, Pool: n.Labels[PoolLabel]})
		return 0, nil, true
	}
	node := nodeState(n)
	node.DrainStart = start
	node.LastForced = p.snap.Forces.Instant(n.Annotations)
	var next *Decision
	for _, i := range podOrder(pods) {
		d := p.move(&pods[i], n, node, sla)
		if d != nil && d.Action == Wait && !d.At.IsZero() {
			next = earlier(next, d)
		}
	}
	return len(pods), next, false
}

// podOrder is the order the pods of a node are decided in: by namespace
// and name, so that a plan is the same for the same snapshot.
func podOrder(pods []corev1.Pod) []int {
	order := make([]int, len(pods))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := strings.Compare(pods[a].Namespace, pods[b].Namespace); c != 0 {
			return c
		}
		return strings.Compare(pods[a].Name, pods[b].Name)
	})
	return order
}

// move plans what happens to one pod to move: asked to leave when it was
// not refused, or its refusal is due again; decided on, once its budgets
// and siblings are read, when it was refused. It returns the pod's
// standing decision, if any.
func (p *planner) move(pod *corev1.Pod, n *corev1.Node, node NodeState, sla SLA) *Decision {
	if pod.DeletionTimestamp != nil {
		return nil
	}
	p.seen[pod.UID] = true
	ref, refused := p.memory.Refusals[pod.UID]
	switch {
	case !refused:
		p.emit(Command{Kind: AskEviction, Node: n, Pod: pod})
		return nil
	case !ref.Decided:
		return p.decide(pod, n, node, sla, ref)
	case ref.Due(p.snap.Now, p.counts, len(p.snap.Pods[n.Name]), p.backstop):
		if d, known := p.redecide(pod, n, node, sla, ref); known {
			return d
		}
		p.emit(Command{Kind: AskEviction, Node: n, Pod: pod})
		return nil
	}
	return &ref.Decision
}

// redecide decides again on a refused pod that is due, without asking for
// its eviction, when the snapshot shows a budget of it allowing no
// disruption: the Eviction API would refuse it again, on the counts the
// snapshot read. It needs the pod's budgets and siblings in the snapshot;
// without them, or when every budget allows a disruption now, the pod is
// asked. Counts read before a disruption became allowed cost no more than
// a wait until the watch shows them, and a force on them only an eviction:
// the force reads the budgets again.
func (p *planner) redecide(pod *corev1.Pod, n *corev1.Node, node NodeState, sla SLA, ref Refusal) (*Decision, bool) {
	budgets := budgetsOf(p.snap.Budgets, pod)
	if len(budgets) == 0 || allowDisruption(budgets) {
		return nil, false
	}
	for _, b := range budgets {
		if _, read := p.snap.Siblings[budgetKey(b)]; !read {
			return nil, false
		}
	}
	ref.Asked = p.snap.Now
	return p.decide(pod, n, node, sla, ref), true
}

// decide applies the SLA to a refused pod: it is forced now, or waits
// with its forecast written. A pod whose budgets or siblings the snapshot
// lacks is left for a pass that read them; one whose budgets all allow a
// disruption now, or that no budget selects any more, is asked again.
func (p *planner) decide(pod *corev1.Pod, n *corev1.Node, node NodeState, sla SLA, ref Refusal) *Decision {
	budgets := budgetsOf(p.snap.Budgets, pod)
	if allowDisruption(budgets) {
		// The budgets changed between the refusal and their reading: the
		// eviction may pass now, and a change seen before the decision
		// would not show as one after it.
		delete(p.memory.Refusals, pod.UID)
		p.emit(Command{Kind: AskEviction, Node: n, Pod: pod})
		return nil
	}
	var history History
	var siblings []Sibling
	keys := make([]string, 0, len(budgets))
	counts := map[string]BudgetCounts{}
	names := map[string]bool{pod.Name: true}
	for _, b := range budgets {
		key := budgetKey(b)
		covered, read := p.snap.Siblings[key]
		if !read {
			return nil
		}
		keys, counts[key] = append(keys, key), countsOf(b)
		history.LastForcedInPDB = laterTime(history.LastForcedInPDB, p.snap.Forces.Instant(b.Annotations), p.budgetForced[key])
		for _, s := range covered {
			if names[s.Name] {
				continue
			}
			names[s.Name] = true
			s.Terminating = s.Terminating || p.forced[pod.Namespace+"/"+s.Name]
			siblings = append(siblings, s)
		}
	}
	node.LastForced = laterTime(node.LastForced, p.nodeForced[n.Name])
	d := Decide(p.snap.Now, node, PodState{Namespace: pod.Namespace, Name: pod.Name, Created: latest(pod.CreationTimestamp), EvictionRefused: true},
		siblings, history, sla)
	if d.Action == Force {
		p.emit(Command{Kind: ForceDeletion, Node: n, Pod: pod, Decision: d, Budgets: keys, LastForcedInPDB: history.LastForcedInPDB, Siblings: siblings})
		delete(p.memory.Refusals, pod.UID)
		p.forced[pod.Namespace+"/"+pod.Name] = true
		p.nodeForced[n.Name] = p.snap.Now
		for _, key := range keys {
			p.budgetForced[key] = p.snap.Now
		}
		return &d
	}
	ref.Decided, ref.Decision, ref.Budgets, ref.NodePods = true, d, counts, len(p.snap.Pods[n.Name])
	p.memory.Refusals[pod.UID] = ref
	p.emit(Command{Kind: WriteForecast, Node: n, Pod: pod, Decision: d})
	return &d
}

func annotationTime(annotations map[string]string) time.Time {
	t, _ := time.Parse(time.RFC3339, annotations[LastForcedAnnotation])
	return t
}

func laterTime(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// earlier is the decision with the earlier forecast, of two.
func earlier(a, b *Decision) *Decision {
	if b == nil || b.At.IsZero() {
		return a
	}
	if a == nil || b.At.Before(a.At) {
		return b
	}
	return a
}

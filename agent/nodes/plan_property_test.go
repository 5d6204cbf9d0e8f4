package nodes

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// randomSnapshot makes a snapshot of one or two pools in any state a
// cluster can be found in: instances launching, leaving or without a Node,
// Nodes not Ready, marked or draining (now and then two at once, as a
// hand edit leaves them), rolls under way that the autoscaler moved, pods
// under budgets with siblings of every age, refusals decided or not.
func randomSnapshot(r *rand.Rand) (Snapshot, RollConfig) {
	w := newWorld()
	w.s.Now = t0.Add(time.Duration(r.IntN(3600)) * time.Second)
	cfg := rollConfig()
	cfg.Surge = r.IntN(3)
	cfg.HardBlock = r.IntN(2) == 0
	ago := func(max time.Duration) time.Time { return w.s.Now.Add(-time.Duration(r.Int64N(int64(max)))) }
	for pi := range 1 + r.IntN(2) {
		pool := fmt.Sprintf("pool%d", pi)
		cfg.Pools = append(cfg.Pools, spec(pool))
		switch r.IntN(8) {
		case 0:
			cfg.Blocked[pool] = true
		case 1:
			cfg.Closed[pool] = w.s.Now.Add(time.Hour)
		}
		desired := r.IntN(7)
		g := Group{Name: pool + "-asg", Pool: pool, Desired: desired, Min: r.IntN(2), Max: desired + r.IntN(3)}
		for i := range desired + r.IntN(2) {
			id := fmt.Sprintf("%s-%d", pool, i)
			revision := []string{"r1", "r2"}[r.IntN(2)]
			lifecycle := []string{"InService", "InService", "InService", "Pending", "Pending:Wait", "Terminating"}[r.IntN(6)]
			g.Instances = append(g.Instances, Instance{ID: id, Revision: revision, Lifecycle: lifecycle})
			if r.IntN(6) == 0 {
				continue
			}
			n := w.node(pool, id, r.IntN(5) > 0)
			switch r.IntN(6) {
			case 0:
				n.Labels[LifecycleLabel] = DecommissionValue
			case 1:
				n.Labels[LifecycleLabel] = DrainingValue
				if r.IntN(4) > 0 {
					n.Annotations[DrainStartAnnotation] = ago(time.Hour).Format(time.RFC3339Nano)
				}
			}
			if r.IntN(3) == 0 {
				randomForce(r, &w.s.Forces, n.Annotations, ago)
			}
			if r.IntN(3) > 0 {
				randomPods(r, w, id, ago)
			}
		}
		w.s.Groups = append(w.s.Groups, g)
		if r.IntN(2) == 0 {
			w.rolling(pool, r.IntN(desired+1), []int{0, desired, desired + 1, max(desired-1, 0)}[r.IntN(4)])
		}
		if r.IntN(3) == 0 && len(g.Instances) > 0 {
			w.s.Memory.Chosen[pool] = g.Instances[r.IntN(len(g.Instances))].ID
		}
	}
	for _, app := range []string{"a", "b", "c"} {
		if r.IntN(4) == 0 {
			continue
		}
		var siblings []string
		for i := range r.IntN(4) {
			siblings = append(siblings, fmt.Sprintf("sib-%s-%d", app, i))
		}
		w.budget(app, int32(r.IntN(2)), siblings...)
		b := &w.s.Budgets[len(w.s.Budgets)-1]
		if r.IntN(3) == 0 {
			b.Annotations = map[string]string{}
			randomForce(r, &w.s.Forces, b.Annotations, ago)
		}
		key := "team/" + app
		for i := range w.s.Siblings[key] {
			s := &w.s.Siblings[key][i]
			s.Ready, s.ReadySince, s.Created, s.Terminating = r.IntN(3) > 0, ago(2*time.Minute), ago(2*time.Minute), r.IntN(8) == 0
		}
		if r.IntN(6) == 0 {
			delete(w.s.Siblings, key)
		}
	}
	return w.s, cfg
}

// randomForce records a force in annotations and, half the time, its
// deletion made up to 5 s later by this Roller.
func randomForce(r *rand.Rand, log *ForceLog, annotations map[string]string, ago func(time.Duration) time.Time) {
	recorded := ago(10 * time.Minute)
	annotations[LastForcedAnnotation] = recorded.Format(time.RFC3339Nano)
	if r.IntN(2) == 0 {
		log.made(annotations[LastForcedAnnotation], recorded.Add(time.Duration(r.Int64N(int64(5*time.Second)))))
	}
}

func randomPods(r *rand.Rand, w *world, id string, ago func(time.Duration) time.Time) {
	w.pods(id, []string{"a", "b", "c", "none"}[r.IntN(4)], r.IntN(4))
	pods := w.s.Pods[w.nodeOf(id).Name]
	for i := range pods {
		p := &pods[i]
		p.CreationTimestamp = metav1.NewTime(ago(2 * time.Hour))
		if r.IntN(8) == 0 {
			p.DeletionTimestamp = &metav1.Time{Time: w.s.Now}
		}
		switch r.IntN(4) {
		case 0:
			w.refused(p.Name, Refusal{Asked: ago(time.Minute)})
		case 1:
			w.refused(p.Name, Refusal{Asked: ago(time.Minute), Decided: true,
				Decision: Decision{Action: Wait, At: w.s.Now.Add(time.Duration(r.IntN(120)-60) * time.Second), Rule: RuleGracePeriod},
				Budgets:  map[string]BudgetCounts{"team/a": {Healthy: 3, Expected: 3}}})
		}
	}
}

// TestPlanProperties checks Plan over random snapshots against what a
// roll must never do, whatever it finds.
func TestPlanProperties(t *testing.T) {
	const n = 20000
	r := rand.New(rand.NewPCG(7, 14))
	counts := map[CommandKind]int{}
	for i := range n {
		snap, cfg := randomSnapshot(r)
		cmds, out := Plan(snap, cfg)
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("snapshot %d: %s\ncommands %v\nrolls %+v", i, fmt.Sprintf(format, args...), names(cmds), out.Rolls)
		}
		for _, c := range cmds {
			counts[c.Kind]++
		}
		again, _ := Plan(snap, cfg)
		if !assert.ObjectsAreEqual(names(cmds), names(again)) {
			fail("the same snapshot planned twice gives %v", names(again))
		}
		checkDrains(snap, cfg, cmds, fail)
		checkCapacity(snap, cfg, cmds, fail)
		checkForces(snap, cfg, cmds, fail)
	}
	t.Logf("%d snapshots: %v", n, counts)
	for _, kind := range []CommandKind{SuspendRebalance, ResumeRebalance, SetDesiredCapacity, MarkNode, UnmarkNode, StartNodeDrain,
		AskEviction, ForceDeletion, WriteForecast, TerminateInstance} {
		assert.Positive(t, counts[kind], "the snapshots make the plan %s", kind)
	}
}

// checkDrains: a pool never gets a second node draining, a drain starts
// only in a pool free to roll, and pods move only off draining nodes.
func checkDrains(snap Snapshot, cfg RollConfig, cmds []Command, fail func(string, ...any)) {
	draining := map[string]bool{}
	for _, n := range snap.Nodes {
		if n.Labels[LifecycleLabel] == DrainingValue {
			draining[n.Name] = true
		}
	}
	started := map[string]int{}
	asked := map[types.UID]bool{}
	for _, c := range cmds {
		switch c.Kind {
		case StartNodeDrain:
			pool := c.Node.Labels[PoolLabel]
			if _, closed := cfg.Closed[pool]; closed || cfg.Blocked[pool] {
				fail("a drain started in pool %s, blocked or outside its window", pool)
			}
			for _, n := range snap.Nodes {
				if n.Labels[PoolLabel] == pool && n.Labels[LifecycleLabel] == DrainingValue && servingNode(snap, &n) {
					fail("a drain started in pool %s while %s drains", pool, n.Name)
				}
			}
			if started[pool]++; started[pool] > 1 {
				fail("two drains started in pool %s", pool)
			}
			draining[c.Node.Name] = true
		case AskEviction, ForceDeletion:
			if !draining[c.Pod.Spec.NodeName] {
				fail("%s of a pod on %s, which is not draining", c, c.Pod.Spec.NodeName)
			}
			if asked[c.Pod.UID] {
				fail("%s: the pod was moved twice", c)
			}
			asked[c.Pod.UID] = true
		}
	}
}

func servingNode(snap Snapshot, n *corev1.Node) bool {
	for _, g := range snap.Groups {
		for _, inst := range g.Instances {
			if inst.ID == InstanceID(n.Spec.ProviderID) && Serving(inst) {
				return true
			}
		}
	}
	return false
}

// checkCapacity: a desired capacity is never above the group's maximum,
// nor above what the autoscaler (whoever else set the group) set plus the
// surge.
func checkCapacity(snap Snapshot, cfg RollConfig, cmds []Command, fail func(string, ...any)) {
	for _, c := range cmds {
		if c.Kind != SetDesiredCapacity {
			continue
		}
		for _, g := range snap.Groups {
			if g.Name != c.Group {
				continue
			}
			if c.Desired > g.Max {
				fail("%s above the maximum %d", c, g.Max)
			}
			if limit := autoscalersSize(snap, g) + cfg.Surge; c.Desired > limit {
				fail("%s above the autoscaler's size plus the surge, %d", c, limit)
			}
		}
	}
}

// autoscalersSize is the group's size without the roll's surge: the
// desired capacity when no roll is under way; during one, the size it
// began at moved by every change the roll did not make.
func autoscalersSize(snap Snapshot, g Group) int {
	for _, s := range snap.Rolls {
		if s.Pool == g.Pool && s.Desired != 0 {
			return max(s.Target+(g.Desired-s.Desired), g.Min)
		}
		if s.Pool == g.Pool {
			return s.Target
		}
	}
	return g.Desired
}

// checkForces: every force is of a refused pod whose budgets refuse it
// still, one Decide allows on what the snapshot says, counting the forces
// planned before it, and its node's drain start.
func checkForces(snap Snapshot, cfg RollConfig, cmds []Command, fail func(string, ...any)) {
	nodeForced := map[string]time.Time{}
	budgetForced := map[string]time.Time{}
	gone := map[string]bool{}
	started := map[string]bool{}
	for _, c := range cmds {
		if c.Kind == StartNodeDrain {
			started[c.Node.Name] = true
		}
		if c.Kind != ForceDeletion {
			continue
		}
		if ref, ok := snap.Memory.Refusals[c.Pod.UID]; !ok || ref.Decided && allowDisruption(budgetsOf(snap.Budgets, c.Pod)) {
			fail("%s of a pod neither refused since the last decision nor refused by the counts the snapshot read", c)
		}
		node := nodeState(c.Node)
		if started[c.Node.Name] && node.DrainStart.IsZero() {
			node.DrainStart = snap.Now
		}
		node.LastForced = laterTime(deletedBy(snap.Forces, c.Node.Annotations), nodeForced[c.Node.Name])
		var history History
		var siblings []Sibling
		for _, b := range budgetsOf(snap.Budgets, c.Pod) {
			key := budgetKey(b)
			history.LastForcedInPDB = laterTime(history.LastForcedInPDB, deletedBy(snap.Forces, b.Annotations), budgetForced[key])
			for _, s := range snap.Siblings[key] {
				s.Terminating = s.Terminating || gone[s.Name]
				siblings = append(siblings, s)
			}
		}
		sla := poolSLA(cfg, c.Node.Labels[PoolLabel])
		d := Decide(snap.Now, node, PodState{Namespace: c.Pod.Namespace, Name: c.Pod.Name, Created: latest(c.Pod.CreationTimestamp), EvictionRefused: true},
			siblings, history, sla)
		if d.Action != Force {
			fail("%s where Decide says %v", c, d)
		}
		nodeForced[c.Node.Name] = snap.Now
		for _, key := range c.Budgets {
			budgetForced[key] = snap.Now
		}
		gone[c.Pod.Name] = true
	}
}

func poolSLA(cfg RollConfig, pool string) SLA {
	for _, p := range cfg.Pools {
		if p.Name == pool {
			return p.SLA
		}
	}
	return SLA{}
}

// deletedBy is when a recorded force's deletion was made, as the Roller
// knows it: when it made it, or the time recorded.
func deletedBy(log ForceLog, annotations map[string]string) time.Time {
	raw := annotations[LastForcedAnnotation]
	if made, ok := log.Made[raw]; ok {
		return made
	}
	recorded, _ := time.Parse(time.RFC3339Nano, raw)
	return recorded
}

package nodes

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The fixtures of the plan's tests: a world of groups, nodes, pods and
// budgets at a fixed instant, written as compactly as the cases need.

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

var planSLA = SLA{MinPodLifetime: time.Hour, GracePeriod: 10 * time.Minute, ForceEvictInterval: time.Minute,
	MinHealthySiblingLifetime: time.Minute, MinUnhealthySiblingLifetime: time.Minute}

func spec(pool string) PoolSpec {
	return PoolSpec{Name: pool, Revision: "r2", SLA: planSLA}
}

func rollConfig(pools ...string) RollConfig {
	cfg := RollConfig{Surge: 1, TaintEffect: corev1.TaintEffectPreferNoSchedule, Blocked: map[string]bool{}, Closed: map[string]time.Time{}, Poll: 30 * time.Second}
	for _, p := range pools {
		cfg.Pools = append(cfg.Pools, spec(p))
	}
	return cfg
}

// world builds snapshots.
type world struct{ s Snapshot }

func newWorld() *world {
	return &world{s: Snapshot{Now: t0, Pods: map[string][]corev1.Pod{}, Siblings: map[string][]Sibling{},
		Memory: Memory{Refusals: map[types.UID]Refusal{}, Chosen: map[string]string{}}}}
}

// group adds a pool's group with min 1 and the given max, and one Ready
// node per instance: ids "<pool>-<n>", revision r1 (outdated) for the
// first outdated ones, r2 for the rest.
func (w *world) group(pool string, desired, maxSize, outdated int) *world {
	g := Group{Name: pool + "-asg", Pool: pool, Desired: desired, Min: 1, Max: maxSize}
	for i := range desired {
		id := fmt.Sprintf("%s-%d", pool, i)
		revision := "r2"
		if i < outdated {
			revision = "r1"
		}
		g.Instances = append(g.Instances, Instance{ID: id, Revision: revision, Lifecycle: "InService"})
		w.node(pool, id, true)
	}
	w.s.Groups = append(w.s.Groups, g)
	return w
}

func (w *world) node(pool, id string, ready bool) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	w.s.Nodes = append(w.s.Nodes, corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-" + id, Labels: map[string]string{PoolLabel: pool}, Annotations: map[string]string{},
			CreationTimestamp: metav1.NewTime(t0.Add(-48 * time.Hour))},
		Spec:   corev1.NodeSpec{ProviderID: "aws:///eu-west-1a/" + id},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}},
	})
	return &w.s.Nodes[len(w.s.Nodes)-1]
}

func (w *world) nodeOf(id string) *corev1.Node {
	for i := range w.s.Nodes {
		if InstanceID(w.s.Nodes[i].Spec.ProviderID) == id {
			return &w.s.Nodes[i]
		}
	}
	panic("no node of " + id)
}

// draining labels a node draining since start.
func (w *world) draining(id string, start time.Time) *world {
	n := w.nodeOf(id)
	n.Labels[LifecycleLabel] = DrainingValue
	n.Annotations[DrainStartAnnotation] = start.Format(time.RFC3339Nano)
	n.Spec.Unschedulable = true
	return w
}

func (w *world) marked(ids ...string) *world {
	for _, id := range ids {
		w.nodeOf(id).Labels[LifecycleLabel] = DecommissionValue
	}
	return w
}

// pods puts pods named "<id>-p<n>" on a node, created a day ago, labelled
// app=<app>; the snapshot then holds that node's pods.
func (w *world) pods(id, app string, n int) *world {
	node := w.nodeOf(id).Name
	pods := w.s.Pods[node]
	if pods == nil {
		pods = []corev1.Pod{}
	}
	for i := range n {
		name := fmt.Sprintf("%s-p%d", id, i)
		pods = append(pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name, UID: types.UID(name),
			Labels: map[string]string{"app": app}, CreationTimestamp: metav1.NewTime(t0.Add(-24 * time.Hour))},
			Spec: corev1.PodSpec{NodeName: node}})
	}
	w.s.Pods[node] = pods
	return w
}

// budget adds a budget over app, allowing allowed disruptions, with its
// siblings read: ready for a day.
func (w *world) budget(app string, allowed int32, siblings ...string) *world {
	w.s.Budgets = append(w.s.Budgets, policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: app},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
		Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed, CurrentHealthy: 3, ExpectedPods: 3},
	})
	var read []Sibling
	for _, s := range siblings {
		read = append(read, Sibling{Name: s, Ready: true, ReadySince: t0.Add(-24 * time.Hour), Created: t0.Add(-24 * time.Hour)})
	}
	w.s.Siblings["team/"+app] = read
	return w
}

func (w *world) refused(pod string, r Refusal) *world {
	w.s.Memory.Refusals[types.UID(pod)] = r
	return w
}

func (w *world) rolling(pool string, target, desired int) *world {
	w.s.Rolls = append(w.s.Rolls, RollState{Pool: pool, Target: target, Desired: desired})
	return w
}

func names(cmds []Command) []string {
	out := make([]string, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, c.String())
	}
	return out
}

func TestPlanStartsARollWithSurgeAndMarksAndWaitsForTheNewNode(t *testing.T) {
	w := newWorld().group("workers", 3, 5, 2).pods("workers-0", "a", 2).pods("workers-1", "a", 1)
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []string{"suspend-rebalance workers-asg", "mark node-workers-0", "mark node-workers-1", "set-desired workers-asg 4"}, names(cmds))
	assert.Equal(t, []RollState{{Pool: "workers", Target: 3, Desired: 4}}, out.Rolls)
	assert.Equal(t, "workers-1", out.Memory.Chosen["workers"], "the node with fewest pods is chosen while the surge launches")
	assert.Equal(t, 2, out.Progress[0].Outdated)
}

func TestPlanStartsTheDrainOnceEveryInstanceHasAReadyNode(t *testing.T) {
	w := newWorld().group("workers", 4, 5, 2).marked("workers-0", "workers-1").rolling("workers", 3, 4)
	w.s.Memory.Chosen["workers"] = "workers-1"
	w.pods("workers-1", "a", 1)
	w.nodeOf("workers-3").Status.Conditions[0].Status = corev1.ConditionFalse
	cmds, _ := Plan(w.s, rollConfig("workers"))
	assert.Empty(t, cmds, "the surge's node is not Ready yet")

	w.nodeOf("workers-3").Status.Conditions[0].Status = corev1.ConditionTrue
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []string{"start-drain node-workers-1", "evict team/workers-1-p0"}, names(cmds))
	assert.Equal(t, 1, cmds[0].Pods)
	assert.NotContains(t, out.Memory.Chosen, "workers", "the choice is used up")
	assert.Equal(t, 1, out.Progress[0].Draining)
}

func TestPlanSurgeIsCappedAtTheGroupsMaximum(t *testing.T) {
	w := newWorld().group("workers", 3, 3, 3).pods("workers-0", "a", 1)
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []string{"suspend-rebalance workers-asg", "mark node-workers-0", "mark node-workers-1", "mark node-workers-2",
		"start-drain node-workers-0", "evict team/workers-0-p0"}, names(cmds), "at its maximum the group drains without a surge")
	assert.Equal(t, 3, out.Rolls[0].Desired)

	w = newWorld().group("workers", 3, 4, 3).pods("workers-0", "a", 1)
	cfg := rollConfig("workers")
	cfg.Surge = 3
	cmds, _ = Plan(w.s, cfg)
	assert.Contains(t, names(cmds), "set-desired workers-asg 4")
}

func TestPlanTerminatesAnEmptyNodeAndSurgesAgainAtOnce(t *testing.T) {
	w := newWorld().group("workers", 4, 5, 2).draining("workers-0", t0.Add(-time.Minute)).marked("workers-1").rolling("workers", 3, 4)
	w.s.Pods["node-workers-0"] = []corev1.Pod{}
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []string{"terminate node-workers-0", "set-desired workers-asg 4"}, names(cmds))
	assert.Equal(t, 3, cmds[0].Desired, "the terminate decrements the desired capacity")
	assert.Equal(t, []RollState{{Pool: "workers", Target: 3, Desired: 4}}, out.Rolls)

	w.nodeOf("workers-0").Annotations[TerminatedAnnotation] = "yes"
	cmds, _ = Plan(w.s, rollConfig("workers"))
	assert.Empty(t, cmds, "an instance is terminated once")
}

func TestPlanEndsTheRollWhenTheLastOutdatedNodeIsGone(t *testing.T) {
	w := newWorld().group("workers", 3, 5, 0).rolling("workers", 3, 3)
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []string{"resume-rebalance workers-asg"}, names(cmds))
	assert.Empty(t, out.Rolls)

	leaving := newWorld().group("workers", 3, 5, 0).rolling("workers", 3, 3)
	leaving.node("workers", "i-gone", true)
	cmds, out = Plan(leaving.s, rollConfig("workers"))
	assert.Empty(t, cmds, "a Node whose instance is gone is waited for")
	assert.Len(t, out.Rolls, 1)
}

func TestPlanCountsPendingInstancesAndIgnoresUnknownOnes(t *testing.T) {
	w := newWorld().group("workers", 4, 5, 1).marked("workers-0").rolling("workers", 3, 4).pods("workers-0", "a", 1)
	w.s.Groups[0].Instances[3].Lifecycle = "Pending:Wait"
	w.nodeOf("workers-3").Status.Conditions[0].Status = corev1.ConditionFalse
	cmds, _ := Plan(w.s, rollConfig("workers"))
	assert.Empty(t, cmds, "a launching instance counts in the group, and its node is not Ready yet")

	unknown := newWorld().group("workers", 3, 5, 0)
	stranger := unknown.node("workers", "i-unknown", true)
	stranger.Labels[LifecycleLabel] = DecommissionValue
	cmds, out := Plan(unknown.s, rollConfig("workers"))
	assert.Empty(t, cmds, "a Node of an instance outside the group is never drained by the roll")
	assert.Equal(t, 3, out.Progress[0].NodesTotal)
}

func TestPlanBlocks(t *testing.T) {
	base := func() *world {
		w := newWorld().group("workers", 4, 5, 3).draining("workers-0", t0.Add(-time.Minute)).marked("workers-1", "workers-2").rolling("workers", 3, 4)
		return w.pods("workers-0", "a", 1)
	}
	soft := rollConfig("workers")
	soft.Blocked["workers"] = true
	cmds, out := Plan(base().s, soft)
	assert.Equal(t, []string{"unmark node-workers-1", "unmark node-workers-2", "evict team/workers-0-p0"}, names(cmds),
		"a soft block un-marks and lets the node being drained finish")
	assert.Len(t, out.Rolls, 1, "the roll goes on after the block")

	hard := soft
	hard.HardBlock = true
	cmds, _ = Plan(base().s, hard)
	assert.Equal(t, []string{"unmark node-workers-0", "unmark node-workers-1", "unmark node-workers-2"}, names(cmds),
		"a hard block uncordons the node being drained too")

	// A block of one pool leaves the others rolling; a block of the
	// cluster blocks every pool (Settings.Config).
	two := base().group("batch", 2, 3, 2).pods("batch-0", "b", 1).pods("batch-1", "b", 1)
	onePool := rollConfig("workers", "batch")
	onePool.Blocked["workers"] = true
	cmds, _ = Plan(two.s, onePool)
	assert.Contains(t, names(cmds), "set-desired batch-asg 3")
	assert.NotContains(t, names(cmds), "mark node-workers-1")
}

func TestPlanOutsideTheWindowFinishesTheDrainAndStartsNothing(t *testing.T) {
	opens := t0.Add(time.Hour)
	w := newWorld().group("workers", 4, 5, 2).draining("workers-0", t0.Add(-time.Minute)).rolling("workers", 3, 4)
	w.s.Pods["node-workers-0"] = []corev1.Pod{}
	cfg := rollConfig("workers")
	cfg.Closed["workers"] = opens
	cmds, out := Plan(w.s, cfg)
	assert.Equal(t, []string{"terminate node-workers-0"}, names(cmds), "no surge and no mark outside the window")
	assert.Equal(t, &opens, out.Progress[0].NextWindow)

	idle := newWorld().group("workers", 3, 5, 2)
	cmds, out = Plan(idle.s, cfg)
	assert.Empty(t, cmds, "no roll starts outside the window")
	assert.Empty(t, out.Rolls)
}

func TestPlanFollowsTheAutoscaler(t *testing.T) {
	// The roll set 4 (3 + surge); the autoscaler then scaled down to 2.
	w := newWorld().group("workers", 2, 5, 2).marked("workers-0", "workers-1").rolling("workers", 3, 4).pods("workers-0", "a", 1).pods("workers-1", "a", 2)
	cmds, out := Plan(w.s, rollConfig("workers"))
	assert.Equal(t, []RollState{{Pool: "workers", Target: 1, Desired: 2}}, out.Rolls, "the autoscaler's -2 moves the target")
	for _, c := range cmds {
		if c.Kind == SetDesiredCapacity {
			assert.LessOrEqual(t, c.Desired, 2, "never above the autoscaler's size plus the surge")
		}
	}

	// The autoscaler scaled up: the roll ends at the larger size.
	up := newWorld().group("workers", 6, 8, 2).marked("workers-0", "workers-1").rolling("workers", 3, 4).pods("workers-0", "a", 1)
	_, out = Plan(up.s, rollConfig("workers"))
	assert.Equal(t, 5, out.Rolls[0].Target)

	// A state written before Desired was kept takes the group's as the roll's.
	old := newWorld().group("workers", 4, 5, 2).marked("workers-0", "workers-1").rolling("workers", 3, 0).pods("workers-1", "a", 1)
	_, out = Plan(old.s, rollConfig("workers"))
	assert.Equal(t, []RollState{{Pool: "workers", Target: 3, Desired: 4}}, out.Rolls)
}

func TestPlanAsksARefusedPodAgainOnlyWhenDue(t *testing.T) {
	start := t0.Add(-time.Minute)
	base := func() *world {
		return newWorld().group("workers", 4, 5, 1).draining("workers-0", start).rolling("workers", 3, 4).
			pods("workers-0", "a", 1).budget("a", 0, "sib-1", "sib-2")
	}
	counts := map[string]BudgetCounts{"team/a": {Allowed: 0, Healthy: 3, Expected: 3}}
	forecast := start.Add(planSLA.GracePeriod)
	decided := Refusal{Asked: t0.Add(-time.Second), Decided: true, Decision: Decision{Action: Wait, At: forecast, Rule: RuleGracePeriod}, Budgets: counts, NodePods: 5}

	cmds, out := Plan(base().refused("workers-0-p0", decided).s, rollConfig("workers"))
	assert.Empty(t, cmds, "not due: nothing asked, nothing listed")
	assert.Equal(t, forecast, *out.Progress[0].NextForcedEviction)
	assert.Equal(t, RuleGracePeriod, out.Progress[0].HeldBy)

	// Read from the API server, a decided refusal's siblings are not read:
	// a pod due again is asked.
	direct := func(w *world) *world { w.s.Siblings = map[string][]Sibling{}; return w }
	moved := direct(base().refused("workers-0-p0", decided))
	moved.s.Budgets[0].Status.CurrentHealthy = 2
	cmds, _ = Plan(moved.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "its budget's counts moved")

	late := direct(base().refused("workers-0-p0", decided))
	late.s.Now = forecast
	cmds, _ = Plan(late.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "its forecast came")

	backstop := decided
	backstop.Decision = Decision{Action: Wait, Rule: RuleSiblingTerminating}
	quiet := direct(base().refused("workers-0-p0", backstop))
	quiet.s.Now = backstop.Asked.Add(30 * time.Second)
	cmds, _ = Plan(quiet.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "at the latest after drain_poll_interval")

	backstop.NodePods = 2
	left := direct(base().refused("workers-0-p0", backstop))
	cmds, _ = Plan(left.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "a wait with no time ends when a pod left the node")
	backstop.NodePods = 1
	stayed := direct(base().refused("workers-0-p0", backstop))
	cmds, _ = Plan(stayed.s, rollConfig("workers"))
	assert.Empty(t, cmds, "no pod left")

	// With its siblings read (from the cache), a pod due again whose budget
	// allows no disruption is decided on without asking: the Eviction API
	// would refuse it.
	moved = base().refused("workers-0-p0", decided)
	moved.s.Budgets[0].Status.CurrentHealthy = 2
	cmds, out = Plan(moved.s, rollConfig("workers"))
	assert.Equal(t, []string{"forecast team/workers-0-p0"}, names(cmds), "its budget's counts moved, no disruption allowed")
	assert.Equal(t, int32(2), out.Memory.Refusals["workers-0-p0"].Budgets["team/a"].Healthy, "decided on the counts now")
	assert.Equal(t, t0, out.Memory.Refusals["workers-0-p0"].Asked, "refused now, by the counts")

	late = base().refused("workers-0-p0", decided)
	late.s.Now = forecast
	cmds, _ = Plan(late.s, rollConfig("workers"))
	assert.Equal(t, []string{"force team/workers-0-p0"}, names(cmds), "its forecast came")

	allowed := base().refused("workers-0-p0", decided)
	allowed.s.Budgets[0].Status.DisruptionsAllowed = 1
	cmds, _ = Plan(allowed.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "its budget allows a disruption now")
}

func TestPlanDecidesOnANewRefusal(t *testing.T) {
	start := t0.Add(-time.Hour)
	w := newWorld().group("workers", 4, 5, 1).draining("workers-0", start).rolling("workers", 3, 4).
		pods("workers-0", "a", 2).budget("a", 0, "workers-0-p0", "workers-0-p1", "sib").
		refused("workers-0-p0", Refusal{Asked: t0}).refused("workers-0-p1", Refusal{Asked: t0})
	cmds, out := Plan(w.s, rollConfig("workers"))
	require.Len(t, cmds, 2)
	assert.Equal(t, "force team/workers-0-p0", cmds[0].String(), "every rule allows the first")
	assert.Equal(t, []string{"team/a"}, cmds[0].Budgets)
	assert.Equal(t, "forecast team/workers-0-p1", cmds[1].String(), "the second waits for the first's force")
	assert.Equal(t, RuleSiblingTerminating, cmds[1].Decision.Rule)
	assert.NotContains(t, out.Memory.Refusals, types.UID("workers-0-p0"))
	assert.True(t, out.Memory.Refusals["workers-0-p1"].Decided)

	unread := newWorld().group("workers", 4, 5, 1).draining("workers-0", start).rolling("workers", 3, 4).
		pods("workers-0", "a", 1).budget("a", 0).refused("workers-0-p0", Refusal{Asked: t0})
	delete(unread.s.Siblings, "team/a")
	cmds, _ = Plan(unread.s, rollConfig("workers"))
	assert.Empty(t, cmds, "no decision without the siblings read")

	gone := newWorld().group("workers", 4, 5, 1).draining("workers-0", start).rolling("workers", 3, 4).
		pods("workers-0", "a", 1).refused("workers-0-p0", Refusal{Asked: t0})
	cmds, _ = Plan(gone.s, rollConfig("workers"))
	assert.Equal(t, []string{"evict team/workers-0-p0"}, names(cmds), "no budget selects it any more")
}

func TestPlanForgetsRefusalsOfPodsGone(t *testing.T) {
	w := newWorld().group("workers", 4, 5, 1).draining("workers-0", t0).rolling("workers", 3, 4).pods("workers-0", "a", 0).
		refused("elsewhere", Refusal{Asked: t0})
	w.s.Pods["node-workers-0"] = []corev1.Pod{}
	_, out := Plan(w.s, rollConfig("workers"))
	assert.Empty(t, out.Memory.Refusals)
}

func TestPlanRetireSelectsEveryNodeAndNeverTerminates(t *testing.T) {
	w := newWorld()
	w.node("old", "old-0", true)
	w.node("old", "old-1", true)
	w.draining("old-1", t0.Add(-time.Hour))
	w.pods("old-0", "a", 1)
	w.s.Pods["node-old-1"] = []corev1.Pod{}
	cmds, progress, _ := PlanRetire(w.s, "old", planSLA, time.Minute)
	assert.Equal(t, []string{"start-drain node-old-0", "evict team/old-0-p0"}, names(cmds))
	assert.Equal(t, Progress{Nodes: 2, Pods: 1}, progress)
}

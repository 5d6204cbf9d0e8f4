package nodes

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Snapshot is everything a pass decides on, read before it decides: Plan
// reads no clock and calls no API, so every decision of a roll can be
// tested from a Snapshot alone.
type Snapshot struct {
	Now    time.Time
	Groups []Group
	// Nodes are the Nodes of the pools (those with PoolLabel).
	Nodes []corev1.Node
	// Pods are the pods that must leave (MustLeave), by node name, of the
	// nodes whose pods the pass needs: those being drained, and a pool's
	// candidates while it picks its next node.
	Pods map[string][]corev1.Pod
	// Budgets are the PodDisruptionBudgets, read while a pod to move is
	// refused; Siblings the pods each covers, by budget key, read for the
	// budgets of refused pods not decided on yet.
	Budgets  []policyv1.PodDisruptionBudget
	Siblings map[string][]Sibling
	Rolls    []RollState
	Memory   Memory
	// Forces tells when the forces recorded on Nodes and budgets were
	// made, which the SLA's intervals count from.
	Forces ForceLog
}

// Memory is what a Roller carries from pass to pass. Losing it (a restart)
// costs one more eviction request per pod to move, never a decision: the
// SLA's times are kept on the cluster's objects.
type Memory struct {
	// Refusals are the pods whose eviction a budget refused, by UID.
	Refusals map[types.UID]Refusal
	// Chosen is each pool's next node to drain, by instance id, once
	// picked: the pods of every outdated node are counted once per step.
	Chosen map[string]string
}

func (m Memory) clone() Memory {
	out := Memory{Refusals: make(map[types.UID]Refusal, len(m.Refusals)), Chosen: make(map[string]string, len(m.Chosen))}
	for k, v := range m.Refusals {
		out.Refusals[k] = v
	}
	for k, v := range m.Chosen {
		out.Chosen[k] = v
	}
	return out
}

// Refusal is a pod whose eviction a budget refused, and Decide's answer
// on it once the pass read its budgets and siblings.
type Refusal struct {
	// Asked is when its eviction was last refused.
	Asked   time.Time
	Decided bool
	// Decision is Decide's Wait, with the forecast force when known.
	Decision Decision
	// Budgets are the counts of the pod's budgets when Decide answered.
	Budgets map[string]BudgetCounts
	// NodePods is how many pods its node had to move then. A wait with no
	// time known (a sibling terminating) ends when a pod leaves: the
	// budget's counts need not move when a terminating sibling ends.
	NodePods int
}

// BudgetCounts are what a PodDisruptionBudget's status says; when they
// move, an eviction it refused may pass, or a sibling it waited for is
// Ready or gone.
type BudgetCounts struct{ Allowed, Healthy, Expected int32 }

func countsOf(b *policyv1.PodDisruptionBudget) BudgetCounts {
	return BudgetCounts{Allowed: b.Status.DisruptionsAllowed, Healthy: b.Status.CurrentHealthy, Expected: b.Status.ExpectedPods}
}

func budgetKey(b *policyv1.PodDisruptionBudget) string { return b.Namespace + "/" + b.Name }

// Due says whether a refused pod is asked again: at its forecast force,
// when one of its budgets' counts moved (or the budget went), for a wait
// with no time known when a pod left its node, and at the latest after
// backstop, for what nothing shows. A refusal not decided on yet is
// decided first.
func (r Refusal) Due(now time.Time, counts map[string]BudgetCounts, nodePods int, backstop time.Duration) bool {
	if !r.Decided {
		return false
	}
	if r.Decision.At.IsZero() && nodePods != r.NodePods {
		return true
	}
	if !r.Decision.At.IsZero() && !now.Before(r.Decision.At) {
		return true
	}
	for key, c := range r.Budgets {
		if now, ok := counts[key]; !ok || now != c {
			return true
		}
	}
	return !now.Before(r.Asked.Add(backstop))
}

// budgetsOf are the budgets that select the pod.
func budgetsOf(all []policyv1.PodDisruptionBudget, pod *corev1.Pod) []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	for i := range all {
		b := &all[i]
		if b.Namespace != pod.Namespace {
			continue
		}
		selector, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err == nil && !selector.Empty() && selector.Matches(labels.Set(pod.Labels)) {
			out = append(out, b)
		}
	}
	return out
}

// allowDisruption says whether none of the budgets would refuse an
// eviction now; none at all counts too.
func allowDisruption(budgets []*policyv1.PodDisruptionBudget) bool {
	for _, b := range budgets {
		if b.Status.DisruptionsAllowed < 1 {
			return false
		}
	}
	return true
}

// poolView is a pool's nodes joined with its group's instances.
type poolView struct {
	spec     PoolSpec
	group    Group
	nodes    map[string]*corev1.Node // by instance id
	outdated []string                // instance ids, in the group's order
	draining *corev1.Node
	// leaving nodes lost their instance and wait for their Node to go.
	leaving []*corev1.Node
	ready   int
}

// view joins a pool's nodes with its group's instances.
func view(spec PoolSpec, g Group, all []corev1.Node) *poolView {
	v := &poolView{spec: spec, group: g, nodes: map[string]*corev1.Node{}}
	live := map[string]Instance{}
	for _, inst := range g.Instances {
		live[inst.ID] = inst
	}
	for i := range all {
		n := &all[i]
		if n.Labels[PoolLabel] != spec.Name {
			continue
		}
		id := InstanceID(n.Spec.ProviderID)
		inst, ok := live[id]
		if !ok || !Serving(inst) {
			v.leaving = append(v.leaving, n)
			continue
		}
		v.nodes[id] = n
		if nodeReady(n) {
			v.ready++
		}
		if n.Labels[LifecycleLabel] == DrainingValue && (v.draining == nil || n.Name < v.draining.Name) {
			v.draining = n
		}
	}
	for _, inst := range g.Instances {
		if outdated, _ := Outdated(spec, inst); outdated && v.nodes[inst.ID] != nil {
			v.outdated = append(v.outdated, inst.ID)
		}
	}
	return v
}

// leave takes a terminated node out of the view.
func (v *poolView) leave(n *corev1.Node) {
	id := InstanceID(n.Spec.ProviderID)
	delete(v.nodes, id)
	for i, o := range v.outdated {
		if o == id {
			v.outdated = append(v.outdated[:i:i], v.outdated[i+1:]...)
			break
		}
	}
	v.leaving = append(v.leaving, n)
	v.draining = nil
	if nodeReady(n) {
		v.ready--
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

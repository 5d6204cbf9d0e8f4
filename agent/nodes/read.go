package nodes

import (
	"context"
	"fmt"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// source is where a pass reads the cluster: the Trigger's cache when it
// shows the roller's own writes, else the API server.
type source struct {
	client.Reader
	cached bool
}

// source is the cache, unless direct or the cache is not there yet or
// behind.
func (r *Roller) source(ctx context.Context, direct bool) source {
	if !direct {
		if c := r.trigger.Reader(ctx); c != nil {
			return source{Reader: c, cached: true}
		}
	}
	return source{Reader: r.kube}
}

// readRoll reads the snapshot of a roll's pass: the pools' Nodes and
// groups, the pods of each pool's draining node, or of the nodes it may
// choose from, and the budgets and siblings its refused pods need.
func (r *Roller) readRoll(ctx context.Context, src source, cfg RollConfig, rolls []RollState) (Snapshot, error) {
	snap := Snapshot{Now: r.now(), Rolls: rolls, Memory: r.memory(rollScope), Forces: r.forces.clone()}
	list := &corev1.NodeList{}
	if err := src.List(ctx, list, client.HasLabels{PoolLabel}); err != nil {
		return snap, fmt.Errorf("listing the pools' nodes: %w", err)
	}
	snap.Nodes = list.Items
	known := make([]string, 0, len(list.Items))
	for i := range list.Items {
		known = append(known, InstanceID(list.Items[i].Spec.ProviderID))
	}
	groups, err := r.fleet.Groups(ctx, known)
	if err != nil {
		return snap, err
	}
	snap.Groups = groups
	return snap, r.readRollPods(ctx, src, cfg, &snap)
}

// rereadRoll is readRoll keeping the Nodes and groups of the snapshot
// before, for a round after one that changed no group.
func (r *Roller) rereadRoll(ctx context.Context, src source, cfg RollConfig, before Snapshot, rolls []RollState) (Snapshot, error) {
	snap := Snapshot{Now: r.now(), Rolls: rolls, Memory: r.memory(rollScope), Forces: r.forces.clone(), Nodes: before.Nodes, Groups: before.Groups}
	return snap, r.readRollPods(ctx, src, cfg, &snap)
}

// readRollPods reads the pods the snapshot's pools need, and the budgets
// and siblings of the refused ones.
func (r *Roller) readRollPods(ctx context.Context, src source, cfg RollConfig, snap *Snapshot) error {
	var nodes []string
	for _, spec := range cfg.Pools {
		for _, g := range snap.Groups {
			if g.Pool == spec.Name {
				nodes = append(nodes, podsNeeded(cfg, view(spec, g, snap.Nodes), snap.Memory)...)
			}
		}
	}
	if err := r.readPods(ctx, src, snap, nodes); err != nil {
		return err
	}
	return r.readBudgets(ctx, src, snap)
}

// podsNeeded names the nodes of a pool whose pods a plan needs: the one
// being drained; else, when the pool may start a drain, the node it chose,
// or all its outdated nodes to choose from.
func podsNeeded(cfg RollConfig, v *poolView, memory Memory) []string {
	if v.draining != nil {
		return []string{v.draining.Name}
	}
	if _, closed := cfg.Closed[v.spec.Name]; closed || cfg.Blocked[v.spec.Name] || len(v.outdated) == 0 {
		return nil
	}
	if id, ok := memory.Chosen[v.spec.Name]; ok && v.nodes[id] != nil {
		for _, o := range v.outdated {
			if o == id {
				return []string{v.nodes[id].Name}
			}
		}
	}
	names := make([]string, 0, len(v.outdated))
	for _, id := range v.outdated {
		names = append(names, v.nodes[id].Name)
	}
	return names
}

// readPods reads the pods that must leave of each node named: from the
// cache or for a few nodes, a node's at a time; from the API server for
// more (a pool's candidates), all pods in pages, once, rather than a
// listing per node.
func (r *Roller) readPods(ctx context.Context, src source, snap *Snapshot, nodes []string) error {
	if !src.cached && len(nodes) > perNodeListings {
		return r.readAllPods(ctx, src, snap, nodes)
	}
	out := make([][]corev1.Pod, len(nodes))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(podListConcurrency)
	for i, node := range nodes {
		g.Go(func() (err error) {
			out[i], err = podsToMove(gctx, src, node)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	snap.Pods = make(map[string][]corev1.Pod, len(nodes))
	for i, node := range nodes {
		snap.Pods[node] = out[i]
	}
	return nil
}

// podListConcurrency bounds the pod listings of a pass in flight.
const podListConcurrency = 8

// perNodeListings is the most nodes whose pods are listed node by node.
const perNodeListings = 1

// podPage is the page size of a listing of all pods.
const podPage = 500

// readAllPods lists every pod, a page at a time, and keeps those that must
// leave the nodes named, trimmed as the cache keeps them: the pods of a
// pool's candidates, whole, were the agent's peak of memory when a roll
// began, before its cache had synced.
func (r *Roller) readAllPods(ctx context.Context, src source, snap *Snapshot, nodes []string) error {
	snap.Pods = make(map[string][]corev1.Pod, len(nodes))
	for _, n := range nodes {
		snap.Pods[n] = []corev1.Pod{}
	}
	opts := []client.ListOption{client.Limit(podPage)}
	for {
		list := &corev1.PodList{}
		if err := src.List(ctx, list, opts...); err != nil {
			return fmt.Errorf("listing the pods: %w", err)
		}
		for _, p := range list.Items {
			if pods, wanted := snap.Pods[p.Spec.NodeName]; wanted && MustLeave(&p) {
				trimPod(&p)
				snap.Pods[p.Spec.NodeName] = append(pods, p)
			}
		}
		if list.Continue == "" {
			return nil
		}
		opts = []client.ListOption{client.Limit(podPage), client.Continue(list.Continue)}
	}
}

// podsToMove lists the pods that must leave a node, trimmed as the cache
// keeps them (the cache's own are already).
func podsToMove(ctx context.Context, src source, node string) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := src.List(ctx, list, client.MatchingFields{podNodeField: node}); err != nil {
		return nil, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	out := list.Items[:0]
	for _, p := range list.Items {
		if MustLeave(&p) {
			if !src.cached {
				trimPod(&p)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// readBudgets reads the PodDisruptionBudgets while a pod read was refused,
// and the pods covered by the budgets of those not decided on yet; from
// the cache, of every refused pod, so that one due again is decided on
// without asking when its budgets would refuse it.
func (r *Roller) readBudgets(ctx context.Context, src source, snap *Snapshot) error {
	var undecided []*corev1.Pod
	refused := false
	for _, pods := range snap.Pods {
		for i := range pods {
			if ref, ok := snap.Memory.Refusals[pods[i].UID]; ok {
				refused = true
				if !ref.Decided || src.cached {
					undecided = append(undecided, &pods[i])
				}
			}
		}
	}
	if !refused {
		return nil
	}
	list := &policyv1.PodDisruptionBudgetList{}
	if err := src.List(ctx, list); err != nil {
		return fmt.Errorf("listing the PodDisruptionBudgets: %w", err)
	}
	snap.Budgets = list.Items
	snap.Siblings = map[string][]Sibling{}
	for _, pod := range undecided {
		for _, b := range budgetsOf(snap.Budgets, pod) {
			key := budgetKey(b)
			if _, read := snap.Siblings[key]; read {
				continue
			}
			siblings, err := covered(ctx, src, b)
			if err != nil {
				return err
			}
			snap.Siblings[key] = siblings
		}
	}
	return nil
}

// covered are the pods a budget selects, as siblings.
func covered(ctx context.Context, src source, b *policyv1.PodDisruptionBudget) ([]Sibling, error) {
	selector, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("PodDisruptionBudget %s/%s: %w", b.Namespace, b.Name, err)
	}
	list := &corev1.PodList{}
	if err := src.List(ctx, list, client.InNamespace(b.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, fmt.Errorf("listing the pods of PodDisruptionBudget %s/%s: %w", b.Namespace, b.Name, err)
	}
	out := make([]Sibling, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, siblingOf(&list.Items[i]))
	}
	return out, nil
}

func (r *Roller) memory(scope string) Memory {
	m, ok := r.memories[scope]
	if !ok {
		m = Memory{}
	}
	return m.clone()
}

// Package nodes replaces a cluster's outdated nodes and drains the nodes of
// pools that left the registry, under the drain SLA: pods leave through the
// Eviction API, and one a PodDisruptionBudget refuses is deleted only when
// every rule of the SLA allows it.
package nodes

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PoolLabel is the node label that names a node's pool; the reference
// node-pool template sets it through the kubelet's labels.
const PoolLabel = "caravan.io/node-pool"

// Progress is what one pass over a retired pool's nodes found.
type Progress struct {
	Nodes int
	// Pods is how many pods still have to leave.
	Pods int
	// Next is the earliest forecast force among the pods that wait.
	Next *Decision
}

// Done says whether nothing is left to move.
func (p Progress) Done() bool { return p.Pods == 0 }

// Retire makes one pass over the nodes of a pool that left the registry:
// each is selected (labelled draining, its drain start recorded, cordoned)
// and its pods moved as the SLA allows, a refused pod asked again at the
// latest after backstop. The caller deletes the pool's stack once nothing
// is left; the nodes go with it.
func (r *Roller) Retire(ctx context.Context, pool string, sla SLA, backstop time.Duration) (Progress, error) {
	scope := "retire/" + pool
	var progress Progress
	stale := false
	for round := 0; round < passRounds; round++ {
		src := r.source(ctx, stale)
		snap, err := r.readRetire(ctx, src, pool, scope)
		if err != nil {
			return progress, err
		}
		var cmds []Command
		var memory Memory
		cmds, progress, memory = PlanRetire(snap, pool, sla, backstop)
		r.memories[scope] = memory
		_, refused, err := r.execute(ctx, scope, cmds)
		if stale = planBehind(err); stale {
			continue
		}
		if err != nil || !refused {
			return progress, err
		}
	}
	return progress, nil
}

// readRetire reads the snapshot of a retired pool's pass: its Nodes, their
// pods, and the budgets and siblings its refused pods need.
func (r *Roller) readRetire(ctx context.Context, src source, pool, scope string) (Snapshot, error) {
	snap := Snapshot{Now: r.now(), Memory: r.memory(scope), Forces: r.forces.clone()}
	list := &corev1.NodeList{}
	if err := src.List(ctx, list, client.MatchingLabels{PoolLabel: pool}); err != nil {
		return snap, fmt.Errorf("listing the nodes of pool %s: %w", pool, err)
	}
	snap.Nodes = list.Items
	names := make([]string, 0, len(list.Items))
	for _, n := range list.Items {
		names = append(names, n.Name)
	}
	if err := r.readPods(ctx, src, &snap, names); err != nil {
		return snap, err
	}
	return snap, r.readBudgets(ctx, src, &snap)
}

// MustLeave says whether a drain moves the pod: not a DaemonSet's pod (its
// controller puts it back and it ends with its node), not a mirror pod
// (the kubelet's, from a file), not a pod that already ended.
func MustLeave(pod *corev1.Pod) bool {
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "DaemonSet" && ref.Controller != nil && *ref.Controller {
			return false
		}
	}
	return true
}

// Package nodes replaces a cluster's outdated nodes and drains the nodes of
// pools that left the registry, under the drain SLA: pods leave through the
// Eviction API, and one a PodDisruptionBudget refuses is deleted only when
// every rule of the SLA allows it.
package nodes

import (
	"context"
	"fmt"

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
// and its pods moved as the SLA allows. The caller deletes the pool's stack
// once nothing is left; the nodes go with it.
func (r *Roller) Retire(ctx context.Context, pool string, sla SLA) (Progress, error) {
	list := &corev1.NodeList{}
	if err := r.kube.List(ctx, list, client.MatchingLabels{PoolLabel: pool}); err != nil {
		return Progress{}, fmt.Errorf("listing the nodes of pool %s: %w", pool, err)
	}
	p := Progress{Nodes: len(list.Items)}
	for i := range list.Items {
		n := &list.Items[i]
		if n.Labels[LifecycleLabel] != DrainingValue {
			if err := r.startDrain(ctx, n); err != nil {
				return p, err
			}
		}
		pods, err := r.podsToMove(ctx, n.Name)
		if err != nil {
			return p, err
		}
		p.Pods += len(pods)
		next, err := r.movePods(ctx, sla, n, pods)
		if err != nil {
			return p, err
		}
		if next != nil && (p.Next == nil || next.At.Before(p.Next.At)) {
			p.Next = next
		}
	}
	return p, nil
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

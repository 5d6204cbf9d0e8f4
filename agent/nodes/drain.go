// Package nodes drains and retires a cluster's nodes. Its first task is a
// node pool that left the registry: its nodes are cordoned and their pods
// evicted through the Eviction API, honouring every PodDisruptionBudget,
// before the pool's stack may be deleted.
package nodes

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// PoolLabel is the node label that names a node's pool; the reference
// node-pool template sets it through the kubelet's labels.
const PoolLabel = "caravan.io/node-pool"

// Drainer empties nodes. It talks through controller-runtime's client
// rather than kubectl's drain helper: that helper needs client-go's whole
// typed clientset, and the agent links its every method (text/template's
// reflection keeps all methods of every reachable type), megabytes of
// code mapped in every cluster for two requests.
type Drainer struct {
	client client.Client
}

// NewDrainer returns a Drainer.
func NewDrainer(c client.Client) *Drainer { return &Drainer{client: c} }

// Progress is what one pass over a pool's nodes found.
type Progress struct {
	Nodes int
	// Pods is how many pods still wait to be evicted.
	Pods int
	// Refused counts the evictions a PodDisruptionBudget refused this pass.
	Refused int
}

// Done says whether nothing is left to evict.
func (p Progress) Done() bool { return p.Pods == 0 }

// DrainPool makes one pass over the pool's nodes: it cordons them and asks
// for the eviction of every pod a drain must move (not DaemonSet pods, not
// mirror pods, not pods that ended). It never waits and never forces: a
// refused eviction is counted and tried again on the next pass.
func (d *Drainer) DrainPool(ctx context.Context, pool string) (Progress, error) {
	nodes := &corev1.NodeList{}
	if err := d.client.List(ctx, nodes, client.MatchingLabels{PoolLabel: pool}); err != nil {
		return Progress{}, fmt.Errorf("listing the nodes of pool %s: %w", pool, err)
	}
	p := Progress{Nodes: len(nodes.Items)}
	for i := range nodes.Items {
		left, refused, err := d.drainNode(ctx, &nodes.Items[i])
		if err != nil {
			return p, err
		}
		p.Pods += left
		p.Refused += refused
	}
	return p, nil
}

// drainNode cordons the node and evicts its pods once; it returns how many
// pods are still to go and how many evictions were refused.
func (d *Drainer) drainNode(ctx context.Context, node *corev1.Node) (int, int, error) {
	if err := d.cordon(ctx, node); err != nil {
		return 0, 0, err
	}
	pods := &corev1.PodList{}
	if err := d.client.List(ctx, pods, client.MatchingFields{"spec.nodeName": node.Name}); err != nil {
		return 0, 0, fmt.Errorf("listing the pods of node %s: %w", node.Name, err)
	}
	left, refused := 0, 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		if !MustLeave(pod) {
			continue
		}
		left++
		if pod.DeletionTimestamp != nil {
			continue
		}
		switch err := d.evict(ctx, pod); {
		case err == nil, apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err):
			// A PodDisruptionBudget refused, now (429) or because several
			// match the pod (500); the next pass asks again.
			refused++
		default:
			return 0, 0, fmt.Errorf("evicting pod %s/%s from node %s: %w", pod.Namespace, pod.Name, node.Name, err)
		}
	}
	return left, refused, nil
}

func (d *Drainer) cordon(ctx context.Context, node *corev1.Node) error {
	if node.Spec.Unschedulable {
		return nil
	}
	patch := client.MergeFrom(node.DeepCopy())
	node.Spec.Unschedulable = true
	if err := d.client.Patch(ctx, node, patch); err != nil {
		return fmt.Errorf("cordoning node %s: %w", node.Name, err)
	}
	return nil
}

// evict asks the Eviction API to remove this very pod: the UID
// precondition keeps a replacement of the same name out of it.
func (d *Drainer) evict(ctx context.Context, pod *corev1.Pod) error {
	eviction := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	}
	return d.client.SubResource("eviction").Create(ctx, pod, eviction)
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

// Package nodes drains and retires a cluster's nodes. Its first task is a
// node pool that left the registry: its nodes are cordoned and their pods
// evicted through the Eviction API, honouring every PodDisruptionBudget,
// before the pool's stack may be deleted.
package nodes

import (
	"context"
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/drain"
)

// PoolLabel is the node label that names a node's pool; the reference
// node-pool template sets it through the kubelet's labels.
const PoolLabel = "caravan.io/node-pool"

// Drainer empties nodes.
type Drainer struct {
	client kubernetes.Interface
}

// NewDrainer returns a Drainer.
func NewDrainer(client kubernetes.Interface) *Drainer { return &Drainer{client: client} }

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
// mirror pods, not pods already terminating). It never waits and never
// forces: a refused eviction is counted and tried again on the next pass.
func (d *Drainer) DrainPool(ctx context.Context, pool string) (Progress, error) {
	nodes, err := d.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: PoolLabel + "=" + pool})
	if err != nil {
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

func (d *Drainer) helper(ctx context.Context) *drain.Helper {
	return &drain.Helper{
		Ctx: ctx, Client: d.client, Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
		GracePeriodSeconds: -1, Out: io.Discard, ErrOut: io.Discard,
	}
}

// drainNode cordons the node and evicts its pods once; it returns how many
// pods are still to go and how many evictions were refused.
func (d *Drainer) drainNode(ctx context.Context, node *corev1.Node) (int, int, error) {
	h := d.helper(ctx)
	if err := drain.RunCordonOrUncordon(h, node, true); err != nil {
		return 0, 0, fmt.Errorf("cordoning node %s: %w", node.Name, err)
	}
	list, errs := h.GetPodsForDeletion(node.Name)
	if len(errs) > 0 {
		return 0, 0, fmt.Errorf("listing the pods of node %s: %w", node.Name, errors.Join(errs...))
	}
	pods := list.Pods()
	refused := 0
	for _, pod := range pods {
		if pod.DeletionTimestamp != nil {
			continue
		}
		err := h.EvictPod(pod, policyV1)
		switch {
		case err == nil, apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err):
			// A PodDisruptionBudget refused, now (429) or because several
			// match the pod (500); the next pass asks again.
			refused++
		default:
			return 0, 0, fmt.Errorf("evicting pod %s/%s from node %s: %w", pod.Namespace, pod.Name, node.Name, err)
		}
	}
	return len(pods), refused, nil
}

// policyV1 is the Eviction API's group version, served by every supported
// Kubernetes release.
var policyV1 = policyv1.SchemeGroupVersion

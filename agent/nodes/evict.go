package nodes

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/events"
)

// TerminatedAnnotation marks a node whose instance the agent asked to end,
// so that a later pass never asks twice.
const TerminatedAnnotation = "caravan.io/instance-terminated"

// drainStep moves the pods of the node being drained as far as the SLA
// allows now, and ends the node's instance once none is left. It returns
// the earliest forecast force among the pods that wait, and whether the
// instance was terminated by this step.
func (r *Roller) drainStep(ctx context.Context, sla SLA, n *corev1.Node) (*Decision, bool, error) {
	pods, err := r.podsToMove(ctx, n.Name)
	if err != nil {
		return nil, false, err
	}
	if len(pods) == 0 {
		return r.terminate(ctx, n)
	}
	next, err := r.movePods(ctx, sla, n, pods)
	return next, false, err
}

// movePods asks each pod to leave, as far as the SLA allows now, and
// returns the earliest forecast force among those that wait. The
// evictions and the reading of what the refused ones' budgets cover go out
// together; the decisions on the refused ones are then made one after the
// other, each seeing the forces made before it in this pass.
func (r *Roller) movePods(ctx context.Context, sla SLA, n *corev1.Node, pods []corev1.Pod) (*Decision, error) {
	refusals := make([]*refusal, len(pods))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(evictConcurrency)
	for i := range pods {
		if pods[i].DeletionTimestamp != nil {
			continue
		}
		g.Go(func() (err error) {
			refusals[i], err = r.askToLeave(gctx, &pods[i])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var next *Decision
	var forced []*refusal
	for _, ref := range refusals {
		if ref == nil {
			continue
		}
		ref.after(forced)
		d, err := r.decide(ctx, sla, n, ref)
		if err != nil {
			return next, err
		}
		if !ref.forcedAt.IsZero() {
			forced = append(forced, ref)
		}
		if d.Action == Wait && !d.At.IsZero() && (next == nil || d.At.Before(next.At)) {
			next = &d
		}
	}
	return next, nil
}

// evictConcurrency bounds the evictions of one node in flight.
const evictConcurrency = 8

// refusal is a pod whose eviction its budget refused, with what the SLA
// reads to decide on it.
type refusal struct {
	pod      *corev1.Pod
	budgets  []policyv1.PodDisruptionBudget
	siblings []Sibling
	history  History
	// forcedAt is set once this pass forced the pod.
	forcedAt time.Time
}

// after counts in the forces this pass made before: a forced sibling is
// terminating, and a force in a shared budget is that budget's last.
func (ref *refusal) after(forced []*refusal) {
	for _, f := range forced {
		for i := range ref.siblings {
			if f.pod.Namespace == ref.pod.Namespace && ref.siblings[i].Name == f.pod.Name {
				ref.siblings[i].Terminating = true
			}
		}
		if sharesBudget(ref.budgets, f.budgets) && f.forcedAt.After(ref.history.LastForcedInPDB) {
			ref.history.LastForcedInPDB = f.forcedAt
		}
	}
}

func sharesBudget(a, b []policyv1.PodDisruptionBudget) bool {
	for i := range a {
		for j := range b {
			if a[i].Namespace == b[j].Namespace && a[i].Name == b[j].Name {
				return true
			}
		}
	}
	return false
}

// askToLeave asks for the pod's eviction; when its PodDisruptionBudget
// refuses, it reads what the SLA decides on and returns it.
func (r *Roller) askToLeave(ctx context.Context, pod *corev1.Pod) (*refusal, error) {
	err := evict(ctx, r.kube, pod)
	switch {
	case err == nil, apierrors.IsNotFound(err):
		r.metrics.evictions.WithLabelValues("evicted").Inc()
		return nil, nil
	case !refusedByBudget(err) && apierrors.IsTooManyRequests(err):
		// Throttled by the API server: a retry at the next pass, not a
		// refusal.
		return nil, nil
	case !refusedByBudget(err):
		return nil, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.metrics.evictions.WithLabelValues("refused").Inc()
	budgets, err := r.budgetsOf(ctx, pod)
	if err != nil {
		return nil, err
	}
	siblings, history, err := r.siblings(ctx, pod, budgets)
	if err != nil {
		return nil, err
	}
	return &refusal{pod: pod, budgets: budgets, siblings: siblings, history: history}, nil
}

// decide applies the SLA to a refused pod: it is deleted now, or its
// forecast is written.
func (r *Roller) decide(ctx context.Context, sla SLA, n *corev1.Node, ref *refusal) (Decision, error) {
	now := r.now()
	pod := ref.pod
	d := Decide(now, nodeState(n), PodState{Namespace: pod.Namespace, Name: pod.Name, Created: latest(pod.CreationTimestamp), EvictionRefused: true},
		ref.siblings, ref.history, sla)
	switch d.Action {
	case Force:
		at, err := r.force(ctx, n, pod, ref.budgets)
		ref.forcedAt = at
		return d, err
	case Wait:
		r.metrics.waits.WithLabelValues(d.Rule).Inc()
		return d, r.forecast(ctx, pod, d)
	}
	return d, nil
}

func (r *Roller) podsToMove(ctx context.Context, node string) ([]corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := r.kube.List(ctx, list, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return nil, fmt.Errorf("listing the pods of node %s: %w", node, err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if MustLeave(&p) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (r *Roller) terminate(ctx context.Context, n *corev1.Node) (*Decision, bool, error) {
	if n.Annotations[TerminatedAnnotation] != "" {
		return nil, false, nil
	}
	if err := r.fleet.Terminate(ctx, InstanceID(n.Spec.ProviderID)); err != nil {
		return nil, false, err
	}
	if start, err := time.Parse(time.RFC3339, n.Annotations[DrainStartAnnotation]); err == nil {
		r.metrics.drainDuration.Observe(r.now().Sub(start).Seconds())
	}
	events.Publish(r.events, instanceTerminatedEvent(n))
	return nil, true, r.patchNode(ctx, n, func(n *corev1.Node) { n.Annotations[TerminatedAnnotation] = r.now().UTC().Format(time.RFC3339) })
}

func evict(ctx context.Context, c client.Client, pod *corev1.Pod) error {
	eviction := &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	}
	return c.SubResource("eviction").Create(ctx, pod, eviction)
}

// refusedByBudget tells a PodDisruptionBudget's refusal (429 with the
// DisruptionBudget cause, or 500 when several budgets match the pod) from
// the API server's own throttling.
func refusedByBudget(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	if s.Code == 429 && s.Details != nil {
		for _, c := range s.Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause {
				return true
			}
		}
	}
	return s.Code == 500 && strings.Contains(s.Message, "more than one PodDisruptionBudget")
}

func nodeState(n *corev1.Node) NodeState {
	start, _ := time.Parse(time.RFC3339, n.Annotations[DrainStartAnnotation])
	last, _ := time.Parse(time.RFC3339, n.Annotations[LastForcedAnnotation])
	return NodeState{Name: n.Name, DrainStart: start, LastForced: last}
}

// budgetsOf lists the PodDisruptionBudgets that select the pod.
func (r *Roller) budgetsOf(ctx context.Context, pod *corev1.Pod) ([]policyv1.PodDisruptionBudget, error) {
	list := &policyv1.PodDisruptionBudgetList{}
	if err := r.kube.List(ctx, list, client.InNamespace(pod.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the PodDisruptionBudgets of %s: %w", pod.Namespace, err)
	}
	var out []policyv1.PodDisruptionBudget
	for _, b := range list.Items {
		selector, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		if err == nil && !selector.Empty() && selector.Matches(labels.Set(pod.Labels)) {
			out = append(out, b)
		}
	}
	return out, nil
}

// siblings are the other pods the pod's budgets cover, and the last forced
// termination among them, cluster-wide.
func (r *Roller) siblings(ctx context.Context, pod *corev1.Pod, budgets []policyv1.PodDisruptionBudget) ([]Sibling, History, error) {
	var history History
	seen := map[string]bool{pod.Name: true}
	var out []Sibling
	for _, b := range budgets {
		if t, err := time.Parse(time.RFC3339, b.Annotations[LastForcedAnnotation]); err == nil && t.After(history.LastForcedInPDB) {
			history.LastForcedInPDB = t
		}
		selector, _ := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		list := &corev1.PodList{}
		if err := r.kube.List(ctx, list, client.InNamespace(pod.Namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
			return nil, history, fmt.Errorf("listing the pods of PodDisruptionBudget %s/%s: %w", b.Namespace, b.Name, err)
		}
		for _, p := range list.Items {
			if seen[p.Name] {
				continue
			}
			seen[p.Name] = true
			out = append(out, siblingOf(&p))
		}
	}
	return out, history, nil
}

func siblingOf(p *corev1.Pod) Sibling {
	s := Sibling{Name: p.Name, Created: latest(p.CreationTimestamp), Terminating: p.DeletionTimestamp != nil}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			s.Ready, s.ReadySince = true, latest(c.LastTransitionTime)
		}
	}
	return s
}

// latest is the last instant a Kubernetes timestamp may stand for: the API
// keeps whole seconds, cut down, and a lifetime counted from the second
// itself could end up to a second early.
func latest(t metav1.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Time.Truncate(time.Second).Add(time.Second)
}

// force deletes the pod with its own grace period, after reading it again:
// the pod must still be the one decided on, and not already going.
func (r *Roller) force(ctx context.Context, n *corev1.Node, pod *corev1.Pod, budgets []policyv1.PodDisruptionBudget) (time.Time, error) {
	current := &corev1.Pod{}
	if err := r.kube.Get(ctx, client.ObjectKeyFromObject(pod), current); err != nil {
		return time.Time{}, client.IgnoreNotFound(err)
	}
	if current.UID != pod.UID || current.DeletionTimestamp != nil {
		return time.Time{}, nil
	}
	if err := r.kube.Delete(ctx, current, client.Preconditions{UID: &pod.UID}); err != nil {
		return time.Time{}, client.IgnoreNotFound(err)
	}
	r.metrics.forced.Inc()
	at := r.now().UTC()
	now := at.Format(time.RFC3339Nano)
	events.Publish(r.events, forcedEvictionEvent(pod, n))
	if err := r.patchNode(ctx, n, func(n *corev1.Node) { n.Annotations[LastForcedAnnotation] = now }); err != nil {
		return at, err
	}
	for i := range budgets {
		b := &budgets[i]
		patch := client.MergeFrom(b.DeepCopy())
		if b.Annotations == nil {
			b.Annotations = map[string]string{}
		}
		b.Annotations[LastForcedAnnotation] = now
		if err := r.kube.Patch(ctx, b, patch); err != nil {
			return at, fmt.Errorf("recording the forced termination on PodDisruptionBudget %s/%s: %w", b.Namespace, b.Name, err)
		}
	}
	return at, nil
}

// forecast writes on the pod when it may be forced, and says so once in an
// Event, so that its owners see it coming.
func (r *Roller) forecast(ctx context.Context, pod *corev1.Pod, d Decision) error {
	value, known := ForecastAnnotation(d)
	if !known || pod.Annotations[ForceEvictAfterAnnotation] == value {
		return nil
	}
	patch := client.MergeFrom(pod.DeepCopy())
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[ForceEvictAfterAnnotation] = value
	if err := r.kube.Patch(ctx, pod, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	events.Publish(r.events, forceEvictionScheduledEvent(pod, value, d))
	return nil
}

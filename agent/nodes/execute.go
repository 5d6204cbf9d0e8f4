package nodes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/events"
)

// TerminatedAnnotation marks a node whose instance the agent asked to end,
// so that a later pass never asks twice.
const TerminatedAnnotation = "caravan.io/instance-terminated"

// execute makes a plan's commands in order, the evictions next to each
// other at once, and stops at the first that fails. It returns how many
// were made, and whether an eviction was refused: the pass then decides
// on it at once.
func (r *Roller) execute(ctx context.Context, scope string, cmds []Command) (int, bool, error) {
	refused := false
	for i := 0; i < len(cmds); {
		if cmds[i].Kind == AskEviction {
			j := i + 1
			for j < len(cmds) && cmds[j].Kind == AskEviction {
				j++
			}
			some, err := r.evictAll(ctx, scope, cmds[i:j])
			refused = refused || some
			if err != nil {
				return i, refused, err
			}
			i = j
			continue
		}
		if err := r.do(ctx, scope, cmds[i]); err != nil {
			return i, refused, err
		}
		i++
	}
	return len(cmds), refused, nil
}

func (r *Roller) do(ctx context.Context, scope string, c Command) error {
	r.log.V(1).Info("node command", "command", c.String())
	switch c.Kind {
	case SuspendRebalance:
		r.log.Info("rolling a node pool", "pool", c.Pool, "group", c.Group)
		return r.fleet.SuspendRebalance(ctx, c.Group)
	case ResumeRebalance:
		r.log.Info("node pool rolled", "pool", c.Pool, "group", c.Group)
		return r.fleet.ResumeRebalance(ctx, c.Group)
	case SetDesiredCapacity:
		r.log.Info("surging", "pool", c.Pool, "group", c.Group, "desired", c.Desired)
		return r.fleet.SetDesired(ctx, c.Group, c.Desired)
	case MarkNode:
		return r.patchNode(ctx, c.Node, readVersion, func(n *corev1.Node) {
			n.Labels[LifecycleLabel] = DecommissionValue
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: DecommissionTaint, Value: decommissionReason, Effect: c.Effect})
		})
	case UnmarkNode:
		return r.patchNode(ctx, c.Node, readVersion, func(n *corev1.Node) {
			delete(n.Labels, LifecycleLabel)
			delete(n.Annotations, DrainStartAnnotation)
			n.Spec.Unschedulable = false
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == DecommissionTaint })
		})
	case StartNodeDrain:
		return r.startDrain(ctx, c.Node, c.Pods)
	case ForceDeletion:
		return r.force(ctx, scope, c)
	case WriteForecast:
		return r.forecast(ctx, c.Pod, c.Decision)
	case TerminateInstance:
		return r.terminate(ctx, c.Node)
	}
	return fmt.Errorf("unknown command %s", c)
}

// evictAll asks for the evictions at once, a few at a time, and keeps in
// the scope's memory which ones a budget refused.
func (r *Roller) evictAll(ctx context.Context, scope string, cmds []Command) (bool, error) {
	var mu sync.Mutex
	refused := false
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(evictConcurrency)
	for _, c := range cmds {
		g.Go(func() error {
			result, err := r.askToLeave(gctx, c.Pod)
			r.log.V(1).Info("node command", "command", c.String(), "result", result.String())
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			r.remember(scope, c.Pod.UID, result, &refused)
			return nil
		})
	}
	return refused, g.Wait()
}

// evictConcurrency bounds the evictions in flight.
const evictConcurrency = 8

// remember notes an eviction's result in the scope's memory: a pod evicted
// is forgotten, one refused is to be decided on.
func (r *Roller) remember(scope string, uid types.UID, result evictionResult, refused *bool) {
	m := r.memories[scope]
	if m.Refusals == nil {
		m.Refusals = map[types.UID]Refusal{}
	}
	switch result {
	case evicted:
		delete(m.Refusals, uid)
	case refusedByPDB:
		m.Refusals[uid] = Refusal{Asked: r.now()}
		*refused = true
	}
	r.memories[scope] = m
}

type evictionResult int

const (
	evicted evictionResult = iota
	refusedByPDB
	// throttled: the API server's own 429; asked again at the next pass.
	throttled
)

func (e evictionResult) String() string {
	return [...]string{evicted: "evicted", refusedByPDB: "refused", throttled: "throttled"}[e]
}

// askToLeave asks for the pod's eviction.
func (r *Roller) askToLeave(ctx context.Context, pod *corev1.Pod) (evictionResult, error) {
	err := evict(ctx, r.kube, pod)
	if err == nil {
		r.trigger.Leaving(pod)
	}
	switch {
	case err == nil, apierrors.IsNotFound(err):
		r.metrics.evictions.WithLabelValues("evicted").Inc()
		return evicted, nil
	case refusedByBudget(err):
		r.metrics.evictions.WithLabelValues("refused").Inc()
		return refusedByPDB, nil
	case apierrors.IsTooManyRequests(err):
		r.metrics.evictions.WithLabelValues("throttled").Inc()
		return throttled, nil
	}
	return evicted, fmt.Errorf("evicting pod %s/%s: %w", pod.Namespace, pod.Name, err)
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

// force deletes a refused pod the plan let go, after reading it and its
// budgets again: the pod must still be the one decided on and not going,
// and no force the plan did not count may have been made in its budgets.
// When every budget allows a disruption now, the pod is evicted instead.
func (r *Roller) force(ctx context.Context, scope string, c Command) error {
	pod, budgets, still, err := r.reread(ctx, c)
	if err != nil || !still {
		return err
	}
	if allowDisruption(budgets) {
		result, err := r.askToLeave(ctx, pod)
		var refused bool
		r.remember(scope, pod.UID, result, &refused)
		return err
	}
	// The force is recorded before it is made: an agent killed between the
	// two would otherwise forget it and, restarted, force again in the
	// same budget at once. A deletion that then fails leaves a force
	// recorded that did not happen, which only delays the next one. The
	// deletion's instant, later than the record by the writes between, is
	// kept in the ForceLog: the next force's interval counts from it.
	ctx, cancel := context.WithTimeout(ctx, forceTimeout)
	defer cancel()
	recorded := r.now().UTC().Format(time.RFC3339Nano)
	if err := r.recordForce(ctx, c.Node, budgets, recorded); err != nil {
		return err
	}
	err = r.kube.Delete(ctx, pod, client.Preconditions{UID: &c.Pod.UID})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Gone, or replaced under its name since the re-read: not the pod
		// decided on, and nothing deleted.
		return nil
	case err != nil:
		// The API server may still make a deletion whose answer failed.
		r.forces.made(recorded, r.now().Add(apiServerTimeout))
		return fmt.Errorf("deleting pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.forces.made(recorded, r.now())
	r.trigger.Leaving(pod)
	r.metrics.forced.Inc()
	r.log.Info("forced the deletion of a pod its budget refused to evict", "pod", pod.Namespace+"/"+pod.Name, "node", c.Node.Name, "rule", c.Decision.String())
	events.Publish(r.events, forcedEvictionEvent(pod, c.Node))
	return nil
}

// recordForce writes the time of a force on its node and on the pod's
// budgets, where the drain SLA's intervals are counted from.
func (r *Roller) recordForce(ctx context.Context, node *corev1.Node, budgets []*policyv1.PodDisruptionBudget, at string) error {
	if err := r.patchNode(ctx, node, anyVersion, func(n *corev1.Node) { n.Annotations[LastForcedAnnotation] = at }); err != nil {
		return err
	}
	for _, b := range budgets {
		patch := client.MergeFrom(b.DeepCopy())
		if b.Annotations == nil {
			b.Annotations = map[string]string{}
		}
		b.Annotations[LastForcedAnnotation] = at
		if err := r.kube.Patch(ctx, b, patch); err != nil {
			return fmt.Errorf("recording the forced termination on PodDisruptionBudget %s/%s: %w", b.Namespace, b.Name, err)
		}
		r.trigger.Wrote(b)
	}
	return nil
}

// reread reads a pod to force and its budgets again, and says whether the
// force still stands.
func (r *Roller) reread(ctx context.Context, c Command) (*corev1.Pod, []*policyv1.PodDisruptionBudget, bool, error) {
	pod := &corev1.Pod{}
	if err := r.kube.Get(ctx, client.ObjectKeyFromObject(c.Pod), pod); err != nil {
		return nil, nil, false, client.IgnoreNotFound(err)
	}
	if pod.UID != c.Pod.UID || pod.DeletionTimestamp != nil {
		return nil, nil, false, nil
	}
	budgets := make([]*policyv1.PodDisruptionBudget, 0, len(c.Budgets))
	var siblings []Sibling
	for _, key := range c.Budgets {
		namespace, name, _ := strings.Cut(key, "/")
		b := &policyv1.PodDisruptionBudget{}
		err := r.kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, b)
		switch {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, nil, false, fmt.Errorf("reading PodDisruptionBudget %s: %w", key, err)
		case annotationTime(b.Annotations).After(c.LastForcedInPDB):
			r.log.Info("a force in the budget since the plan; deciding again", "pod", c.Pod.Namespace+"/"+c.Pod.Name, "budget", key)
			return nil, nil, false, nil
		}
		budgets = append(budgets, b)
		covered, err := covered(ctx, source{Reader: r.kube}, b)
		if err != nil {
			return nil, nil, false, err
		}
		siblings = append(siblings, covered...)
	}
	if !allowDisruption(budgets) && !sameSiblings(c.Siblings, siblings, c.Pod.Name) {
		r.log.Info("the budget's pods changed since the plan; deciding again", "pod", c.Pod.Namespace+"/"+c.Pod.Name)
		return nil, nil, false, errPlanBehind
	}
	return pod, budgets, true, nil
}

// errPlanBehind stops a pass's commands when the API server shows what
// the plan's snapshot did not: the next round reads it from there.
var errPlanBehind = errors.New("the cluster changed since the plan")

// planBehind says whether a command failed because the snapshot was
// behind the API server: a write met a newer object (a conflict), or a
// force's re-read found what the plan did not see.
func planBehind(err error) bool {
	return errors.Is(err, errPlanBehind) || apierrors.IsConflict(err)
}

// sameSiblings says whether the siblings the API server shows now, but
// the pod itself, are those a decision saw, in the same state.
func sameSiblings(decided, now []Sibling, pod string) bool {
	before := make(map[string]Sibling, len(decided))
	for _, s := range decided {
		before[s.Name] = s
	}
	matched := map[string]bool{}
	for _, s := range now {
		if s.Name == pod || matched[s.Name] {
			continue
		}
		d, ok := before[s.Name]
		if !ok || d.Ready != s.Ready || d.Terminating != s.Terminating || !d.ReadySince.Equal(s.ReadySince) || !d.Created.Equal(s.Created) {
			return false
		}
		matched[s.Name] = true
	}
	return len(matched) == len(before)
}

// forecast writes on the pod when it may be forced, and says so once in an
// Event, so that its owners see it coming; the annotation follows the
// forecast as it moves (unless it holds: later by less than a second), the
// Event does not repeat. A decision with no time known removes a forecast
// written before.
func (r *Roller) forecast(ctx context.Context, pod *corev1.Pod, d Decision) error {
	r.metrics.waits.WithLabelValues(d.Rule).Inc()
	value, known := ForecastAnnotation(d)
	before, had := pod.Annotations[ForceEvictAfterAnnotation]
	if ForecastHolds(before, value) {
		return nil
	}
	patch := client.MergeFrom(pod.DeepCopy())
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	if known {
		pod.Annotations[ForceEvictAfterAnnotation] = value
	} else {
		delete(pod.Annotations, ForceEvictAfterAnnotation)
	}
	if err := r.kube.Patch(ctx, pod, patch); err != nil {
		return client.IgnoreNotFound(err)
	}
	r.trigger.Wrote(pod)
	if known && !had {
		events.Publish(r.events, forceEvictionScheduledEvent(pod, value, d))
	}
	return nil
}

func (r *Roller) terminate(ctx context.Context, n *corev1.Node) error {
	if err := r.fleet.Terminate(ctx, InstanceID(n.Spec.ProviderID)); err != nil {
		return err
	}
	r.log.Info("drained; instance terminated", "node", n.Name, "instance", InstanceID(n.Spec.ProviderID))
	if start, err := time.Parse(time.RFC3339, n.Annotations[DrainStartAnnotation]); err == nil {
		r.metrics.drainDuration.Observe(r.now().Sub(start).Seconds())
	}
	events.Publish(r.events, instanceTerminatedEvent(n))
	return r.patchNode(ctx, n, anyVersion, func(n *corev1.Node) { n.Annotations[TerminatedAnnotation] = r.now().UTC().Format(time.RFC3339) })
}

// startDrain labels the node draining, records when (once: a restarted
// agent keeps the first time), and cordons it.
func (r *Roller) startDrain(ctx context.Context, n *corev1.Node, pods int) error {
	now := r.now().UTC().Format(time.RFC3339Nano)
	first := n.Labels[LifecycleLabel] != DrainingValue
	err := r.patchNode(ctx, n, readVersion, func(n *corev1.Node) {
		n.Labels[LifecycleLabel] = DrainingValue
		if n.Annotations[DrainStartAnnotation] == "" {
			n.Annotations[DrainStartAnnotation] = now
		}
		n.Spec.Unschedulable = true
	})
	if err == nil && first {
		events.Publish(r.events, drainStartedEvent(n, pods))
	}
	return err
}

// nodeVersion says which Node a patch may change: any, for one that sets
// a single annotation of the roller's own; the one the plan read, for one
// that replaces lists (taints) or sets what must be set once (the drain's
// start), so that a plan made on an old copy changes nothing.
type nodeVersion bool

const (
	anyVersion  nodeVersion = false
	readVersion nodeVersion = true
)

func (r *Roller) patchNode(ctx context.Context, n *corev1.Node, version nodeVersion, change func(*corev1.Node)) error {
	patch := client.MergeFrom(n.DeepCopy())
	if version == readVersion {
		patch = client.MergeFromWithOptions(n.DeepCopy(), client.MergeFromWithOptimisticLock{})
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	change(n)
	if err := r.kube.Patch(ctx, n, patch); err != nil {
		return fmt.Errorf("updating node %s: %w", n.Name, err)
	}
	r.trigger.Wrote(n)
	return nil
}

func nodeState(n *corev1.Node) NodeState {
	start, _ := time.Parse(time.RFC3339, n.Annotations[DrainStartAnnotation])
	return NodeState{Name: n.Name, DrainStart: start}
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

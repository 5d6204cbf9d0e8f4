package nodes

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Trigger tells a roll waiting between two passes that the cluster changed
// in a way it waits for: a pool's Node came, went or changed readiness, a
// PodDisruptionBudget's counts moved (a replacement became Ready, so an
// eviction may pass now), or a pod left a node being drained. Without it
// every wait of a roll would last until the next drain_poll_interval; with
// it that interval is only the backstop for what no watch shows.
//
// It keeps no objects, only what tells a change from a repeat: a Node's
// readiness and a budget's counts, so its memory does not grow with the
// cluster's pods.
type Trigger struct {
	watcher client.WithWatch
	log     logr.Logger
	wake    chan struct{}

	mu       sync.Mutex
	stop     context.CancelFunc
	draining map[string]context.CancelFunc

	budgetMu sync.Mutex
	// counts are each budget's counts as last seen; waited, when set, the
	// budgets refused pods wait on, with the counts they were decided at.
	counts map[string]BudgetCounts
	waited map[string]BudgetCounts
	// waitPods: a refused pod waits for a pod to leave its node.
	waitPods bool
}

// NewTrigger returns a Trigger that watches through watcher once Start is
// called.
func NewTrigger(watcher client.WithWatch, log logr.Logger) *Trigger {
	return &Trigger{watcher: watcher, log: log, wake: make(chan struct{}, 1), counts: map[string]BudgetCounts{}}
}

// Start watches the pools' Nodes and the PodDisruptionBudgets, and the pods
// of every node labelled draining, until Stop or until ctx ends. Starting a
// started Trigger does nothing.
func (t *Trigger) Start(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stop != nil {
		return
	}
	ctx, t.stop = context.WithCancel(ctx)
	t.draining = map[string]context.CancelFunc{}
	nodes := t.nodeChanges(ctx)
	go t.watch(ctx, &corev1.NodeList{}, []client.ListOption{client.HasLabels{PoolLabel}}, func() func(watch.Event) bool { return nodes })
	go t.watch(ctx, &policyv1.PodDisruptionBudgetList{}, nil, func() func(watch.Event) bool { return t.budgetChanges })
}

// Stop ends every watch.
func (t *Trigger) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stop != nil {
		t.stop()
		t.stop, t.draining = nil, nil
	}
	t.budgetMu.Lock()
	t.counts, t.waited, t.waitPods = map[string]BudgetCounts{}, nil, false
	t.budgetMu.Unlock()
}

// Wake is the rule a roll's passes follow: the next pass is due at the
// trigger's next change, at next when it is not zero (a forecast force, a
// window opening), and at the latest after backstop (drain_poll_interval),
// for what no watch shows. The channel closes then; stop releases the
// timer. A nil Trigger wakes on the times alone.
func (t *Trigger) Wake(next time.Time, backstop time.Duration) (<-chan struct{}, func()) {
	wait := backstop
	if !next.IsZero() {
		wait = max(min(wait, time.Until(next)), 0)
	}
	wake := make(chan struct{})
	timer := time.AfterFunc(wait, func() { close(wake) })
	if t == nil {
		return wake, func() { timer.Stop() }
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-t.wake:
			if timer.Stop() {
				close(wake)
			}
		case <-done:
		}
	}()
	return wake, func() { timer.Stop(); close(done) }
}

// C delivers one value after changes, however many came since the last
// receive; for callers that wait on other things too.
func (t *Trigger) C() <-chan struct{} { return t.wake }

func (t *Trigger) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// watch follows a kind until ctx ends, starting again after the API server
// closes the watch or refuses it. Each (re)start wakes the roll once: what
// changed before the watch began is seen by that pass, what changes after
// by the watch. A new watch replays every object as added; the filters
// know them already and stay quiet.
func (t *Trigger) watch(ctx context.Context, list client.ObjectList, opts []client.ListOption, filter func() func(watch.Event) bool) {
	for ctx.Err() == nil {
		changed := filter()
		w, err := t.watcher.Watch(ctx, list, opts...)
		if err != nil {
			t.log.V(1).Info("watch refused; trying again", "kind", kindOf(list), "error", err.Error())
			sleepCtx(ctx, time.Second)
			continue
		}
		t.signal()
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break
			}
			if changed(ev) {
				t.log.V(2).Info("roll wakes", "kind", kindOf(list), "event", string(ev.Type))
				t.signal()
			}
		}
		w.Stop()
	}
}

// nodeChanges wakes on a Node that came, went or changed readiness, and
// follows the pods of the nodes labelled draining.
func (t *Trigger) nodeChanges(ctx context.Context) func(watch.Event) bool {
	ready := map[string]bool{}
	return func(ev watch.Event) bool {
		n, ok := ev.Object.(*corev1.Node)
		if !ok {
			return false
		}
		if ev.Type == watch.Deleted {
			delete(ready, n.Name)
			t.follow(ctx, n.Name, false)
			return true
		}
		t.follow(ctx, n.Name, n.Labels[LifecycleLabel] == DrainingValue)
		was, known := ready[n.Name]
		ready[n.Name] = nodeReady(n)
		return !known || was != ready[n.Name]
	}
}

// follow starts or ends the watch of a node's pods.
func (t *Trigger) follow(ctx context.Context, node string, draining bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining == nil {
		return
	}
	stop, followed := t.draining[node]
	switch {
	case draining && !followed:
		podCtx, cancel := context.WithCancel(ctx)
		t.draining[node] = cancel
		go t.watch(podCtx, &corev1.PodList{}, []client.ListOption{client.MatchingFields{"spec.nodeName": node}}, t.podsLeaving)
	case !draining && followed:
		stop()
		delete(t.draining, node)
	}
}

// podsLeaving follows the pods that must leave a node being drained, from
// a watch's start: it wakes when the last one left (the node is empty, its
// instance can go), and when any one left while WaitFor said refused pods
// wait for a pod to leave (a terminating sibling that held a force back).
// Other departures change nothing a pass decides on.
func (t *Trigger) podsLeaving() func(watch.Event) bool {
	left := map[types.UID]bool{}
	return func(ev watch.Event) bool {
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false
		}
		_, had := left[pod.UID]
		if ev.Type == watch.Deleted || !MustLeave(pod) {
			delete(left, pod.UID)
			if !had {
				return false
			}
			t.budgetMu.Lock()
			anyLeaving := t.waitPods
			t.budgetMu.Unlock()
			return len(left) == 0 || anyLeaving
		}
		left[pod.UID] = true
		return false
	}
}

// budgetChanges wakes when the counts of a budget a refused pod waits on
// move: the eviction may pass now, or a sibling it waited for is Ready. A
// budget no refused pod waits on wakes nothing once WaitFor said which
// ones do; before that, every budget does.
func (t *Trigger) budgetChanges(ev watch.Event) bool {
	b, ok := ev.Object.(*policyv1.PodDisruptionBudget)
	if !ok {
		return false
	}
	key := budgetKey(b)
	t.budgetMu.Lock()
	defer t.budgetMu.Unlock()
	_, waited := t.waited[key]
	waited = waited || t.waited == nil
	if ev.Type == watch.Deleted {
		delete(t.counts, key)
		return waited
	}
	now := countsOf(b)
	was, known := t.counts[key]
	t.counts[key] = now
	return waited && (!known || was != now)
}

// Counts are the budgets' counts as the watch last saw them; nil while
// the Trigger does not watch.
func (t *Trigger) Counts() map[string]BudgetCounts {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	watching := t.stop != nil
	t.mu.Unlock()
	if !watching {
		return nil
	}
	t.budgetMu.Lock()
	defer t.budgetMu.Unlock()
	return maps.Clone(t.counts)
}

// WaitFor narrows the budgets that wake the roll to those refused pods
// wait on, with the counts they were decided at; counts that moved since
// wake it at once, since their change was seen before. With pods, a pod
// leaving a node being drained wakes it, not only the last one.
func (t *Trigger) WaitFor(budgets map[string]BudgetCounts, pods bool) {
	if t == nil {
		return
	}
	t.budgetMu.Lock()
	defer t.budgetMu.Unlock()
	t.waited, t.waitPods = budgets, pods
	for key, decided := range budgets {
		if seen, ok := t.counts[key]; ok && seen != decided {
			t.signal()
			return
		}
	}
}

func kindOf(list client.ObjectList) string {
	switch list.(type) {
	case *corev1.NodeList:
		return "Node"
	case *corev1.PodList:
		return "Pod"
	default:
		return "PodDisruptionBudget"
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

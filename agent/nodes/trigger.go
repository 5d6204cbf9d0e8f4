package nodes

import (
	"context"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Trigger tells a roll waiting between two passes that the cluster changed
// in a way it waits for: a pool's Node came, went or changed readiness, a
// PodDisruptionBudget's counts moved (a replacement became Ready, so an
// eviction may pass now), or a pod left a node being drained. Without it
// every wait of a roll would last until the next drain_poll_interval; with
// it that interval is only the backstop for what no watch shows.
//
// Its informers also keep the pools' Nodes, the pods and the budgets, so
// that a pass reads them without a request: a roll's passes come with
// every change it waits for, and reading the API server on each was most
// of the roll's load on it. A pass reads the cache only once it shows the
// roller's own writes (Wrote, Leaving); until then it reads the API server.
type Trigger struct {
	config *rest.Config
	log    logr.Logger
	wake   chan struct{}

	mu     sync.Mutex
	stop   context.CancelFunc
	cache  cache.Cache
	synced []func() bool

	stateMu sync.Mutex
	// ready is each pool Node's readiness as last seen; draining the
	// Nodes labelled draining; leaving the pods that must leave, by node.
	ready    map[string]bool
	draining map[string]bool
	leaving  map[string]map[types.UID]bool
	// counts are each budget's counts as last seen; waited, when set, the
	// budgets refused pods wait on, with the counts they were decided at.
	counts map[string]BudgetCounts
	waited map[string]BudgetCounts
	// waitPods: a refused pod waits for a pod to leave its node.
	waitPods bool
	// expected are the roller's writes the cache does not show yet;
	// caught closes when the last of them shows.
	expected map[string]expectation
	caught   chan struct{}
}

// expectation is a write of the roller, shown in the cache once met says
// so of the cached object.
type expectation struct{ met func(client.Object) bool }

// catchUp is how long a pass waits for the cache to show the roller's
// writes before it reads the API server instead; the watch usually shows
// them within milliseconds.
const catchUp = 2 * time.Second

// podNodeField indexes the cached pods by node, as the API server's field
// selector does.
const podNodeField = "spec.nodeName"

// NewTrigger returns a Trigger that watches through config once Start is
// called.
func NewTrigger(config *rest.Config, log logr.Logger) *Trigger {
	t := &Trigger{config: config, log: log, wake: make(chan struct{}, 1)}
	t.reset()
	return t
}

func (t *Trigger) reset() {
	t.stateMu.Lock()
	defer t.stateMu.Unlock()
	t.ready, t.draining, t.leaving = map[string]bool{}, map[string]bool{}, map[string]map[types.UID]bool{}
	t.counts, t.waited, t.waitPods = map[string]BudgetCounts{}, nil, false
	t.expected, t.caught = map[string]expectation{}, make(chan struct{})
}

// Start watches the pools' Nodes, the pods and the PodDisruptionBudgets
// until Stop or until ctx ends. Starting a started Trigger does nothing;
// one that cannot start leaves the roll to the backstop and the API
// server.
func (t *Trigger) Start(ctx context.Context) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stop != nil {
		return
	}
	ctx, stop := context.WithCancel(ctx)
	c, synced, err := t.informers(ctx)
	if err != nil {
		stop()
		t.log.Error(err, "cannot watch the pools; the roll polls")
		return
	}
	t.stop, t.cache, t.synced = stop, c, synced
	go func() {
		if err := c.Start(ctx); err != nil {
			t.log.Error(err, "the pools' watches ended")
		}
	}()
	go func() {
		if c.WaitForCacheSync(ctx) {
			t.signal()
		}
	}()
}

// informers builds the cache and its handlers.
func (t *Trigger) informers(ctx context.Context) (cache.Cache, []func() bool, error) {
	inPool, err := labels.NewRequirement(PoolLabel, selection.Exists, nil)
	if err != nil {
		return nil, nil, err
	}
	c, err := cache.New(t.config, cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Node{}: {Label: labels.NewSelector().Add(*inPool), Transform: keepOfNode},
			&corev1.Pod{}:  {Transform: keepOfPod},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	})
	if err != nil {
		return nil, nil, err
	}
	if err := c.IndexField(ctx, &corev1.Pod{}, podNodeField, func(o client.Object) []string {
		return []string{o.(*corev1.Pod).Spec.NodeName}
	}); err != nil {
		return nil, nil, err
	}
	handlers := map[client.Object]func(client.Object, bool) bool{
		&corev1.Node{}:                  t.nodeChanged,
		&corev1.Pod{}:                   t.podChanged,
		&policyv1.PodDisruptionBudget{}: t.budgetChanged,
	}
	var synced []func() bool
	for obj, changed := range handlers {
		inf, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return nil, nil, err
		}
		if _, err := inf.AddEventHandler(t.handler(changed)); err != nil {
			return nil, nil, err
		}
		synced = append(synced, inf.HasSynced)
	}
	return c, synced, nil
}

// handler notes a kind's changes; changed says whether one wakes the roll.
func (t *Trigger) handler(changed func(client.Object, bool) bool) toolscache.ResourceEventHandler {
	note := func(obj any, gone bool) {
		if tomb, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		o, ok := obj.(client.Object)
		if !ok {
			return
		}
		t.stateMu.Lock()
		t.meet(o, gone)
		wake := changed(o, gone)
		t.stateMu.Unlock()
		if wake {
			t.log.V(2).Info("roll wakes", "kind", kindOf(o), "name", o.GetName(), "gone", gone)
			t.signal()
		}
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { note(obj, false) },
		UpdateFunc: func(_, obj any) { note(obj, false) },
		DeleteFunc: func(obj any) { note(obj, true) },
	}
}

// Stop ends every watch and forgets what they saw.
func (t *Trigger) Stop() {
	t.mu.Lock()
	if t.stop != nil {
		t.stop()
		t.stop, t.cache, t.synced = nil, nil, nil
	}
	t.mu.Unlock()
	t.reset()
}

// Reader is the cache of the pools' Nodes, the pods and the budgets once
// it has synced and shows the roller's own writes; nil before, or when it
// does not show them within catchUp: the pass then reads the API server.
func (t *Trigger) Reader(ctx context.Context) client.Reader {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	c, synced := t.cache, t.synced
	t.mu.Unlock()
	if c == nil {
		return nil
	}
	if !allSynced(synced) || !t.caughtUp(ctx) {
		return nil
	}
	return c
}

// caughtUp waits until the cache shows the roller's writes; after catchUp
// it forgets them and says no.
func (t *Trigger) caughtUp(ctx context.Context) bool {
	timer := time.NewTimer(catchUp)
	defer timer.Stop()
	for {
		t.stateMu.Lock()
		if len(t.expected) == 0 {
			t.stateMu.Unlock()
			return true
		}
		caught := t.caught
		t.stateMu.Unlock()
		select {
		case <-caught:
		case <-ctx.Done():
			return false
		case <-timer.C:
			t.stateMu.Lock()
			t.log.V(1).Info("the pools' cache is behind the roll's writes; reading the API server", "writes", len(t.expected))
			t.expected, t.caught = map[string]expectation{}, make(chan struct{})
			t.stateMu.Unlock()
			return false
		}
	}
}

// Wrote tells the Trigger of a write of the roller: the cache is to show
// obj at its new resourceVersion before a pass reads it.
func (t *Trigger) Wrote(obj client.Object) {
	version := obj.GetResourceVersion()
	t.expect(obj, func(cached client.Object) bool { return cached.GetResourceVersion() == version })
}

// Leaving tells the Trigger that a pod was evicted or deleted: the cache
// is to show it terminating, or gone, before a pass reads it.
func (t *Trigger) Leaving(pod *corev1.Pod) {
	t.expect(pod, func(cached client.Object) bool { return cached.GetDeletionTimestamp() != nil })
}

// expect notes a write the cache is to show, unless it shows it already:
// the informer updates its store before it tells the handlers, so a watch
// quicker than the caller may have brought the write before this call.
func (t *Trigger) expect(obj client.Object, met func(client.Object) bool) {
	if t == nil {
		return
	}
	t.mu.Lock()
	c, synced := t.cache, t.synced
	t.mu.Unlock()
	if c == nil {
		return
	}
	t.stateMu.Lock()
	defer t.stateMu.Unlock()
	if allSynced(synced) {
		cached := obj.DeepCopyObject().(client.Object)
		err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), cached)
		if apierrors.IsNotFound(err) || err == nil && met(cached) {
			return
		}
	}
	t.expected[objectKey(obj)] = expectation{met: met}
}

func allSynced(synced []func() bool) bool {
	for _, s := range synced {
		if !s() {
			return false
		}
	}
	return true
}

// meet forgets the expectation obj's change fulfils.
func (t *Trigger) meet(obj client.Object, gone bool) {
	key := objectKey(obj)
	e, ok := t.expected[key]
	if !ok || !gone && !e.met(obj) {
		return
	}
	delete(t.expected, key)
	if len(t.expected) == 0 {
		close(t.caught)
		t.caught = make(chan struct{})
	}
}

func objectKey(obj client.Object) string {
	return kindOf(obj) + "/" + obj.GetNamespace() + "/" + obj.GetName()
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

// nodeChanged wakes on a pool's Node that came, went or changed readiness,
// and notes which are being drained.
func (t *Trigger) nodeChanged(obj client.Object, gone bool) bool {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return false
	}
	if gone {
		delete(t.ready, n.Name)
		delete(t.draining, n.Name)
		return true
	}
	if n.Labels[LifecycleLabel] == DrainingValue {
		t.draining[n.Name] = true
	} else {
		delete(t.draining, n.Name)
	}
	was, known := t.ready[n.Name]
	t.ready[n.Name] = nodeReady(n)
	return !known || was != t.ready[n.Name]
}

// podChanged follows the pods that must leave their nodes: it wakes when
// the last one left a node being drained (the node is empty, its instance
// can go), and when any one left it while WaitFor said refused pods wait
// for a pod to leave (a terminating sibling that held a force back).
// Other departures change nothing a pass decides on.
func (t *Trigger) podChanged(obj client.Object, gone bool) bool {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return false
	}
	node := pod.Spec.NodeName
	on := t.leaving[node]
	if !gone && MustLeave(pod) {
		if on == nil {
			on = map[types.UID]bool{}
			t.leaving[node] = on
		}
		on[pod.UID] = true
		return false
	}
	if !on[pod.UID] {
		return false
	}
	delete(on, pod.UID)
	if len(on) == 0 {
		delete(t.leaving, node)
	}
	return t.draining[node] && (len(on) == 0 || t.waitPods)
}

// budgetChanged wakes when the counts of a budget a refused pod waits on
// move: the eviction may pass now, or a sibling it waited for is Ready. A
// budget no refused pod waits on wakes nothing once WaitFor said which
// ones do; before that, every budget does.
func (t *Trigger) budgetChanged(obj client.Object, gone bool) bool {
	b, ok := obj.(*policyv1.PodDisruptionBudget)
	if !ok {
		return false
	}
	key := budgetKey(b)
	_, waited := t.waited[key]
	waited = waited || t.waited == nil
	if gone {
		delete(t.counts, key)
		return waited
	}
	now := countsOf(b)
	was, known := t.counts[key]
	t.counts[key] = now
	return waited && (!known || was != now)
}

// WaitFor narrows the budgets that wake the roll to those refused pods
// wait on, with the counts they were decided at; counts that moved since
// wake it at once, since their change was seen before. With pods, a pod
// leaving a node being drained wakes it, not only the last one.
func (t *Trigger) WaitFor(budgets map[string]BudgetCounts, pods bool) {
	if t == nil {
		return
	}
	t.stateMu.Lock()
	defer t.stateMu.Unlock()
	t.waited, t.waitPods = budgets, pods
	for key, decided := range budgets {
		if seen, ok := t.counts[key]; ok && seen != decided {
			t.signal()
			return
		}
	}
}

func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *corev1.Node:
		return "Node"
	case *corev1.Pod:
		return "Pod"
	default:
		return "PodDisruptionBudget"
	}
}

// keepOfPod keeps of a cached pod what a pass reads (its metadata, its
// node, its phase and Ready condition), so that the cache of a cluster's
// pods stays small: a force reads the whole pod from the API server.
func keepOfPod(obj any) (any, error) {
	if pod, ok := obj.(*corev1.Pod); ok {
		trimPod(pod)
	}
	return obj, nil
}

// trimPod drops from a pod what a pass does not read, as the cache does:
// a pass that reads the API server keeps its pods the same size.
func trimPod(pod *corev1.Pod) {
	pod.ManagedFields = nil
	pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName}
	var ready []corev1.PodCondition
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			ready = []corev1.PodCondition{c}
		}
	}
	pod.Status = corev1.PodStatus{Phase: pod.Status.Phase, Conditions: ready}
}

// keepOfNode keeps of a cached Node what a pass reads and writes: its
// metadata, spec (provider ID, taints, cordon) and conditions.
func keepOfNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	n.ManagedFields = nil
	n.Status = corev1.NodeStatus{Conditions: n.Status.Conditions}
	return n, nil
}

package nodes_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// The Trigger wakes a roll for what it waits on, through real watches: a
// pool's Node that comes, changes readiness or goes; a budget whose counts
// move; a pod gone from a node being drained. It stays quiet for pods of
// other nodes and for Nodes outside the pools.
func TestTriggerWakesOnWhatARollWaitsFor(t *testing.T) {
	cp := controlplane.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kube, err := client.NewWithWatch(cp.Config, client.Options{Scheme: clientgoscheme.Scheme})
	require.NoError(t, err)

	trigger := nodes.NewTrigger(cp.Config, logr.Discard())
	trigger.Start(ctx)
	t.Cleanup(trigger.Stop)
	// The cache wakes the roll once it has synced.
	woken(t, trigger, "the watches started")
	settle(trigger)

	_, err = cp.AddNode(ctx, controlplane.Node{Name: "outside"})
	require.NoError(t, err)
	quiet(t, trigger, "a Node outside the pools")

	_, err = cp.AddNode(ctx, controlplane.Node{Name: "old", Labels: map[string]string{nodes.PoolLabel: "workers"}})
	require.NoError(t, err)
	woken(t, trigger, "a pool's Node came")

	// The budget covers a pod of its own; the pods of the pool's node are
	// outside it, so that only the pod watch can wake for them.
	pods := map[string]string{"on-old-1": "old", "on-old-2": "old", "on-old-3": "old", "on-old-4": "old", "on-outside": "outside", "guarded": "outside"}
	for name, node := range pods {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		require.NoError(t, kube.Create(ctx, pod))
	}
	budget := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: new(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}}}
	require.NoError(t, kube.Create(ctx, budget))
	woken(t, trigger, "a budget came")
	require.Eventually(t, func() bool {
		got := &policyv1.PodDisruptionBudget{}
		return kube.Get(ctx, client.ObjectKeyFromObject(budget), got) == nil && got.Status.CurrentHealthy == 1
	}, 20*time.Second, 100*time.Millisecond, "the budget to count its pod")
	settle(trigger)
	deletePod(t, ctx, kube, "guarded")
	woken(t, trigger, "a budget's counts moved")
	settle(trigger)

	// Once the roll says which budgets its refused pods wait on, no other
	// budget wakes it; counts that moved since its decision wake it at once.
	trigger.WaitFor(map[string]nodes.BudgetCounts{}, false)
	require.NoError(t, kube.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "guarded-again", Namespace: "default", Labels: map[string]string{"app": "guarded"}},
		Spec: corev1.PodSpec{NodeName: "outside", TerminationGracePeriodSeconds: new(int64), Containers: []corev1.Container{{Name: "app", Image: "app"}}}}))
	require.Eventually(t, func() bool {
		got := &policyv1.PodDisruptionBudget{}
		return kube.Get(ctx, client.ObjectKeyFromObject(budget), got) == nil && got.Status.CurrentHealthy == 1
	}, 20*time.Second, 100*time.Millisecond, "the budget to count the new pod")
	quiet(t, trigger, "a budget no refused pod waits on")
	trigger.WaitFor(map[string]nodes.BudgetCounts{"default/guarded": {}}, false)
	woken(t, trigger, "a waited budget whose counts moved since the decision")
	trigger.WaitFor(nil, false)

	// The pods of a node are followed once it is labelled draining.
	deletePod(t, ctx, kube, "on-old-1")
	quiet(t, trigger, "a pod gone from a node not being drained")
	old := &corev1.Node{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Name: "old"}, old))
	patch := client.MergeFrom(old.DeepCopy())
	old.Labels[nodes.LifecycleLabel] = nodes.DrainingValue
	require.NoError(t, kube.Patch(ctx, old, patch))
	quiet(t, trigger, "a Node labelled draining, its readiness the same")

	deletePod(t, ctx, kube, "on-outside")
	quiet(t, trigger, "a pod gone from another node")
	deletePod(t, ctx, kube, "on-old-2")
	quiet(t, trigger, "a pod left the node being drained, others still to go, and no refused pod waits for one")
	trigger.WaitFor(nil, true)
	deletePod(t, ctx, kube, "on-old-3")
	woken(t, trigger, "a pod left the node being drained while a refused pod waits for one to")
	trigger.WaitFor(nil, false)
	deletePod(t, ctx, kube, "on-old-4")
	woken(t, trigger, "the last pod left the node being drained")

	require.NoError(t, kube.Delete(ctx, old))
	woken(t, trigger, "a pool's Node went")

	trigger.Stop()
	settle(trigger)
	_, err = cp.AddNode(ctx, controlplane.Node{Name: "new", Labels: map[string]string{nodes.PoolLabel: "workers"}})
	require.NoError(t, err)
	quiet(t, trigger, "a Node after Stop")
}

func deletePod(t *testing.T, ctx context.Context, kube client.Client, name string) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	require.NoError(t, kube.Delete(ctx, pod, client.GracePeriodSeconds(0)))
	require.Eventually(t, func() bool {
		return apierrors.IsNotFound(kube.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
	}, 10*time.Second, 50*time.Millisecond, "pod %s to be gone", name)
}

func woken(t *testing.T, trigger *nodes.Trigger, what string) {
	t.Helper()
	select {
	case <-trigger.C():
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake-up for %s", what)
	}
}

func quiet(t *testing.T, trigger *nodes.Trigger, what string) {
	t.Helper()
	select {
	case <-trigger.C():
		t.Fatalf("woken by %s", what)
	case <-time.After(2 * time.Second):
	}
}

// settle lets the watches deliver what is under way, then forgets it.
func settle(trigger *nodes.Trigger) {
	time.Sleep(time.Second)
	drain(trigger)
}

func drain(trigger *nodes.Trigger) {
	select {
	case <-trigger.C():
	default:
	}
}

// A pass reads the Trigger's cache only once it shows the roller's own
// writes: a patched Node at its new version, an evicted pod terminating.
// A write the cache never shows sends the pass to the API server, once.
func TestTriggerCacheShowsTheRollersWrites(t *testing.T) {
	cp := controlplane.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kube, err := client.New(cp.Config, client.Options{Scheme: clientgoscheme.Scheme})
	require.NoError(t, err)
	_, err = cp.AddNode(ctx, controlplane.Node{Name: "old", Labels: map[string]string{nodes.PoolLabel: "workers"}})
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: "old", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(t, kube.Create(ctx, pod))

	trigger := nodes.NewTrigger(cp.Config, logr.Discard())
	assert.Nil(t, trigger.Reader(ctx), "no cache before Start")
	trigger.Start(ctx)
	t.Cleanup(trigger.Stop)
	require.Eventually(t, func() bool { return trigger.Reader(ctx) != nil }, 20*time.Second, 50*time.Millisecond, "the cache syncs")

	for i := range 20 {
		node := &corev1.Node{}
		require.NoError(t, kube.Get(ctx, client.ObjectKey{Name: "old"}, node))
		patch := client.MergeFrom(node.DeepCopy())
		node.Annotations["caravan.io/test-write"] = strconv.Itoa(i)
		require.NoError(t, kube.Patch(ctx, node, patch))
		trigger.Wrote(node)
		reader := trigger.Reader(ctx)
		require.NotNil(t, reader, "the cache catches up with write %d", i)
		cached := &corev1.Node{}
		require.NoError(t, reader.Get(ctx, client.ObjectKey{Name: "old"}, cached))
		require.Equal(t, strconv.Itoa(i), cached.Annotations["caravan.io/test-write"], "the cache shows write %d", i)
	}

	require.NoError(t, kube.Delete(ctx, pod, client.GracePeriodSeconds(30)))
	trigger.Leaving(pod)
	reader := trigger.Reader(ctx)
	require.NotNil(t, reader)
	cached := &corev1.Pod{}
	err = reader.Get(ctx, client.ObjectKeyFromObject(pod), cached)
	assert.True(t, apierrors.IsNotFound(err) || err == nil && cached.DeletionTimestamp != nil, "the cache shows the pod leaving")

	never := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "old", ResourceVersion: "1"}}
	trigger.Wrote(never)
	began := time.Now()
	assert.Nil(t, trigger.Reader(ctx), "a write the cache does not show: the API server")
	assert.GreaterOrEqual(t, time.Since(began), time.Second, "after waiting for the cache")
	assert.NotNil(t, trigger.Reader(ctx), "the write is forgotten after the wait")
}

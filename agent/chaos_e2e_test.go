package agent_test

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The chaos test's schedule: kills until the version completes, each a
// random delay after the agent started, up to maxKillDelay; the version
// lasts long enough for minChaosKills. A stack operation (stackHold) and a
// node's drain (chaosGrace at least) last longer than maxKillDelay, so each
// has a kill; render and apply take a second or two, so until one kill
// came in them, the agent is also killed a random instant, up to
// maxStageOffset, after it reports either.
const (
	minChaosKills  = 30
	minKillDelay   = 200 * time.Millisecond
	maxKillDelay   = 5 * time.Second
	maxStageOffset = 150 * time.Millisecond
	stackHold      = 6 * time.Second
	chaosGrace     = 20 * time.Second
	chaosInterval  = 3 * time.Second
	chaosLifetime  = 3 * time.Second
)

// The stages of the version, as the test sees them.
const (
	stageRenderApply = "render/apply"
	stageStacks      = "stack update"
	stageRoll        = "roll"
	stageDrainOf     = "drain of "
)

// chaosSeed is CARAVAN_CHAOS_SEED, or else a new seed; the test prints it.
func chaosSeed(t *testing.T) uint64 {
	if s := os.Getenv("CARAVAN_CHAOS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "CARAVAN_CHAOS_SEED is a number")
		return seed
	}
	return uint64(time.Now().UnixNano())
}

// The caravan-agent process is killed with SIGKILL at random instants
// across one version that updates the cluster stack and the node pool's
// stack, applies 200 objects and prunes the 50 the last version had and
// this one drops, and rolls the pool's three nodes under two
// PodDisruptionBudgets, one of which refuses every eviction; it is started
// again after each kill. Whatever the instant, a restarted agent keeps each
// drain's start, forces no pod earlier than the drain SLA allows, starts
// no stack operation while one is under way, and the version completes,
// with every object that left the config pruned.
func TestChaosKillsDuringAVersion(t *testing.T) {
	seed := chaosSeed(t)
	t.Logf("chaos seed %d; CARAVAN_CHAOS_SEED=%d runs this schedule again", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	f := startFleet(t)
	// The stacks of the version before are made at once.
	ops := f.aws.StartOperations(t, 0)
	f.awsEndpoint = ops.Endpoint
	agent := chaosPool(t, f)
	ops.SetHold(stackHold)
	old := f.poolNodes("workers")
	require.Len(t, old, 3)
	lastGood := f.status().CurrentVersion
	w := watchTheRoll(t, f)
	updatesBefore := map[string]int{}
	for _, stack := range chaosStacks {
		updatesBefore[stack] = f.stackUpdates(stack)
	}

	commit := f.commit("chaos: a new version of every part", chaosVersion(t))
	sc := &chaosSchedule{f: f, ops: ops, w: w, old: old, commit: commit, lastGood: lastGood, began: time.Now()}
	started := sc.began
	for {
		delay := minKillDelay + time.Duration(rng.Int64N(int64(maxKillDelay-minKillDelay)))
		offset := time.Duration(rng.Int64N(int64(maxStageOffset)))
		if !sc.waitForInstant(started, delay, offset) {
			break
		}
		sc.kill(agent, time.Since(started))
		agent = f.startAgentProcess()
		started = time.Now()
		sc.checkAfterRestart(t)
	}
	t.Logf("the version completed %s after its commit, with %d kills: %s", time.Since(sc.began).Round(time.Second), len(sc.kills), sc.stages())
	sc.checkAfterRestart(t)
	assert.GreaterOrEqual(t, len(sc.kills), minChaosKills, "kills during the version")
	for _, stage := range append([]string{stageRenderApply, stageStacks}, drainStages(old)...) {
		assert.Positive(t, sc.killsIn(stage), "a kill during the %s", stage)
	}
	st := f.status()
	cc := f.clusterConfig()
	assert.Equal(t, st.CurrentVersion, cc.Status.CurrentVersion)
	assert.True(t, conditions.IsReady(cc), "%+v", cc.Status.Conditions)
	for _, stack := range chaosStacks {
		assert.Equal(t, updatesBefore[stack]+1, f.stackUpdates(stack), "moto updated stack %s once for the version", stack)
		assert.Len(t, stackOperations(ops, "UpdateStack", stack, commit), 1, "the agent sent one update of stack %s", stack)
	}
	for i := range chaosPruned {
		_, err := f.chaosConfigMap(i)
		assert.True(t, apierrors.IsNotFound(err), "chaos-%03d left the config and is pruned: %v", i, err)
	}
	for i := chaosPruned; i < chaosObjects+chaosPruned; i++ {
		cm, err := f.chaosConfigMap(i)
		require.NoError(t, err)
		assert.Equal(t, "2", cm.Data["version"], "chaos-%03d is at the version", i)
	}
	forced := w.deletionsSoFar()
	assert.NotEmpty(t, forced, "the budget refused every eviction of the guarded pods, so they were forced")
	starts := w.drainStartTimes()
	for _, d := range forced {
		t.Logf("pod %s forced from node %s in the second %s, %s after the drain started", d.pod, d.node, d.asked.Format(time.TimeOnly),
			d.asked.Sub(starts[d.node]).Round(100*time.Millisecond))
	}
}

// The version's objects: ConfigMaps chaos-000 to chaos-199 before it,
// chaos-050 to chaos-249 after: 200 applied, 50 pruned.
const (
	chaosObjects = 200
	chaosPruned  = 50
)

// chaosStacks are the stacks the version updates.
var chaosStacks = []string{"kube-1", "nodepool-workers-kube-1"}

// chaosManifest is the Namespace chaos and the ConfigMaps chaos-FROM up
// to chaos-(FROM+chaosObjects-1), with version in their data.
func chaosManifest(from int, version string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: chaos\n")
	for i := from; i < from+chaosObjects; i++ {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chaos-%03d\n  namespace: chaos\ndata:\n  version: %q\n", i, version)
	}
	return []byte(b.String())
}

func (f *fleet) chaosConfigMap(i int) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := f.kube.Get(f.ctx, client.ObjectKey{Namespace: "chaos", Name: fmt.Sprintf("chaos-%03d", i)}, cm)
	return cm, err
}

// chaosVersion is the files of the version under test: the cluster stack's
// template changed, a node setting changed (a new launch template, so
// every node is outdated), and the objects moved on by chaosPruned.
func chaosVersion(t *testing.T) map[string][]byte {
	cluster, err := os.ReadFile("../manifests/cloudformation/cluster.yaml")
	require.NoError(t, err)
	changedCluster := strings.Replace(string(cluster), "managed by caravan", "managed by caravan, second version", 1)
	require.NotEqual(t, string(cluster), changedCluster)
	defaults, err := os.ReadFile("../manifests/config-defaults.yaml")
	require.NoError(t, err)
	changedDefaults := strings.Replace(string(defaults), `node_volume_size: "50"`, `node_volume_size: "60"`, 1)
	require.NotEqual(t, string(defaults), changedDefaults)
	return map[string][]byte{
		"cloudformation/cluster.yaml": []byte(changedCluster),
		"config-defaults.yaml":        []byte(changedDefaults),
		"kubernetes/base/chaos.yaml":  chaosManifest(chaosPruned, "2"),
	}
}

// chaosPool brings the cluster to the version before the one under test:
// the first chaos objects, and a pool of three nodes carrying the guarded
// pods (six, two a node, a budget that refuses every eviction) and the
// eased ones (three, a budget that lets one go at a time). It returns the
// agent process that applied it.
func chaosPool(t *testing.T, f *fleet) *agentProcess {
	bridge, err := cloudbridge.Start(f.ctx, cloudbridge.Config{AWS: f.aws.AWSConfig("eu-central-1"), ClusterID: clusterID, Kube: f.cp.Client, Log: t.Logf})
	require.NoError(t, err)
	t.Cleanup(bridge.Stop)
	sla := maps.Clone(scaledSLA)
	sla["drain_grace_period"] = chaosGrace.String()
	sla["drain_force_evict_interval"] = chaosInterval.String()
	sla["drain_min_pod_lifetime"] = chaosLifetime.String()
	sla["drain_min_unhealthy_sibling_lifetime"] = "5s"
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": sla}, "")
	require.NoError(t, err)
	_, _, err = f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "workers", Profile: "worker-default",
		InstanceTypes: []string{"m6i.large"}, MinSize: 3, MaxSize: 5, DiscountStrategy: "none"})
	require.NoError(t, err)
	first := f.commit("chaos: the objects before", map[string][]byte{
		"kubernetes/base/chaos.yaml": chaosManifest(0, "1"),
		base:                         addResource(t, "chaos.yaml"),
	})
	agent := f.startAgentProcess()
	f.eventually("the version before is applied on a pool of three nodes", func() bool {
		return f.atCommit(first)() && len(f.poolNodes("workers")) == 3
	})
	guarded := map[string]string{"app": "guarded"}
	f.deployOnPool("guarded", 6, guarded, true)
	all := intstr.FromInt32(6)
	f.budget("guarded", guarded, policyv1.PodDisruptionBudgetSpec{MinAvailable: &all})
	eased := map[string]string{"app": "eased"}
	f.deployOnPool("eased", 3, eased, false)
	one := intstr.FromInt32(1)
	f.budget("eased", eased, policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one})
	f.eventually("the budgets count every pod healthy", func() bool {
		return f.budgetHealthy("guarded") == 6 && f.budgetHealthy("eased") == 3
	})
	return agent
}

// deployOnPool deploys replicas of a pod on the pool's nodes; spread puts
// as many on each node. The pods stop within two seconds of their deletion
// (kwok takes a random part of the grace period), so that a drained node
// is empty soon after its last pod was asked to leave.
func (f *fleet) deployOnPool(name string, replicas int32, labels map[string]string, spread bool) {
	grace := int64(2)
	pod := corev1.PodSpec{NodeSelector: map[string]string{nodes.PoolLabel: "workers"}, TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "app", Image: "app"}}}
	if spread {
		pod.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
			WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}}
	}
	require.NoError(f.t, f.kube.Create(f.ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod}}}))
}

func (f *fleet) budget(name string, labels map[string]string, spec policyv1.PodDisruptionBudgetSpec) {
	spec.Selector = &metav1.LabelSelector{MatchLabels: labels}
	require.NoError(f.t, f.kube.Create(f.ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: spec}))
}

func (f *fleet) budgetHealthy(name string) int32 {
	pdb := &policyv1.PodDisruptionBudget{}
	if f.kube.Get(f.ctx, client.ObjectKey{Namespace: "default", Name: name}, pdb) != nil {
		return -1
	}
	return pdb.Status.CurrentHealthy
}

// chaosSchedule is the state of the kills: what each found, and what the
// test expects of the version.
type chaosSchedule struct {
	f        *fleet
	ops      *moto.Operations
	w        *rollWitness
	old      map[string]corev1.Node
	commit   string
	lastGood string
	// began is when the version was committed.
	began time.Time
	// kills holds the stage of each kill.
	kills []string
	// reached is set once the version became current.
	reached bool
}

// converged says whether the version is complete: current and reported
// idle, every old node replaced.
func (sc *chaosSchedule) converged() bool {
	if !sc.f.atCommit(sc.commit)() {
		return false
	}
	current := sc.f.poolNodes("workers")
	for name := range sc.old {
		if _, still := current[name]; still {
			return false
		}
	}
	return len(current) == 3
}

// waitForInstant waits for the instant of the next kill: delay after the
// agent started, or, until a kill came during render or apply, offset
// after the agent reports either. It reports false, at once, when the
// version completed.
func (sc *chaosSchedule) waitForInstant(started time.Time, delay, offset time.Duration) bool {
	at := time.NewTimer(time.Until(started.Add(delay)))
	defer at.Stop()
	look := time.NewTicker(50 * time.Millisecond)
	defer look.Stop()
	triggered := false
	for {
		select {
		case <-sc.f.ctx.Done():
			sc.f.t.Fatalf("the test ran out of time after %d kills (%s)", len(sc.kills), sc.stages())
		case <-at.C:
			return !sc.converged()
		case <-look.C:
			if !triggered && sc.killsIn(stageRenderApply) == 0 && sc.reports(started, api.PhaseRendering, api.PhaseApplying) {
				triggered = true
				at.Reset(offset)
			}
		}
	}
}

// reports says whether the agent started at started reported one of the
// phases for the version, the last it reported.
func (sc *chaosSchedule) reports(started time.Time, phases ...string) bool {
	st := sc.f.status()
	return st.ReceivedAt.After(started) && strings.HasPrefix(st.NextVersion, sc.commit+"#") && slices.Contains(phases, st.Phase)
}

// kill ends the agent and notes the stage the version was in.
func (sc *chaosSchedule) kill(agent *agentProcess, after time.Duration) {
	stage := sc.stage()
	agent.kill()
	sc.kills = append(sc.kills, stage)
	sc.f.t.Logf("kill %d at %s, %s after the agent started: %s", len(sc.kills), time.Since(sc.began).Round(time.Millisecond), after.Round(time.Millisecond), stage)
}

// stage is where the version is, as the test sees it: in the stack update
// while an operation runs or the agent says so, in render or apply as the
// agent says, in a node's drain while a node has a drain start, else in
// the roll. The agent's word is the last it reported, maybe before a kill.
func (sc *chaosSchedule) stage() string {
	st := sc.f.status()
	if !strings.HasPrefix(st.CurrentVersion, sc.commit+"#") {
		if len(sc.ops.Running()) > 0 || st.Phase == api.PhaseUpdatingInfrastructure {
			return stageStacks
		}
		return stageRenderApply
	}
	if node := sc.w.draining(); node != "" {
		return stageDrainOf + node
	}
	return stageRoll
}

func (sc *chaosSchedule) killsIn(stage string) int {
	n := 0
	for _, s := range sc.kills {
		if s == stage {
			n++
		}
	}
	return n
}

// stages counts the kills by stage, for the log.
func (sc *chaosSchedule) stages() string {
	counts := map[string]int{}
	for _, s := range sc.kills {
		counts[s]++
	}
	var out []string
	for _, s := range slices.Sorted(maps.Keys(counts)) {
		out = append(out, fmt.Sprintf("%s %d", s, counts[s]))
	}
	return strings.Join(out, ", ")
}

func drainStages(old map[string]corev1.Node) []string {
	var out []string
	for name := range old {
		out = append(out, stageDrainOf+name)
	}
	sort.Strings(out)
	return out
}

// checkAfterRestart asserts what must hold whenever an agent was killed:
// the drain starts kept, no force before the SLA allows it, no stack
// operation refused for one under way, and no version but the last good
// one and the one under test, which stays once reached.
func (sc *chaosSchedule) checkAfterRestart(t *testing.T) {
	t.Helper()
	require.Empty(t, sc.w.drainStartChanges(), "a restart never changes the drain start of a node")
	require.Empty(t, earlyForces(sc.w.deletionsSoFar(), sc.w.drainStartTimes(), chaosSLA), "no pod is forced before the drain SLA allows it")
	require.Empty(t, sc.ops.Refused(), "no stack operation is started while one is under way")
	current := sc.f.status().CurrentVersion
	if strings.HasPrefix(current, sc.commit+"#") {
		sc.reached = true
		return
	}
	require.False(t, sc.reached, "the version stays current once reached, not %s", current)
	require.Equal(t, sc.lastGood, current, "the last good version stays current until the version is")
}

// stackOperations are the operations of the given action on a stack (any,
// when empty) that the agent sent for the commit's version.
func stackOperations(ops *moto.Operations, action, stack, commit string) []moto.StackOperation {
	var out []moto.StackOperation
	for _, op := range ops.Taken() {
		if op.Action == action && (stack == "" || op.Stack == stack) && strings.HasPrefix(op.Tags["caravan.io/version"], commit+"#") {
			out = append(out, op)
		}
	}
	return out
}

// forceSLA is the part of the drain SLA a force must wait for.
type forceSLA struct {
	grace, interval, lifetime time.Duration
}

var chaosSLA = forceSLA{grace: chaosGrace, interval: chaosInterval, lifetime: chaosLifetime}

// podDeletion is a guarded pod's deletion as the watch saw it. The API
// keeps whole seconds: asked is the second in which the deletion was asked
// (its deletion timestamp less its grace period), created the second of
// the pod's creation.
type podDeletion struct {
	pod, node      string
	created, asked time.Time
}

// earlyForces lists the deletions of guarded pods (every one a force: their
// budget refuses every eviction) that came certainly before the SLA
// allowed them: before the node's drain start and grace period, within the
// interval of the last force on the node or in the budget, or before the
// pod was old enough. A time known to the second counts at its latest.
func earlyForces(deletions []podDeletion, drainStarts map[string]time.Time, sla forceSLA) []string {
	sorted := slices.Clone(deletions)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].asked.Before(sorted[j].asked) })
	var early []string
	lastOnNode := map[string]time.Time{}
	var lastInBudget time.Time
	for _, d := range sorted {
		latest := d.asked.Add(time.Second)
		start, draining := drainStarts[d.node]
		rules := map[string]time.Time{"the grace period": start.Add(sla.grace), "the pod's lifetime": d.created.Add(time.Second + sla.lifetime)}
		if last, ok := lastOnNode[d.node]; ok {
			rules["the interval on the node"] = last.Add(sla.interval)
		}
		if !lastInBudget.IsZero() {
			rules["the interval in the budget"] = lastInBudget.Add(sla.interval)
		}
		switch {
		case !draining:
			early = append(early, fmt.Sprintf("pod %s forced at %s from node %s, which was not draining", d.pod, d.asked, d.node))
		default:
			for rule, allowed := range rules {
				if latest.Before(allowed) {
					early = append(early, fmt.Sprintf("pod %s forced at %s from node %s before %s allowed it (%s)", d.pod, d.asked, d.node, rule, allowed))
				}
			}
		}
		lastOnNode[d.node], lastInBudget = d.asked, d.asked
	}
	return early
}

// rollWitness watches the pool's Nodes and the guarded pods through the
// version, from outside the agent: each node's drain start as first seen
// and every change to it, and when each guarded pod's deletion was asked.
type rollWitness struct {
	mu          sync.Mutex
	drainStarts map[string]string
	changes     []string
	gone        map[string]bool
	deletions   map[types.UID]podDeletion
}

func watchTheRoll(t *testing.T, f *fleet) *rollWitness {
	w := &rollWitness{drainStarts: map[string]string{}, gone: map[string]bool{}, deletions: map[types.UID]podDeletion{}}
	ctx, cancel := context.WithCancel(f.ctx)
	t.Cleanup(cancel)
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(f.cp.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = nodes.PoolLabel + "=workers" }))
	_, err := nodeInformers.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { w.sawNode(obj) },
		UpdateFunc: func(_, obj any) { w.sawNode(obj) },
		DeleteFunc: func(obj any) { w.nodeGone(obj) },
	})
	require.NoError(t, err)
	podInformers := informers.NewSharedInformerFactoryWithOptions(f.cp.Client, 0, informers.WithNamespace("default"),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "app=guarded" }))
	_, err = podInformers.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { w.sawPod(obj) },
		DeleteFunc: func(obj any) { w.sawPod(obj) },
	})
	require.NoError(t, err)
	nodeInformers.Start(ctx.Done())
	podInformers.Start(ctx.Done())
	for _, synced := range []map[reflect.Type]bool{nodeInformers.WaitForCacheSync(ctx.Done()), podInformers.WaitForCacheSync(ctx.Done())} {
		for typ, ok := range synced {
			require.True(t, ok, "the informer of %v synced", typ)
		}
	}
	return w
}

func (w *rollWitness) sawNode(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	start := n.Annotations[nodes.DrainStartAnnotation]
	w.mu.Lock()
	defer w.mu.Unlock()
	first, seen := w.drainStarts[n.Name]
	switch {
	case !seen && start != "":
		w.drainStarts[n.Name] = start
	case seen && start != first:
		w.changes = append(w.changes, fmt.Sprintf("node %s: drain start %q became %q", n.Name, first, start))
	}
}

func (w *rollWitness) nodeGone(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	if n, ok := obj.(*corev1.Node); ok {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.gone[n.Name] = true
	}
}

func (w *rollWitness) sawPod(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, seen := w.deletions[p.UID]; seen {
		return
	}
	w.deletions[p.UID] = podDeletion{pod: p.Name, node: p.Spec.NodeName, created: p.CreationTimestamp.Time,
		asked: p.DeletionTimestamp.Add(-time.Duration(*p.DeletionGracePeriodSeconds) * time.Second)}
}

func (w *rollWitness) drainStartChanges() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.changes)
}

// drainStartTimes are the drain starts first seen, by node.
func (w *rollWitness) drainStartTimes() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]time.Time{}
	for node, s := range w.drainStarts {
		if at, err := time.Parse(time.RFC3339Nano, s); err == nil {
			out[node] = at
		}
	}
	return out
}

func (w *rollWitness) deletionsSoFar() []podDeletion {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]podDeletion, 0, len(w.deletions))
	for _, d := range w.deletions {
		out = append(out, d)
	}
	return out
}

// draining is the node being drained now, if any: one with a drain start
// that still exists.
func (w *rollWitness) draining() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	for node := range w.drainStarts {
		if !w.gone[node] {
			return node
		}
	}
	return ""
}

// earlyForces, which the chaos test's verdict rests on, finds a force
// that each rule forbids, and none in a drain that keeps them all.
func TestEarlyForcesNamesEachRuleBroken(t *testing.T) {
	start := time.Date(2030, 1, 1, 10, 0, 0, 500_000_000, time.UTC)
	created := start.Add(-time.Hour).Truncate(time.Second)
	starts := map[string]time.Time{"a": start, "b": start.Add(time.Minute)}
	at := func(d time.Duration) time.Time { return start.Add(d).Truncate(time.Second) }
	kept := []podDeletion{
		{pod: "p1", node: "a", created: created, asked: at(chaosGrace)},
		{pod: "p2", node: "a", created: created, asked: at(chaosGrace + chaosInterval)},
		{pod: "p3", node: "b", created: created, asked: at(time.Minute + chaosGrace)},
	}
	assert.Empty(t, earlyForces(kept, starts, chaosSLA))

	for name, c := range map[string]struct {
		deletions []podDeletion
		rule      string
	}{
		"before the grace period": {[]podDeletion{{pod: "p1", node: "a", created: created, asked: at(chaosGrace - 2*time.Second)}}, "the grace period"},
		"within the node's interval": {[]podDeletion{kept[0], {pod: "p2", node: "a", created: created, asked: at(chaosGrace + chaosInterval - 2*time.Second)}},
			"the interval on the node"},
		"within the budget's interval": {[]podDeletion{{pod: "p3", node: "b", created: created, asked: at(time.Minute + chaosGrace)},
			{pod: "p4", node: "a", created: created, asked: at(time.Minute + chaosGrace + time.Second)}}, "the interval in the budget"},
		"a pod too young":     {[]podDeletion{{pod: "p1", node: "a", created: at(chaosGrace - time.Second), asked: at(chaosGrace)}}, "the pod's lifetime"},
		"a node not draining": {[]podDeletion{{pod: "p1", node: "c", created: created, asked: at(chaosGrace)}}, "not draining"},
	} {
		t.Run(name, func(t *testing.T) {
			early := earlyForces(c.deletions, starts, chaosSLA)
			require.NotEmpty(t, early)
			assert.Contains(t, strings.Join(early, "\n"), c.rule)
		})
	}
}

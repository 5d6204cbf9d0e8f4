package agent_test

import (
	"io"
	"net/http"
	"sort"

	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/runtime/conditions"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
)

// poolNodes are the Nodes of a pool, by name.
func (f *fleet) poolNodes(pool string) map[string]corev1.Node {
	list := &corev1.NodeList{}
	require.NoError(f.t, f.kube.List(f.ctx, list, client.MatchingLabels{nodes.PoolLabel: pool}))
	out := map[string]corev1.Node{}
	for _, n := range list.Items {
		out[n.Name] = n
	}
	return out
}

// The drain SLA of these tests, scaled from hours to seconds.
var scaledSLA = map[string]string{
	"drain_min_pod_lifetime": "3s", "drain_grace_period": "8s", "drain_force_evict_interval": "2s",
	"drain_min_healthy_sibling_lifetime": "0s", "drain_min_unhealthy_sibling_lifetime": "20s",
	"drain_poll_interval": "1s",
	// moto reports no instance as spot.
	"node_update_check_spot": "false",
}

// An outdated pool rolls completely with surge; its pods, held by a
// PodDisruptionBudget that refuses every eviction, are forced exactly when
// the (scaled) SLA allows and never earlier.
func TestOutdatedNodesRollUnderTheDrainSLA(t *testing.T) {
	f := startFleet(t)
	addr := metricsAddr(t)
	_, labels := guardedPool(t, f, scaledSLA, false, func() stoppable { return f.startAgentWithMetrics("test", false, addr) })

	// A sibling that never becomes ready (no node for it; kwok makes every
	// scheduled pod ready): no force may come before it is old enough.
	unready := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "guarded-unready", Namespace: "default", Labels: labels},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"example.org/none": "none"},
			Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(t, f.kube.Create(f.ctx, unready))
	old := f.poolNodes("workers")
	// The metrics' registry is the process's: other tests' rolls count in.
	drains0 := labelledMetric(t, addr, "caravan_agent_drain_duration_seconds", "", "")
	forced0 := labelledMetric(t, addr, "caravan_agent_forced_deletions_total", "", "")

	// A new instance type makes every node outdated.
	_, _, err := f.reg.PatchNodePool(f.ctx, clusterID, "workers", map[string]any{"instance_types": []string{"m6i.xlarge"}}, "")
	require.NoError(t, err)
	f.eventually("the roll starts: a surge node, the old nodes marked", func() bool {
		marked := 0
		for name, n := range f.poolNodes("workers") {
			if _, isOld := old[name]; isOld && n.Labels[nodes.LifecycleLabel] != "" {
				marked++
			}
		}
		return marked == 2 && len(f.poolNodes("workers")) >= 3
	})
	forecast, sawProgress, sawSuspended, sawInProgress := false, false, false, false
	drainStarts := map[string]time.Time{}
	reconcilingSince := map[time.Time]bool{}
	asg := autoscaling.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	require.Eventually(t, func() bool {
		cc := f.clusterConfig()
		for _, p := range cc.Status.NodePools {
			sawProgress = sawProgress || (p.Name == "workers" && p.NextForcedEviction != nil && p.HeldBy != "")
		}
		if c := conditions.Get(cc, reconciler.ReconcilingCondition); c != nil && c.Reason == string(reconciler.ReasonRollingNodes) {
			reconcilingSince[c.LastTransitionTime.Time] = true
		}
		sawInProgress = sawInProgress || f.kstatus() == kstatus.InProgressStatus
		if groups, err := asg.DescribeAutoScalingGroups(f.ctx, &autoscaling.DescribeAutoScalingGroupsInput{}); err == nil {
			for _, g := range groups.AutoScalingGroups {
				for _, p := range g.SuspendedProcesses {
					sawSuspended = sawSuspended || aws.ToString(p.ProcessName) == "AZRebalance"
				}
			}
		}
		for name, n := range f.poolNodes("workers") {
			if s, err := time.Parse(time.RFC3339, n.Annotations[nodes.DrainStartAnnotation]); err == nil {
				drainStarts[name] = s
			}
		}
		pods := &corev1.PodList{}
		if f.kube.List(f.ctx, pods, client.MatchingLabels(labels)) == nil {
			for _, p := range pods.Items {
				forecast = forecast || p.Annotations[nodes.ForceEvictAfterAnnotation] != ""
			}
		}
		current := f.poolNodes("workers")
		for name := range old {
			if _, still := current[name]; still {
				return false
			}
		}
		return len(current) == 2 && f.status().Phase == api.PhaseIdle
	}, 4*time.Minute, 250*time.Millisecond, "every old node is replaced and the pool is back at two nodes")
	for _, n := range f.poolNodes("workers") {
		assert.Equal(t, "m6i.xlarge", n.Labels["node.kubernetes.io/instance-type"])
		assert.Empty(t, n.Labels[nodes.LifecycleLabel])
	}
	assert.True(t, forecast, "a refused pod is told when it may be forced")
	assert.True(t, sawProgress, "the ClusterConfig showed the pool's progress with the next forced eviction")
	assert.True(t, sawSuspended, "AZRebalance was suspended during the roll")
	assert.True(t, sawInProgress, "kstatus read the ClusterConfig as InProgress during the roll")
	assert.Len(t, reconcilingSince, 1, "Reconciling kept the time it became True while the roll's counts moved")
	f.eventually("kstatus reads the ClusterConfig as Current after the roll", func() bool { return f.kstatus() == kstatus.CurrentStatus })
	groups, err := autoscaling.NewFromConfig(f.aws.AWSConfig("eu-central-1")).DescribeAutoScalingGroups(f.ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	require.NoError(t, err)
	for _, g := range groups.AutoScalingGroups {
		assert.Empty(t, g.SuspendedProcesses, "and resumed after it")
	}
	assert.Len(t, drainStarts, 2, "both old nodes were drained")
	assert.Empty(t, f.clusterConfig().Status.Rolls)

	// Every forced deletion came once the grace period since its node's
	// selection had passed, never earlier.
	events := &corev1.EventList{}
	require.NoError(t, f.kube.List(f.ctx, events, client.InNamespace("default")))
	var forced []time.Time
	for _, e := range events.Items {
		if e.Reason == "ForcedEviction" {
			at := e.EventTime.Time
			if at.IsZero() {
				at = e.FirstTimestamp.Time
			}
			forced = append(forced, at)
		}
	}
	nodeEvents := map[string]int{}
	for _, e := range events.Items {
		if _, isOld := old[e.InvolvedObject.Name]; isOld && e.InvolvedObject.Kind == "Node" {
			nodeEvents[e.Reason]++
		}
	}
	assert.Equal(t, 2, nodeEvents["DrainStarted"], "Events on the Nodes say when each drain began")
	assert.Equal(t, 2, nodeEvents["InstanceTerminated"], "and when its instance was terminated")
	// The metrics count what the Events tell, in every namespace.
	all := &corev1.EventList{}
	require.NoError(t, f.kube.List(f.ctx, all))
	assert.Equal(t, float64(eventCount(all, "Node", "InstanceTerminated")), labelledMetric(t, addr, "caravan_agent_drain_duration_seconds", "", "")-drains0,
		"a drain's duration is observed at each termination")
	assert.Positive(t, labelledMetric(t, addr, "caravan_agent_evictions_total", "result", "refused"))
	assert.Positive(t, labelledMetric(t, addr, "caravan_agent_force_waits_total", "rule", nodes.RuleGracePeriod))
	assert.Equal(t, float64(eventCount(all, "Pod", "ForcedEviction")), labelledMetric(t, addr, "caravan_agent_forced_deletions_total", "", "")-forced0,
		"a forced deletion is counted and told in an Event each")
	assert.Positive(t, eventCount(all, "Pod", "ForceEvictionScheduled"), "a refused pod's forecast is told in an Event")
	require.NotEmpty(t, forced, "the budget refused every eviction, so pods were forced")
	sort.Slice(forced, func(i, j int) bool { return forced[i].Before(forced[j]) })
	earliestStart := time.Time{}
	for _, s := range drainStarts {
		if earliestStart.IsZero() || s.Before(earliestStart) {
			earliestStart = s
		}
	}
	// Events carry whole seconds: a second of slack on each side.
	allowed := earliestStart.Add(8 * time.Second)
	if siblingOld := unready.CreationTimestamp.Add(20 * time.Second); siblingOld.After(allowed) {
		allowed = siblingOld
	}
	assert.False(t, forced[0].Before(allowed.Add(-time.Second)),
		"first force %s: the grace period allows %s, the unready sibling's lifetime %s",
		forced[0], earliestStart.Add(8*time.Second), unready.CreationTimestamp.Add(20*time.Second))
	assert.True(t, forced[0].Before(allowed.Add(6*time.Second)), "and it came as soon as the rules allowed (%s, allowed %s)", forced[0], allowed)
	assert.True(t, strings.Contains(f.status().CurrentVersion, "#"))
}

// stoppable is an agent, in the test's process or its own.
type stoppable interface{ stop() }

func (f *fleet) inProcess() stoppable { return f.startAgent("test", false) }

// guardedPool starts the cloud bridge and the agent, with the drain SLA's
// config items, on a pool of two nodes carrying a Deployment of two
// replicas that a budget of two keeps from every eviction (with spread,
// one replica on each node); it returns once the budget counts both.
func guardedPool(t *testing.T, f *fleet, sla map[string]string, spread bool, start func() stoppable) (stoppable, map[string]string) {
	bridge, err := cloudbridge.Start(f.ctx, cloudbridge.Config{AWS: f.aws.AWSConfig("eu-central-1"), ClusterID: clusterID, Kube: f.cp.Client, Log: t.Logf})
	require.NoError(t, err)
	t.Cleanup(bridge.Stop)
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": sla}, "")
	require.NoError(t, err)
	_, _, err = f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "workers", Profile: "worker-default",
		InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4, DiscountStrategy: "none"})
	require.NoError(t, err)
	agent := start()
	f.eventually("the pool's two nodes are up", func() bool { return len(f.poolNodes("workers")) == 2 && f.status().Phase == api.PhaseIdle })
	replicas := int32(2)
	labels := map[string]string{"app": "guarded"}
	pod := corev1.PodSpec{NodeSelector: map[string]string{nodes.PoolLabel: "workers"}, Containers: []corev1.Container{{Name: "app", Image: "app"}}}
	if spread {
		pod.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
			WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}}
	}
	require.NoError(t, f.kube.Create(f.ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod}}}))
	two := intstr.FromInt32(2)
	require.NoError(t, f.kube.Create(f.ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}}}))
	f.eventually("the budget counts two healthy pods", func() bool {
		pdb := &policyv1.PodDisruptionBudget{}
		return f.kube.Get(f.ctx, client.ObjectKey{Namespace: "default", Name: "guarded"}, pdb) == nil && pdb.Status.CurrentHealthy == 2
	})
	return agent, labels
}

// rollingPool starts the agent on a pool of two outdated nodes whose pods
// a budget holds, and returns once one node is draining.
func rollingPool(t *testing.T, f *fleet, sla map[string]string, start func() stoppable) (stoppable, map[string]corev1.Node) {
	agent, _ := guardedPool(t, f, sla, true, start)
	old := f.poolNodes("workers")
	_, _, err := f.reg.PatchNodePool(f.ctx, clusterID, "workers", map[string]any{"instance_types": []string{"m6i.xlarge"}}, "")
	require.NoError(t, err)
	f.eventually("a node is draining and the other marked", func() bool {
		draining, marked := 0, 0
		for name, n := range f.poolNodes("workers") {
			if _, isOld := old[name]; !isOld {
				continue
			}
			switch n.Labels[nodes.LifecycleLabel] {
			case nodes.DrainingValue:
				draining++
			case nodes.DecommissionValue:
				marked++
			}
		}
		return draining == 1 && marked == 1
	})
	return agent, old
}

func drainingNode(f *fleet) (corev1.Node, bool) {
	for _, n := range f.poolNodes("workers") {
		if n.Labels[nodes.LifecycleLabel] == nodes.DrainingValue {
			return n, true
		}
	}
	return corev1.Node{}, false
}

// A caravan-agent process killed with SIGKILL mid-drain is followed by
// one that keeps the drain's start; a block stops the roll at once: the
// node only marked is un-marked, the node being drained is finished;
// lifting the block completes the roll.
func TestARollResumesAfterAKillAndStopsForABlock(t *testing.T) {
	f := startFleet(t)
	sla := map[string]string{}
	for k, v := range scaledSLA {
		sla[k] = v
	}
	// Long enough that the node is still draining when the next agent
	// has made its first pass.
	sla["drain_grace_period"] = "60s"
	first := (*agentProcess)(nil)
	_, old := rollingPool(t, f, sla, func() stoppable { first = f.startAgentProcess(); return first })
	draining, ok := drainingNode(f)
	require.True(t, ok)
	start := draining.Annotations[nodes.DrainStartAnnotation]
	require.NotEmpty(t, start)
	resp, err := http.Get("http://" + first.pprofAddr + "/debug/pprof/cmdline")
	require.NoError(t, err)
	cmdline, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	assert.Contains(t, string(cmdline), "--pprof-addr", "the process serves its profiles where --pprof-addr says")

	first.kill()
	block, _, err := f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "incident"})
	require.NoError(t, err)
	f.startAgent("test", false)
	f.eventually("the block un-marks the node not yet draining", func() bool {
		for name, n := range f.poolNodes("workers") {
			if _, isOld := old[name]; isOld && n.Labels[nodes.LifecycleLabel] == nodes.DecommissionValue {
				return false
			}
		}
		return f.status().Phase == api.PhaseBlocked
	})
	// The restarted agent made its first pass before it reported blocked.
	after, still := f.poolNodes("workers")[draining.Name]
	require.True(t, still, "the node drains for its grace period at least")
	assert.Equal(t, nodes.DrainingValue, after.Labels[nodes.LifecycleLabel], "a soft block lets the node being drained finish")
	assert.Equal(t, start, after.Annotations[nodes.DrainStartAnnotation], "the restarted agent keeps the drain's start")
	f.eventually("the node being drained is finished despite the block", func() bool {
		_, still := f.poolNodes("workers")[draining.Name]
		return !still
	})
	for name, n := range f.poolNodes("workers") {
		if _, isOld := old[name]; isOld {
			assert.Empty(t, n.Labels[nodes.LifecycleLabel], "no new node is selected while blocked")
			assert.False(t, n.Spec.Unschedulable)
			for _, taint := range n.Spec.Taints {
				assert.NotEqual(t, nodes.DecommissionTaint, taint.Key)
			}
		}
	}

	require.NoError(t, f.reg.DeleteBlock(f.ctx, clusterID, block.ID, ""))
	f.eventually("the roll completes once the block is lifted", func() bool {
		current := f.poolNodes("workers")
		for name := range old {
			if _, still := current[name]; still {
				return false
			}
		}
		return len(current) == 2 && f.status().Phase == api.PhaseIdle
	})
}

// kstatus is how kstatus, as Flux and kubectl wait read it, sees the
// ClusterConfig.
func (f *fleet) kstatus() kstatus.Status {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(clusterconfig.GroupVersion.WithKind("ClusterConfig"))
	if err := f.kube.Get(f.ctx, client.ObjectKey{Name: clusterconfig.Name}, u); err != nil {
		return kstatus.UnknownStatus
	}
	res, err := kstatus.Compute(u)
	if err != nil {
		return kstatus.UnknownStatus
	}
	return res.Status
}

// eventCount counts the Events with reason on objects of kind, with the
// repeats the recorder folded into one.
func eventCount(events *corev1.EventList, kind, reason string) int {
	n := 0
	for _, e := range events.Items {
		if e.InvolvedObject.Kind == kind && e.Reason == reason {
			n += int(max(e.Count, 1))
		}
	}
	return n
}

package agent_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
)

// The test plays the cluster autoscaler: it scales the group up before a
// roll and down while a node drains. The roll counts the scale-down in and
// never sets the group's desired capacity above what the autoscaler set;
// it ends at the size the autoscaler's change left, one node less.
func TestARollNeverUndoesTheAutoscaler(t *testing.T) {
	f := startFleet(t)
	bridge, err := cloudbridge.Start(f.ctx, cloudbridge.Config{AWS: f.aws.AWSConfig("eu-central-1"), ClusterID: clusterID, Kube: f.cp.Client, Log: t.Logf})
	require.NoError(t, err)
	t.Cleanup(bridge.Stop)
	sla := map[string]string{}
	for k, v := range scaledSLA {
		sla[k] = v
	}
	sla["drain_grace_period"] = "30s"
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": sla}, "")
	require.NoError(t, err)
	_, _, err = f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "workers", Profile: "worker-default",
		InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 4, DiscountStrategy: "none"})
	require.NoError(t, err)
	f.startAgent("test", false)
	f.eventually("the pool's node is up", func() bool { return len(f.poolNodes("workers")) == 1 && f.status().Phase == api.PhaseIdle })

	asg := autoscaling.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	group := func() (string, int) {
		out, err := asg.DescribeAutoScalingGroups(f.ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
		require.NoError(t, err)
		require.Len(t, out.AutoScalingGroups, 1)
		g := out.AutoScalingGroups[0]
		return aws.ToString(g.AutoScalingGroupName), int(aws.ToInt32(g.DesiredCapacity))
	}
	name, _ := group()
	autoscale := func(desired int) {
		_, err := asg.SetDesiredCapacity(f.ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(name), DesiredCapacity: aws.Int32(int32(desired))})
		require.NoError(t, err)
	}
	autoscale(2)
	f.eventually("the autoscaler's second node is up", func() bool { return len(f.poolNodes("workers")) == 2 })

	labels := map[string]string{"app": "guarded"}
	replicas, two := int32(2), intstr.FromInt32(2)
	require.NoError(t, f.kube.Create(f.ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				NodeSelector: map[string]string{nodes.PoolLabel: "workers"}, Containers: []corev1.Container{{Name: "app", Image: "app"}},
				TopologySpreadConstraints: []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "kubernetes.io/hostname",
					WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &metav1.LabelSelector{MatchLabels: labels}}}}}}}))
	require.NoError(t, f.kube.Create(f.ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}}}))
	f.eventually("the budget counts both pods", func() bool {
		pdb := &policyv1.PodDisruptionBudget{}
		return f.kube.Get(f.ctx, client.ObjectKey{Namespace: "default", Name: "guarded"}, pdb) == nil && pdb.Status.CurrentHealthy == 2
	})

	old := f.poolNodes("workers")
	_, _, err = f.reg.PatchNodePool(f.ctx, clusterID, "workers", map[string]any{"instance_types": []string{"m6i.xlarge"}}, "")
	require.NoError(t, err)
	f.eventually("the roll surged and drains a node", func() bool {
		_, desired := group()
		_, draining := drainingNode(f)
		return desired == 3 && draining
	})

	// The autoscaler removes a node: 3 (2 and the surge) to 2.
	autoscale(2)
	highest := 0
	require.Eventually(t, func() bool {
		_, desired := group()
		highest = max(highest, desired)
		current := f.poolNodes("workers")
		for n := range old {
			if _, still := current[n]; still {
				return false
			}
		}
		return len(f.clusterConfig().Status.Rolls) == 0 && f.status().Phase == api.PhaseIdle
	}, 4*time.Minute, 250*time.Millisecond, "the roll completes")
	assert.LessOrEqual(t, highest, 2, "the roll never set the desired capacity above the autoscaler's 2")
	_, desired := group()
	assert.Equal(t, 1, desired, "the roll ends at the size it began at, less the node the autoscaler removed")
}

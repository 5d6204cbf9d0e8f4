package agent_test

import (
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// stack returns the stack of that name as moto has it, or nil.
func (f *fleet) stack(name string) *cloud.Observed {
	cfn := cloudformation.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	out, err := cfn.DescribeStacks(f.ctx, &cloudformation.DescribeStacksInput{})
	require.NoError(f.t, err)
	for _, st := range out.Stacks {
		if aws.ToString(st.StackName) == name && st.StackStatus != "DELETE_COMPLETE" {
			o := &cloud.Observed{Name: name, Status: string(st.StackStatus), Tags: map[string]string{}}
			for _, t := range st.Tags {
				o.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			return o
		}
	}
	return nil
}

func TestInfrastructureFollowsTheCommitAndTheRegistry(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	cluster := f.stack("kube-1")
	require.NotNil(t, cluster, "the cluster stack is created before the manifests are applied")
	assert.Equal(t, clusterID, cluster.Tags[cloud.TagClusterID])
	assert.Equal(t, f.status().CurrentVersion, cluster.Tags[cloud.TagVersion])

	// A node pool added at the registry gets its stack and its instances.
	_, _, err := f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "workers", Profile: "worker-default",
		InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 3, DiscountStrategy: "none"})
	require.NoError(t, err)
	f.eventually("the node pool's stack exists", func() bool {
		st := f.stack("nodepool-workers-kube-1")
		return st != nil && st.Tags[cloud.TagNodePool] == "workers" && f.status().Phase == api.PhaseIdle
	})
	assert.True(t, f.hasEvent("stack nodepool-workers-kube-1: create for version"), "an Event says which stack changed")
	asg := autoscaling.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	groups, err := asg.DescribeAutoScalingGroups(f.ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	require.NoError(t, err)
	require.Len(t, groups.AutoScalingGroups, 1)
	assert.Len(t, groups.AutoScalingGroups[0].Instances, 1, "min size 1")

	// A commit whose cluster stack fails to update applies nothing after it.
	template, err := os.ReadFile("../manifests/cloudformation/cluster.yaml")
	require.NoError(t, err)
	// moto refuses the update at once (real CloudFormation would roll back).
	broken := strings.Replace(string(template), "Resources:\n", "Resources:\n  Broken:\n    Type: AWS::EC2::Subnet\n    Properties:\n      VpcId: vpc-doesnotexist\n      CidrBlock: 10.99.0.0/24\n", 1)
	require.NotEqual(t, string(template), broken)
	f.commit("a stack that cannot update, and a ConfigMap", map[string][]byte{
		"cloudformation/cluster.yaml":   []byte(broken),
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n"),
		base:                            addResource(t, "settings.yaml"),
	})
	f.eventually("the failed stack is reported", func() bool {
		st := f.status()
		return st.Phase == api.PhaseFailed && len(st.Problems) > 0 && strings.Contains(st.Problems[0].Detail, "kube-1")
	})
	assert.Contains(t, f.status().Problems[0].Type, "infrastructure")
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "no manifest of the commit was applied")
	fixed := f.commit("repair the stack", map[string][]byte{"cloudformation/cluster.yaml": template})
	f.eventually("the repaired commit is applied", f.atCommit(fixed))
	_, err = f.configMap("settings")
	assert.NoError(t, err)

	// An encrypted config item reaches the manifests in plaintext; the
	// registry only ever holds the ciphertext.
	keys := kms.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	key, err := keys.CreateKey(f.ctx, &kms.CreateKeyInput{})
	require.NoError(t, err)
	sealed, err := keys.Encrypt(f.ctx, &kms.EncryptInput{KeyId: key.KeyMetadata.KeyId, Plaintext: []byte("s3cret")})
	require.NoError(t, err)
	ciphertext := cloud.EncryptedPrefix + base64.StdEncoding.EncodeToString(sealed.CiphertextBlob)
	_, _, err = f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{"greeting": ciphertext}}, "")
	require.NoError(t, err)
	withSecret := f.commit("use the secret", map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  greeting: ${greeting}\n"),
	})
	f.eventually("the secret's commit is applied", f.atCommit(withSecret))
	cm, err := f.configMap("settings")
	require.NoError(t, err)
	assert.Equal(t, "s3cret", cm.Data["greeting"])
	stored, _, err := f.reg.GetCluster(f.ctx, clusterID)
	require.NoError(t, err)
	assert.Equal(t, ciphertext, stored.ConfigItems["greeting"])

	// A node pool removed at the registry: its nodes are drained, never
	// faster than a PodDisruptionBudget allows, and then its stack deleted.
	_, err = f.cp.AddNode(f.ctx, controlplane.Node{Name: "worker-1", Labels: map[string]string{nodes.PoolLabel: "workers"}})
	require.NoError(t, err)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "default", Labels: map[string]string{"app": "guarded"}},
		Spec: corev1.PodSpec{NodeName: "worker-1", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	require.NoError(t, f.kube.Create(f.ctx, pod))
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: "default"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}}}
	require.NoError(t, f.kube.Create(f.ctx, pdb))
	f.eventually("the PodDisruptionBudget counts the pod", func() bool {
		got := &policyv1.PodDisruptionBudget{}
		return f.kube.Get(f.ctx, client.ObjectKeyFromObject(pdb), got) == nil && got.Status.CurrentHealthy == 1
	})
	require.NoError(t, f.reg.DeleteNodePool(f.ctx, clusterID, "workers", ""))
	f.eventually("the pool's node is cordoned and its drain reported", func() bool {
		node := &corev1.Node{}
		st := f.status()
		return f.kube.Get(f.ctx, client.ObjectKey{Name: "worker-1"}, node) == nil && node.Spec.Unschedulable &&
			st.Phase == api.PhaseRollingNodes && len(st.NodePools) == 1 && st.NodePools[0].Name == "workers"
	})
	assert.NotNil(t, f.stack("nodepool-workers-kube-1"), "the stack stays while the PodDisruptionBudget holds its pod")
	require.NoError(t, f.kube.Get(f.ctx, client.ObjectKeyFromObject(pod), pod), "the pod is not forced out")

	require.NoError(t, f.kube.Delete(f.ctx, pdb))
	f.eventually("the pod is evicted and the pool's stack deleted", func() bool {
		return f.stack("nodepool-workers-kube-1") == nil && f.status().Phase == api.PhaseIdle
	})
	assert.True(t, f.hasEvent("node pool workers left the registry"))
	assert.Empty(t, f.clusterConfig().Status.PendingNodePools)
	assert.NotNil(t, f.stack("kube-1"), "the cluster stack stays")
}

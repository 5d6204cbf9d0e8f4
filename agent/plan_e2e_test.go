package agent_test

import (
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
)

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: web}]
`

func configMap(name, zone string) []byte {
	return []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\ndata:\n  zone: " + zone + "\n")
}

// withResources is the reference base kustomization with more resources.
func withResources(t *testing.T, names ...string) []byte {
	b, err := os.ReadFile("../manifests/" + base)
	require.NoError(t, err)
	return []byte(strings.Replace(string(b), "  - kube-state-metrics.yaml\n", "  - kube-state-metrics.yaml\n  - "+strings.Join(names, "\n  - ")+"\n", 1))
}

// templates reads the body of every stack of the cluster.
func (f *fleet) templates(cfn *cloudformation.Client, names ...string) map[string]string {
	out := map[string]string{}
	for _, name := range names {
		tpl, err := cfn.GetTemplate(f.ctx, &cloudformation.GetTemplateInput{StackName: aws.String(name)})
		require.NoError(f.t, err, name)
		out[name] = aws.ToString(tpl.TemplateBody)
	}
	return out
}

// A plan of a commit on another channel's branch previews its change set,
// its manifests' dry run and the nodes it would replace, and changes
// nothing; a commit that does not render is a failed plan naming why.
func TestPlanPreviewsACommitWithoutChangingAnything(t *testing.T) {
	f := startFleet(t)
	bridge, err := cloudbridge.Start(f.ctx, cloudbridge.Config{AWS: f.aws.AWSConfig("eu-central-1"), ClusterID: clusterID, Kube: f.cp.Client, Log: t.Logf})
	require.NoError(t, err)
	t.Cleanup(bridge.Stop)
	_, _, err = f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "workers", Profile: "worker-default",
		InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 3, DiscountStrategy: "none"})
	require.NoError(t, err)
	current := f.commit("settings and a legacy ConfigMap", map[string][]byte{
		"kubernetes/base/settings.yaml": configMap("settings", "a"),
		"kubernetes/base/legacy.yaml":   configMap("legacy", "old"),
		base:                            withResources(t, "settings.yaml", "legacy.yaml"),
	})
	f.startAgent("test", false)
	f.eventually("the commit is applied and the pool's two nodes are up", func() bool {
		return f.atCommit(current)() && len(f.poolNodes("workers")) == 2
	})
	version := f.status().CurrentVersion

	// The next commit is on stable, which the cluster does not follow: the
	// ConfigMap changes, a Deployment comes, the legacy ConfigMap goes, and
	// the pool's instance type changes its launch template.
	pool, err := os.ReadFile("../manifests/cloudformation/node-pool.yaml")
	require.NoError(t, err)
	bigger := strings.Replace(string(pool), "InstanceType: {{ index $pool.InstanceTypes 0 | quote }}", `InstanceType: "m6i.xlarge"`, 1)
	require.NotEqual(t, string(pool), bigger)
	next, err := f.git.Commit("config", "stable", "the next release", map[string][]byte{
		"kubernetes/base/settings.yaml": configMap("settings", "b"),
		"kubernetes/base/web.yaml":      []byte(webDeployment),
		base:                            withResources(t, "settings.yaml", "web.yaml"),
		"cloudformation/node-pool.yaml": []byte(bigger),
	})
	require.NoError(t, err)
	broken, err := f.git.Commit("config", "stable", "a kustomization naming a missing file", map[string][]byte{
		base: withResources(t, "settings.yaml", "web.yaml", "missing.yaml"),
	})
	require.NoError(t, err)

	cfn := cloudformation.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	stacks := []string{"kube-1", "nodepool-workers-kube-1"}
	before := f.templates(cfn, stacks...)
	plan, err := f.reg.CreatePlan(f.ctx, clusterID, next)
	require.NoError(t, err)
	brokenPlan, err := f.reg.CreatePlan(f.ctx, clusterID, broken)
	require.NoError(t, err)
	f.eventually("the agent answers both plans", func() bool {
		for _, p := range []**api.Plan{&plan, &brokenPlan} {
			got, err := f.reg.GetPlan(f.ctx, clusterID, (*p).ID)
			if err != nil || !got.Final() {
				return false
			}
			*p = got
		}
		return true
	})

	require.Equal(t, api.PlanDone, plan.State, "problem: %+v", plan.Result.Problem)
	res := plan.Result
	require.Len(t, res.Stacks, 2)
	assert.Equal(t, api.StackPlan{Name: "kube-1", Action: api.StackUnchanged, Resources: []api.ResourceChange{}}, res.Stacks[0])
	poolStack := res.Stacks[1]
	assert.Equal(t, "nodepool-workers-kube-1", poolStack.Name)
	assert.Equal(t, api.StackUpdate, poolStack.Action)
	// moto lists the resources a change set changes, without their replacement.
	assert.Contains(t, poolStack.Resources, api.ResourceChange{Action: "Modify", LogicalID: "LaunchTemplate", Type: "AWS::EC2::LaunchTemplate"})
	assert.Equal(t, []api.ObjectPlan{
		{Action: api.ObjectChange, Kind: "ConfigMap", Namespace: "default", Name: "settings", Fields: []string{"data.zone"}},
		{Action: api.ObjectCreate, Kind: "Deployment", Namespace: "default", Name: "web"},
		{Action: api.ObjectPrune, Kind: "ConfigMap", Namespace: "default", Name: "legacy"},
	}, res.Objects)
	require.Len(t, res.NodePools, 1)
	workers := res.NodePools[0]
	assert.Equal(t, "workers", workers.Name)
	assert.Equal(t, 2, workers.NodesTotal)
	assert.ElementsMatch(t, slices.Collect(maps.Keys(f.poolNodes("workers"))), workers.Replaced)
	assert.Equal(t, f.clusterConfig().Status.NodeUpdate.Revisions["workers"], workers.CurrentRevision)
	assert.NotEqual(t, workers.CurrentRevision, workers.NextRevision)

	require.Equal(t, api.PlanFailed, brokenPlan.State)
	require.NotNil(t, brokenPlan.Result.Problem)
	assert.Equal(t, api.ProblemTypeBase+"render", brokenPlan.Result.Problem.Type)
	assert.Contains(t, brokenPlan.Result.Problem.Detail, "missing.yaml")

	// Nothing changed: not the cluster, not its stacks, and no change set
	// or stack under review is left behind.
	cm, err := f.configMap("settings")
	require.NoError(t, err)
	assert.Equal(t, "a", cm.Data["zone"])
	_, err = f.configMap("legacy")
	assert.NoError(t, err)
	err = f.kube.Get(f.ctx, client.ObjectKey{Namespace: "default", Name: "web"}, &appsv1.Deployment{})
	assert.True(t, apierrors.IsNotFound(err), "the Deployment is not created: %v", err)
	assert.Equal(t, before, f.templates(cfn, stacks...))
	for _, name := range stacks {
		sets, err := cfn.ListChangeSets(f.ctx, &cloudformation.ListChangeSetsInput{StackName: aws.String(name)})
		require.NoError(t, err)
		assert.Empty(t, sets.Summaries, "no change set is left on %s", name)
	}
	all, err := cfn.DescribeStacks(f.ctx, &cloudformation.DescribeStacksInput{})
	require.NoError(t, err)
	for _, st := range all.Stacks {
		assert.NotEqual(t, "REVIEW_IN_PROGRESS", string(st.StackStatus), aws.ToString(st.StackName))
	}
	assert.Equal(t, version, f.status().CurrentVersion)
	a, err := f.reg.GetAssignment(f.ctx, clusterID, registry.AssignmentOptions{})
	require.NoError(t, err)
	assert.Empty(t, a.Assignment.Plans, "answered plans leave the assignment")
}

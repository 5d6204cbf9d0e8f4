package cloud

import (
	"os"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/moto"
)

// launchTemplateAssignment is a cluster with an on-demand and a spot pool.
func launchTemplateAssignment(image string) api.Assignment {
	items := map[string]string{"node_image_id": image}
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: clusterID, LocalID: "kube-1", Alias: "kube-1", InfrastructureAccount: "aws:123456789012",
			Region: region, APIServerURL: "https://kube-1.example.org", Environment: "test", Provider: "aws", CriticalityLevel: 1},
		Channel:     api.AssignedChannel{Name: "dev", Branch: "dev"},
		ConfigItems: items,
		NodePools: []api.AssignedNodePool{
			{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4,
				DiscountStrategy: api.DiscountNone, ConfigItems: items},
			{Name: "spot", Profile: "worker-default", InstanceTypes: []string{"m6i.large", "m5.large"}, MinSize: 1, MaxSize: 3,
				DiscountStrategy: api.DiscountSpot, ConfigItems: items},
		},
	}
}

// The reference node pool template names the launch template's
// LatestVersionNumber for its group, as CloudFormation asks. After a stack
// update that changes the pool's revision, the group launches the new
// version, in place (as CloudFormation does, and test/moto's front does for
// moto): the group and its instances stay, and a surge instance carries the
// new revision, so that the agent's roll converges.
func TestAStackUpdateMovesTheGroupToTheNewLaunchTemplateVersionInPlace(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := moto.Start(t)
	cloud := &AWS{Config: srv.AWSConfig(region), Endpoint: srv.Endpoint}
	stacks := quick(cloud.Stacks(clusterID, region))
	fleet := cloud.Fleet(clusterID, region)
	asg := autoscaling.NewFromConfig(srv.AWSConfig(region))
	ec2c := ec2.NewFromConfig(srv.AWSConfig(region))
	files := os.DirFS("../../manifests")

	converge := func(a api.Assignment) map[string]string {
		t.Helper()
		items, err := render.ConfigItems(files, a)
		require.NoError(t, err)
		cluster, _, err := render.Stacks(files, a, items)
		require.NoError(t, err)
		done, err := stacks.ConvergeAll(ctx, files, a, items, cluster, Options{Version: "v", Timeout: stackTimeout}, nil)
		require.NoError(t, err)
		return done.Revisions
	}
	groups := func() map[string]nodes.Group {
		t.Helper()
		list, err := fleet.Groups(ctx, nil)
		require.NoError(t, err)
		out := map[string]nodes.Group{}
		for _, g := range list {
			out[g.Pool] = g
		}
		return out
	}
	// version is the launch template version the group launches, and
	// the launch template's latest.
	version := func(pool string) (string, string) {
		t.Helper()
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{"nodepool-" + pool + "-kube-1"}})
		require.NoError(t, err)
		require.Len(t, out.AutoScalingGroups, 1)
		g := out.AutoScalingGroups[0]
		spec := g.LaunchTemplate
		// moto describes an empty policy for a group without one.
		if pool == "spot" {
			require.NotNil(t, g.MixedInstancesPolicy)
			require.NotNil(t, g.MixedInstancesPolicy.LaunchTemplate)
			spec = g.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification
			assert.Len(t, g.MixedInstancesPolicy.LaunchTemplate.Overrides, 2, "the spot pool keeps its instance types")
		}
		require.NotNil(t, spec, "%s: %+v", pool, g)
		lts, err := ec2c.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateIds: []string{aws.ToString(spec.LaunchTemplateId)}})
		require.NoError(t, err)
		require.Len(t, lts.LaunchTemplates, 1)
		return aws.ToString(spec.Version), strconv.FormatInt(aws.ToInt64(lts.LaunchTemplates[0].LatestVersionNumber), 10)
	}
	revisions := func(g nodes.Group) map[string]string {
		out := map[string]string{}
		for _, i := range g.Instances {
			out[i.ID] = i.Revision
		}
		return out
	}

	first := converge(launchTemplateAssignment("ami-04681a1dbd79675a5"))
	before := groups()
	for _, pool := range []string{"workers", "spot"} {
		v, latest := version(pool)
		assert.Equal(t, "1", v, pool)
		assert.Equal(t, "1", latest, pool)
		require.NotEmpty(t, before[pool].Instances, pool)
		for id, rev := range revisions(before[pool]) {
			assert.Equal(t, first[pool], rev, "%s: instance %s", pool, id)
		}
	}

	// Another image: every pool's revision changes, through its launch
	// template alone.
	second := converge(launchTemplateAssignment("ami-0123456789abcdef0"))
	after := groups()
	for _, pool := range []string{"workers", "spot"} {
		require.NotEqual(t, first[pool], second[pool], pool)
		v, latest := version(pool)
		assert.Equal(t, "2", latest, "%s: the update made a launch template version", pool)
		assert.Equal(t, "2", v, "%s: the group launches it", pool)
		assert.Equal(t, revisions(before[pool]), revisions(after[pool]), "%s: the same instances, with their old revision: updated in place", pool)

		// The roll's surge: one more instance, of the new revision.
		require.NoError(t, fleet.SetDesired(ctx, after[pool].Name, after[pool].Desired+1))
		surged := groups()[pool]
		require.Len(t, surged.Instances, len(after[pool].Instances)+1, pool)
		for id, rev := range revisions(surged) {
			if _, old := revisions(after[pool])[id]; old {
				assert.Equal(t, first[pool], rev, "%s: old instance %s", pool, id)
			} else {
				assert.Equal(t, second[pool], rev, "%s: the surge instance %s carries the new revision", pool, id)
			}
		}
	}

	// An update that leaves the launch template alone (a larger maximum)
	// leaves the group on its version.
	a := launchTemplateAssignment("ami-0123456789abcdef0")
	a.NodePools[0].MaxSize = 5
	third := converge(a)
	assert.Equal(t, second["workers"], third["workers"])
	v, latest := version("workers")
	assert.Equal(t, "2", v)
	assert.Equal(t, "2", latest)
}

// The front's fill moves only groups that name LatestVersionNumber: a
// template that pins a version keeps it, as on AWS.
func TestTheFillLeavesAPinnedVersionAlone(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := moto.Start(t)
	cfg := srv.AWSConfig(region)
	stacks := quick(NewStacks(cloudformation.NewFromConfig(cfg), nil, clusterID, region, srv.Endpoint))
	asg := autoscaling.NewFromConfig(cfg)

	pinned := func(image string) *render.Stack {
		return desired("pinned", "pinned", `Resources:
  Subnet:
    Type: AWS::EC2::Subnet
    Properties: {VpcId: {Ref: Vpc}, CidrBlock: 10.0.1.0/24, AvailabilityZone: `+region+`a}
  Vpc:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.0.0.0/16}
  LaunchTemplate:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData: {ImageId: `+image+`, InstanceType: m6i.large}
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: "1"
      MaxSize: "2"
      VPCZoneIdentifier: [{Ref: Subnet}]
      LaunchTemplate: {LaunchTemplateId: {Ref: LaunchTemplate}, Version: "1"}
      Tags: [{Key: `+nodes.TagClusterID+`, Value: `+clusterID+`, PropagateAtLaunch: false}]
Outputs:
  Group: {Value: {Ref: Group}}
`)
	}
	out, _, err := stacks.Converge(ctx, pinned("ami-04681a1dbd79675a5"), nil, Options{Version: "v", Timeout: stackTimeout})
	require.NoError(t, err)
	observed, err := stacks.Describe(ctx)
	require.NoError(t, err)
	_, _, err = stacks.Converge(ctx, pinned("ami-0123456789abcdef0"), Find(observed, "pinned"), Options{Version: "v", Timeout: stackTimeout})
	require.NoError(t, err)
	groups, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{out["Group"]}})
	require.NoError(t, err)
	require.Len(t, groups.AutoScalingGroups, 1)
	assert.Equal(t, "1", aws.ToString(groups.AutoScalingGroups[0].LaunchTemplate.Version), "a pinned version is the template's to change")
}

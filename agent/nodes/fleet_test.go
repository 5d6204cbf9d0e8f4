package nodes

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordingGroups answers one group and counts the calls; the fleet's
// reading of AWS is tested against moto end to end, this is its cache.
type recordingGroups struct {
	AutoScaling
	instances []string
	describes int
}

func (g *recordingGroups) DescribeAutoScalingGroups(context.Context, *autoscaling.DescribeAutoScalingGroupsInput, ...func(*autoscaling.Options)) (*autoscaling.DescribeAutoScalingGroupsOutput, error) {
	g.describes++
	group := astypes.AutoScalingGroup{AutoScalingGroupName: aws.String("workers-group"), DesiredCapacity: aws.Int32(int32(len(g.instances))),
		MinSize: aws.Int32(1), MaxSize: aws.Int32(5),
		Tags: []astypes.TagDescription{{Key: aws.String(TagClusterID), Value: aws.String("c1")}, {Key: aws.String(TagNodePool), Value: aws.String("workers")}}}
	for _, id := range g.instances {
		group.Instances = append(group.Instances, astypes.Instance{InstanceId: aws.String(id), LifecycleState: astypes.LifecycleStateInService})
	}
	return &autoscaling.DescribeAutoScalingGroupsOutput{AutoScalingGroups: []astypes.AutoScalingGroup{group}}, nil
}

func (g *recordingGroups) SetDesiredCapacity(context.Context, *autoscaling.SetDesiredCapacityInput, ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error) {
	return &autoscaling.SetDesiredCapacityOutput{}, nil
}

type recordingInstances struct{ asked [][]string }

func (r *recordingInstances) Describe(_ context.Context, ids []string) ([]InstanceFacts, error) {
	r.asked = append(r.asked, ids)
	out := make([]InstanceFacts, 0, len(ids))
	for _, id := range ids {
		out = append(out, InstanceFacts{ID: id, Type: "m6i.large", Revision: "rev-" + id})
	}
	return out, nil
}

// The fleet asks AWS again only when its reading may be wrong: it changed
// a group itself, a Node names an instance it has not seen, or the reading
// is older than groupsMaxAge; each instance is described once.
func TestFleetReadsTheGroupsAgainOnlyWhenTheyMayHaveChanged(t *testing.T) {
	ctx := context.Background()
	asg := &recordingGroups{instances: []string{"i-1", "i-2"}}
	ec2 := &recordingInstances{}
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	f := NewFleet(asg, ec2, "c1")
	f.now = func() time.Time { return now }

	groups, err := f.Groups(ctx, []string{"i-1"})
	require.NoError(t, err)
	require.Len(t, groups, 1)
	assert.Equal(t, "rev-i-2", groups[0].Instances[1].Revision)
	groups[0].Instances[0].Revision = "changed by the caller"

	again, err := f.Groups(ctx, []string{"i-1", "i-2"})
	require.NoError(t, err)
	assert.Equal(t, 1, asg.describes, "nothing may have changed")
	assert.Equal(t, "rev-i-1", again[0].Instances[0].Revision, "a caller's copy is its own")

	require.NoError(t, f.SetDesired(ctx, "workers-group", 3))
	asg.instances = append(asg.instances, "i-3")
	_, err = f.Groups(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, 2, asg.describes, "after the fleet changed a group")

	asg.instances = append(asg.instances, "i-4")
	_, err = f.Groups(ctx, []string{"i-4"})
	require.NoError(t, err)
	assert.Equal(t, 3, asg.describes, "a Node of an instance not seen")

	now = now.Add(groupsMaxAge + time.Second)
	asg.instances = []string{"i-3", "i-4"}
	groups, err = f.Groups(ctx, nil)
	require.NoError(t, err)
	assert.Equal(t, 4, asg.describes, "an old reading")
	assert.Len(t, groups[0].Instances, 2)

	assert.Equal(t, [][]string{{"i-1", "i-2"}, {"i-3"}, {"i-4"}}, ec2.asked, "each instance described once")
	assert.Len(t, f.facts, 2, "instances gone are forgotten")
}

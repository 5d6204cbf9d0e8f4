package nodes

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
)

// Tags the node pool stacks put on groups and instances.
const (
	TagClusterID = "caravan.io/cluster-id"
	TagNodePool  = "caravan.io/node-pool"
	// TagRevision is on every instance: the node pool revision its launch
	// template had when it launched. Launch template version numbers are
	// not trusted for this: $Latest hides them, and moto misreports them.
	TagRevision = "caravan.io/node-pool-revision"
	// azRebalance is the process suspended during a roll, so that the
	// group does not terminate nodes on its own to even out zones.
	azRebalance = "AZRebalance"
)

// AutoScaling is the part of the Auto Scaling API the roll calls.
type AutoScaling interface {
	autoscaling.DescribeAutoScalingGroupsAPIClient
	SetDesiredCapacity(ctx context.Context, in *autoscaling.SetDesiredCapacityInput, opts ...func(*autoscaling.Options)) (*autoscaling.SetDesiredCapacityOutput, error)
	TerminateInstanceInAutoScalingGroup(ctx context.Context, in *autoscaling.TerminateInstanceInAutoScalingGroupInput, opts ...func(*autoscaling.Options)) (*autoscaling.TerminateInstanceInAutoScalingGroupOutput, error)
	SuspendProcesses(ctx context.Context, in *autoscaling.SuspendProcessesInput, opts ...func(*autoscaling.Options)) (*autoscaling.SuspendProcessesOutput, error)
	ResumeProcesses(ctx context.Context, in *autoscaling.ResumeProcessesInput, opts ...func(*autoscaling.Options)) (*autoscaling.ResumeProcessesOutput, error)
}

// InstanceFacts are what EC2 alone knows of an instance.
type InstanceFacts struct {
	ID       string
	Type     string
	Spot     bool
	Revision string
}

// Instances reads instances from EC2.
type Instances interface {
	Describe(ctx context.Context, ids []string) ([]InstanceFacts, error)
}

// Group is a node pool's auto scaling group and its instances.
type Group struct {
	Name      string
	Pool      string
	Desired   int
	Min, Max  int
	Suspended []string
	Instances []Instance
}

// Instance is one instance of a group.
type Instance struct {
	ID       string
	Zone     string
	Type     string
	Spot     bool
	Revision string
	// Lifecycle is the group's view: Pending, InService, Terminating...
	Lifecycle string
}

// Fleet reads and changes the cluster's groups.
type Fleet struct {
	asg       AutoScaling
	instances Instances
	clusterID string
}

// NewFleet returns the fleet of a cluster.
func NewFleet(asg AutoScaling, instances Instances, clusterID string) *Fleet {
	return &Fleet{asg: asg, instances: instances, clusterID: clusterID}
}

// Groups lists the cluster's node pool groups with their instances.
func (f *Fleet) Groups(ctx context.Context) ([]Group, error) {
	var groups []Group
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(f.asg, &autoscaling.DescribeAutoScalingGroupsInput{
		Filters: []astypes.Filter{{Name: aws.String("tag:" + TagClusterID), Values: []string{f.clusterID}}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing the auto scaling groups: %w", err)
		}
		for _, g := range page.AutoScalingGroups {
			if group, ok := groupOf(g, f.clusterID); ok {
				groups = append(groups, group)
			}
		}
	}
	if err := f.describeInstances(ctx, groups); err != nil {
		return nil, err
	}
	return groups, nil
}

// groupOf reads a group of this cluster's; moto ignores the filter, so the
// tags are checked here too.
func groupOf(g astypes.AutoScalingGroup, clusterID string) (Group, bool) {
	tags := map[string]string{}
	for _, t := range g.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	if tags[TagClusterID] != clusterID || tags[TagNodePool] == "" {
		return Group{}, false
	}
	out := Group{Name: aws.ToString(g.AutoScalingGroupName), Pool: tags[TagNodePool], Desired: int(aws.ToInt32(g.DesiredCapacity)),
		Min: int(aws.ToInt32(g.MinSize)), Max: int(aws.ToInt32(g.MaxSize))}
	for _, p := range g.SuspendedProcesses {
		out.Suspended = append(out.Suspended, aws.ToString(p.ProcessName))
	}
	for _, i := range g.Instances {
		out.Instances = append(out.Instances, Instance{ID: aws.ToString(i.InstanceId), Zone: aws.ToString(i.AvailabilityZone),
			Type: aws.ToString(i.InstanceType), Lifecycle: string(i.LifecycleState)})
	}
	return out, true
}

// describeInstances adds what only EC2 knows: the revision tag, the type
// and whether an instance is spot.
func (f *Fleet) describeInstances(ctx context.Context, groups []Group) error {
	index := map[string]*Instance{}
	var ids []string
	for g := range groups {
		for i := range groups[g].Instances {
			inst := &groups[g].Instances[i]
			index[inst.ID] = inst
			ids = append(ids, inst.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	facts, err := f.instances.Describe(ctx, ids)
	if err != nil {
		return err
	}
	for _, fact := range facts {
		if inst, ok := index[fact.ID]; ok {
			if fact.Type != "" {
				inst.Type = fact.Type
			}
			inst.Spot, inst.Revision = fact.Spot, fact.Revision
		}
	}
	return nil
}

// SetDesired sets a group's desired capacity. Callers keep it within the
// group's maximum: the API checks it, moto does not.
func (f *Fleet) SetDesired(ctx context.Context, group string, desired int) error {
	_, err := f.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{
		AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(int32(desired)), HonorCooldown: aws.Bool(false),
	})
	if err != nil {
		return fmt.Errorf("setting the desired capacity of %s to %d: %w", group, desired, err)
	}
	return nil
}

// Terminate ends an instance and lowers its group's desired capacity, so
// that the group does not replace it.
func (f *Fleet) Terminate(ctx context.Context, instanceID string) error {
	_, err := f.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(instanceID), ShouldDecrementDesiredCapacity: aws.Bool(true),
	})
	if err != nil {
		return fmt.Errorf("terminating instance %s: %w", instanceID, err)
	}
	return nil
}

// SuspendRebalance and ResumeRebalance bracket a roll.
func (f *Fleet) SuspendRebalance(ctx context.Context, group string) error {
	_, err := f.asg.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: []string{azRebalance}})
	if err != nil {
		return fmt.Errorf("suspending %s of %s: %w", azRebalance, group, err)
	}
	return nil
}

// ResumeRebalance undoes SuspendRebalance.
func (f *Fleet) ResumeRebalance(ctx context.Context, group string) error {
	_, err := f.asg.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: []string{azRebalance}})
	if err != nil {
		return fmt.Errorf("resuming %s of %s: %w", azRebalance, group, err)
	}
	return nil
}

package nodes

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

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

// Fleet reads and changes the cluster's groups. It keeps what it read
// between passes: a roll's passes come after every change in the cluster,
// most of them while a node drains, when nothing in AWS moves.
type Fleet struct {
	asg       AutoScaling
	instances Instances
	clusterID string
	now       func() time.Time

	mu sync.Mutex
	// groups is the last reading, taken at read; stale after the fleet
	// changed a group itself.
	groups []Group
	read   time.Time
	stale  bool
	// facts never change for an instance: each is described once.
	facts map[string]InstanceFacts
}

// groupsMaxAge bounds how long a reading of the groups is used: changes
// that no Node shows (a launch still pending, a process resumed by hand)
// are seen within it.
const groupsMaxAge = 15 * time.Second

// NewFleet returns the fleet of a cluster.
func NewFleet(asg AutoScaling, instances Instances, clusterID string) *Fleet {
	return &Fleet{asg: asg, instances: instances, clusterID: clusterID, now: time.Now, facts: map[string]InstanceFacts{}}
}

// Groups lists the cluster's node pool groups with their instances. It
// asks AWS again when the last reading is older than groupsMaxAge, when
// the fleet changed a group since, or when one of the instances in known
// is not in it (a Node of a new instance registered); else it answers the
// last reading.
func (f *Fleet) Groups(ctx context.Context, known []string) ([]Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.read.IsZero() || f.stale || f.now().Sub(f.read) > groupsMaxAge || !f.knows(known) {
		groups, err := f.describe(ctx)
		if err != nil {
			return nil, err
		}
		f.groups, f.read, f.stale = groups, f.now(), false
	}
	return cloneGroups(f.groups), nil
}

func (f *Fleet) knows(ids []string) bool {
	for _, id := range ids {
		if !slices.ContainsFunc(f.groups, func(g Group) bool {
			return slices.ContainsFunc(g.Instances, func(i Instance) bool { return i.ID == id })
		}) {
			return false
		}
	}
	return true
}

func cloneGroups(groups []Group) []Group {
	out := slices.Clone(groups)
	for i := range out {
		out[i].Instances = slices.Clone(out[i].Instances)
		out[i].Suspended = slices.Clone(out[i].Suspended)
	}
	return out
}

// changed marks the last reading stale: the fleet changed a group.
func (f *Fleet) changed() {
	f.mu.Lock()
	f.stale = true
	f.mu.Unlock()
}

func (f *Fleet) describe(ctx context.Context) ([]Group, error) {
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
	var unknown []string
	for _, id := range ids {
		if _, ok := f.facts[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		facts, err := f.instances.Describe(ctx, unknown)
		if err != nil {
			return err
		}
		for _, fact := range facts {
			f.facts[fact.ID] = fact
		}
	}
	// Forget the instances that left the groups.
	for id := range f.facts {
		if _, ok := index[id]; !ok {
			delete(f.facts, id)
		}
	}
	for _, fact := range f.facts {
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
	defer f.changed()
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
	defer f.changed()
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
	defer f.changed()
	_, err := f.asg.SuspendProcesses(ctx, &autoscaling.SuspendProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: []string{azRebalance}})
	if err != nil {
		return fmt.Errorf("suspending %s of %s: %w", azRebalance, group, err)
	}
	return nil
}

// ResumeRebalance undoes SuspendRebalance.
func (f *Fleet) ResumeRebalance(ctx context.Context, group string) error {
	defer f.changed()
	_, err := f.asg.ResumeProcesses(ctx, &autoscaling.ResumeProcessesInput{AutoScalingGroupName: aws.String(group), ScalingProcesses: []string{azRebalance}})
	if err != nil {
		return fmt.Errorf("resuming %s of %s: %w", azRebalance, group, err)
	}
	return nil
}

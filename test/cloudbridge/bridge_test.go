package cloudbridge_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/cloudbridge"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/moto"
)

const (
	region    = "eu-central-1"
	clusterID = "aws:" + moto.AccountID + ":" + region + ":kube-1"
)

// userData is a bootstrap in the shape of the reference node-pool.yaml's.
const userData = `#!/bin/bash
set -euo pipefail
cat > /etc/caravan/node.env <<'ENV'
CARAVAN_NODE_POOL=workers
CARAVAN_NODE_LABELS=caravan.io/node-pool=workers,caravan.io/profile=worker-default,team=blue
CARAVAN_NODE_TAINTS=dedicated=blue:NoSchedule
ENV
cat > /etc/systemd/system/kubelet.service.d/20-caravan.conf <<'CONF'
[Service]
Environment="KUBELET_EXTRA_ARGS=--node-labels=caravan.io/node-pool=workers,caravan.io/profile=worker-default,team=blue --cluster-dns=10.0.0.10 --cluster-domain=cluster.local --register-with-taints=dedicated=blue:NoSchedule"
CONF
`

// world is a control plane and moto with one group of a cluster.
type world struct {
	cp   *controlplane.ControlPlane
	srv  *moto.Server
	cfg  aws.Config
	asg  *autoscaling.Client
	ec2  *ec2.Client
	nets int // VPCs made, each its own addresses
}

func newWorld(t *testing.T) *world {
	t.Helper()
	start := time.Now()
	w := &world{cp: controlplane.Start(t), srv: moto.Start(t)}
	w.cfg = w.srv.AWSConfig(region)
	w.asg = autoscaling.NewFromConfig(w.cfg)
	w.ec2 = ec2.NewFromConfig(w.cfg)
	t.Logf("control plane and moto up in %s", time.Since(start).Round(time.Millisecond))
	return w
}

// createGroup makes a VPC with two subnets, a launch template with the
// user data and the revision tag, and a group of it tagged as the
// reference's, of min 1, max 3 and the desired capacity.
func (w *world) createGroup(t *testing.T, name, cluster, pool string, desired int32) string {
	t.Helper()
	ctx := context.Background()
	w.nets++
	vpc, err := w.ec2.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String(fmt.Sprintf("10.%d.0.0/16", w.nets))})
	if err != nil {
		t.Fatal(err)
	}
	var subnets []string
	for i, zone := range []string{region + "a", region + "b"} {
		s, err := w.ec2.CreateSubnet(ctx, &ec2.CreateSubnetInput{
			VpcId: vpc.Vpc.VpcId, CidrBlock: aws.String(fmt.Sprintf("10.%d.%d.0/24", w.nets, 10+i)), AvailabilityZone: aws.String(zone),
		})
		if err != nil {
			t.Fatal(err)
		}
		subnets = append(subnets, aws.ToString(s.Subnet.SubnetId))
	}
	lt, err := w.ec2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
		LaunchTemplateName: aws.String(name),
		LaunchTemplateData: &ec2types.RequestLaunchTemplateData{
			ImageId:      aws.String("ami-04681a1dbd79675a5"),
			InstanceType: ec2types.InstanceTypeM6iLarge,
			UserData:     aws.String(base64.StdEncoding.EncodeToString([]byte(userData))),
			TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{{
				ResourceType: ec2types.ResourceTypeInstance,
				Tags: []ec2types.Tag{
					{Key: aws.String("caravan.io/cluster-id"), Value: aws.String(cluster)},
					{Key: aws.String("caravan.io/node-pool"), Value: aws.String(pool)},
					{Key: aws.String("caravan.io/node-pool-revision"), Value: aws.String("r1")},
				},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tags := []astypes.Tag{{Key: aws.String("caravan.io/cluster-id"), Value: aws.String(cluster), PropagateAtLaunch: aws.Bool(false)}}
	if pool != "" {
		tags = append(tags, astypes.Tag{Key: aws.String("caravan.io/node-pool"), Value: aws.String(pool), PropagateAtLaunch: aws.Bool(false)})
	}
	_, err = w.asg.CreateAutoScalingGroup(ctx, &autoscaling.CreateAutoScalingGroupInput{
		AutoScalingGroupName: aws.String(name),
		MinSize:              aws.Int32(1), MaxSize: aws.Int32(3), DesiredCapacity: aws.Int32(desired),
		VPCZoneIdentifier: aws.String(strings.Join(subnets, ",")),
		LaunchTemplate:    &astypes.LaunchTemplateSpecification{LaunchTemplateId: lt.LaunchTemplate.LaunchTemplateId, Version: aws.String("$Latest")},
		Tags:              tags,
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// groupInstances are the ids of a group's instances.
func (w *world) groupInstances(t *testing.T, group string) []string {
	t.Helper()
	out, err := w.asg.DescribeAutoScalingGroups(context.Background(), &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{group}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, g := range out.AutoScalingGroups {
		for _, in := range g.Instances {
			ids = append(ids, aws.ToString(in.InstanceId))
		}
	}
	slices.Sort(ids)
	return ids
}

func (w *world) bridge(t *testing.T, cluster string) *cloudbridge.Bridge {
	t.Helper()
	b, err := cloudbridge.New(cloudbridge.Config{AWS: w.cfg, ClusterID: cluster, Kube: w.cp.Client, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sync(t *testing.T, b *cloudbridge.Bridge) {
	t.Helper()
	start := time.Now()
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("Sync took %s", time.Since(start).Round(time.Millisecond))
}

// bridgeNodes are the Nodes the bridge made, by instance id.
func bridgeNodes(t *testing.T, kube kubernetes.Interface) map[string]corev1.Node {
	t.Helper()
	list, err := kube.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{LabelSelector: cloudbridge.ManagedLabel + "=true"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]corev1.Node{}
	for _, n := range list.Items {
		out[n.Spec.ProviderID[strings.LastIndex(n.Spec.ProviderID, "/")+1:]] = n
	}
	return out
}

func ready(n corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// waitNodes waits until the bridge's Nodes are those of the instances, all
// Ready, and returns them.
func waitNodes(t *testing.T, kube kubernetes.Interface, ids []string, within time.Duration) map[string]corev1.Node {
	t.Helper()
	start := time.Now()
	var got map[string]corev1.Node
	for {
		got = bridgeNodes(t, kube)
		allReady := true
		for _, n := range got {
			allReady = allReady && ready(n)
		}
		if allReady && slices.Equal(slices.Sorted(maps.Keys(got)), ids) {
			t.Logf("nodes of %v Ready after %s", ids, time.Since(start).Round(time.Millisecond))
			return got
		}
		if time.Since(start) > within {
			states := map[string]bool{}
			for id, n := range got {
				states[id] = ready(n)
			}
			t.Fatalf("after %s the bridge's nodes (instance: Ready) are %v, want %v all Ready", within, states, ids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkNode(t *testing.T, n corev1.Node, w *world, id, pool string) {
	t.Helper()
	out, err := w.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	in := out.Reservations[0].Instances[0]
	zone := aws.ToString(in.Placement.AvailabilityZone)
	if want := aws.ToString(in.PrivateDnsName); n.Name != want || want == "" {
		t.Errorf("node of %s is named %q, want the private DNS name %q", id, n.Name, want)
	}
	if want := "aws:///" + zone + "/" + id; n.Spec.ProviderID != want {
		t.Errorf("node %s: providerID %q, want %q", n.Name, n.Spec.ProviderID, want)
	}
	want := map[string]string{
		"node.kubernetes.io/instance-type": string(in.InstanceType),
		"topology.kubernetes.io/zone":      zone,
		"topology.kubernetes.io/region":    region,
		cloudbridge.PoolLabel:              pool,
		"kubernetes.io/hostname":           n.Name,
		"kubernetes.io/os":                 "linux",
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("node %s: label %s=%q, want %q (labels %v)", n.Name, k, n.Labels[k], v, n.Labels)
		}
	}
	if n.Annotations[controlplane.KwokNodeAnnotation] != "fake" {
		t.Errorf("node %s has no kwok annotation: %v", n.Name, n.Annotations)
	}
}

// TestSyncFollowsGroup: Nodes for a group's instances, with the labels of
// the user data, a third when it grows, one less when an instance ends;
// another cluster's group and Nodes the bridge did not make are left alone.
func TestSyncFollowsGroup(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	group := w.createGroup(t, "nodepool-workers-kube-1", clusterID, "workers", 2)
	other := w.createGroup(t, "nodepool-workers-kube-2", "aws:"+moto.AccountID+":"+region+":kube-2", "workers", 1)
	ids := w.groupInstances(t, group)
	if len(ids) != 2 {
		t.Fatalf("the group has instances %v, want 2", ids)
	}

	// Nodes the bridge must never touch: one of no instance, and one that
	// claims an instance of the group (it then gets no second Node).
	foreign, err := w.cp.AddNode(ctx, controlplane.Node{Name: "handmade", Labels: map[string]string{cloudbridge.PoolLabel: "workers"}})
	if err != nil {
		t.Fatal(err)
	}
	otherIDs := w.groupInstances(t, other)
	claimed, err := w.cp.AddNode(ctx, controlplane.Node{Name: "claims-" + otherIDs[0], ProviderID: "aws:///" + region + "a/" + otherIDs[0]})
	if err != nil {
		t.Fatal(err)
	}

	b := w.bridge(t, clusterID)
	sync(t, b)
	got := waitNodes(t, w.cp.Client, ids, 10*time.Second)
	for id, n := range got {
		checkNode(t, n, w, id, "workers")
		if n.Labels["team"] != "blue" || n.Labels["caravan.io/profile"] != "worker-default" {
			t.Errorf("node %s lacks the user data's labels: %v", n.Name, n.Labels)
		}
		wantTaints := []corev1.Taint{{Key: "dedicated", Value: "blue", Effect: corev1.TaintEffectNoSchedule}}
		if !taintsEqual(n.Spec.Taints, wantTaints) {
			t.Errorf("node %s: taints %v, want %v", n.Name, n.Spec.Taints, wantTaints)
		}
		if c := n.Status.Capacity[corev1.ResourceCPU]; c.String() != "2" {
			t.Errorf("node %s: %s CPUs, want 2 of an m6i.large", n.Name, c.String())
		}
		if m := n.Status.Capacity[corev1.ResourceMemory]; m.String() != "8Gi" {
			t.Errorf("node %s: memory %s, want 8Gi of an m6i.large", n.Name, m.String())
		}
	}
	sync(t, b) // a pass with nothing to do changes nothing
	if again := bridgeNodes(t, w.cp.Client); len(again) != 2 {
		t.Fatalf("a second pass left nodes %v", slices.Sorted(maps.Keys(again)))
	}

	// Scale out past nothing: moto does not check desired against max.
	if _, err := w.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	ids = w.groupInstances(t, group)
	if len(ids) != 3 {
		t.Fatalf("the group has instances %v, want 3", ids)
	}
	sync(t, b)
	got = waitNodes(t, w.cp.Client, ids, 10*time.Second)
	for id, n := range got {
		checkNode(t, n, w, id, "workers")
	}

	// Terminate one, as the agent does.
	victim := ids[1]
	if _, err := w.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatal(err)
	}
	ids = slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return id == victim })
	if left := w.groupInstances(t, group); !slices.Equal(left, ids) {
		t.Fatalf("after terminating %s the group has %v, want %v (a replacement?)", victim, left, ids)
	}
	sync(t, b)
	waitNodes(t, w.cp.Client, ids, time.Second)

	// The other cluster's instances got no Node, and the foreign Nodes
	// are as they were.
	for _, n := range []*corev1.Node{foreign, claimed} {
		now, err := w.cp.Client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("foreign node %s: %v", n.Name, err)
		}
		if now.UID != n.UID || now.Labels[cloudbridge.ManagedLabel] != "" {
			t.Errorf("foreign node %s was replaced or marked: %v", n.Name, now.Labels)
		}
	}
	// Terminating the instance a foreign node claims does not delete it.
	if _, err := w.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(otherIDs[0]), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatal(err)
	}
	sync(t, b)
	if _, err := w.cp.Client.CoreV1().Nodes().Get(ctx, claimed.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("foreign node %s of a terminated instance: %v", claimed.Name, err)
	}
}

// TestEveryPoolWithoutClusterID: with no ClusterID, the groups of every
// cluster, and none without a pool tag.
func TestEveryPoolWithoutClusterID(t *testing.T) {
	w := newWorld(t)
	a := w.createGroup(t, "nodepool-a-kube-1", clusterID, "a", 1)
	c := w.createGroup(t, "nodepool-c-kube-2", "aws:"+moto.AccountID+":"+region+":kube-2", "c", 2)
	none := w.createGroup(t, "not-a-pool", clusterID, "", 1) // no caravan.io/node-pool tag
	// A Node not the bridge's has the private DNS name of an instance: the
	// bridge names that instance's Node after its id.
	first := w.groupInstances(t, a)[0]
	out, err := w.ec2.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{InstanceIds: []string{first}})
	if err != nil {
		t.Fatal(err)
	}
	dns := aws.ToString(out.Reservations[0].Instances[0].PrivateDnsName)
	if _, err := w.cp.AddNode(context.Background(), controlplane.Node{Name: dns}); err != nil {
		t.Fatal(err)
	}
	b := w.bridge(t, "")
	sync(t, b)
	ids := append(w.groupInstances(t, a), w.groupInstances(t, c)...)
	slices.Sort(ids)
	got := waitNodes(t, w.cp.Client, ids, 10*time.Second)
	for _, id := range w.groupInstances(t, c) {
		checkNode(t, got[id], w, id, "c")
	}
	if n := got[first]; n.Name != first || n.Labels["kubernetes.io/hostname"] != first {
		t.Errorf("the node of %s, whose DNS name %s a foreign Node has, is named %s (hostname label %q)", first, dns, n.Name, n.Labels["kubernetes.io/hostname"])
	}
	if n := len(w.groupInstances(t, none)); n != 1 {
		t.Errorf("the group of no pool has %d instances, want 1", n)
	}
}

// TestStartConverges: the loop follows the group by itself.
func TestStartConverges(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	group := w.createGroup(t, "nodepool-workers-kube-1", clusterID, "workers", 1)
	start := time.Now()
	b, err := cloudbridge.Start(ctx, cloudbridge.Config{AWS: w.cfg, ClusterID: clusterID, Kube: w.cp.Client, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start returned after %s", time.Since(start).Round(time.Millisecond))
	defer b.Stop()
	waitNodes(t, w.cp.Client, w.groupInstances(t, group), 5*time.Second)

	if _, err := w.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	ids := w.groupInstances(t, group)
	waitNodes(t, w.cp.Client, ids, 5*time.Second)

	for _, victim := range ids[:2] {
		if _, err := w.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
			InstanceId: aws.String(victim), ShouldDecrementDesiredCapacity: aws.Bool(true),
		}); err != nil {
			t.Fatal(err)
		}
	}
	waitNodes(t, w.cp.Client, ids[2:], 5*time.Second)

	// Terminated without decrement: the group replaces the instance.
	if _, err := w.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(ids[2]), ShouldDecrementDesiredCapacity: aws.Bool(false),
	}); err != nil {
		t.Fatal(err)
	}
	replaced := w.groupInstances(t, group)
	if len(replaced) != 1 || replaced[0] == ids[2] {
		t.Fatalf("after terminating %s without decrement the group has %v", ids[2], replaced)
	}
	waitNodes(t, w.cp.Client, replaced, 5*time.Second)

	b.Stop()
	b.Stop()
	// Stopped, it does nothing more.
	if _, err := w.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(2)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * cloudbridge.DefaultInterval)
	if n := bridgeNodes(t, w.cp.Client); len(n) != 1 {
		t.Errorf("a stopped bridge made nodes: %v", slices.Sorted(maps.Keys(n)))
	}
}

// TestReferenceTemplates: the stacks of the reference templates, rendered
// by agent/render and created by agent/cloud as the agent does, give
// Nodes with the labels and taints of the pools.
func TestReferenceTemplates(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files := os.DirFS(filepath.Join(root, "manifests"))
	pools := []api.NodePool{
		{Name: "default-worker", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 3, DiscountStrategy: api.DiscountNone,
			Labels: map[string]string{"team": "blue", "example.org/tier": "web"},
			Taints: []api.Taint{{Key: "dedicated", Value: "blue", Effect: "NoSchedule"}, {Key: "gpu", Effect: "NoExecute"}}},
		{Name: "spot-worker", Profile: "worker-default", InstanceTypes: []string{"c6i.xlarge", "m5.large"}, MinSize: 1, MaxSize: 2, DiscountStrategy: api.DiscountSpot},
	}
	a := assignment(t, pools)
	items, err := render.ConfigItems(files, a)
	if err != nil {
		t.Fatal(err)
	}
	cluster, _, err := render.Stacks(files, a, items)
	if err != nil {
		t.Fatal(err)
	}
	stacks := (&cloud.AWS{Config: w.cfg, Endpoint: w.srv.Endpoint}).Stacks(a.Cluster.ID, a.Cluster.Region)
	stacks.PollMin, stacks.PollMax = 50*time.Millisecond, 200*time.Millisecond
	start := time.Now()
	if _, err := stacks.ConvergeAll(ctx, files, a, items, cluster, cloud.StackOptions(strings.Repeat("c", 40)+"#cloudbridge", items), nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("stacks created in %s", time.Since(start).Round(time.Millisecond))

	workers := w.groupInstances(t, "nodepool-default-worker-"+a.Cluster.LocalID)
	spot := w.groupInstances(t, "nodepool-spot-worker-"+a.Cluster.LocalID)
	if len(workers) != 2 || len(spot) != 1 {
		t.Fatalf("the groups have %v and %v, want 2 and 1 instances", workers, spot)
	}
	b, err := cloudbridge.Start(ctx, cloudbridge.Config{AWS: w.cfg, ClusterID: a.Cluster.ID, Kube: w.cp.Client, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	got := waitNodes(t, w.cp.Client, slices.Sorted(slices.Values(append(slices.Clone(workers), spot...))), 10*time.Second)
	for _, id := range workers {
		n := got[id]
		checkNode(t, n, w, id, "default-worker")
		for k, v := range map[string]string{"team": "blue", "example.org/tier": "web", "caravan.io/profile": "worker-default", "node.kubernetes.io/instance-type": "m6i.large"} {
			if n.Labels[k] != v {
				t.Errorf("node %s: label %s=%q, want %q", n.Name, k, n.Labels[k], v)
			}
		}
		want := []corev1.Taint{{Key: "dedicated", Value: "blue", Effect: corev1.TaintEffectNoSchedule}, {Key: "gpu", Effect: corev1.TaintEffectNoExecute}}
		if !taintsEqual(n.Spec.Taints, want) {
			t.Errorf("node %s: taints %v, want %v", n.Name, n.Spec.Taints, want)
		}
	}
	n := got[spot[0]]
	checkNode(t, n, w, spot[0], "spot-worker")
	if !taintsEqual(n.Spec.Taints, nil) || n.Labels["team"] != "" {
		t.Errorf("spot node %s has the other pool's labels or taints: %v %v", n.Name, n.Labels, n.Spec.Taints)
	}
	if c := n.Status.Capacity[corev1.ResourceCPU]; c.String() != "4" {
		t.Errorf("spot node %s (%s): %s CPUs, want 4 of a c6i.xlarge", n.Name, n.Labels["node.kubernetes.io/instance-type"], c.String())
	}

	// The agent's rolling update: surge one, terminate an old one.
	group := "nodepool-default-worker-" + a.Cluster.LocalID
	if _, err := w.asg.SetDesiredCapacity(ctx, &autoscaling.SetDesiredCapacityInput{AutoScalingGroupName: aws.String(group), DesiredCapacity: aws.Int32(3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.asg.TerminateInstanceInAutoScalingGroup(ctx, &autoscaling.TerminateInstanceInAutoScalingGroupInput{
		InstanceId: aws.String(workers[0]), ShouldDecrementDesiredCapacity: aws.Bool(true),
	}); err != nil {
		t.Fatal(err)
	}
	now := w.groupInstances(t, group)
	got = waitNodes(t, w.cp.Client, slices.Sorted(slices.Values(append(slices.Clone(now), spot...))), 5*time.Second)
	for _, id := range now {
		if got[id].Labels["team"] != "blue" {
			t.Errorf("node of instance %s lacks its pool's labels: %v", id, got[id].Labels)
		}
	}
}

// taintsEqual compares taints, but for those the node lifecycle
// controller puts on and takes off (node.kubernetes.io/not-ready until it
// sees the node Ready).
func taintsEqual(a, b []corev1.Taint) bool {
	key := func(t corev1.Taint) string { return t.Key + "=" + t.Value + ":" + string(t.Effect) }
	ka, kb := make([]string, 0, len(a)), make([]string, 0, len(b))
	for _, t := range a {
		if !strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			ka = append(ka, key(t))
		}
	}
	for _, t := range b {
		kb = append(kb, key(t))
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// assignment is the registry's assignment of a cluster in moto's account,
// as test/bench/stacks builds it.
func assignment(t *testing.T, pools []api.NodePool) api.Assignment {
	t.Helper()
	account := "aws:" + moto.AccountID
	c := api.Cluster{
		ID: clusterID, Alias: "kube-1", InfrastructureAccount: account, Region: region,
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev",
		Provider: "aws", CriticalityLevel: 1, LifecycleStatus: "ready", NodePools: pools,
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	a, _ := api.BuildAssignment(api.AssignmentInput{
		Account:   api.InfrastructureAccount{ID: account, Name: "test", Environment: "test", ConfigItems: map[string]string{}},
		Cluster:   c,
		NodePools: c.NodePools,
		Channel:   api.Channel{Name: "dev", Branch: "dev", RepositoryURL: "https://git.example.org/config.git"},
	}, time.Now())
	return a
}

func TestParseUserData(t *testing.T) {
	spec := cloudbridge.ParseUserData(userData)
	want := map[string]string{"caravan.io/node-pool": "workers", "caravan.io/profile": "worker-default", "team": "blue"}
	if !spec.Found || !maps.Equal(spec.Labels, want) {
		t.Errorf("labels %v (found %v), want %v", spec.Labels, spec.Found, want)
	}
	if !taintsEqual(spec.Taints, []corev1.Taint{{Key: "dedicated", Value: "blue", Effect: corev1.TaintEffectNoSchedule}}) {
		t.Errorf("taints %v", spec.Taints)
	}
	// The env lines alone, an empty taint list, a malformed taint.
	spec = cloudbridge.ParseUserData("CARAVAN_NODE_LABELS=a=1,b=2\nCARAVAN_NODE_TAINTS=\n")
	if !spec.Found || !maps.Equal(spec.Labels, map[string]string{"a": "1", "b": "2"}) || len(spec.Taints) != 0 {
		t.Errorf("env lines: %+v", spec)
	}
	spec = cloudbridge.ParseUserData(`KUBELET_EXTRA_ARGS=--register-with-taints=x:Nope,y:NoExecute`)
	if !spec.Found || len(spec.Taints) != 1 || spec.Taints[0].Key != "y" {
		t.Errorf("malformed taint: %+v", spec)
	}
	if spec := cloudbridge.ParseUserData("#!/bin/bash\necho hi\n"); spec.Found {
		t.Errorf("a script without labels: %+v", spec)
	}
}

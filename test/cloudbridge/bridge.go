// Package cloudbridge plays cloud-controller-manager for the test control
// plane: it keeps one kwok Node for every running instance of a cluster's
// node pool auto scaling groups, in moto (or any AWS API), and deletes the
// Node when its instance ends.
//
// A Node is what a real kubelet on the instance would register, as far as
// the agent can tell: named after the instance's private DNS name, with
// spec.providerID aws:///<zone>/<instance-id>, the well-known labels of the
// instance (type, zone, region), the labels and taints the pool's user data
// gives kubelet (--node-labels, --register-with-taints of the reference
// node-pool.yaml), the capacity of its instance type, and kwok's annotation,
// so that kwok makes it Ready and runs its pods.
//
// The bridge only ever deletes Nodes it created: those carry ManagedLabel.
package cloudbridge

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Tags and labels the bridge reads and writes.
const (
	// TagClusterID and TagNodePool are the auto scaling group's tags of the
	// reference node-pool.yaml.
	TagClusterID = "caravan.io/cluster-id"
	TagNodePool  = "caravan.io/node-pool"
	// PoolLabel names a node's pool (agent/nodes.PoolLabel).
	PoolLabel = "caravan.io/node-pool"
	// ManagedLabel marks the Nodes the bridge made; it deletes no other.
	ManagedLabel = "test.caravan.io/cloudbridge"
	// KwokNodeAnnotation is the annotation kwok of test/controlplane
	// selects the nodes it runs by (controlplane.KwokNodeAnnotation=fake).
	KwokNodeAnnotation = "kwok.x-k8s.io/node"

	LabelInstanceType = "node.kubernetes.io/instance-type"
	LabelZone         = "topology.kubernetes.io/zone"
	LabelRegion       = "topology.kubernetes.io/region"
	LabelHostname     = "kubernetes.io/hostname"
	LabelOS           = "kubernetes.io/os"
	LabelArch         = "kubernetes.io/arch"

	// The cluster-autoscaler's node template tags, read from the group and
	// the instance when the user data names no labels or taints:
	// k8s.io/cluster-autoscaler/node-template/label/<key> = <value> and
	// .../taint/<key> = <value>:<effect>.
	templateLabelTag = "k8s.io/cluster-autoscaler/node-template/label/"
	templateTaintTag = "k8s.io/cluster-autoscaler/node-template/taint/"
)

// DefaultInterval is the time between two passes of Start's loop.
const DefaultInterval = 300 * time.Millisecond

// Config is what a bridge works with.
type Config struct {
	// AWS is the SDK configuration, e.g. moto.Server.AWSConfig(region).
	AWS aws.Config
	// Region is where the groups are; empty: AWS.Region.
	Region string
	// ClusterID selects the groups tagged caravan.io/cluster-id=ClusterID;
	// empty: every group with a caravan.io/node-pool tag.
	ClusterID string
	// Kube is the cluster's client, e.g. controlplane.ControlPlane.Client.
	Kube kubernetes.Interface
	// Interval is the time between two passes of Start's loop; zero:
	// DefaultInterval.
	Interval time.Duration
	// Log, when set, hears of every Node created or deleted and of failed
	// passes (a failure that repeats is told once).
	Log func(format string, args ...any)
}

// Bridge keeps the Nodes of a cluster in step with its groups' instances.
type Bridge struct {
	cfg Config
	asg *autoscaling.Client
	ec2 *ec2.Client

	mu        sync.Mutex // one pass at a time; guards the caches
	userData  map[string]PoolSpec
	capacity  map[string]corev1.ResourceList
	lastError string

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// PoolSpec is what a node's bootstrap gives its kubelet.
type PoolSpec struct {
	Labels map[string]string
	Taints []corev1.Taint
	// Found: the bootstrap names labels or taints.
	Found bool
}

// instance is one instance of a group, as the bridge sees it.
type instance struct {
	id, zone, typ, state, dns, ip, arch string
	pool                                string
	tags                                map[string]string
	groupTags                           map[string]string
}

// New returns a bridge that runs no loop: Sync makes its passes.
func New(cfg Config) (*Bridge, error) {
	if cfg.Kube == nil {
		return nil, errors.New("cloudbridge: Config.Kube is nil")
	}
	if cfg.Region == "" {
		cfg.Region = cfg.AWS.Region
	}
	if cfg.Region == "" {
		return nil, errors.New("cloudbridge: no region: set Config.Region or Config.AWS.Region")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Log == nil {
		cfg.Log = func(string, ...any) {}
	}
	region := cfg.Region
	return &Bridge{
		cfg:      cfg,
		asg:      autoscaling.NewFromConfig(cfg.AWS, func(o *autoscaling.Options) { o.Region = region }),
		ec2:      ec2.NewFromConfig(cfg.AWS, func(o *ec2.Options) { o.Region = region }),
		userData: map[string]PoolSpec{},
		capacity: map[string]corev1.ResourceList{},
	}, nil
}

// Start makes a first pass, whose error it returns, then runs a pass every
// Interval until ctx ends or Stop. A later pass that fails is logged and
// the next one tries again.
func Start(ctx context.Context, cfg Config) (*Bridge, error) {
	b, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Sync(ctx); err != nil {
		return nil, err
	}
	ctx, b.cancel = context.WithCancel(ctx)
	b.done = make(chan struct{})
	go b.loop(ctx)
	return b, nil
}

func (b *Bridge) loop(ctx context.Context) {
	defer close(b.done)
	tick := time.NewTicker(b.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		err := b.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != b.lastError {
			if err != nil {
				b.cfg.Log("cloudbridge: %v", err)
			} else {
				b.cfg.Log("cloudbridge: in step again")
			}
			b.lastError = msg
		}
		b.mu.Unlock()
	}
}

// Stop ends Start's loop and waits for it. It may be called again, and on a
// bridge of New, where it does nothing.
func (b *Bridge) Stop() {
	b.stopOnce.Do(func() {
		if b.cancel != nil {
			b.cancel()
			<-b.done
		}
	})
}

// Sync makes one pass: a Node for every running instance of the groups
// that has none, and no Node of the bridge's for an instance that is gone
// or ending (shutting-down, terminated). Instances pending, stopping or
// stopped keep what they have.
func (b *Bridge) Sync(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()

	instances, err := b.groupInstances(ctx)
	if err != nil {
		return err
	}
	list, err := b.cfg.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	owned := map[string]*corev1.Node{} // by instance id
	names := map[string]*corev1.Node{}
	hasNode := map[string]bool{} // instance ids with any Node, by providerID
	var ownedIDs []string
	for i := range list.Items {
		n := &list.Items[i]
		names[n.Name] = n
		id := instanceID(n.Spec.ProviderID)
		if id != "" {
			hasNode[id] = true
		}
		if n.Labels[ManagedLabel] != "true" {
			continue
		}
		if id == "" {
			continue
		}
		owned[id] = n
		ownedIDs = append(ownedIDs, id)
	}

	// The state of the owned Nodes' instances, which may have left their
	// groups: a group forgets an instance once it is terminated.
	states := map[string]string{}
	for id, in := range instances {
		states[id] = in.state
	}
	var unknown []string
	for _, id := range ownedIDs {
		if _, ok := states[id]; !ok {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		others, err := b.describeInstances(ctx, unknown)
		if err != nil {
			return err
		}
		for _, in := range others {
			states[in.id] = in.state
		}
	}

	var errs []error
	for _, id := range slices.Sorted(maps.Keys(owned)) {
		n := owned[id]
		switch states[id] {
		case "", string(ec2types.InstanceStateNameShuttingDown), string(ec2types.InstanceStateNameTerminated):
		default:
			continue
		}
		err := b.cfg.Kube.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting node %s of instance %s: %w", n.Name, id, err))
			continue
		}
		delete(names, n.Name)
		state := states[id]
		if state == "" {
			state = "gone"
		}
		b.cfg.Log("cloudbridge: deleted node %s: instance %s is %s", n.Name, id, state)
	}

	for _, id := range slices.Sorted(maps.Keys(instances)) {
		in := instances[id]
		if in.state != string(ec2types.InstanceStateNameRunning) || hasNode[id] {
			continue
		}
		node, err := b.node(ctx, in)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if other, taken := names[node.Name]; taken {
			// A name of a Node of another instance (a private IP used
			// again) or not the bridge's: the instance id is unique.
			b.cfg.Log("cloudbridge: node name %s is taken (providerID %q): naming instance %s's node %s", node.Name, other.Spec.ProviderID, id, id)
			node.Name = id
			node.Labels[LabelHostname] = id
		}
		created, err := b.cfg.Kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("creating node %s of instance %s: %w", node.Name, id, err))
			continue
		}
		names[created.Name] = created
		b.cfg.Log("cloudbridge: created node %s for instance %s (pool %s, %s in %s)", created.Name, id, in.pool, in.typ, in.zone)
	}
	return errors.Join(errs...)
}

// groupInstances lists the cluster's groups and describes their instances.
func (b *Bridge) groupInstances(ctx context.Context) (map[string]*instance, error) {
	var filters []astypes.Filter
	if b.cfg.ClusterID != "" {
		filters = []astypes.Filter{{Name: aws.String("tag:" + TagClusterID), Values: []string{b.cfg.ClusterID}}}
	} else {
		filters = []astypes.Filter{{Name: aws.String("tag-key"), Values: []string{TagNodePool}}}
	}
	pool := map[string]string{}                 // instance id -> pool
	groupTags := map[string]map[string]string{} // instance id -> its group's tags
	var ids []string
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(b.asg, &autoscaling.DescribeAutoScalingGroupsInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing the auto scaling groups: %w", err)
		}
		for _, g := range page.AutoScalingGroups {
			tags := map[string]string{}
			for _, t := range g.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			// The filters again, for an API that ignores them.
			name, isPool := tags[TagNodePool]
			if !isPool || (b.cfg.ClusterID != "" && tags[TagClusterID] != b.cfg.ClusterID) {
				continue
			}
			for _, in := range g.Instances {
				id := aws.ToString(in.InstanceId)
				pool[id] = name
				groupTags[id] = tags
				ids = append(ids, id)
			}
		}
	}
	described, err := b.describeInstances(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := map[string]*instance{}
	for _, in := range described {
		in.pool, in.groupTags = pool[in.id], groupTags[in.id]
		out[in.id] = in
	}
	return out, nil
}

// describeInstances describes instances by an instance-id filter, which,
// unlike InstanceIds, does not fail on an id that no longer exists.
func (b *Bridge) describeInstances(ctx context.Context, ids []string) ([]*instance, error) {
	var out []*instance
	for chunk := range slices.Chunk(ids, 100) {
		pages := ec2.NewDescribeInstancesPaginator(b.ec2, &ec2.DescribeInstancesInput{
			Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: chunk}},
		})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing instances: %w", err)
			}
			for _, r := range page.Reservations {
				for _, i := range r.Instances {
					in := &instance{
						id:   aws.ToString(i.InstanceId),
						typ:  string(i.InstanceType),
						dns:  aws.ToString(i.PrivateDnsName),
						ip:   aws.ToString(i.PrivateIpAddress),
						arch: string(i.Architecture),
						tags: map[string]string{},
					}
					if i.Placement != nil {
						in.zone = aws.ToString(i.Placement.AvailabilityZone)
					}
					if i.State != nil {
						in.state = string(i.State.Name)
					}
					for _, t := range i.Tags {
						in.tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
					}
					out = append(out, in)
				}
			}
		}
	}
	return out, nil
}

// node is the Node of a running instance, as its kubelet would register it.
func (b *Bridge) node(ctx context.Context, in *instance) (*corev1.Node, error) {
	spec, err := b.poolSpec(ctx, in)
	if err != nil {
		return nil, err
	}
	capacity := b.instanceCapacity(ctx, in.typ)
	name := in.dns
	if name == "" {
		name = in.id
	}
	// As controlplane.AddNode labels its nodes, then the pool's labels, then
	// what the cloud provider sets, which kubelet's flags cannot override.
	labels := map[string]string{LabelHostname: name, LabelOS: "linux", LabelArch: arch(in.arch), "type": "kwok"}
	maps.Copy(labels, spec.Labels)
	maps.Copy(labels, map[string]string{
		LabelInstanceType: in.typ,
		LabelZone:         in.zone,
		LabelRegion:       b.cfg.Region,
		ManagedLabel:      "true",
	})
	if in.pool != "" {
		labels[PoolLabel] = in.pool
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      labels,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{
			ProviderID: "aws:///" + in.zone + "/" + in.id,
			Taints:     spec.Taints,
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	if in.ip != "" {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: in.ip})
	}
	if in.dns != "" {
		node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalDNS, Address: in.dns})
	}
	return node, nil
}

func arch(ec2Arch string) string {
	switch ec2Arch {
	case "arm64":
		return "arm64"
	default:
		return "amd64"
	}
}

// poolSpec reads the labels and taints of an instance's user data (one
// DescribeInstanceAttribute per instance: an instance's user data never
// changes while it runs); without any, the cluster-autoscaler's node
// template tags of the group and the instance.
func (b *Bridge) poolSpec(ctx context.Context, in *instance) (PoolSpec, error) {
	spec, ok := b.userData[in.id]
	if !ok {
		out, err := b.ec2.DescribeInstanceAttribute(ctx, &ec2.DescribeInstanceAttributeInput{
			InstanceId: aws.String(in.id),
			Attribute:  ec2types.InstanceAttributeNameUserData,
		})
		if err != nil {
			return PoolSpec{}, fmt.Errorf("reading the user data of instance %s: %w", in.id, err)
		}
		var data string
		if out.UserData != nil {
			data = decodeUserData(aws.ToString(out.UserData.Value))
		}
		spec = ParseUserData(data)
		b.userData[in.id] = spec
	}
	if spec.Found {
		return spec, nil
	}
	tagged := PoolSpec{Labels: map[string]string{}}
	for _, tags := range []map[string]string{in.groupTags, in.tags} {
		for k, v := range tags {
			if key, ok := strings.CutPrefix(k, templateLabelTag); ok {
				tagged.Labels[key] = v
			}
			if key, ok := strings.CutPrefix(k, templateTaintTag); ok {
				if t, err := parseTaint(key + "=" + v); err == nil {
					tagged.Taints = append(tagged.Taints, t)
				}
			}
		}
	}
	slices.SortFunc(tagged.Taints, func(a, b corev1.Taint) int { return strings.Compare(a.Key, b.Key) })
	return tagged, nil
}

// decodeUserData undoes the base64 of user data as EC2 returns it (moto
// 5.2.5 too: the launch template's UserData, base64 once); a value that is
// no base64 is taken as it is.
func decodeUserData(s string) string {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	return string(raw)
}

var (
	labelsFlag = regexp.MustCompile(`--node-labels[= ]([^\s"']+)`)
	taintsFlag = regexp.MustCompile(`--register-with-taints[= ]([^\s"']+)`)
	labelsEnv  = regexp.MustCompile(`(?m)^CARAVAN_NODE_LABELS=(\S*)$`)
	taintsEnv  = regexp.MustCompile(`(?m)^CARAVAN_NODE_TAINTS=(\S*)$`)
)

// ParseUserData reads the node labels and taints of a node's bootstrap
// script: kubelet's --node-labels and --register-with-taints (as the
// reference node-pool.yaml passes them in KUBELET_EXTRA_ARGS), else its
// CARAVAN_NODE_LABELS and CARAVAN_NODE_TAINTS lines. Malformed entries are
// left out.
func ParseUserData(script string) PoolSpec {
	spec := PoolSpec{Labels: map[string]string{}}
	labels, hasLabels := firstMatch(script, labelsFlag, labelsEnv)
	taints, hasTaints := firstMatch(script, taintsFlag, taintsEnv)
	spec.Found = hasLabels || hasTaints
	for _, kv := range strings.Split(labels, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && k != "" {
			spec.Labels[k] = v
		}
	}
	for _, s := range strings.Split(taints, ",") {
		if t, err := parseTaint(s); err == nil {
			spec.Taints = append(spec.Taints, t)
		}
	}
	return spec
}

func firstMatch(s string, res ...*regexp.Regexp) (string, bool) {
	for _, re := range res {
		if m := re.FindStringSubmatch(s); m != nil {
			return m[1], true
		}
	}
	return "", false
}

// parseTaint reads key[=value]:Effect, as kubelet's --register-with-taints.
func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return corev1.Taint{}, fmt.Errorf("taint %q has no effect", s)
	}
	switch e := corev1.TaintEffect(effect); e {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		return corev1.Taint{}, fmt.Errorf("taint %q has an unknown effect", s)
	}
	k, v, _ := strings.Cut(kv, "=")
	if k == "" {
		return corev1.Taint{}, fmt.Errorf("taint %q has no key", s)
	}
	return corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}, nil
}

// instanceCapacity is the capacity of an instance type (DescribeInstanceTypes,
// once per type), or 4 CPUs and 16Gi as controlplane.AddNode's when the API
// does not know the type or fails (then asked again for the next Node).
func (b *Bridge) instanceCapacity(ctx context.Context, typ string) corev1.ResourceList {
	if c, ok := b.capacity[typ]; ok {
		return c.DeepCopy()
	}
	cpu, mem := "4", "16Gi"
	out, err := b.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{ec2types.InstanceType(typ)}})
	if err == nil && len(out.InstanceTypes) == 1 {
		it := out.InstanceTypes[0]
		if it.VCpuInfo != nil && aws.ToInt32(it.VCpuInfo.DefaultVCpus) > 0 {
			cpu = strconv.Itoa(int(aws.ToInt32(it.VCpuInfo.DefaultVCpus)))
		}
		if it.MemoryInfo != nil && aws.ToInt64(it.MemoryInfo.SizeInMiB) > 0 {
			mem = strconv.FormatInt(aws.ToInt64(it.MemoryInfo.SizeInMiB), 10) + "Mi"
		}
	} else if ctx.Err() == nil {
		b.cfg.Log("cloudbridge: capacity of instance type %q unknown (%v): %s CPUs, %s", typ, err, cpu, mem)
	}
	c := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	if err == nil {
		b.capacity[typ] = c
	}
	return c.DeepCopy()
}

// instanceID is the instance of a providerID aws:///<zone>/<instance-id>.
func instanceID(providerID string) string {
	rest, ok := strings.CutPrefix(providerID, "aws://")
	if !ok {
		return ""
	}
	i := strings.LastIndex(rest, "/")
	id := rest[i+1:]
	if !strings.HasPrefix(id, "i-") {
		return ""
	}
	return id
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	astypes "github.com/aws/aws-sdk-go-v2/service/autoscaling/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// rollResult is what the roll did, as the agent's proxies, its metrics
// and its log saw it.
type rollResult struct {
	// changed is when the pool's change reached the registry; start and
	// end are the roll's: the agent's SuspendProcesses and
	// ResumeProcesses of the group.
	changed, start, end time.Time
	// reconciles is how many times the agent's loop ran during the roll,
	// and how long they took in all; failed the passes whose roll failed,
	// firstFailure the first one's message.
	reconciles   int
	reconciled   time.Duration
	failed       int
	firstFailure string
	timedOut     bool
	// oldNodes are the pool's nodes before the roll, by name, with their
	// instances; oldRevision their instances' revision.
	oldNodes    map[string]string
	oldRevision string
	counter     *requestCounter
	requests    requests
	aws         map[string]int // the agent's AWS calls during the roll, by operation
	bridge      map[string]int // the bridge's AWS calls during the roll
	timeline    []awsCall
	// The agent's roll metrics.
	evicted, refused, forced int
	waits                    map[string]int
	// What the pool looks like after the roll.
	final finalState
	sla   nodes.SLA
	// The agent's VmHWM since the roll's change (the peak before, of its
	// first version's render and apply, reset), its most anonymous memory
	// sampled during the roll and its file pages then.
	peakRSS, peakAnon, fileAtPeak int64
}

type finalState struct {
	nodes, newRevision, marked int
	desired                    int
	suspended                  []string
}

func (r *rollResult) wall() time.Duration { return r.end.Sub(r.start) }

// roll makes the pool outdated through the registry, as an operator
// would, and waits while caravan-agent updates the pool's stack and rolls
// its nodes, until every old node is gone and the roll has ended.
func (w *world) roll(ctx context.Context) (*rollResult, error) {
	res := &rollResult{oldNodes: map[string]string{}}
	list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
	if err != nil {
		return nil, err
	}
	for _, n := range list.Items {
		res.oldNodes[n.Name] = nodes.InstanceID(n.Spec.ProviderID)
	}
	if res.oldRevision, err = w.revisionOf(ctx, slices.Collect(maps.Values(res.oldNodes))[0]); err != nil {
		return nil, err
	}
	if res.sla, err = rollSLA(); err != nil {
		return nil, err
	}
	before, err := w.agent.reconcileMetrics(ctx)
	if err != nil {
		return nil, err
	}
	if err := w.agent.resetPeak(); err != nil {
		return nil, fmt.Errorf("resetting the agent's peak RSS: %w", err)
	}
	sampled := sampleMemory(ctx, w.agent.proc.Pid(), res)
	bridge0 := w.bridgeCalls.Snapshot()
	res.changed = time.Now()
	if _, _, err := w.fleet.admin.PatchNodePool(ctx, clusterID, pool, map[string]any{"instance_types": []string{newInstanceType}}, ""); err != nil {
		return nil, fmt.Errorf("changing the pool's instance type: %w", err)
	}
	host.Progress("changed the pool's instance type to %s: %d nodes outdated", newInstanceType, len(res.oldNodes))
	if err := w.waitRolled(ctx, res); err != nil {
		return nil, err
	}
	if err := sampled(); err != nil {
		return nil, err
	}
	after, err := w.agent.reconcileMetrics(ctx)
	if err != nil {
		return nil, err
	}
	res.reconciles, res.reconciled = int(after.count-before.count), time.Duration((after.sum-before.sum)*float64(time.Second))
	if res.failed, res.firstFailure, err = w.rollFailures(ctx, res.changed); err != nil {
		return nil, err
	}
	res.counter = countRequests(w.agent.kube.Requests(res.changed, time.Time{}))
	res.requests = res.counter.between(res.start, res.end)
	res.timeline = w.agent.aws.between(res.changed, res.end)
	res.aws = map[string]int{}
	for _, c := range w.agent.aws.between(res.start, res.end) {
		res.aws[c.Op]++
	}
	if res.evicted, res.refused, res.forced, res.waits, err = w.agent.rollMetrics(ctx); err != nil {
		return nil, err
	}
	res.bridge = diff(w.bridgeCalls.Snapshot(), bridge0)
	if res.final, err = w.finalState(ctx, res.oldRevision); err != nil {
		return nil, err
	}
	return res, nil
}

// waitRolled waits until no old node is left and the agent has resumed
// the group's AZRebalance, which ends a roll; it stops at rollLimit, or
// when no old node went for stallLimit.
func (w *world) waitRolled(ctx context.Context, res *rollResult) error {
	lastReport, lastChange, left := time.Now(), time.Now(), len(res.oldNodes)
	for {
		list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
		if err != nil {
			return err
		}
		old := 0
		for _, n := range list.Items {
			if _, isOld := res.oldNodes[n.Name]; isOld {
				old++
			}
		}
		if old != left {
			left, lastChange = old, time.Now()
		}
		calls := w.agent.aws.between(res.changed, time.Now())
		for _, c := range calls {
			if c.Op == "SuspendProcesses" && res.start.IsZero() {
				res.start = c.At
			}
			if c.Op == "ResumeProcesses" && !res.start.IsZero() && left == 0 {
				res.end = c.At
				return nil
			}
		}
		if time.Since(res.changed) > rollLimit(len(res.oldNodes)) || time.Since(lastChange) > stallLimit {
			res.timedOut, res.end = true, time.Now()
			host.Progress("the roll stopped: %d nodes still outdated (the agent's log: %s)", left, w.agent.proc.LogPath)
			if res.start.IsZero() {
				res.start = res.changed
			}
			return nil
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			host.Progress("%d of %d nodes outdated", left, len(res.oldNodes))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// rollSLA is the drain SLA the agent reads from the cluster's config
// items.
func rollSLA() (nodes.SLA, error) {
	settings := nodes.SettingsOf("test", rollItems(time.Minute), map[string]string{pool: "new"})
	a := api.Assignment{
		Cluster: api.AssignedCluster{ID: clusterID, Region: region, Environment: "test"},
		NodePools: []api.AssignedNodePool{{Name: pool, Profile: "worker-default", InstanceTypes: []string{instanceType},
			MinSize: 1, MaxSize: 1 + surgeRoom, DiscountStrategy: api.DiscountNone}},
	}
	cfg, err := settings.Config(a, false)
	if err != nil || len(cfg.Pools) != 1 {
		return nodes.SLA{}, fmt.Errorf("the roll's config: %v", err)
	}
	return cfg.Pools[0].SLA, nil
}

// sampleMemory samples the agent's memory until the returned function is
// called, which records the peaks in res.
func sampleMemory(ctx context.Context, pid int, res *rollResult) func() error {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			m, err := host.MemoryOf(pid, "caravan-agent")
			if err != nil {
				done <- err
				return
			}
			res.peakRSS = m.Peak
			if m.Anon > res.peakAnon {
				res.peakAnon, res.fileAtPeak = m.Anon, m.File
			}
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-tick.C:
			}
		}
	}()
	return func() error { stop(); return <-done }
}

// stallLimit bounds the time without a node replaced, which takes seconds
// with the scaled SLA.
const stallLimit = time.Minute

// rollLimit bounds the roll itself: 8 minutes for 50 nodes, as long again
// for every 50 more.
func rollLimit(nodes int) time.Duration { return time.Duration(max(nodes, 50)) * 8 * time.Minute / 50 }

// rollFailed starts the message of the agent's Event for a pass whose
// roll failed.
const rollFailed = "Replacing outdated nodes failed"

// rollFailures counts the agent's failed roll passes since from, by its
// Events on the ClusterConfig, and gives the first one's message.
func (w *world) rollFailures(ctx context.Context, from time.Time) (int, string, error) {
	list, err := w.cp.Client.EventsV1().Events("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, "", err
	}
	n, first, firstAt := 0, "", time.Time{}
	for i := range list.Items {
		e := &list.Items[i]
		if !strings.HasPrefix(e.Note, rollFailed) || eventTime(e).Before(from) {
			continue
		}
		// A core/v1 Event counts its repeats in count, an events/v1 one
		// in its series.
		switch {
		case e.Series != nil:
			n += int(e.Series.Count)
		default:
			n += max(int(e.DeprecatedCount), 1)
		}
		if firstAt.IsZero() || eventTime(e).Before(firstAt) {
			first, firstAt = e.Note, eventTime(e)
		}
	}
	return n, first, nil
}

func diff(after, before map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// finalState checks the pool after the roll: its nodes, their instances'
// revisions, the group's size and processes.
func (w *world) finalState(ctx context.Context, oldRevision string) (finalState, error) {
	var st finalState
	g, err := w.group(ctx)
	if err != nil {
		return st, fmt.Errorf("describing the group after the roll: %w", err)
	}
	st.desired = int(aws.ToInt32(g.DesiredCapacity))
	for _, p := range g.SuspendedProcesses {
		st.suspended = append(st.suspended, aws.ToString(p.ProcessName))
	}
	var ids []string
	for _, i := range g.Instances {
		ids = append(ids, aws.ToString(i.InstanceId))
	}
	revisions, err := w.revisions(ctx, ids)
	if err != nil {
		return st, err
	}
	list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
	if err != nil {
		return st, err
	}
	st.nodes = len(list.Items)
	for _, n := range list.Items {
		if r := revisions[nodes.InstanceID(n.Spec.ProviderID)]; r != "" && r != oldRevision {
			st.newRevision++
		}
		if n.Labels[nodes.LifecycleLabel] != "" {
			st.marked++
		}
	}
	slices.Sort(st.suspended)
	return st, nil
}

// group is the pool's auto scaling group, which the agent's node pool
// stack made: the one tagged with the cluster and the pool.
func (w *world) group(ctx context.Context) (astypes.AutoScalingGroup, error) {
	pages := autoscaling.NewDescribeAutoScalingGroupsPaginator(w.asg, &autoscaling.DescribeAutoScalingGroupsInput{})
	for pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return astypes.AutoScalingGroup{}, err
		}
		for _, g := range out.AutoScalingGroups {
			tags := map[string]string{}
			for _, t := range g.Tags {
				tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
			}
			if tags[nodes.TagClusterID] == clusterID && tags[nodes.TagNodePool] == pool {
				return g, nil
			}
		}
	}
	return astypes.AutoScalingGroup{}, fmt.Errorf("no auto scaling group is tagged with pool %s", pool)
}

// revisions are the pool revisions the instances are tagged with, by id.
func (w *world) revisions(ctx context.Context, ids []string) (map[string]string, error) {
	out := map[string]string{}
	pages := ec2.NewDescribeInstancesPaginator(w.ec2, &ec2.DescribeInstancesInput{InstanceIds: ids})
	for len(ids) > 0 && pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				for _, t := range i.Tags {
					if aws.ToString(t.Key) == nodes.TagRevision {
						out[aws.ToString(i.InstanceId)] = aws.ToString(t.Value)
					}
				}
			}
		}
	}
	return out, nil
}

// revisionOf is the revision an instance is tagged with.
func (w *world) revisionOf(ctx context.Context, id string) (string, error) {
	revisions, err := w.revisions(ctx, []string{id})
	if err != nil || revisions[id] == "" {
		return "", fmt.Errorf("reading the revision of instance %s: %v", id, err)
	}
	return revisions[id], nil
}

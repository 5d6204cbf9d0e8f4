//go:build linux && !rollerproc

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// rollResult is what the roll did, as its driver saw it.
type rollResult struct {
	start, end time.Time
	passes     []time.Duration
	errors     []string
	timedOut   bool
	// oldNodes are the pool's nodes before the roll, by name, with their
	// instances.
	oldNodes map[string]string
	counter  *requestCounter
	requests requests
	kinds    map[string]int // the roller's API requests by kind
	aws      map[string]int // the roller's AWS calls by operation
	bridge   map[string]int // the bridge's AWS calls during the roll
	timeline []awsCall
	// The roller's metrics.
	evicted, refused, forced int
	waits                    map[string]int
	// What the pool looks like after the roll.
	final finalState
	sla   nodes.SLA
	// The roller's process's VmHWM at the end of the roll, its most
	// anonymous memory and its file pages then.
	peakRSS, peakAnon, fileAtPeak int64
}

type finalState struct {
	nodes, newRevision, marked int
	desired                    int
	suspended                  []string
}

func (r *rollResult) wall() time.Duration { return r.end.Sub(r.start) }

// roll makes the pool outdated and runs the agent's roller in a process
// of its own until every node is replaced (rollerProcess), so that its
// memory is measured alone.
func (w *world) roll(ctx context.Context) (*rollResult, error) {
	res := &rollResult{oldNodes: map[string]string{}}
	list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
	if err != nil {
		return nil, err
	}
	for _, n := range list.Items {
		res.oldNodes[n.Name] = nodes.InstanceID(n.Spec.ProviderID)
	}
	if err := w.outdate(ctx); err != nil {
		return nil, err
	}
	bridge0 := w.bridgeCalls.Snapshot()
	out, err := w.runRoller(ctx, len(res.oldNodes))
	if err != nil {
		return nil, err
	}
	res.start, res.end, res.passes, res.errors, res.timedOut = out.Start, out.End, out.Passes, out.Errors, out.TimedOut
	res.counter = &requestCounter{entries: out.Requests}
	res.requests = res.counter.between(res.start, res.end)
	res.kinds = res.counter.snapshot()
	res.aws, res.timeline = out.AWS, out.Timeline
	res.evicted, res.refused, res.forced, res.waits = out.Evicted, out.Refused, out.Forced, out.Waits
	res.sla, res.peakRSS, res.peakAnon, res.fileAtPeak = out.SLA, out.PeakRSS, out.PeakAnon, out.FileAtPeak
	res.bridge = diff(w.bridgeCalls.Snapshot(), bridge0)
	if res.final, err = w.finalState(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// buildRoller builds the roller's process: this package with the
// rollerproc tag, without the world.
func buildRoller(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "roller")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "rollerproc", "-o", bin, "github.com/caravan-gitops/caravan/test/bench/roll")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the roller's process: %w\n%s", err, out)
	}
	return bin, nil
}

// runRoller starts the roller's process and waits for
// its roll.
func (w *world) runRoller(ctx context.Context, oldNodes int) (rollerOutput, error) {
	var out rollerOutput
	spec := rollerSpec{Kubeconfig: w.cp.Kubeconfig, AWSEndpoint: w.moto.Endpoint, Nodes: w.opts.nodes, OldNodes: oldNodes,
		Poll: w.opts.poll, Dir: w.dir}
	specPath := filepath.Join(w.dir, "roller-spec.json")
	if err := writeJSON(specPath, spec); err != nil {
		return out, err
	}
	exe, err := buildRoller(ctx, w.dir)
	if err != nil {
		return out, err
	}
	cmd := exec.CommandContext(ctx, exe, specPath)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return out, fmt.Errorf("the roller's process: %w (its log: %s)", err, filepath.Join(w.dir, "roller.log"))
	}
	b, err := os.ReadFile(filepath.Join(w.dir, rollerOutputFile))
	if err != nil {
		return out, err
	}
	return out, json.Unmarshal(b, &out)
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
func (w *world) finalState(ctx context.Context) (finalState, error) {
	var st finalState
	groups, err := w.asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{w.group}})
	if err != nil || len(groups.AutoScalingGroups) != 1 {
		return st, fmt.Errorf("describing the group after the roll: %v", err)
	}
	g := groups.AutoScalingGroups[0]
	st.desired = int(aws.ToInt32(g.DesiredCapacity))
	for _, p := range g.SuspendedProcesses {
		st.suspended = append(st.suspended, aws.ToString(p.ProcessName))
	}
	var ids []string
	for _, i := range g.Instances {
		ids = append(ids, aws.ToString(i.InstanceId))
	}
	revisions := map[string]string{}
	pages := ec2.NewDescribeInstancesPaginator(w.ec2, &ec2.DescribeInstancesInput{InstanceIds: ids})
	for len(ids) > 0 && pages.HasMorePages() {
		out, err := pages.NextPage(ctx)
		if err != nil {
			return st, err
		}
		for _, r := range out.Reservations {
			for _, i := range r.Instances {
				for _, t := range i.Tags {
					if aws.ToString(t.Key) == nodes.TagRevision {
						revisions[aws.ToString(i.InstanceId)] = aws.ToString(t.Value)
					}
				}
			}
		}
	}
	list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
	if err != nil {
		return st, err
	}
	st.nodes = len(list.Items)
	for _, n := range list.Items {
		if revisions[nodes.InstanceID(n.Spec.ProviderID)] == newRevision {
			st.newRevision++
		}
		if n.Labels[nodes.LifecycleLabel] != "" {
			st.marked++
		}
	}
	slices.Sort(st.suspended)
	return st, nil
}

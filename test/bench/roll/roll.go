//go:build linux

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/moto"
)

// rollLimit bounds the roll itself; stallLimit the time without a node
// replaced, which takes seconds with the scaled SLA.
const (
	rollLimit  = 8 * time.Minute
	stallLimit = time.Minute
)

func lastError(errs []string) string {
	if len(errs) == 0 {
		return "none"
	}
	return errs[len(errs)-1]
}

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
}

type finalState struct {
	nodes, newRevision, marked int
	desired                    int
	suspended                  []string
}

func (r *rollResult) wall() time.Duration { return r.end.Sub(r.start) }

// roll makes the pool outdated and drives the agent's roller until every
// node is replaced: one Pass, then a wait for the roller's Trigger, the
// next forecast force or drain_poll_interval, whichever comes first, as the
// agent's loop does while a roll is under way.
func (w *world) roll(ctx context.Context) (*rollResult, error) {
	res := &rollResult{oldNodes: map[string]string{}}
	list, err := w.cp.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: nodes.PoolLabel + "=" + pool})
	if err != nil {
		return nil, err
	}
	for _, n := range list.Items {
		res.oldNodes[n.Name] = nodes.InstanceID(n.Spec.ProviderID)
	}

	// The roller's parts, as agent.lead and the reconciler assemble them:
	// a direct controller-runtime client without client-side rate limits,
	// an Event recorder writing to the cluster, the agent's AWS access.
	counter := newRequestCounter()
	restCfg := rest.CopyConfig(w.cp.Config)
	restCfg.QPS, restCfg.Burst = -1, 0
	restCfg = counter.wrap(restCfg)
	kube, err := client.New(restCfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, err
	}
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(clientgoscheme.Scheme, "caravan-agent")
	awsCfg := w.moto.AWSConfig(region)
	describes := &describeCounter{}
	awsCfg.HTTPClient = describes.client()
	calls := moto.CountCalls(&awsCfg)
	timeline := &awsTimeline{}
	timeline.record(&awsCfg)
	fleet := (&cloud.AWS{Config: awsCfg, Endpoint: w.moto.Endpoint}).Fleet(clusterID, region)
	logFile, err := os.Create(filepath.Join(w.dir, "roller.log"))
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	reg := prometheus.NewRegistry()
	log := logr.FromSlogHandler(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.Level(-2)}))
	roller := nodes.NewRoller(kube, fleet, recorder, log, nodes.NewMetrics(reg))
	watcher, err := client.NewWithWatch(restCfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return nil, err
	}
	trigger := nodes.NewTrigger(watcher, log)
	roller.WatchedBy(trigger)
	trigger.Start(ctx)
	defer trigger.Stop()

	items := map[string]string{nodes.ConfigSurge: "1", nodes.ConfigCheckSpot: "false", nodes.ConfigPollInterval: w.opts.poll.String()}
	for k, v := range scaledSLA {
		items[k] = v
	}
	settings := nodes.SettingsOf("test", items, map[string]string{pool: newRevision})
	a := api.Assignment{
		Cluster: api.AssignedCluster{ID: clusterID, Region: region, Environment: "test"},
		NodePools: []api.AssignedNodePool{{Name: pool, Profile: "worker-default", InstanceTypes: []string{instanceType},
			MinSize: w.opts.nodes, MaxSize: w.opts.nodes + surgeRoom, DiscountStrategy: api.DiscountNone}},
	}
	cfg, err := settings.Config(a, false)
	if err != nil {
		return nil, err
	}
	if len(cfg.Pools) != 1 {
		return nil, fmt.Errorf("the roll's config has %d pools, want 1", len(cfg.Pools))
	}
	res.sla = cfg.Pools[0].SLA

	if err := w.outdate(ctx); err != nil {
		return nil, err
	}
	host.Progress("rolling %d nodes: a Pass after each change, forecast force or %s", len(res.oldNodes), settings.Poll())
	bridge0 := w.bridgeCalls.Snapshot()
	res.start = time.Now()
	var rolls []nodes.RollState
	rolled := false
	lastReport, lastChange, lastOutdated := res.start, res.start, -1
	for {
		t := time.Now()
		out, err := roller.Pass(ctx, cfg, rolls)
		res.passes = append(res.passes, time.Since(t))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			res.errors = append(res.errors, err.Error())
			if len(res.errors) > 100 {
				return nil, fmt.Errorf("the roller failed 100 times, last: %w", err)
			}
		}
		rolls = out.Rolls
		rolled = rolled || len(rolls) > 0
		outdated := -1
		for _, p := range out.Progress {
			if p.Name == pool {
				outdated = p.Outdated
			}
		}
		if rolled && len(rolls) == 0 && outdated == 0 && err == nil {
			break
		}
		if outdated != lastOutdated {
			lastOutdated, lastChange = outdated, time.Now()
		}
		if time.Since(res.start) > rollLimit || time.Since(lastChange) > stallLimit {
			res.timedOut = true
			host.Progress("the roll stopped: %d nodes still outdated; the last error: %s", outdated, lastError(res.errors))
			break
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			host.Progress("%d of %d nodes outdated", outdated, len(res.oldNodes))
		}
		wake, stop := roller.Wake(trigger, nodes.NextWake(out.Progress), settings.Poll())
		select {
		case <-wake:
		case <-ctx.Done():
		}
		stop()
	}
	res.end = time.Now()
	host.Progress("rolled in %s (%d passes)", res.wall().Round(100*time.Millisecond), len(res.passes))
	res.counter = counter
	res.requests = counter.between(res.start, res.end)
	res.kinds = counter.snapshot()
	res.aws = calls.Snapshot()
	if n := describes.count(); n > 0 {
		res.aws["EC2.DescribeInstances"] = n
	}
	res.bridge = diff(w.bridgeCalls.Snapshot(), bridge0)
	res.timeline = timeline.snapshot()
	res.evicted, res.refused, res.forced, res.waits = rollerMetrics(reg)
	if res.final, err = w.finalState(ctx); err != nil {
		return nil, err
	}
	// The Events go out in the background; a moment for the last ones.
	time.Sleep(time.Second)
	return res, nil
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

// rollerMetrics reads the roller's counters: evictions by result, forced
// deletions, and the waits by the rule that held a pod back.
func rollerMetrics(reg *prometheus.Registry) (evicted, refused, forced int, waits map[string]int) {
	waits = map[string]int{}
	families, err := reg.Gather()
	if err != nil {
		return 0, 0, 0, waits
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			v := int(m.GetCounter().GetValue())
			switch f.GetName() {
			case "caravan_agent_evictions_total":
				if labels["result"] == "evicted" {
					evicted = v
				} else {
					refused = v
				}
			case "caravan_agent_forced_deletions_total":
				forced = v
			case "caravan_agent_force_waits_total":
				waits[labels["rule"]] = v
			}
		}
	}
	return evicted, refused, forced, waits
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
	if len(ids) > 0 {
		out, err := w.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: ids})
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

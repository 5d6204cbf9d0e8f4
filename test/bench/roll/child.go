//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/moto"
)

// rollerSpec is what the roller's process is told: where the cluster and
// AWS are, and the pool it rolls.
type rollerSpec struct {
	Kubeconfig  string
	AWSEndpoint string
	Nodes       int
	OldNodes    int
	Poll        time.Duration
	// Dir takes the roller's log and its output.
	Dir string
}

// rollerOutput is what the roller's process saw of its roll.
type rollerOutput struct {
	Start, End time.Time
	Passes     []time.Duration
	Errors     []string
	TimedOut   bool
	Requests   []requestEntry
	AWS        map[string]int
	Timeline   []awsCall
	// The roller's metrics.
	Evicted, Refused, Forced int
	Waits                    map[string]int
	SLA                      nodes.SLA
	// PeakRSS is the process's VmHWM at the end of the roll; PeakAnon the
	// most anonymous memory (heap, stacks) sampled during it, FileAtPeak
	// the file pages (the binary) then.
	PeakRSS, PeakAnon, FileAtPeak int64
}

const rollerOutputFile = "roller-output.json"

// rollerProcess is the bench started again with -roller: the agent's
// roller alone in its process, built as agent.lead builds it, its passes
// driven as the agent's loop drives them.
func rollerProcess(specPath string) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec rollerSpec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rollLimit(spec.Nodes)+time.Minute)
	defer cancel()
	out, err := rollAsTheAgent(ctx, spec)
	if err != nil {
		return err
	}
	return writeJSON(filepath.Join(spec.Dir, rollerOutputFile), out)
}

// rollAsTheAgent makes the roller's parts as agent.lead and the reconciler
// assemble them (a direct controller-runtime client without client-side
// rate limits, an Event recorder writing to the cluster, the agent's AWS
// access, the Trigger) and runs one Pass, then a wait for the roller's
// wake rule (Roller.Wake: its Trigger, the next forecast force or
// drain_poll_interval, whichever comes first), as the agent's loop does
// while a roll is under way, until every node is replaced.
func rollAsTheAgent(ctx context.Context, spec rollerSpec) (rollerOutput, error) {
	var out rollerOutput
	restCfg, err := clientcmd.BuildConfigFromFlags("", spec.Kubeconfig)
	if err != nil {
		return out, err
	}
	restCfg.QPS, restCfg.Burst = -1, 0
	counter := &requestCounter{}
	restCfg = counter.wrap(restCfg)
	kube, err := client.New(restCfg, client.Options{Scheme: clientgoscheme.Scheme})
	if err != nil {
		return out, err
	}
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return out, err
	}
	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	if err := broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return out, err
	}
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(clientgoscheme.Scheme, "caravan-agent")
	awsCfg := (&moto.Server{Endpoint: spec.AWSEndpoint}).AWSConfig(region)
	describes := &describeCounter{}
	awsCfg.HTTPClient = describes.client()
	calls := moto.CountCalls(&awsCfg)
	timeline := &awsTimeline{}
	timeline.record(&awsCfg)
	fleet := (&cloud.AWS{Config: awsCfg, Endpoint: spec.AWSEndpoint}).Fleet(clusterID, region)
	logFile, err := os.Create(filepath.Join(spec.Dir, "roller.log"))
	if err != nil {
		return out, err
	}
	defer logFile.Close()
	reg := prometheus.NewRegistry()
	log := logr.FromSlogHandler(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.Level(-2)}))
	roller := nodes.NewRoller(kube, fleet, recorder, log, nodes.NewMetrics(reg))
	trigger := nodes.NewTrigger(restCfg, log)
	roller.WatchedBy(trigger)
	trigger.Start(ctx)
	defer trigger.Stop()

	settings, cfg, err := rollConfig(spec)
	if err != nil {
		return out, err
	}
	out.SLA = cfg.Pools[0].SLA
	host.Progress("rolling %d nodes: a Pass after each change, forecast force or %s", spec.OldNodes, settings.Poll())
	sampled := sampleMemory(ctx, &out)
	if err := drive(ctx, roller, trigger, settings, cfg, spec.OldNodes, &out); err != nil {
		return out, err
	}
	host.Progress("rolled in %s (%d passes)", out.End.Sub(out.Start).Round(100*time.Millisecond), len(out.Passes))
	if err := sampled(); err != nil {
		return out, err
	}
	out.Requests = counter.log()
	out.AWS = calls.Snapshot()
	if n := describes.count(); n > 0 {
		out.AWS["EC2.DescribeInstances"] = n
	}
	out.Timeline = timeline.snapshot()
	out.Evicted, out.Refused, out.Forced, out.Waits = rollerMetrics(reg)
	return out, nil
}

// rollConfig is the pool's roll as the agent reads it from its assignment
// and config items: the new revision, surge 1, the scaled SLA.
func rollConfig(spec rollerSpec) (nodes.Settings, nodes.RollConfig, error) {
	items := map[string]string{nodes.ConfigSurge: "1", nodes.ConfigCheckSpot: "false", nodes.ConfigPollInterval: spec.Poll.String()}
	for k, v := range scaledSLA {
		items[k] = v
	}
	settings := nodes.SettingsOf("test", items, map[string]string{pool: newRevision})
	a := api.Assignment{
		Cluster: api.AssignedCluster{ID: clusterID, Region: region, Environment: "test"},
		NodePools: []api.AssignedNodePool{{Name: pool, Profile: "worker-default", InstanceTypes: []string{instanceType},
			MinSize: spec.Nodes, MaxSize: spec.Nodes + surgeRoom, DiscountStrategy: api.DiscountNone}},
	}
	cfg, err := settings.Config(a, false)
	if err != nil {
		return settings, cfg, err
	}
	if len(cfg.Pools) != 1 {
		return settings, cfg, fmt.Errorf("the roll's config has %d pools, want 1", len(cfg.Pools))
	}
	return settings, cfg, nil
}

// drive runs the passes until the pool is rolled, it stalls, or the roll
// takes too long.
func drive(ctx context.Context, roller *nodes.Roller, trigger *nodes.Trigger, settings nodes.Settings, cfg nodes.RollConfig, oldNodes int, out *rollerOutput) error {
	out.Start = time.Now()
	var rolls []nodes.RollState
	rolled := false
	lastReport, lastChange, lastOutdated := out.Start, out.Start, -1
	for {
		t := time.Now()
		pass, err := roller.Pass(ctx, cfg, rolls)
		out.Passes = append(out.Passes, time.Since(t))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			out.Errors = append(out.Errors, err.Error())
			if len(out.Errors) > 100 {
				return fmt.Errorf("the roller failed 100 times, last: %w", err)
			}
		}
		rolls = pass.Rolls
		rolled = rolled || len(rolls) > 0
		outdated := -1
		for _, p := range pass.Progress {
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
		if time.Since(out.Start) > rollLimit(oldNodes) || time.Since(lastChange) > stallLimit {
			out.TimedOut = true
			host.Progress("the roll stopped: %d nodes still outdated; the last error: %s", outdated, lastError(out.Errors))
			break
		}
		if time.Since(lastReport) >= 15*time.Second {
			lastReport = time.Now()
			host.Progress("%d of %d nodes outdated", outdated, oldNodes)
		}
		wake, stop := roller.Wake(trigger, nodes.NextWake(pass.Progress), settings.Poll())
		select {
		case <-wake:
		case <-ctx.Done():
		}
		stop()
	}
	out.End = time.Now()
	// The Events go out in the background; a moment for the last ones.
	time.Sleep(time.Second)
	return nil
}

// sampleMemory samples the process's memory until the returned function
// is called, which records the peaks in out.
func sampleMemory(ctx context.Context, out *rollerOutput) func() error {
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			m, err := host.MemoryOf(os.Getpid(), "the roller")
			if err != nil {
				done <- err
				return
			}
			out.PeakRSS = m.Peak
			if m.Anon > out.PeakAnon {
				out.PeakAnon, out.FileAtPeak = m.Anon, m.File
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

func lastError(errs []string) string {
	if len(errs) == 0 {
		return "none"
	}
	return errs[len(errs)-1]
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

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

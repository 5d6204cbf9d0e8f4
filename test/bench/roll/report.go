//go:build linux

package main

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The goals.
const (
	goalBoundRatio = 1.10
	// goalDrainRequests is the most requests per second to the API server
	// while a node drains.
	goalDrainRequests = 10
	// goalPeakRSS is the most memory the agent may hold during the roll.
	goalPeakRSS = 100 << 20
)

// sectionName names the roll's section of BENCHMARKS.md: the goal's 50
// nodes "roll", other sizes their own.
func sectionName(nodes int) string {
	if nodes == 50 {
		return "roll"
	}
	return fmt.Sprintf("roll-%d", nodes)
}

// command is how the section's figures were made.
func (r *report) command() string {
	if r.opts.nodes == 50 {
		return "go run ./test/bench/roll -out BENCHMARKS.md"
	}
	return fmt.Sprintf("go run ./test/bench/roll -nodes %d -out BENCHMARKS.md", r.opts.nodes)
}

type report struct {
	opts        options
	started     time.Time
	elapsed     time.Duration
	kubeVersion string
	motoVersion string
	nodesUp     time.Duration
	podsUp      time.Duration
	pods        int
	podsPerNode []int
	budgets     int
	roll        *rollResult
	analysis    *analysis
}

func newReport(o options) *report { return &report{opts: o, started: time.Now().UTC()} }

// complete says whether the roll replaced every node and left the pool as
// it found it.
func (r *report) complete() bool {
	if r.roll == nil || r.analysis == nil || r.roll.timedOut {
		return false
	}
	f := r.roll.final
	return f.nodes == r.opts.nodes && f.newRevision == r.opts.nodes && f.marked == 0 && f.desired == r.opts.nodes && len(f.suspended) == 0
}

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName(r.opts.nodes))
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	fmt.Fprintf(&b, "## Nodes: a simulated roll of a %d-node pool with %s pods under PDBs\n\n", r.opts.nodes, host.Thousands(r.opts.nodes*replicas))
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `%s` (%s in all), "+
		"with kube-apiserver %s, kube-scheduler, kube-controller-manager and kwok (test/controlplane) and moto %s (test/moto), "+
		"each its own process on the same cores; caravan-agent runs in a process of its own too, caravan-central (SQLite) and the git server in the bench's.\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.command(), r.elapsed.Round(time.Second), r.kubeVersion, r.motoVersion)
	if r.roll == nil || r.analysis == nil {
		b.WriteString("The roll did not run.\n\n" + endMarker + "\n")
		return b.String()
	}
	r.writeSetup(&b)
	r.writeGoals(&b)
	r.writeTime(&b)
	r.writeRules(&b)
	r.writeRequests(&b)
	r.writeMethod(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *report) writeSetup(b *strings.Builder) {
	count := map[string]int{}
	deployments := 0
	for _, a := range apps(r.opts.nodes) {
		count[a.label()]++
		deployments++
		if a.paired {
			deployments++
		}
	}
	fmt.Fprintf(b, "The pool: a node pool of %d `%s` instances (min %d, max %d) in the registry, whose group caravan-agent's node pool stack made in moto "+
		"(CloudFormation), its launch template tagging each instance with the pool's revision (`%s`); test/cloudbridge keeps a kwok Node for each running instance "+
		"(a pass every %s); the %d Nodes were Ready %s after the agent started. "+
		"On them, %d workloads of %d pods (%s pods, 50m CPU each, `terminationGracePeriodSeconds: %d`, %d Deployments) in %d namespaces, %d to %d pods on a node, "+
		"and %d PodDisruptionBudgets, one per workload: "+
		"%d `minAvailable: 100%%`, which refuses every eviction, so each of its pods is forced once the drain SLA allows it, its pods paired on nodes "+
		"(two Deployments of 5, part b requiring a node with a pod of part a, neither part two pods on one node: draining the node forces two pods of one budget, "+
		"the second held by the sibling rules); %d `maxUnavailable: 1`, paired the same way (the second pod's eviction is refused until the first one's replacement is Ready); "+
		"%d `maxUnavailable: 1`, its pods spread by the scheduler; %d workloads have none. "+
		"All pods were Ready %s after the Deployments were created; the roll began once every pod was older than `drain_min_pod_lifetime`.\n\n",
		r.opts.nodes, instanceType, r.opts.nodes, r.opts.nodes+surgeRoom, nodes.TagRevision, r.opts.bridgeInterval, r.opts.nodes,
		seconds(r.nodesUp), r.opts.nodes, replicas, host.Thousands(r.pods), podTerminationGrace, deployments, r.opts.nodes/5, r.podsPerNode[0], r.podsPerNode[len(r.podsPerNode)-1],
		r.budgets, count[kindStrict+", paired"], count[kindTolerant+", paired"], count[kindTolerant], count[kindNone], seconds(r.podsUp))
	fmt.Fprintf(b, "The roll: the pool's instance type changed to `%s` in the registry, as an operator would; caravan-agent, the binary as `make build` makes it, "+
		"learns it from its assignment, updates the pool's stack (a new launch template version, a new revision) and rolls the nodes "+
		"with its own loop (`node_update_surge: 1`, the taint `PreferNoSchedule`): its reconciler wakes by `Roller.Wake`, the roller's `nodes.Trigger` "+
		"(informers of the pools' Nodes, the pods and the budgets, whose cache the passes read once it shows the roller's own writes), "+
		"the next forecast force or `drain_poll_interval: %s`, whichever comes first. The roll runs from the agent's SuspendProcesses of the group "+
		"to its ResumeProcesses; the change reached the agent and its stack was updated in %s before it.\n\n",
		newInstanceType, r.opts.poll, seconds(r.roll.start.Sub(r.roll.changed)))
	b.WriteString("| Drain SLA rule | `config-defaults.yaml` (non-production) | In this roll |\n|---|---:|---:|\n")
	for _, k := range slaOrder {
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", k, unscaledSLA[k], scaledSLA[k])
	}
	fmt.Fprintf(b, "| `drain_poll_interval` | 30s | %s |\n\n", r.opts.poll)
	b.WriteString("Scaled 1 h to 1 s; the force interval, 5 min there, is 1 s here. The roller keeps the drain's start and the last force " +
		"as RFC 3339 annotations to the nanosecond; the pods' creation and readiness the API keeps in whole seconds.\n\n")
}

func (r *report) writeGoals(b *strings.Builder) {
	rr, an := r.roll, r.analysis
	wall := rr.wall()
	ratio := float64(wall) / float64(an.bound)
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	fmt.Fprintf(b, "| 1. Total time of the roll beside the lower bound the rules allow | %s vs %s (%+.0f%%) | within 10%% | %s |\n",
		seconds(wall), seconds(an.bound), (ratio-1)*100, yesNo(ratio <= goalBoundRatio && r.complete()))
	fmt.Fprintf(b, "| 2. Forced deletions before every rule allowed them, on the timestamps the rules read (whole seconds) | %d of %d | 0 | %s |\n",
		an.recorded.forces, len(an.forces), yesNo(an.recorded.forces == 0))
	exact := fmt.Sprintf("%d of %d", countForces(an.exact), len(an.forces))
	if an.exact.total > 0 {
		exact += fmt.Sprintf(" (%s; the earliest %s early)", byRule(an.exact.byRule), ms(an.exact.earliest))
	}
	fmt.Fprintf(b, "| 2'. The same on the instants things happened (sub-second) | %s | 0 | %s |\n", exact, yesNo(an.exact.forces == 0))
	perSecond := float64(rr.requests.total) / wall.Seconds()
	draining := float64(an.drainRequests) / max(an.drainTime.Seconds(), 0.001)
	fmt.Fprintf(b, "| 3. Requests to the API server while a node drains (over the whole roll) | %.1f/s (%.1f/s: %s in %s; the busiest second %d) | ≤ %d/s | %s |\n",
		draining, perSecond, host.Thousands(rr.requests.total), seconds(wall), rr.requests.peak, goalDrainRequests, yesNo(draining <= goalDrainRequests))
	fmt.Fprintf(b, "| 4. Peak RSS of caravan-agent during the roll (VmHWM, reset when the pool changed: the whole agent, its roller's cache of the pools' Nodes, the pods and the budgets) | %s (at most %s anonymous: heap, stacks; %s file pages: the binary) | ≤ %s | %s |\n\n",
		host.MiB(rr.peakRSS), host.MiB(rr.peakAnon), host.MiB(rr.fileAtPeak), host.MiB(goalPeakRSS), yesNo(rr.peakRSS > 0 && rr.peakRSS <= goalPeakRSS))
	if !r.complete() {
		f := rr.final
		fmt.Fprintf(b, "**The roll did not complete**: after it, %d nodes in the pool, %d of a new revision, %d still labelled, desired capacity %d, suspended %v%s.\n\n",
			f.nodes, f.newRevision, f.marked, f.desired, f.suspended, map[bool]string{true: ", timed out", false: ""}[rr.timedOut])
	}
	if len(an.problems) > 0 {
		fmt.Fprintf(b, "Facts that did not fit together: %s.\n\n", strings.Join(an.problems, "; "))
	}
}

// countForces is the number of forces with any violation; v counts rule
// violations, one force may break several rules.
func countForces(v violations) int { return v.forces }

func (r *report) writeTime(b *strings.Builder) {
	rr, an := r.roll, r.analysis
	n := time.Duration(max(len(an.steps), 1))
	b.WriteString("### Where the time goes\n\n")
	fmt.Fprintf(b, "The roll replaces the nodes one after the other: each step surges the group by one instance, waits for its Node, drains the old node "+
		"with the fewest pods, terminates its instance and at once surges again for the next. Summed over the %d steps:\n\n", len(an.steps))
	b.WriteString("| Segment | Up to | Total | Per step | In the lower bound |\n|---|---|---:|---:|:-:|\n")
	var sum time.Duration
	for _, s := range an.segments {
		sum += s.took
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", s.name, s.who, seconds(s.took), ms(s.took/n), map[bool]string{true: "yes", false: ""}[s.inBound])
	}
	fmt.Fprintf(b, "| **the roll** | | **%s** | %s | |\n\n", seconds(sum), ms(sum/n))
	var forcedSteps, bound time.Duration
	var withForce int
	for _, s := range an.steps {
		if s.forced > 0 {
			withForce++
			forcedSteps += s.bound
		}
		bound += s.bound
	}
	fmt.Fprintf(b, "The lower bound is Σ over the steps of (surge → new node Ready) + (the least drain the rules allow), %s + %s = %s. "+
		"The least drain of a node is the time from its drain's start until its last pod could be gone: a pod without a budget leaves at once; "+
		"an evicted pod under a budget when its budget last began to allow a disruption before its eviction (the Eviction API holds it until then); "+
		"the forced pods one after the other in the order they were forced, the j-th at the latest of: drain start + `drain_grace_period`; "+
		"its creation + `drain_min_pod_lifetime`; the previous force on the node + `drain_force_evict_interval`; the last force in its budget on another "+
		"node + `drain_force_evict_interval`; after an earlier force q of its own budget on the node, q's instant in the bound + the wait q's aftermath "+
		"(q terminating, q's replacement younger than the sibling lifetimes, at least the force interval) imposed in the roll; "+
		"then the first instant from there at which no other pod of its budget is terminating or younger than the sibling lifetimes, "+
		"each sibling's age counted from the end of the second the API recorded for its creation or readiness "+
		"(the earliest instant from which anyone reading the API knows the age has passed). "+
		"Each pod then takes as long to go as it took in the roll (kwok ends a deleted pod at its deletionTimestamp). "+
		"%d of the %d nodes held a pod that had to be forced: their least drain was %s on average (of the grace period's %s), the others' %s.\n\n",
		seconds(an.segments[1].took), seconds(an.segments[3].took), seconds(an.bound),
		withForce, len(an.steps), ms(forcedSteps/time.Duration(max(withForce, 1))), rr.sla.GracePeriod,
		ms((bound-forcedSteps)/time.Duration(max(len(an.steps)-withForce, 1))))
	fmt.Fprintf(b, "Counted instead from the instants themselves, as the bench's watches saw them (less 50 ms), which the API keeps only to the second, "+
		"the bound would be %s and the roll %+.0f%% beside it: the difference is the API's whole seconds, which the scaling makes as long as the lifetimes "+
		"(1 s for 1 h); unscaled they are a 3,600th of them.\n\n",
		seconds(an.boundOnInstants), (float64(rr.wall())/float64(an.boundOnInstants)-1)*100)
	fmt.Fprintf(b, "The roller does not poll: after each pass the agent's loop waits for the roller's `nodes.Trigger` (watches of the pools' Nodes, of the counts of the budgets "+
		"its refused pods wait on, and of the pods of the node being drained), for the next forecast force, or at the latest for `drain_poll_interval` (%s), "+
		"whichever comes first; a refused pod is asked again only then, not on every pass. "+
		"The agent's loop ran %d times during the roll, %s on average (`caravan_agent_reconcile_duration_seconds`: each run reads the assignment it holds, "+
		"checks its stacks and makes one roll pass); %d roll passes failed. "+
		"When a drain empties a node, the same pass terminates its instance and surges the group again, so the old Node's removal overlaps the next launch.\n\n",
		r.opts.poll, rr.reconciles, ms(rr.reconciled/time.Duration(max(rr.reconciles, 1))), rr.failed)
	if rr.failed > 0 {
		fmt.Fprintf(b, "The first failed pass: `%s`.\n\n", rr.firstFailure)
	}
	var roller time.Duration
	for _, s := range an.segments {
		if s.who == "roller" {
			roller += s.took
		}
	}
	steps := max(len(an.steps), 1)
	fmt.Fprintf(b, "The roller's own part is %s a step: the watch's delay and one pass for each change it waits on, "+
		"whatever `drain_poll_interval` is.\n\n", ms(roller/time.Duration(steps)))
}

func (r *report) writeRules(b *strings.Builder) {
	rr, an := r.roll, r.analysis
	b.WriteString("### What the roll did under the rules\n\n")
	fmt.Fprintf(b, "%d pods left the old nodes, %d of them twice (a replacement that landed on a node not yet drained: the taint only prefers other nodes). "+
		"The roller's metrics: %d evictions passed, %d were refused by a budget, %d pods forced (%s). "+
		"Refusals held back by rule, counted once per decision: %s. Events written: %s.\n\n",
		an.podsMoved, an.movedTwice, rr.evicted, rr.refused, rr.forced, byRule(an.forcedByKind), byRule(rr.waits), byRule(an.events))
	fmt.Fprintf(b, "Each force (its `ForcedEviction` Event, timed by its DELETE's arrival at the counting proxy: the agent's Events, core/v1, keep whole seconds) is checked against every rule twice. On the timestamps the rules read: the node's "+
		"`caravan.io/drain-start` annotation, the previous force on the node and in the budget as `caravan.io/last-forced-drain` keeps it (the value the bench's watch saw on the node), "+
		"the pod's creationTimestamp, its siblings' creationTimestamps and Ready lastTransitionTimes: %d forces broke a rule. "+
		"On the instants things happened: the drain's start as the roller took it just before the PATCH that sets it, the previous forces' DELETEs, and what the watches saw "+
		"(creation, readiness, termination and end of each pod, given %s for the watch's delay): %d forces broke a rule%s.\n\n",
		countForces(an.recorded), ms(watchLag), countForces(an.exact), r.exactNote())
}

func (r *report) exactNote() string {
	an := r.analysis
	if an.exact.total == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s), the earliest %s before its instant. Every timestamp the rules read keeps whole seconds: `caravan.io/drain-start` and "+
		"`caravan.io/last-forced-drain` are written as the instant truncated to its second, and Kubernetes truncates creationTimestamp and "+
		"lastTransitionTime alike, so the grace period, the force interval and the lifetimes count from up to a second before they began; "+
		"at the SLA's real hours this is noise, at this bench's seconds it shows", byRule(an.exact.byRule), ms(an.exact.earliest))
}

func (r *report) writeRequests(b *strings.Builder) {
	rr := r.roll
	wall := rr.wall()
	b.WriteString("### Requests\n\n")
	fmt.Fprintf(b, "caravan-agent's API requests during the roll, all of them (its roller's, its reconciler's ClusterConfig reads and writes, its Events), through a counting proxy "+
		"in front of the API server that its kubeconfig points at (test/apicount; %s, %.1f/s):\n\n",
		host.Thousands(rr.requests.total), float64(rr.requests.total)/wall.Seconds())
	b.WriteString("| Request | Count | Per second |\n|---|---:|---:|\n")
	kinds := rr.requests.counts
	keys := slices.SortedFunc(maps.Keys(kinds), func(a, c string) int { return kinds[c] - kinds[a] })
	for _, k := range keys {
		fmt.Fprintf(b, "| %s | %s | %.1f |\n", k, host.Thousands(kinds[k]), float64(kinds[k])/wall.Seconds())
	}
	awsTotal := 0
	for _, v := range rr.aws {
		awsTotal += v
	}
	fmt.Fprintf(b, "\ncaravan-agent's AWS calls during the roll, through a recording proxy in front of moto (its `--aws-endpoint`): %s in all, %.1f/s: %s. "+
		"The cloud bridge, which plays the cloud provider and the kubelets, "+
		"made %s besides.\n\n", host.Thousands(awsTotal), float64(awsTotal)/wall.Seconds(), byRule(rr.aws), byRule(rr.bridge))
}

func (r *report) writeMethod(b *strings.Builder) {
	b.WriteString("### How it was measured\n\n")
	b.WriteString("The roll's time runs from caravan-agent's SuspendProcesses of the group, its first step, to its ResumeProcesses, its last. " +
		"During it the bench watches Pods, Nodes and PodDisruptionBudgets and notes when it saw each change (a pod created, Ready, terminating, gone; " +
		"a Node created, Ready, draining, gone; a budget's disruptionsAllowed), records the arrival of each of the agent's AWS calls " +
		"(SetDesiredCapacity, TerminateInstanceInAutoScalingGroup) and each of its API requests at the proxies; after it, it reads the agent's Events " +
		"(`DrainStarted`, `ForcedEviction`) from the API. Each old node is a step: the surge before its drain, the first new Node after that surge, " +
		"its drain's start (`caravan.io/drain-start`, taken just before the PATCH that sets it), the end of its last pod, its instance's termination, the end of its Node. " +
		"The segments of the steps add up to the roll's time; the lower bound adds up the infrastructure's part (a new node's launch) and the least drain " +
		"the rules allow, computed from those facts as above: what the rules and the workloads impose, without the roller's polls.\n\n")
}

func byRule(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range keys {
		name := k
		if name == "" {
			name = "?"
		}
		parts = append(parts, fmt.Sprintf("%s %s", host.Thousands(m[k]), name))
	}
	return strings.Join(parts, ", ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return seconds(d)
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

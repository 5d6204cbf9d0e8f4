//go:build linux

package main

import (
	"fmt"
	"github.com/caravan-gitops/caravan/agent/cloud"
	"maps"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The goal.
const (
	goalTime          = time.Second
	goalCallsPerStack = 1.0
	// sectionName names the stacks' section of BENCHMARKS.md.
	sectionName = "stacks"
)

type report struct {
	opts        options
	started     time.Time
	elapsed     time.Duration
	motoVersion string
	pools       []api.AssignedNodePool
	first       stepRun   // creates the 6 stacks
	noops       []stepRun // nothing to change
	change      stepRun   // one pool's instance type changed
	after       stepRun   // nothing to change, after the change
	statuses    map[string]string
}

func newReport(o options) *report { return &report{opts: o, started: time.Now().UTC()} }

func (r *report) walls() []time.Duration {
	var d []time.Duration
	for _, run := range r.noops {
		d = append(d, run.wall)
	}
	return d
}

// noopCalls is the calls of a no-op reconcile by operation, the mean over
// the runs, and whether every run made the same calls.
func (r *report) noopCalls() (map[string]float64, bool) {
	mean := map[string]float64{}
	same := true
	for _, run := range r.noops {
		for op, n := range run.calls {
			mean[op] += float64(n) / float64(len(r.noops))
		}
		same = same && maps.Equal(run.calls, r.noops[0].calls)
	}
	return mean, same
}

func (r *report) noopCallsPerStack() float64 {
	total := 0.0
	mean, _ := r.noopCalls()
	for _, n := range mean {
		total += n
	}
	return total / stacksInPlay
}

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	b.WriteString("## Stacks: no-op reconcile of a cluster with 5 node pools against moto\n\n")
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `go run ./test/bench/stacks -out BENCHMARKS.md` (%s in all), against moto %s "+
		"(`moto_server` of test/moto, its own process on 127.0.0.1, on the same cores).\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.elapsed.Round(time.Second), r.motoVersion)
	fmt.Fprintf(&b, "The reference templates of manifests/cloudformation (cluster.yaml: the VPC with 3 zones of subnets and NAT gateways, "+
		"security groups, IAM roles and the API server's load balancer; node-pool.yaml: a launch template and an auto scaling group) "+
		"are rendered by `agent/render` for the cluster `%s` (environment production, region %s; its assignment built by the registry's "+
		"`api.BuildAssignment`, its config items by `render.ConfigItems` from manifests/config-defaults.yaml) with 5 node pools of min 1, max 3: %s. "+
		"Each reconcile runs the agent's stack step in this process with the agent's own code, as `reconciler.updateStacks` does: the cluster's `cloud.Stacks` "+
		"from a `cloud.AWS` (new CloudFormation and S3 clients, as each reconcile makes them; its SDK configuration test/moto's, "+
		"with static credentials, rather than `cloud.LoadAWS`'s default chain) and `Stacks.ConvergeAll`: one `Stacks.Describe`, "+
		"the cluster stack's `Stacks.Converge`, then the 5 pool stacks rendered (`render.NodePoolStack`) with its outputs and converged in parallel, "+
		"at most %d at once, and the orphaned pools (`cloud.Orphans`). "+
		"The time is the step's, without `render.Stacks` (the cluster stack rendered and every pool template checked), which the reconcile runs before it "+
		"and which is listed apart. Calls are counted by operation in the SDK's middleware (`moto.CountCalls`), each waiter poll included. "+
		"`Stacks.PollMin`/`PollMax` are shortened from 5 s/30 s to %d ms/%d ms: moto completes each operation before it answers, and the SDK's waiters "+
		"poll first at once, so no poll delay elapses and the times of creates and updates are moto's own work. "+
		"Each no-op reconcile has a new version (a new commit), as when a commit changed the render's inputs but not the templates: "+
		"the reconciler runs the stack step only then, and a reconcile whose inputs did not change makes no AWS call at all. "+
		"Before the first reconcile, an uncounted `DescribeStacks` has moto load its CloudFormation emulation, which its first request otherwise pays (about a second). "+
		"The bench fails if a no-op reconcile changes a stack or makes any call but Describe*, Get* or List*.\n\n",
		clusterID, region, r.poolList(), cloud.StackConcurrency, pollMin.Milliseconds(), pollMax.Milliseconds())
	r.writeGoals(&b)
	r.writeReconciles(&b)
	r.writeNotes(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *report) poolList() string {
	var parts []string
	for _, p := range r.pools {
		kind := "on-demand"
		if p.DiscountStrategy == api.DiscountSpot {
			kind = "spot"
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s, %s)", p.Name, p.Profile, kind, strings.Join(p.InstanceTypes, ", ")))
	}
	return strings.Join(parts, "; ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r *report) writeGoals(b *strings.Builder) {
	walls := r.walls()
	med, p99 := median(walls), percentile(walls, 0.99)
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	met := yesNo(p99 <= goalTime)
	if med <= goalTime && p99 > goalTime {
		met = "median yes, p99 **no**"
	}
	fmt.Fprintf(b, "| No-op reconcile of the %d stacks of a cluster with 5 node pools (`Describe`, then `Converge` of each stack), median / p99 of %d | %s / %s | ≤ %s | %s |\n",
		stacksInPlay, len(walls), ms(med), ms(p99), seconds(goalTime), met)
	mean, _ := r.noopCalls()
	perStack := r.noopCallsPerStack()
	fmt.Fprintf(b, "| AWS API calls per stack of a no-op reconcile | %.2f (%s for %d stacks) | ≤ %.0f | %s |\n\n",
		perStack, callList(mean), stacksInPlay, goalCallsPerStack, yesNo(perStack <= goalCallsPerStack))
}

func (r *report) writeReconciles(b *strings.Builder) {
	b.WriteString("| Reconcile | Stack step | `render.Stacks` before it | AWS API calls | Calls per stack | Stacks changed |\n|---|---:|---:|---|---:|---|\n")
	row := func(name string, wall, render time.Duration, calls map[string]float64, changed string) {
		total := 0.0
		for _, n := range calls {
			total += n
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %.2f | %s |\n", name, duration(wall), duration(render), callList(calls), total/stacksInPlay, changed)
	}
	one := func(run stepRun) map[string]float64 {
		out := map[string]float64{}
		for op, n := range run.calls {
			out[op] = float64(n)
		}
		return out
	}
	changed := func(run stepRun, verb string) string {
		if len(run.changed) == 0 {
			return "none"
		}
		if len(run.changed) == stacksInPlay {
			return fmt.Sprintf("all %d %s", stacksInPlay, verb)
		}
		return "`" + strings.Join(run.changed, "`, `") + "` " + verb
	}
	row("1. first: every stack created", r.first.wall, r.first.render, one(r.first), changed(r.first, "created"))
	var renders []time.Duration
	for _, run := range r.noops {
		renders = append(renders, run.render)
	}
	mean, same := r.noopCalls()
	calls := fmt.Sprintf("2. no-op, median of %d (each run's calls: the same in all)", len(r.noops))
	if !same {
		calls = fmt.Sprintf("2. no-op, median of %d (calls: the mean; the runs differ)", len(r.noops))
	}
	row(calls, median(r.walls()), median(renders), mean, "none")
	var from string
	for _, p := range r.pools {
		if p.Name == changedPool {
			from = strings.Join(p.InstanceTypes, ", ")
		}
	}
	row(fmt.Sprintf("3. pool %s's instance type %s → %s", changedPool, from, changedType), r.change.wall, r.change.render, one(r.change), changed(r.change, "updated"))
	row("4. no-op after it", r.after.wall, r.after.render, one(r.after), changed(r.after, ""))
	b.WriteString("\n")
}

func (r *report) writeNotes(b *strings.Builder) {
	walls := r.walls()
	fmt.Fprintf(b, "The %d no-op reconciles: min %s, median %s, p90 %s, p99 %s, max %s. ", len(walls),
		ms(percentile(walls, 0)), ms(median(walls)), ms(percentile(walls, 0.9)), ms(percentile(walls, 0.99)), ms(percentile(walls, 1)))
	b.WriteString("A no-op makes one call whatever the number of pools: `Describe` lists the account's stacks in the region (one page here; " +
		"an account with more stacks than a page holds takes a call per page), and each `Converge` finds the digest of its rendered template " +
		"in the stack's `" + "caravan.io/template-digest" + "` tag of that listing and calls nothing.")
	if d := r.first.calls["CloudFormation.DescribeStacks"]; d == 1+2*len(r.first.changed) {
		fmt.Fprintf(b, " A stack created or updated costs 3 calls on moto: the `CreateStack` or `UpdateStack`, the waiter's first poll "+
			"(`DescribeStacks` of the stack, complete at once on moto; on AWS a poll each %s to %s until it is), and a second `DescribeStacks` "+
			"of the stack, which `Stacks.settled` makes to read its outputs and status after the waiter returned.", "5 s", "30 s")
	}
	b.WriteString("\n\n")
}

// callList writes calls by operation, as "1 × `CloudFormation.DescribeStacks`".
func callList(calls map[string]float64) string {
	if len(calls) == 0 {
		return "none"
	}
	var parts []string
	for _, op := range slices.Sorted(maps.Keys(calls)) {
		n := calls[op]
		count := fmt.Sprintf("%.0f", n)
		if math.Abs(n-math.Round(n)) > 1e-9 {
			count = fmt.Sprintf("%.2f", n)
		}
		parts = append(parts, fmt.Sprintf("%s × `%s`", count, op))
	}
	return strings.Join(parts, " + ")
}

func median(d []time.Duration) time.Duration { return percentile(d, 0.5) }

// percentile of durations, nearest rank: p99 of 20 is the slowest.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// duration is ms under a second, else seconds.
func duration(d time.Duration) string {
	if d < time.Second {
		return ms(d)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.0f s", d.Seconds()) }

//go:build linux

package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The goals.
const (
	goalCommit = 2 * time.Second
	goalSteady = 50 * time.Millisecond
	goalRSS    = 100 << 20
	// sectionName names the agent's section of BENCHMARKS.md.
	sectionName = "agent"
)

type report struct {
	opts         options
	started      time.Time
	elapsed      time.Duration
	kubeVersion  string
	clusterStart time.Duration
	applies      applyComparison
	reconciles   reconciles
	process      processRun
	renders      []renderRow
	kustomizeErr string
}

func newReport(o options) *report { return &report{opts: o, started: time.Now().UTC()} }

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	b.WriteString("## Agent: 1,000 objects against a real kube-apiserver\n\n")
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `go run ./test/bench/agent -out BENCHMARKS.md` (%s in all), "+
		"against kube-apiserver %s with etcd, kube-controller-manager, kube-scheduler and kwok nodes (test/controlplane), "+
		"beside kubectl %s and kustomize %s.\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.elapsed.Round(time.Second),
		r.kubeVersion, r.applies.kubectlVersion, kustomizeVersion)
	fmt.Fprintf(&b, "The config repo is generated: %s objects (%d ConfigMaps, %d Deployments of 1 replica, %d Services, %d Roles and %d RoleBindings) "+
		"in %d namespaces, plus the %d Namespaces, %s objects applied; its ConfigMaps and Deployments use `${VAR}`s. "+
		"The agent's parts run in this process with the agent's own wiring (`agent/apply`, `agent/render`, `agent/reconciler`, "+
		"its rest.Config without client-side rate limit, as controller-runtime's GetConfig gives it in a pod), "+
		"against the real git server (`git http-backend`) and caravan-central on SQLite; "+
		"for goal 4 `caravan-agent` runs as its own process on a second, empty cluster. "+
		"Every timed step starts once the machine is quiet (under 0.15 cores busy for a second), so that it does not share the 2 cores "+
		"with controllers still busy with the step before.\n\n",
		host.Thousands(benchObjects), namespaces*configMapsPerNS, namespaces*deploymentsPerNS, namespaces*servicesPerNS,
		namespaces*rolesPerNS, namespaces*rolesPerNS, namespaces, namespaces, host.Thousands(appliedObjects))
	r.writeGoals(&b)
	r.writeApplies(&b)
	r.writeReconciles(&b)
	r.writeProcess(&b)
	r.writeRenders(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *report) steadyMedian() time.Duration { return median(r.reconciles.steady) }
func (r *report) steadyP99() time.Duration    { return percentile(r.reconciles.steady, 0.99) }

// commitMedian is the median reconcile of one kind of commit.
func (r *report) commitMedian(kind string) (time.Duration, int) {
	var d []time.Duration
	for _, c := range r.reconciles.commits {
		if c.kind == kind {
			d = append(d, c.wall)
		}
	}
	return median(d), len(d)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (r *report) writeGoals(b *strings.Builder) {
	a, rc, p := r.applies, r.reconciles, r.process
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	fmt.Fprintf(b, "| 1. First apply of %s objects: the agent (`Applier.Apply`) vs `kubectl apply --server-side` | %s vs %s (%.2f×) | ≤ kubectl | %s |\n",
		host.Thousands(a.objects), seconds(a.agentFirst.wall), seconds(a.kubectlFirst.wall), ratio(a.agentFirst.wall, a.kubectlFirst.wall),
		yesNo(a.agentFirst.wall <= a.kubectlFirst.wall))
	readme, n := r.commitMedian(commitReadme)
	comment, _ := r.commitMedian(commitComment)
	fmt.Fprintf(b, "| 2. New commit, no object changed: one whole `Reconcile`, median of %d of each kind: %s (head, fetch, digest of the inputs, status) / %s (the same, render, digest of the objects) | %s / %s | ≤ %s | %s |\n",
		n, commitReadme, commitComment, seconds2(readme), seconds2(comment), seconds(goalCommit), yesNo(max(readme, comment) <= goalCommit))
	steadyMet := yesNo(r.steadyMedian() <= goalSteady)
	if r.steadyMedian() <= goalSteady && r.steadyP99() > goalSteady {
		steadyMet = "median yes, p99 **no**"
	}
	fmt.Fprintf(b, "| 3. Nothing changed: one `Reconcile` (ClusterConfig metadata read, branch head, decision, status report), median / p99 of %d | %s / %s | ≤ %s | %s |\n",
		len(rc.steady), ms(r.steadyMedian()), ms(r.steadyP99()), ms(goalSteady), steadyMet)
	fmt.Fprintf(b, "| 4. Peak RSS (VmHWM) of the `caravan-agent` process up to its first version of %s objects, healthy | %s | ≤ %s | %s |\n",
		host.Thousands(appliedObjects), mib(p.peak), mib(goalRSS), yesNo(p.peak > 0 && p.peak <= goalRSS))
	b.WriteString("\n")
}

func (r *report) writeApplies(b *strings.Builder) {
	a := r.applies
	b.WriteString("### 1. First apply, beside kubectl\n\n")
	fmt.Fprintf(b, "kubectl applies the rendered objects from one file (`kubectl apply --server-side -f`, its discovery cached in a fresh `KUBECACHEDIR`), "+
		"into namespaces `%s-*`; the agent's `apply.Applier` (a new one, so its discovery is part of its first apply) applies the same objects, "+
		"rendered from the same repo, into `%s-*`. kubectl went first; the agent's apply started once kubectl's objects were all healthy "+
		"and the machine was quiet. CPU is what each part used during the apply: the client (kubectl, or this process for the agent), "+
		"kube-apiserver, etcd, and the controllers with kwok. Each row is one apply: on a shared machine a single apply's wall time "+
		"varies from run to run by tens of percent, so a ratio near 1 decides little; the request counts do not vary.\n\n", kubectlNS, inProcessNS)
	b.WriteString("| Apply | Wall time | Requests | CPU: client | kube-apiserver | etcd | controllers, kwok | Result |\n|---|---:|---|---:|---:|---:|---:|---|\n")
	row := func(name string, run applyRun, client time.Duration, requests string) {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", name, seconds2(run.wall), requests,
			seconds(client), seconds(run.cpu.apiserver), seconds(run.cpu.etcd), seconds(run.cpu.control), run.summary)
	}
	row("kubectl, first (empty namespaces)", a.kubectlFirst, a.kubectlFirst.client, fmt.Sprintf("%s apply PATCH, one at a time", host.Thousands(appliedObjects)))
	row("agent, first (empty namespaces)", a.agentFirst, a.agentFirst.cpu.self, a.agentFirst.requests.String())
	row("kubectl, again, nothing changed", a.kubectlAgain, a.kubectlAgain.client, fmt.Sprintf("%s apply PATCH, one at a time", host.Thousands(appliedObjects)))
	row("agent, again, nothing changed", a.agentAgain, a.agentAgain.cpu.self, a.agentAgain.requests.String())
	fmt.Fprintf(b, "\nThe design doc's reference on this machine: kubectl, 1,001 objects, 8.7 s first and 6.6 s unchanged. "+
		"After their first apply, kubectl's objects were all healthy (kstatus Current: the Deployments' pods scheduled and ready on kwok) after %s more, "+
		"while goal 4 ran on the second cluster; the agent's after %s (`Applier.Wait`). Both are the pace at which the control plane's controllers and kwok "+
		"bring up 200 ReplicaSets and Pods, not the appliers'.\n\n", seconds(a.kubectlHealthy), seconds(a.agentHealthy))
}

func (r *report) writeReconciles(b *strings.Builder) {
	rc := r.reconciles
	b.WriteString("### 2 and 3. Reconciles\n\n")
	fmt.Fprintf(b, "`reconciler.Reconcile` of the agent's loop, assembled as `agent.lead` does (the ClusterConfig, the assignment keeper, "+
		"the registry client, an event recorder writing Events to the cluster), on the objects of goal 1. "+
		"Goal 2 pushes commits that change no object through the git server, then times one `Reconcile` each: "+
		"first commits that change only the repo's README, which the digest of the render's inputs (every file the render reads, the assignment, the agent's version) "+
		"shows needs no render; then commits that add a comment to the overlay's kustomization.yaml, rendered again, whose objects' digest shows they need no apply. "+
		"A commit that changes an object is rendered, applied and waited for; in the agent only the objects that changed or drifted are applied (the Drift section measures that), while this process's applier has no drift watch to ask, so "+
		"the step table shows what an apply and a health wait of all the unchanged objects cost. "+
		"The reconciler's first version, on objects goal 1 had applied, took %s.\n\n", seconds2(rc.first.wall))
	b.WriteString("| Reconcile | Wall time | Requests to kube-apiserver | CPU: this process | kube-apiserver | etcd |\n|---|---:|---|---:|---:|---:|\n")
	for i, c := range rc.commits {
		fmt.Fprintf(b, "| 2. new commit %d, %s | %s | %s | %s | %s | %s |\n", i+1, c.kind, seconds2(c.wall), c.requests.String(),
			seconds(c.cpu.self), seconds(c.cpu.apiserver), seconds(c.cpu.etcd))
	}
	n := time.Duration(max(len(rc.steady), 1))
	fmt.Fprintf(b, "| 3. nothing changed, per reconcile (mean of %d) | %s | %s (%d runs) | %s | %s | %s |\n\n", len(rc.steady),
		ms(sum(rc.steady)/n), rc.steadyReq.String(), len(rc.steady), ms(rc.steadyCPU.self/n), ms(rc.steadyCPU.apiserver/n), ms(rc.steadyCPU.etcd/n))
	b.WriteString("Where the time goes, each piece timed on its own with the same parts:\n\n")
	b.WriteString("| 2. New commit, no object changed | Time | |\n|---|---:|---|\n")
	for _, s := range rc.commitStep {
		fmt.Fprintf(b, "| %s | %s | %s |\n", s.name, ms(s.took), s.note)
	}
	fmt.Fprintf(b, "\n| 3. Nothing changed, each piece %d times | Median | p99 |\n|---|---:|---:|\n", len(rc.steady))
	for _, s := range rc.steadyStep {
		fmt.Fprintf(b, "| %s | %s | %s |\n", s.name, ms(s.took), ms(s.p99))
	}
	fmt.Fprintf(b, "\nGoal 3 over %d reconciles: median %s, p90 %s, p99 %s, max %s. The ClusterConfig, which the reconcile reads whole only when its resourceVersion moved, is %s of JSON, "+
		"its status.inventory listing %s objects.\n\n", len(rc.steady),
		ms(r.steadyMedian()), ms(percentile(rc.steady, 0.9)), ms(r.steadyP99()), ms(percentile(rc.steady, 1)), kib(int64(rc.ccBytes)), host.Thousands(rc.inventory))
}

func (r *report) writeProcess(b *strings.Builder) {
	p := r.process
	b.WriteString("### 4. caravan-agent's memory\n\n")
	fmt.Fprintf(b, "`caravan-agent` built as `make build` does (`CGO_ENABLED=0 go build ./cmd/caravan-agent`, a %s static binary), given its kubeconfig through `KUBECONFIG` "+
		"(controller-runtime's GetConfig, as in a pod), with its registry token, the git Secret and `--interval 10s`, on a second, empty cluster "+
		"with 3 kwok nodes; the benchmark polls the registry for its status and its VmRSS every 100 ms until it reports its first version, idle. "+
		"It runs while the first cluster's controllers bring kubectl's objects of goal 1 to health, so its times share the cores; its memory does not depend on that. "+
		"Its garbage collector runs with the agent's own default, GOGC=50 (`caravan-agent --help`), unless the environment below sets GOGC.\n\n",
		mib(p.binarySize))
	if len(p.env) > 0 {
		fmt.Fprintf(b, "caravan-agent ran with `%s` in its environment.\n\n", strings.Join(p.env, " "))
	}
	b.WriteString("| caravan-agent | |\n|---|---:|\n")
	fmt.Fprintf(b, "| first version reported (start, CRD install, assignment, fetch, render, apply, health wait) | %s |\n", seconds(p.total))
	for _, ph := range p.phases {
		fmt.Fprintf(b, "| phase `%s` first seen at | %s |\n", ph.phase, seconds(ph.at))
	}
	fmt.Fprintf(b, "| peak RSS (VmHWM) | %s |\n", mib(p.peak))
	fmt.Fprintf(b, "| highest VmRSS sample (phase `%s`): anonymous (heap, stacks) + file pages (the binary) | %s: %s + %s |\n",
		p.peakPhase, mib(p.peakSample.rss), mib(p.peakSample.anon), mib(p.peakSample.file))
	fmt.Fprintf(b, "| RSS 3 s after, idle: anonymous (heap, stacks) + file pages (the binary) | %s: %s + %s |\n", mib(p.rssAfter), mib(p.anonAfter), mib(p.fileAfter))
	fmt.Fprintf(b, "| Go heap in use / memory from the OS then (its metrics) | %s / %s |\n", mib(p.goHeap), mib(p.goSys))
	fmt.Fprintf(b, "| CPU time up to the first version | %s |\n\n", seconds(p.cpu))
	b.WriteString("Which step needs the memory: the Go heap in use (objects live or not yet collected, and their spans' free room) of this process, " +
		"sampled every 10 ms while the same code runs the step, after a GC before it; the phase `applying` of the process holds both the apply and the health wait.\n\n")
	b.WriteString("| Step, in this process | Heap in use before | Peak during |\n|---|---:|---:|\n")
	for _, row := range r.renders {
		if row.objects == appliedObjects {
			fmt.Fprintf(b, "| render of the %s objects (`render.Render`) | %s | %s |\n", host.Thousands(row.objects), mib(row.heap[0]), mib(row.heap[1]))
		}
	}
	a := r.applies
	fmt.Fprintf(b, "| first apply (`Applier.Apply`) | %s | %s |\n", mib(a.applyHeap[0]), mib(a.applyHeap[1]))
	fmt.Fprintf(b, "| health wait after it (`Applier.Wait`, %s) | %s | %s |\n\n", seconds(a.agentHealthy), mib(a.waitHeap[0]), mib(a.waitHeap[1]))
}

func (r *report) writeRenders(b *strings.Builder) {
	b.WriteString("### 5. Render beside kustomize\n\n")
	fmt.Fprintf(b, "Medians of the runs in the table (the kustomize CLI runs half as often). `render.Render` does more than `kustomize build`: it reads config-defaults.yaml and deletions.yaml, "+
		"copies the tree into an in-memory file system, runs kustomize's krusty, then substitutes `${VAR}`s and decodes every object; "+
		"`kustomize build` (%s, the release on the same sigs.k8s.io/kustomize/api as go.mod) runs krusty on the disk and prints YAML, in a process of its own. "+
		"Like with like is krusty alone in this process (on the disk, to YAML), and `kustomize build` less its process start (`kustomize version`).\n\n",
		kustomizeVersion)
	if r.kustomizeErr != "" {
		fmt.Fprintf(b, "kustomize could not be built, so only krusty is compared: `%s`\n\n", strings.ReplaceAll(firstLine(r.kustomizeErr), "`", "'"))
	}
	b.WriteString("| Overlay | Objects | Runs | `render.Render` | krusty alone | `kustomize build` | `kustomize version` (process start) | render / krusty |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, row := range r.renders {
		cli, start := "n/a", "n/a"
		if r.kustomizeErr == "" {
			cli, start = ms(row.cli), ms(row.cliStartup)
		}
		fmt.Fprintf(b, "| %s | %s | %d | %s | %s | %s | %s | %.2f× |\n", row.name, host.Thousands(row.objects), row.runs, ms(row.render), ms(row.krusty), cli, start, ratio(row.render, row.krusty))
	}
	b.WriteString("\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func sum(d []time.Duration) time.Duration {
	var t time.Duration
	for _, x := range d {
		t += x
	}
	return t
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func kib(n int64) string { return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10)) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func seconds2(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func joinPlus(parts []string) string { return strings.Join(parts, " + ") }

//go:build linux

package main

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

const (
	// goalClusters and goalTime are the goal.
	goalClusters = 1000
	goalTime     = 60 * time.Second
	// sectionName names the render section of BENCHMARKS.md.
	sectionName = "render"
)

// runResult is one measured run of the command line.
type runResult struct {
	childResult
	requests        map[string]int // registry requests by "METHOD route"
	ok, failed      int
	objects, stacks int   // rendered in all
	outFiles        int   // written with --out
	outBytes        int64 // their size
	// serverCPU is the CPU time the registry and the git server used
	// meanwhile, on the same cores.
	serverCPU time.Duration
	// otherCPU is the CPU time every other process of the machine used
	// meanwhile.
	otherCPU time.Duration
}

// measurement is the runs of one command.
type measurement struct{ runs []runResult }

// median is the run of the median wall time.
func (m measurement) median() runResult {
	s := slices.Clone(m.runs)
	slices.SortFunc(s, func(a, b runResult) int { return int(a.Wall - b.Wall) })
	return s[(len(s)-1)/2]
}

type report struct {
	opts    options
	started time.Time
	elapsed time.Duration
	setup   time.Duration
	commit  string
	shape   shape
	one     api.Cluster
	single  measurement // render --cluster
	small   measurement // render --all, opts.small clusters
	large   measurement // render --all, opts.clusters clusters
	out     measurement // render --all --out, opts.clusters clusters
	profile profileSummary
}

func newReport(o options) *report { return &report{opts: o, started: time.Now().UTC()} }

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	b.WriteString("## Render: caravan render --all over a fleet\n\n")
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `%s` (%s in all).\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.command(), r.elapsed.Round(time.Second))
	r.writeSetup(&b)
	r.writeGoal(&b)
	r.writeRuns(&b)
	r.writeRequests(&b)
	r.writeProfile(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

// command is how the figures were made: the defaults give the Makefile's line.
func (r *report) command() string {
	cmd := "go run ./test/bench/render"
	def, _ := parseOptions(nil)
	if r.opts.clusters != def.clusters {
		cmd += fmt.Sprintf(" -clusters %d", r.opts.clusters)
	}
	if r.opts.small != def.small {
		cmd += fmt.Sprintf(" -small %d", r.opts.small)
	}
	if r.opts.runs != def.runs {
		cmd += fmt.Sprintf(" -runs %d", r.opts.runs)
	}
	if r.opts.profile != def.profile {
		cmd += fmt.Sprintf(" -profile=%t", r.opts.profile)
	}
	if r.opts.out != "" {
		cmd += " -out " + r.opts.out
	}
	return cmd
}

func (r *report) writeSetup(b *strings.Builder) {
	s := r.shape
	fmt.Fprintf(b, "The fleet: %s clusters, a quarter on each of the channels dev, alpha, beta and stable, in 4 regions and two accounts "+
		"(%s of environment production, %s test); %s node pools (%s clusters with 1, %s with 2, %s with 3; %s of them spot, %s of profile master-default, "+
		"the others worker-default or worker-batch), some with pool config items (node_volume_size, node_volume_type); "+
		"%d to %d cluster config items each, their values differing from cluster to cluster (vpc_cidr, default_container_memory_limit, hosted_zone, "+
		"and for some coredns_replicas, availability_zones, agent_log_level, drain_grace_period). ",
		host.Thousands(s.clusters), host.Thousands(s.production), host.Thousands(s.clusters-s.production), host.Thousands(s.pools), host.Thousands(s.pools1), host.Thousands(s.pools2), host.Thousands(s.pools3),
		host.Thousands(s.spot), host.Thousands(s.master), s.itemsMin, s.itemsMax)
	fleets := "It is"
	if r.opts.small > 0 {
		fleets = fmt.Sprintf("It, and a fleet of its first %s clusters, are each", host.Thousands(r.opts.small))
	}
	fmt.Fprintf(b, "%s seeded through the store API into a SQLite file and served by caravan-central (`central.Run`, on 127.0.0.1) in the benchmark's process, "+
		"beside the real git server (`git http-backend`, test/gitserver) holding a copy of manifests/ on the branches dev, alpha, beta and stable, "+
		"all at commit %s (setup, not measured: %s).\n\n", fleets, configrepo.Short(r.commit), r.setup.Round(100*time.Millisecond))
	fmt.Fprintf(b, "Each run is `cli.Main([]string{\"render\", \"--all\", \"--commit\", sha, \"--server\", url, \"--token\", token})`, "+
		"the command line's own entry point, with a reader token and the git credentials in `CARAVAN_GIT_*`, in a process of its own "+
		"(this benchmark re-run with `%s`), its table written to a file. The wall time is `cli.Main`'s; the CPU time the process's "+
		"(getrusage, user + system); the peak RSS its VmHWM after the command, beside its VmHWM before it, which is this benchmark's binary "+
		"loaded and initialized (caravan-central's and the test servers' packages included, which the `caravan` binary does not have), so that the difference is what the command itself needed; "+
		"the registry requests caravan-central's `%s` before and after; and the CPU time the registry and the git server used meanwhile "+
		"(the benchmark's process and its `git http-backend` children), which shares the same cores, and, in brackets, what every other process of the machine used (/proc/stat). "+
		"One unmeasured `render --all` of each fleet runs first, so that caravan-central has built and cached every assignment "+
		"and the git server's files are in the page cache, as on a registry that serves its agents; the command's process is new in every run. "+
		"Each command runs %d times; the table gives the run of median wall time. "+
		"The bench fails unless each `render --all` exits 0 with one `ok` row for each cluster of the registry.\n\n",
		childEnv, requestsMetric, r.opts.runs)
}

func (r *report) writeGoal(b *strings.Builder) {
	m := r.large.median()
	name := fmt.Sprintf("`caravan render --all` of %s clusters, median wall time of %d runs", host.Thousands(r.opts.clusters), len(r.large.runs))
	met := yesNo(m.Wall <= goalTime)
	if r.opts.clusters < goalClusters {
		met = fmt.Sprintf("not measured (%s clusters, not %s)", host.Thousands(r.opts.clusters), host.Thousands(goalClusters))
	}
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	fmt.Fprintf(b, "| %s | %s | ≤ %.0f s on 2 cores | %s |\n\n", name, secs(m.Wall), goalTime.Seconds(), met)
}

func (r *report) writeRuns(b *strings.Builder) {
	b.WriteString("| Command | Clusters | Wall | Per cluster | CPU (user + sys) | CPU cores | Peak RSS (before the command) | Registry + git server CPU (other processes) | Registry requests | Rendered | Result |\n" +
		"|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	row := func(name string, n int, m measurement, extra string) {
		if len(m.runs) == 0 {
			return
		}
		run := m.median()
		rendered := fmt.Sprintf("%s objects, %s stacks", host.Thousands(run.objects), host.Thousands(run.stacks))
		if n == 1 {
			rendered = fmt.Sprintf("%s objects (printed as YAML)", host.Thousands(run.objects))
		}
		if extra != "" {
			rendered += "; " + extra
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s + %s | %.2f | %s (%s) | %s (%s) | %s | %s | %s ok, %s failed |\n",
			name, host.Thousands(n), secs(run.Wall), ms(run.Wall/time.Duration(n)), secs(run.User), secs(run.System),
			run.cpu().Seconds()/run.Wall.Seconds(), mib(run.PeakRSS), mib(run.StartRSS), secs(run.serverCPU), secs(run.otherCPU),
			host.Thousands(sum(run.requests)), rendered, host.Thousands(run.ok), host.Thousands(run.failed))
	}
	row(fmt.Sprintf("`render --cluster ID` (%s: %s, %d node pools)", r.one.Alias, r.one.Environment, len(r.one.NodePools)), 1, r.single, "")
	row("`render --all`", r.opts.small, r.small, "")
	row("`render --all`", r.opts.clusters, r.large, "")
	if len(r.out.runs) > 0 {
		o := r.out.median()
		row("`render --all --out DIR`", r.opts.clusters, r.out, fmt.Sprintf("%s files, %s written", host.Thousands(o.outFiles), mib(o.outBytes)))
	}
	b.WriteString("\n")
	var walls []string
	for _, c := range []struct {
		name string
		m    measurement
	}{{"`render --cluster`", r.single}, {fmt.Sprintf("%s clusters", host.Thousands(r.opts.small)), r.small},
		{fmt.Sprintf("%s clusters", host.Thousands(r.opts.clusters)), r.large}, {"`--out`", r.out}} {
		if len(c.m.runs) == 0 {
			continue
		}
		var each []string
		for _, run := range c.m.runs {
			each = append(each, secs(run.Wall))
		}
		walls = append(walls, c.name+": "+strings.Join(each, ", "))
	}
	fmt.Fprintf(b, "Every run's wall time: %s.\n\n", strings.Join(walls, "; "))
}

func (r *report) writeRequests(b *strings.Builder) {
	run := r.large.median()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(run.requests)) {
		parts = append(parts, fmt.Sprintf("%s × `%s`", host.Thousands(run.requests[k]), k))
	}
	fmt.Fprintf(b, "Registry requests of one `render --all` of %s clusters: %s: the cluster list, page by page, then one assignment per cluster. "+
		"The commit is fetched from git once per run and the kustomize build made once per environment, whatever the number of clusters.\n\n",
		host.Thousands(r.opts.clusters), strings.Join(parts, " + "))
}

// Functions of the profile that split a run, as pprof names them.
const (
	fnRenderCluster = "github.com/caravan-gitops/caravan/cli.(*fleetRender).renderCluster"
	fnAssignment    = "github.com/caravan-gitops/caravan/pkg/registry.(*Client).GetAssignment"
	fnPipeline      = "github.com/caravan-gitops/caravan/agent/pipeline.Render"
	fnManifests     = "github.com/caravan-gitops/caravan/agent/render.(*Renderer).Render"
	fnSubstitute    = "github.com/caravan-gitops/caravan/agent/render.substitute"
	fnKustomize     = "github.com/caravan-gitops/caravan/agent/render.kustomize"
	fnFetch         = "github.com/caravan-gitops/caravan/cli.(*commitSource).fetch"
	fnStacks        = "github.com/caravan-gitops/caravan/agent/render.Stacks"
	fnClusterStack  = "github.com/caravan-gitops/caravan/agent/render.ClusterStack"
	fnOutputNames   = "github.com/caravan-gitops/caravan/agent/render.OutputNames"
	fnPoolStacks    = "github.com/caravan-gitops/caravan/agent/render.PlaceholderNodePoolStacks"
	fnReadTemplate  = "github.com/caravan-gitops/caravan/agent/render.readTemplate"
	fnParseRendered = "github.com/caravan-gitops/caravan/agent/render.parseRendered"
	fnExecute       = "text/template.(*Template).execute"
	fnGCWorker      = "runtime.gcBgMarkWorker"
	fnGCAssist      = "runtime.gcAssistAlloc"
)

// profileRows are the functions whose cumulative time splits the run.
var profileRows = []struct{ function, what string }{
	{fnRenderCluster, "each cluster (assignment read, pipeline), all clusters"},
	{fnFetch, "· the commit fetched from git, once"},
	{fnAssignment, "· assignment reads from the registry"},
	{fnPipeline, "· the agent's pipeline"},
	{fnManifests, "· · Kubernetes manifests: the shared kustomize build, copied and substituted per cluster"},
	{fnKustomize, "· · · of which the kustomize builds, once per environment"},
	{fnSubstitute, "· · · of which `${VAR}` substitution"},
	{fnStacks, "· · CloudFormation: cluster.yaml once, node-pool.yaml twice per pool"},
	{fnClusterStack, "· · · the cluster stack"},
	{fnOutputNames, "· · · its Outputs, parsed again from the rendered cluster stack"},
	{fnPoolStacks, "· · · the node pool stacks"},
	{fnReadTemplate, "· · · (across the three) templates read and parsed, once per cluster and per pool"},
	{fnExecute, "· · · (across the three) templates executed"},
	{fnParseRendered, "· · · (across the three) rendered YAML parsed back (sigs.k8s.io/yaml: YAML → JSON → struct)"},
	{fnGCWorker, "garbage collection, background"},
	{fnGCAssist, "garbage collection, assists by allocating goroutines (counted in the rows above too)"},
}

func (r *report) writeProfile(b *strings.Builder) {
	p := r.profile
	if p.samples == 0 {
		return
	}
	share := func(f string) float64 { return 100 * p.cum[f].Seconds() / p.samples.Seconds() }
	m := r.large.median()
	b.WriteString("### Where the time goes\n\n")
	fmt.Fprintf(b, "One more `render --all` of %s clusters ran with a CPU profile (`runtime/pprof` in the measured process: %s wall, %s of CPU in its samples), "+
		"read with `go tool pprof -top -cum`; `go run ./test/bench/render -save-profile FILE` keeps it.\n\n",
		host.Thousands(r.opts.clusters), secs(p.run.Wall), secs(p.samples))
	b.WriteString("| Under (cumulative) | CPU | Share of the samples |\n|---|---:|---:|\n")
	for _, c := range profileRows {
		if _, ok := p.cum[c.function]; !ok {
			continue
		}
		fmt.Fprintf(b, "| %s: `%s` | %s | %.0f%% |\n", c.what, shortFunc(c.function), secs(p.cum[c.function]), share(c.function))
	}
	b.WriteString("\n| Most CPU in the function itself (flat) | CPU | Share |\n|---|---:|---:|\n")
	for _, l := range p.flat {
		fmt.Fprintf(b, "| `%s` | %s | %.0f%% |\n", shortFunc(l.function), secs(l.flat), 100*l.flat.Seconds()/p.samples.Seconds())
	}
	b.WriteString("\n")
	fmt.Fprintf(b, "Nearly all the CPU is the agent's pipeline, run once per cluster (%.0f%%); reading the %s assignments costs the command %.0f%%, "+
		"the kustomize build is made once per environment (%.1f%%), and what each cluster adds to the manifests is a copy of the build and its `${VAR}` substitution (%.0f%%). "+
		"The largest part is the CloudFormation templates (%.0f%%): per cluster, cluster.yaml is rendered, and node-pool.yaml twice per pool "+
		"(a draft, to hash the launch template data into the pool's revision, then the stack), and every rendered output is parsed back "+
		"to check it is a template, through sigs.k8s.io/yaml, which parses YAML into a tree, encodes it as JSON and decodes that (%.0f%% in all). "+
		"Two parts of it are work done again: `OutputNames` parses the rendered cluster stack a second time to list its Outputs, "+
		"though `executeTemplate` parsed the same bytes just before and `ClusterStack` drops the result (%.0f%%); and `readTemplate` reads and parses "+
		"the text/template source of both templates for every cluster and every pool, though it is the same for the whole commit (%.0f%%). "+
		"Garbage collection takes %.0f%% (background) + %.0f%% (assists) of the samples. The clusters render in parallel, at most one per processor: "+
		"the median run of %s clusters used %.2f cores on average, while the registry and the git server took %s of CPU on the same cores.\n\n",
		share(fnPipeline), host.Thousands(r.opts.clusters), share(fnAssignment), share(fnKustomize), share(fnManifests)-share(fnKustomize), share(fnStacks), share(fnParseRendered),
		share(fnOutputNames), share(fnReadTemplate), share(fnGCWorker), share(fnGCAssist),
		host.Thousands(r.opts.clusters), m.cpu().Seconds()/m.Wall.Seconds(), secs(m.serverCPU))
	verdict := fmt.Sprintf("The goal is met with room to spare (%s of %.0f s), so nothing here needs to change for it. ", secs(m.Wall), goalTime.Seconds())
	if m.Wall > goalTime {
		verdict = fmt.Sprintf("The goal is **not** met (%s for %.0f s). ", secs(m.Wall), goalTime.Seconds())
	}
	fmt.Fprintf(b, "%sShould a larger fleet or repo need it, the fix to propose is in agent/render, not in the command: "+
		"have `ClusterStack` return the template it parsed, so that `Stacks` takes the Outputs from it instead of calling `OutputNames` (%.0f%% of the CPU); "+
		"and parse cluster.yaml and node-pool.yaml once per commit in `render.Renderer`, beside the kustomize build it already shares "+
		"(a parsed `*template.Template` may execute concurrently), instead of in `readTemplate` per cluster and pool (%.0f%%): "+
		"about %.0f%% less CPU together, with no change to what is rendered.\n\n",
		verdict, share(fnOutputNames), share(fnReadTemplate), share(fnOutputNames)+share(fnReadTemplate))
}

func shortFunc(f string) string { return strings.TrimPrefix(f, "github.com/caravan-gitops/caravan/") }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func secs(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }

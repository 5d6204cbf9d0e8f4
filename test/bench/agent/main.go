//go:build linux

// Command agent benchmarks the Caravan agent against the goals of its
// issue, with the real parts: a real kube-apiserver, etcd, controllers and
// kwok nodes (test/controlplane), the real git server (test/gitserver) and
// caravan-central, and a generated config repo of 1,000 objects (600
// ConfigMaps, 200 Deployments, 100 Services, 50 Roles and 50 RoleBindings
// in 5 namespaces).
//
//  1. the agent's first apply beside `kubectl apply --server-side` of the
//     same rendered objects, each into namespaces of its own;
//  2. a reconcile of a new commit that changes no object;
//  3. a reconcile when neither commit nor assignment changed;
//  4. caravan-agent's peak RSS, as its own process, up to its first version;
//  5. the render of manifests/ beside `kustomize build`.
//
// Then its drift part, on a control plane of its own: the caravan-agent
// process beside Flux's kustomize-controller (test/flux) and kubectl, each
// with its own copy of the objects, through counting proxies
// (test/apicount): hand edits to correction, a commit that changes one
// object, -quiet minutes in which nothing changes, and the agent's peak RSS.
//
// The figures go to stdout and, with -out, into the agent's and the drift
// part's marked sections of BENCHMARKS.md.
//
//	go run ./test/bench/agent -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

type options struct {
	out        string
	commits    int
	steadyRuns int
	renderRuns int
	keep       bool
	cpuProfile string
	agentEnv   host.EnvList
	quiet      time.Duration
	driftOnly  bool
}

func parseOptions() (options, error) {
	var o options
	flag.StringVar(&o.out, "out", "", "markdown file whose agent section is rewritten with the figures (stdout only when empty)")
	flag.IntVar(&o.commits, "commits", 3, "new commits that change no object, each reconciled once (goal 2)")
	flag.IntVar(&o.steadyRuns, "steady-runs", 100, "reconciles with nothing changed (goal 3)")
	flag.IntVar(&o.renderRuns, "render-runs", 20, "renders of each overlay (goal 5)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder with the logs of every part")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of this process (the in-process agent's client side) to this file")
	flag.Var(&o.agentEnv, "agent-env", "KEY=VALUE added to the caravan-agent process's environment, such as GOMEMLIMIT=64MiB (repeatable)")
	flag.DurationVar(&o.quiet, "quiet", defaultQuiet, "the drift part's period in which nothing changes (its goal 3); shorter for a quick run")
	flag.BoolVar(&o.driftOnly, "drift-only", false, "measure the drift part alone; -out's agent section is left as it is")
	flag.Parse()
	if o.commits < 1 || o.steadyRuns < 1 || o.renderRuns < 1 || o.quiet <= 0 {
		return o, errors.New("-commits, -steady-runs, -render-runs and -quiet must be positive")
	}
	return o, nil
}

func main() {
	o, err := parseOptions()
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// bench is the state shared by the measurements.
type bench struct {
	opts     options
	root     string // the repository
	dir      string // temporary files
	toolsDir string
	agentBin string
	fleet    *fleet
	cluster  *cluster
	applier  *apply.Applier // the agent's, long-lived as in the agent
	counter  *requestCounter
	rep      *report
	// agentDone is set once the agent section's figures are all in rep.
	agentDone bool
	drift     driftReport
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// About 8 minutes for the agent section, 12 for the drift part besides
	// its quiet period, with room for a slow machine.
	ctx, cancel := context.WithTimeout(ctx, 35*time.Minute+o.quiet)
	defer cancel()
	// The agent's parts log through controller-runtime; this process
	// keeps their logs out of the figures.
	ctrl.SetLogger(logr.Discard())

	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	toolsDir, err := controlplane.BinDir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(toolsDir, "kubectl")); err != nil {
		return fmt.Errorf("kubectl is missing from %s: run `make tools`", toolsDir)
	}
	dir, err := os.MkdirTemp("", "caravan-agent-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		host.Progress("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	b := &bench{opts: o, root: root, dir: dir, toolsDir: toolsDir, rep: newReport(o)}
	err = b.measure(ctx)
	if b.agentDone {
		// The agent's figures stand even when the drift part failed.
		b.rep.elapsed = b.drift.started.Sub(b.rep.started)
		err = errors.Join(err, writeSection(o.out, sectionName, b.rep.markdown()))
	}
	if err != nil {
		return err
	}
	b.drift.elapsed = time.Since(b.drift.started)
	return writeSection(o.out, driftSectionName, b.drift.markdown(o))
}

// writeSection prints a section and, with -out, writes it into that file.
func writeSection(out, name, section string) error {
	fmt.Print(section)
	if out == "" {
		return nil
	}
	if err := host.WriteSection(out, name, section); err != nil {
		return err
	}
	host.Progress("wrote the %s section of %s", name, out)
	return nil
}

// measure runs the agent section's five measurements, then the drift
// part; everything it starts it stops.
func (b *bench) measure(ctx context.Context) (err error) {
	host.Progress("building caravan-agent")
	if b.agentBin, err = buildAgent(ctx, b.root, b.dir); err != nil {
		return err
	}
	host.Progress("generating the config repos; starting the git server and caravan-central")
	if b.fleet, err = startFleet(ctx, b.dir); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.fleet.stop()) }()
	if !b.opts.driftOnly {
		if err := b.measureAgent(ctx); err != nil {
			return err
		}
		b.agentDone = true
	}
	// The drift part starts once the agent section's clusters are stopped.
	b.drift.started = time.Now().UTC()
	return b.measureDrift(ctx)
}

// measureAgent is the agent section; it stops the clusters it starts.
func (b *bench) measureAgent(ctx context.Context) error {
	// Render first, with no control plane running: it is CPU alone.
	if err := b.measureRenders(ctx, b.opts.renderRuns); err != nil {
		return err
	}

	// Goals 1 to 3 share one cluster: kubectl's copy and the agent's copy
	// of the objects (200 Services fit its 10.0.0.0/24 service range; 400
	// pods need 4 kwok nodes of 110 pods). Goal 4 gets a second, empty
	// cluster: the agent's ClusterConfig is one per cluster.
	host.Progress("starting two control planes, with 5 and 3 kwok nodes")
	var first, second *cluster
	var firstErr, secondErr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		first, b.rep.clusterStart, firstErr = startCluster(ctx, filepath.Join(b.dir, "cluster-1"), 5)
	}()
	go func() {
		defer wg.Done()
		second, _, secondErr = startCluster(ctx, filepath.Join(b.dir, "cluster-2"), 3)
	}()
	wg.Wait()
	if first != nil {
		defer first.stop()
	}
	stopSecond := sync.OnceFunc(func() {
		if second != nil {
			second.stop()
		}
	})
	defer stopSecond()
	if err := errors.Join(firstErr, secondErr); err != nil {
		return err
	}
	b.cluster = first
	b.rep.kubeVersion = b.cluster.version
	if strings.HasPrefix(b.rep.kubeVersion, "v0.0.0") {
		// Built from source without version stamps: say what it was built from.
		b.rep.kubeVersion = toolVersion(b.root, "k8s.io/kubernetes")
	}
	a, err := b.assignment(ctx)
	if err != nil {
		return err
	}
	// Goal 4 runs while the first cluster's controllers bring kubectl's
	// objects to health, which takes them most of a minute and leaves
	// nothing to measure on the first cluster; its memory does not depend
	// on sharing the cores.
	goal4 := func(ctx context.Context) error {
		defer stopSecond()
		return b.measureProcess(ctx, second)
	}
	if err := b.compareApplies(ctx, a, goal4); err != nil {
		return err
	}
	return b.measureReconciles(ctx, b.opts.commits, b.opts.steadyRuns)
}

// toolVersion is the version of a module the control plane's binaries are
// built from, as test/tools/go.mod pins it.
func toolVersion(root, module string) string {
	b, err := os.ReadFile(filepath.Join(root, "test", "tools", "go.mod"))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == module {
			return f[1]
		}
	}
	return "unknown"
}

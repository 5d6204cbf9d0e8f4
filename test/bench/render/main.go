//go:build linux

// Command render benchmarks `caravan render --all` against the goal of
// issue 16: the reference config repo rendered for each of 1,000 clusters
// in at most 60 s on 2 cores.
//
// It serves a copy of manifests/ from the real git server (test/gitserver)
// on the branches dev, alpha, beta and stable, seeds a registry of 1,000
// clusters (and one of 100, to show how the time scales) and serves each
// with caravan-central on SQLite, in this process. Each measured run is the
// command line's own entry point, cli.Main, in a fresh process (this
// program re-run), so that its wall time, CPU time (getrusage) and peak RSS
// (VmHWM) are the command's alone; the registry's requests are counted from
// its /metrics. One more run is CPU-profiled to say where the time goes.
// The figures go to stdout and, with -out, into the render section of
// BENCHMARKS.md.
//
//	go run ./test/bench/render -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

type options struct {
	out      string
	clusters int
	small    int
	runs     int
	profile  bool
	save     string
}

func parseOptions(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("render", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "", "markdown file whose render section is rewritten with the figures (stdout only when empty)")
	fs.IntVar(&o.clusters, "clusters", 1000, "clusters of the fleet of the goal")
	fs.IntVar(&o.small, "small", 100, "clusters of the smaller fleet, to show how the time scales (0: none)")
	fs.IntVar(&o.runs, "runs", 3, "measured runs of each command; the report gives the median")
	fs.BoolVar(&o.profile, "profile", true, "CPU-profile one more run of the large fleet and say where its time goes")
	fs.StringVar(&o.save, "save-profile", "", "keep the CPU profile in this file, for go tool pprof")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.clusters < 1 || o.small < 0 || o.small >= o.clusters || o.runs < 1 {
		return o, errors.New("-clusters must be positive, -small from 0 to below -clusters, -runs positive")
	}
	return o, nil
}

func main() {
	var err error
	if isChild() {
		err = runChild()
	} else {
		var o options
		if o, err = parseOptions(os.Args[1:]); err == nil {
			var rep *report
			if rep, err = bench(o); err == nil {
				err = publish(o, rep)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func publish(o options, rep *report) error {
	section := rep.markdown()
	fmt.Print(section)
	if o.out != "" {
		if err := host.WriteSection(o.out, sectionName, section); err != nil {
			return err
		}
		host.Progress("wrote %s", o.out)
	}
	return nil
}

// bench sets the fleets up, runs the measurements and returns the report.
func bench(o options) (*report, error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root, err := controlplane.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "caravan-bench-render-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	rep := newReport(o)
	host.Progress("serving the reference config repo from the git server")
	git, sha, err := startGit(root, dir)
	if err != nil {
		return nil, err
	}
	defer git.Close()
	rep.commit = sha
	b := &runner{opts: o, dir: dir, sha: sha, env: []string{
		"CARAVAN_GIT_USERNAME=" + git.User, "CARAVAN_GIT_PASSWORD=" + git.Password,
		// No operator's config file nor environment: the flags say it all.
		"CARAVAN_CONFIG=" + filepath.Join(dir, "no-config.yaml"), "CARAVAN_SERVER=", "CARAVAN_TOKEN=",
	}}
	start := time.Now()
	host.Progress("seeding and starting a registry of %d clusters", o.clusters)
	large, err := startRegistry(ctx, dir, git, o.clusters)
	if err != nil {
		return nil, err
	}
	defer large.stop()
	var small *registry
	if o.small > 0 {
		host.Progress("seeding and starting a registry of %d clusters", o.small)
		if small, err = startRegistry(ctx, dir, git, o.small); err != nil {
			return nil, err
		}
		defer small.stop()
	}
	rep.setup = time.Since(start)
	rep.shape = fleetShape(large.clusters)
	if err := b.measure(ctx, rep, large, small); err != nil {
		return nil, err
	}
	rep.elapsed = host.Elapsed()
	return rep, nil
}

// runner runs the measured processes.
type runner struct {
	opts options
	dir  string
	sha  string
	env  []string
}

func (b *runner) measure(ctx context.Context, rep *report, large, small *registry) error {
	// Warm-up: the registry builds and caches each assignment on its first
	// read, and the git server's files come into the page cache, as on a
	// registry that serves its agents; the command's own process is new in
	// every run.
	for _, r := range []*registry{small, large} {
		if r == nil {
			continue
		}
		host.Progress("warm-up: render --all of %d clusters", len(r.clusters))
		if _, err := b.all(ctx, r, "", ""); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	one := pickCluster(large.clusters)
	rep.one = one
	// Round by round, so that whatever else the machine runs meets every
	// command alike.
	steps := []step{
		{"render --cluster " + one.ID, &rep.single, func() (runResult, error) { return b.single(ctx, large, one.ID) }},
		{fmt.Sprintf("render --all of %d clusters", len(large.clusters)), &rep.large, func() (runResult, error) { return b.all(ctx, large, "", "") }},
		{fmt.Sprintf("render --all --out DIR of %d clusters", len(large.clusters)), &rep.out, func() (runResult, error) {
			return b.all(ctx, large, filepath.Join(b.dir, "out"), "")
		}},
	}
	if small != nil {
		steps = append(steps, step{fmt.Sprintf("render --all of %d clusters", len(small.clusters)), &rep.small, func() (runResult, error) { return b.all(ctx, small, "", "") }})
	}
	for i := range b.opts.runs {
		for _, s := range steps {
			host.Progress("round %d of %d: %s", i+1, b.opts.runs, s.what)
			run, err := s.run()
			if err != nil {
				return fmt.Errorf("%s: %w", s.what, err)
			}
			s.into.runs = append(s.into.runs, run)
		}
	}
	if b.opts.profile {
		host.Progress("render --all of %d clusters, CPU-profiled", len(large.clusters))
		path := filepath.Join(b.dir, "cpu.pprof")
		run, err := b.all(ctx, large, "", path)
		if err != nil {
			return err
		}
		if rep.profile, err = summarize(ctx, path); err != nil {
			return err
		}
		if b.opts.save != "" {
			if err := copyFile(path, b.opts.save); err != nil {
				return err
			}
		}
		rep.profile.run = run
	}
	return nil
}

// step is one measured command, run once per round.
type step struct {
	what string
	into *measurement
	run  func() (runResult, error)
}

// pickCluster is the cluster rendered alone: a production cluster with the
// most node pools, the largest render of the fleet.
func pickCluster(clusters []api.Cluster) api.Cluster {
	best := clusters[0]
	for _, c := range clusters {
		if len(c.NodePools) > len(best.NodePools) ||
			(len(c.NodePools) == len(best.NodePools) && c.Environment == api.EnvironmentProduction && best.Environment != api.EnvironmentProduction) {
			best = c
		}
	}
	return best
}

func (b *runner) args(r *registry, more ...string) []string {
	return append(append([]string{"render"}, more...), "--commit", b.sha, "--server", r.url, "--token", r.token)
}

// all runs render --all against the registry, with --out when out is set;
// it fails unless every cluster of the registry rendered.
func (b *runner) all(ctx context.Context, r *registry, out, cpuProfile string) (runResult, error) {
	more := []string{"--all"}
	if out != "" {
		if err := os.RemoveAll(out); err != nil {
			return runResult{}, err
		}
		more = append(more, "--out", out)
	}
	before, err := r.requests(ctx)
	if err != nil {
		return runResult{}, err
	}
	cpu, machine := serverCPU(), machineCPU()
	res, stdout, err := child{args: b.args(r, more...), dir: b.dir, cpuProfile: cpuProfile, env: b.env}.run(ctx)
	if err != nil {
		return runResult{}, err
	}
	cpu = serverCPU() - cpu - res.cpu()
	others := machineCPU() - machine - cpu - res.cpu()
	after, err := r.requests(ctx)
	if err != nil {
		return runResult{}, err
	}
	run := runResult{childResult: res, requests: diffRequests(before, after), serverCPU: cpu, otherCPU: max(others, 0)}
	rows, err := parseTable(string(stdout))
	if err != nil {
		return run, err
	}
	run.ok, run.failed, run.objects, run.stacks = rows.ok, rows.failed, rows.objects, rows.stacks
	if err := checkAll(res, rows, r.clusters); err != nil {
		return run, err
	}
	if out != "" {
		if run.outFiles, run.outBytes, err = countFiles(out); err != nil {
			return run, err
		}
		if err := os.RemoveAll(out); err != nil {
			return run, err
		}
	}
	return run, nil
}

// single runs render --cluster for one cluster, its objects to stdout.
func (b *runner) single(ctx context.Context, r *registry, id string) (runResult, error) {
	before, err := r.requests(ctx)
	if err != nil {
		return runResult{}, err
	}
	cpu, machine := serverCPU(), machineCPU()
	res, stdout, err := child{args: b.args(r, "--cluster", id), dir: b.dir, env: b.env}.run(ctx)
	if err != nil {
		return runResult{}, err
	}
	cpu = serverCPU() - cpu - res.cpu()
	others := machineCPU() - machine - cpu - res.cpu()
	after, err := r.requests(ctx)
	if err != nil {
		return runResult{}, err
	}
	if res.Exit != 0 {
		return runResult{}, fmt.Errorf("render --cluster %s exited with %d:\n%s", id, res.Exit, res.Stderr)
	}
	run := runResult{childResult: res, requests: diffRequests(before, after), serverCPU: cpu, otherCPU: max(others, 0), ok: 1,
		objects: strings.Count("\n"+string(stdout), "\n---\n") + 1}
	return run, nil
}

// serverCPU is the CPU time of this process (the registry, the git server)
// and of its waited-for children: the git server's `git http-backend`
// processes and the measured processes, whose own time the caller takes off.
func serverCPU() time.Duration {
	var self, children syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + children.Utime.Nano() + children.Stime.Nano())
}

// machineCPU is the CPU time every process of the machine used so far
// (/proc/stat: user, nice, system, irq, softirq and steal, in USER_HZ).
func machineCPU() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var ticks int64
	for i, v := range f {
		if i == 0 || i == 4 || i == 5 || i > 8 { // the name, idle, iowait, guest
			continue
		}
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// checkAll fails unless the command succeeded with one ok row for each
// cluster of the registry.
func checkAll(res childResult, rows table, clusters []api.Cluster) error {
	var want []string
	for _, c := range clusters {
		want = append(want, c.ID)
	}
	slices.Sort(want)
	switch {
	case res.Exit != 0:
		return fmt.Errorf("render --all exited with %d (%d ok, %d failed): %s%s", res.Exit, rows.ok, rows.failed, rows.firstFailure, res.Stderr)
	case rows.failed > 0:
		return fmt.Errorf("%d clusters failed to render: %s", rows.failed, rows.firstFailure)
	case !slices.Equal(rows.ids, want):
		return fmt.Errorf("render --all listed %d clusters, the registry has %d", len(rows.ids), len(want))
	}
	return nil
}

// table is what render --all printed: its rows' results and sums.
type table struct {
	ids             []string
	ok, failed      int
	objects, stacks int
	firstFailure    string
}

// parseTable reads render --all's table: CLUSTER CHANNEL COMMIT OBJECTS
// STACKS RESULT, RESULT "ok" or "FAILED: why".
func parseTable(out string) (table, error) {
	var t table
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !slices.Equal(strings.Fields(lines[0]), []string{"CLUSTER", "CHANNEL", "COMMIT", "OBJECTS", "STACKS", "RESULT"}) {
		return t, fmt.Errorf("render --all printed no table: %q", tail(out, 500))
	}
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 6 {
			return t, fmt.Errorf("render --all printed the row %q", line)
		}
		t.ids = append(t.ids, f[0])
		if f[5] != "ok" {
			t.failed++
			if t.firstFailure == "" {
				t.firstFailure = line
			}
			continue
		}
		t.ok++
		var objects, stacks int
		if _, err := fmt.Sscan(f[3]+" "+f[4], &objects, &stacks); err != nil {
			return t, fmt.Errorf("render --all printed the row %q: %w", line, err)
		}
		t.objects += objects
		t.stacks += stacks
	}
	slices.Sort(t.ids)
	return t, nil
}

// countFiles is the number of files under dir and their bytes.
func countFiles(dir string) (int, int64, error) {
	n, size := 0, int64(0)
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n++
		size += info.Size()
		return nil
	})
	return n, size, err
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

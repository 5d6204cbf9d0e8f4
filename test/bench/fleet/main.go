//go:build linux

// Command fleet simulates a fleet of agents against caravan-central: two
// replicas, built from cmd/caravan-central and run as processes of their
// own, on one PostgreSQL database (test/postgres), reading the channels'
// heads from the config repo on the test git server (test/gitserver). Each
// agent is a goroutine with the real registry client (pkg/registry), built
// as caravan-agent builds it, doing what the agent does on the wire: it
// long-polls its assignment with its ETag and reports its status after
// every answer (a new version, or a heartbeat at its interval).
//
//  1. A push to dev, then its webhook, at each fleet size: the time until
//     each agent of dev holds the new head in its assignment and until it
//     reported it; the registry's ref listings of the config repo; each
//     replica's CPU and peak RSS.
//  2. PostgreSQL stopped and started under the largest fleet: the replicas'
//     readiness, a write accepted just before the stop and one made just
//     after the start, which every agent must hold.
//  3. One replica killed with SIGKILL under the largest fleet: the requests
//     after the kill against the steady rate, each agent's time without a
//     registry, nothing lost, and the replica's share back after its restart.
//
// The figures go to stdout and, with -out, into the fleet section of
// BENCHMARKS.md.
//
//	go run ./test/bench/fleet -out BENCHMARKS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

type options struct {
	out        string
	sizes      []int
	interval   time.Duration
	gitRefresh time.Duration
	steady     time.Duration
	rounds     int
	outage     time.Duration
	killWindow time.Duration
	failback   time.Duration
	centralEnv host.EnvList
	args       []string
}

func parseOptions(args []string) (options, error) {
	o := options{args: args}
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	sizes := fs.String("sizes", "1000,10000", "fleet sizes, comma-separated; scenarios 2 and 3 run on the last")
	fs.StringVar(&o.out, "out", "", "markdown file whose fleet section is rewritten with the figures (stdout only when empty)")
	fs.DurationVar(&o.interval, "interval", 30*time.Second, "the agents' interval (caravan-agent --interval): their long-polls' wait, and so their heartbeat")
	fs.DurationVar(&o.gitRefresh, "git-refresh", 30*time.Second, "the replicas' --git-refresh")
	fs.DurationVar(&o.steady, "steady", 2*time.Minute, "the steady window of scenario 1, before its pushes, for the replicas' CPU and the registry's ref listings")
	fs.IntVar(&o.rounds, "rounds", 3, "pushes to dev at each size, each with its webhook")
	fs.DurationVar(&o.outage, "outage", 10*time.Second, "how long PostgreSQL stays stopped in scenario 2")
	fs.DurationVar(&o.killWindow, "kill-window", 60*time.Second, "the windows before and after the kill whose requests scenario 3 compares")
	fs.DurationVar(&o.failback, "failback", 5*time.Minute, "how long an agent that moved off its replica stays away (the registry client's default)")
	fs.Var(&o.centralEnv, "central-env", "KEY=VALUE added to the replicas' environment, such as GOMEMLIMIT=250MiB (repeatable)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < len(channelNames) {
			return o, fmt.Errorf("-sizes: %q is not a fleet size of at least %d clusters", s, len(channelNames))
		}
		o.sizes = append(o.sizes, n)
	}
	for name, d := range map[string]time.Duration{"-interval": o.interval, "-git-refresh": o.gitRefresh, "-steady": o.steady, "-outage": o.outage, "-kill-window": o.killWindow, "-failback": o.failback} {
		if d <= 0 {
			return o, fmt.Errorf("%s must be positive, got %s", name, d)
		}
	}
	if o.interval < 6*time.Second {
		return o, fmt.Errorf("-interval must be at least 6s (an agent waits a sixth of it between failed polls), got %s", o.interval)
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds must be at least 1, got %d", o.rounds)
	}
	return o, nil
}

func main() {
	o, err := parseOptions(os.Args[1:])
	if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx, o)
	if err != nil {
		return err
	}
	section := rep.markdown()
	fmt.Print(section)
	if o.out != "" {
		if err := host.WriteSection(o.out, sectionName, section); err != nil {
			return err
		}
		host.Progress("wrote %s", o.out)
	}
	// Written first, so that the figures of the scenarios that ran are kept.
	return rep.failover.unsupported
}

// bench runs the scenarios at every size and returns their figures.
func bench(ctx context.Context, o options) (*report, error) {
	largest := slices.Max(o.sizes)
	// Each agent holds one connection (its idle one carries its next poll),
	// a moment two; each replica one per agent it serves.
	limit, err := host.RaiseFileLimit(65536)
	if err != nil {
		return nil, err
	}
	if need := uint64(largest + 2000); limit < need {
		return nil, fmt.Errorf("%s agents need %d open files, RLIMIT_NOFILE is %d: raise it (ulimit -n)", host.Thousands(largest), need, limit)
	}
	dir, err := os.MkdirTemp("", "caravan-fleet-")
	if err != nil {
		return nil, fmt.Errorf("creating a temporary folder: %w", err)
	}
	defer os.RemoveAll(dir)
	w, err := startWorld(ctx, o, dir)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	rep := newReport(o)
	for i, size := range o.sizes {
		if err := rep.measure(ctx, w, size, i == len(o.sizes)-1); err != nil {
			return nil, fmt.Errorf("%s agents: %w", host.Thousands(size), err)
		}
	}
	rep.finish()
	return rep, nil
}

// measure deploys one fleet size and runs its scenarios: the push at
// every size, the outage and the kill on the last.
func (r *report) measure(ctx context.Context, w *world, size int, last bool) error {
	d, err := deploy(ctx, w, size)
	if err != nil {
		return err
	}
	defer d.stop()
	res := sizeResult{seeding: d.seeding, settling: d.settling, waitingAtSettle: d.waitingAtSettle}
	if res.push, err = d.measurePushes(ctx); err != nil {
		return fmt.Errorf("scenario 1: %w", err)
	}
	if last {
		if r.outage, err = d.measureOutage(ctx); err != nil {
			return fmt.Errorf("scenario 2: %w", err)
		}
		if r.failover, err = d.measureFailover(ctx); err != nil {
			return fmt.Errorf("scenario 3: %w", err)
		}
	}
	res.logged = d.loggedProblems()
	r.sizes = append(r.sizes, res)
	return nil
}

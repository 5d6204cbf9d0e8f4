//go:build linux

// Command registry benchmarks caravan-central against the goals of its
// issue: a registry of 10,000 clusters on SQLite under 256 concurrent
// clients on loopback. It measures the agents' steady-state poll (304)
// beside a bare net/http server answering 304, full assignment GETs,
// status PUTs, and the server's memory while it holds 10,000 long-polls.
//
// caravan-central is built and run as a process of its own, so that its
// memory and CPU are read from /proc apart from the load generator's; the
// bare baseline is this program re-executed with -bare-server. The figures
// go to stdout and, with -out, into a marked section of BENCHMARKS.md.
//
//	go run ./test/bench/registry -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

type options struct {
	out        string
	clusters   int
	clients    int
	warmup     time.Duration
	duration   time.Duration
	longPolls  int
	centralEnv host.EnvList
	bareServer string
}

func parseOptions() (options, error) {
	var o options
	flag.StringVar(&o.out, "out", "", "markdown file whose registry section is rewritten with the figures (stdout only when empty)")
	flag.IntVar(&o.clusters, "clusters", 10000, "clusters seeded, each with its own agent token")
	flag.IntVar(&o.clients, "clients", 256, "concurrent clients of the load scenarios")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured warm-up of each load scenario")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured time of each load scenario")
	flag.IntVar(&o.longPolls, "long-polls", 10000, "long-polls held open at once (at most one per cluster)")
	flag.Var(&o.centralEnv, "central-env", "KEY=VALUE added to caravan-central's environment, such as GOMEMLIMIT=150MiB (repeatable)")
	flag.StringVar(&o.bareServer, "bare-server", "", "internal: serve the bare 304 baseline on this address")
	flag.Parse()
	if o.bareServer != "" {
		return o, nil
	}
	if o.clusters < 1 || o.clients < 1 || o.clients > o.clusters {
		return o, errors.New("-clients must be from 1 to -clusters")
	}
	if o.duration <= 0 || o.warmup < 0 || o.longPolls < 0 {
		return o, errors.New("-duration must be positive, -warmup and -long-polls not negative")
	}
	return o, nil
}

func main() {
	o, err := parseOptions()
	if err == nil && o.bareServer != "" {
		err = serveBare(o.bareServer)
	} else if err == nil {
		err = run(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// progress tells the person waiting what runs now; the figures go to stdout.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Before any server starts, so that they inherit the limit.
	if _, err := host.RaiseFileLimit(65536); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "caravan-bench-")
	if err != nil {
		return fmt.Errorf("creating a temporary folder: %w", err)
	}
	defer os.RemoveAll(dir)

	rep := newReport(o)
	b, err := setUp(ctx, o, dir, rep)
	if err != nil {
		return err
	}
	measureErr := b.measure(ctx, rep)
	stopErr := errors.Join(b.central.Stop(), b.bare.Stop())
	if err := errors.Join(measureErr, stopErr); err != nil {
		return err
	}

	section := rep.markdown()
	fmt.Print(section)
	if o.out != "" {
		if err := host.WriteSection(o.out, sectionName, section); err != nil {
			return err
		}
		progress("wrote %s", o.out)
	}
	return nil
}

// setUp builds caravan-central, seeds its database and starts it and the
// bare baseline.
func setUp(ctx context.Context, o options, dir string, rep *report) (*bench, error) {
	progress("building caravan-central")
	bin, err := host.BuildCentral(ctx, dir)
	if err != nil {
		return nil, err
	}
	progress("seeding %d clusters", o.clusters)
	db := "sqlite://" + filepath.Join(dir, "registry.db")
	start := time.Now()
	agents, err := seedFleet(ctx, db, o.clusters)
	if err != nil {
		return nil, fmt.Errorf("seeding: %w", err)
	}
	rep.seeding = time.Since(start)

	b := &bench{opts: o, agents: agents, client: newLoadClient(o.clients)}
	addr, err := host.FreeAddr()
	if err != nil {
		return nil, err
	}
	b.central, err = host.StartProcess(ctx, host.ProcessSpec{
		Name: "caravan-central", Addr: addr, ReadyPath: "/readyz", LogPath: filepath.Join(dir, "central.log"),
		Argv: []string{bin, "serve", "--listen", addr, "--database", db, "--repository-url", repositoryURL, "--log-level", "warn"},
		Env:  o.centralEnv,
	})
	if err != nil {
		return nil, err
	}
	if b.bare, err = startBare(ctx, dir); err != nil {
		return nil, errors.Join(err, b.central.Stop())
	}
	return b, nil
}

func startBare(ctx context.Context, dir string) (*host.Process, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to run the bare server: %w", err)
	}
	addr, err := host.FreeAddr()
	if err != nil {
		return nil, err
	}
	return host.StartProcess(ctx, host.ProcessSpec{
		Name: "bare server", Addr: addr, ReadyPath: "/readyz", LogPath: filepath.Join(dir, "bare.log"),
		Argv: []string{self, "-bare-server", addr},
	})
}

// measure runs the scenarios in order, reading the server's memory between them.
func (b *bench) measure(ctx context.Context, rep *report) error {
	var err error
	if rep.memIdle, err = serverMemory(ctx, b.client, b.central); err != nil {
		return err
	}
	progress("fetching all %d assignments once", len(b.agents))
	if rep.prime, err = b.prime(ctx); err != nil {
		return err
	}
	if rep.memPrimed, err = serverMemory(ctx, b.client, b.central); err != nil {
		return err
	}
	progress("1. conditional assignment GETs (304), caravan-central and the bare server in %d alternating rounds, %d clients, %s + %s each",
		steadyRounds, b.opts.clients, b.opts.warmup/steadyRounds, b.opts.duration/steadyRounds)
	if rep.steady, rep.bare, err = b.steadyState(ctx); err != nil {
		return fmt.Errorf("steady state: %w", err)
	}
	scenarios := []struct {
		name string
		run  func(context.Context) (loadResult, error)
		into *loadResult
	}{
		{"2. full assignment GETs", b.fullGets, &rep.full},
		{"3. status PUTs", b.statusPuts, &rep.put},
	}
	for _, s := range scenarios {
		progress("%s, %d clients, %s + %s", s.name, b.opts.clients, b.opts.warmup, b.opts.duration)
		if *s.into, err = s.run(ctx); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	if rep.memLoaded, err = serverMemory(ctx, b.client, b.central); err != nil {
		return err
	}
	n := min(b.opts.longPolls, len(b.agents))
	progress("4. holding %d long-polls on caravan-central", n)
	if rep.polls, err = b.longPolls(ctx, b.central, longPollMetric, n); err != nil {
		return fmt.Errorf("long-polls: %w", err)
	}
	if rep.memEnd, err = serverMemory(ctx, b.client, b.central); err != nil {
		return err
	}
	progress("4. holding %d requests on the bare net/http server", n)
	if rep.barePolls, err = b.longPolls(ctx, b.bare, bareWaitingMetric, n); err != nil {
		return fmt.Errorf("long-polls on the bare server: %w", err)
	}
	return nil
}

// command is how this run was started, for the report.
func command() string {
	return strings.TrimSpace("go run ./test/bench/registry " + strings.Join(os.Args[1:], " "))
}

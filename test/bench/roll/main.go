//go:build linux

// Command roll benchmarks the rolling replacement of outdated nodes by
// caravan-agent against the goals of its issue: a simulated roll of a
// 50-node pool carrying 500 pods under PodDisruptionBudgets, with the drain
// SLA scaled from hours to seconds:
//
//  1. the roll's total time beside the lower bound the rules allow (goal:
//     within 10%);
//  2. forced deletions that came before every rule allowed them (goal: 0);
//  3. the requests per second the agent makes to the API server while a
//     node drains (goal: at most 10);
//  4. the agent's peak RSS during the roll (goal: at most 100 MiB).
//
// It runs the real parts: a control plane with kwok (test/controlplane);
// moto (test/moto); a git server with the project's manifests as the dev
// channel's branch and caravan-central on SQLite (in this process); the
// caravan-agent binary in its own process, whose kubeconfig points at a
// counting proxy in front of the API server (test/apicount) and whose AWS
// endpoint at a recording proxy in front of moto; test/cloudbridge, which
// keeps a kwok Node for every running instance of the agent's node pool
// group; 50 Deployments of 10 replicas, most of them under a
// PodDisruptionBudget. It then changes the pool's instance type in the
// registry: the agent updates the pool's stack and replaces every node
// with its own loop. What happened is recorded as it happens (watches of
// Pods, Nodes and PodDisruptionBudgets, the agent's AWS calls and API
// requests) and, after the roll, read back from the Events the agent wrote
// and its metrics; the lower bound and the rule checks are computed from
// those facts.
//
// The figures go to stdout and, with -out, into the roll's marked section
// of BENCHMARKS.md.
//
//	go run ./test/bench/roll -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

type options struct {
	out            string
	nodes          int
	poll           time.Duration
	bridgeInterval time.Duration
	keep           bool
}

func parseOptions() (options, error) {
	var o options
	flag.StringVar(&o.out, "out", "", "markdown file whose roll section is rewritten with the figures (stdout only when empty)")
	flag.IntVar(&o.nodes, "nodes", 50, "nodes of the pool, each carrying 10 pods (the goal's: 50); a multiple of 5")
	flag.DurationVar(&o.poll, "poll", 30*time.Second, "drain_poll_interval: the longest wait between two roll passes of the agent when no change wakes it (the default's 30s)")
	flag.DurationVar(&o.bridgeInterval, "bridge-interval", 250*time.Millisecond, "the cloud bridge's interval between two passes")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder with the logs of every part")
	flag.Parse()
	if o.nodes < 5 || o.nodes%5 != 0 || o.nodes > 200 {
		return o, errors.New("-nodes must be a multiple of 5 from 5 to 200")
	}
	if o.poll <= 0 || o.bridgeInterval <= 0 {
		return o, errors.New("-poll and -bridge-interval must be positive")
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

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, rollLimit(o.nodes)+7*time.Minute)
	defer cancel()
	// controller-runtime's logger, which the bench's clients would use,
	// stays quiet.
	ctrl.SetLogger(logr.Discard())

	dir, err := os.MkdirTemp("", "caravan-roll-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		host.Progress("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	rep := newReport(o)
	if err := measure(ctx, o, dir, rep); err != nil {
		return err
	}
	rep.elapsed = host.Elapsed()

	section := rep.markdown()
	fmt.Print(section)
	if o.out != "" {
		if err := host.WriteSection(o.out, sectionName(o.nodes), section); err != nil {
			return err
		}
		host.Progress("wrote %s", o.out)
	}
	if !rep.complete() {
		return errors.New("the roll did not complete: see the figures")
	}
	return nil
}

// measure sets the world up, rolls the pool and analyses what happened;
// everything it starts it stops.
func measure(ctx context.Context, o options, dir string, rep *report) (err error) {
	w, err := startWorld(ctx, o, dir)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.stop()) }()
	rep.kubeVersion, rep.motoVersion = w.kubeVersion, w.motoVersion
	if err := w.setUp(ctx, rep); err != nil {
		return err
	}
	res, err := w.roll(ctx)
	if err != nil {
		return err
	}
	rep.roll = res
	an, err := w.analyse(ctx, res)
	if err != nil {
		return err
	}
	rep.analysis = an
	return nil
}

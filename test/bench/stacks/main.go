//go:build linux

// Command stacks benchmarks the agent's stack step against the goal of its
// issue: a no-op reconcile of a cluster with 5 node pools, against moto,
// takes at most 1 s and at most 1 AWS API call per stack.
//
// It renders the reference templates of manifests/cloudformation for a
// cluster with 5 node pools, and runs the agent's own agent/cloud and
// agent/render code against moto_server (test/moto): first the reconcile
// that creates the 6 stacks, then -runs no-op reconciles, then one after a
// change of one pool's instance type, timing each and counting its AWS
// calls by operation. The figures go to stdout and, with -out, into the
// stacks' marked section of BENCHMARKS.md.
//
//	go run ./test/bench/stacks -out BENCHMARKS.md
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/moto"
)

type options struct {
	out  string
	runs int
}

func parseOptions() (options, error) {
	var o options
	flag.StringVar(&o.out, "out", "", "markdown file whose stacks section is rewritten with the figures (stdout only when empty)")
	flag.IntVar(&o.runs, "runs", 20, "no-op reconciles timed")
	flag.Parse()
	if o.runs < 1 {
		return o, errors.New("-runs must be positive")
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
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()

	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	rep := newReport(o)
	host.Progress("starting moto_server")
	srv, err := moto.Launch(ctx)
	if err != nil {
		return fmt.Errorf("%w (bash test/deps.sh installs moto in .cache/venv)", err)
	}
	defer srv.Stop()
	rep.motoVersion = motoVersion()

	// The agent's AWS access, as cloud.LoadAWS makes it with an endpoint,
	// its calls counted; the bench's own checks use an uncounted config.
	cfg := srv.AWSConfig(region)
	calls := moto.CountCalls(&cfg)
	b := &bench{
		files:  os.DirFS(filepath.Join(root, "manifests")),
		aws:    &cloud.AWS{Config: cfg, Endpoint: srv.Endpoint},
		calls:  calls,
		verify: srv.AWSConfig(region),
	}
	if err := b.measure(ctx, rep); err != nil {
		return err
	}
	rep.elapsed = host.Elapsed()

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

// motoVersion is the version of the moto package in moto_server's venv.
func motoVersion() string {
	bin, err := moto.Binary()
	if err != nil {
		return "unknown"
	}
	python := filepath.Join(filepath.Dir(bin), "python")
	out, err := exec.Command(python, "-c", "import importlib.metadata as m; print(m.version('moto'))").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

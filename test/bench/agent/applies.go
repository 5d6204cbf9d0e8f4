//go:build linux

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// applyRun is one timed apply of the 1,005 objects.
type applyRun struct {
	wall     time.Duration
	cpu      cpuSet        // of the parts, over the run
	client   time.Duration // kubectl's own CPU time, when kubectl applied
	requests requestCounts // the agent's API requests
	quiet    float64       // cores busy just before it started
	summary  string        // what the apply said it did
}

// applyComparison is goal 1 and its context: kubectl and the agent's
// applier, each applying the same rendered objects into namespaces of its
// own, first into an empty cluster and then again, unchanged.
type applyComparison struct {
	objects                       int
	kubectlFirst, kubectlAgain    applyRun
	agentFirst, agentAgain        applyRun
	kubectlHealthy, agentHealthy  time.Duration // until the first apply's objects were all Current
	kubectlVersion, kubectlBinary string
	// This process's Go heap in use before and at its peak during the
	// agent's first apply and its health wait.
	applyHeap, waitHeap [2]int64
}

// renderFor renders a generated repo as the agent would for assignment a.
func renderFor(dir string, a *api.Assignment) (*render.Result, error) {
	r, err := render.Render(os.DirFS(dir), *a)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	if len(r.Objects) != appliedObjects {
		return nil, fmt.Errorf("rendering %s gave %d objects, want %d", dir, len(r.Objects), appliedObjects)
	}
	return r, nil
}

// writeKubectlFile writes the rendered objects as kubectl gets them: the
// render's output with the label the agent adds, in the render's order
// (Namespaces first, as kustomize sorts them).
func writeKubectlFile(path string, r *render.Result) error {
	for _, o := range r.Objects {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[apply.ManagedLabel] = apply.ManagedValue
		o.SetLabels(labels)
	}
	return writeObjects(path, r)
}

// writeObjects writes the rendered objects as they are, one YAML document
// each, in the render's order.
func writeObjects(path string, r *render.Result) error {
	var b bytes.Buffer
	for i, o := range r.Objects {
		doc, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// kubectlApply runs `kubectl apply --server-side -f file` and times it.
func kubectlApply(ctx context.Context, kubectl, kubeconfig, cacheDir, file string, quiet float64) (applyRun, error) {
	cmd := exec.CommandContext(ctx, kubectl, "--kubeconfig", kubeconfig, "apply", "--server-side", "-f", file)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+cacheDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cpu0 := takeCPU()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	cpu := takeCPU().sub(cpu0)
	if err != nil {
		return applyRun{}, fmt.Errorf("kubectl apply --server-side: %w\n%s", err, tailString(out.String(), 2000))
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	counts := map[string]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		counts[f[len(f)-1]]++
	}
	if len(lines) != appliedObjects {
		return applyRun{}, fmt.Errorf("kubectl reported %d objects, want %d:\n%s", len(lines), appliedObjects, tailString(out.String(), 2000))
	}
	return applyRun{wall: wall, cpu: cpu, client: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), quiet: quiet, summary: summarizeCounts(counts)}, nil
}

// agentApply runs the agent's applier on a rendered revision and times it.
func agentApply(ctx context.Context, a *apply.Applier, counter *requestCounter, r *render.Result, previous apply.Inventory, quiet float64) (applyRun, *apply.Result, error) {
	req0, cpu0 := counter.take(), takeCPU()
	start := time.Now()
	res, err := a.Apply(ctx, r, previous)
	wall := time.Since(start)
	cpu, req := takeCPU().sub(cpu0), counter.take().sub(req0)
	if err != nil {
		return applyRun{}, nil, fmt.Errorf("the agent's apply: %w", err)
	}
	counts := map[string]int{}
	for _, e := range res.Applied.Entries {
		counts[e.Action.String()]++
	}
	if n := len(res.Applied.Entries); n != appliedObjects {
		return applyRun{}, nil, fmt.Errorf("the agent's apply reported %d objects, want %d", n, appliedObjects)
	}
	return applyRun{wall: wall, cpu: cpu, requests: req, quiet: quiet, summary: summarizeCounts(counts)}, res, nil
}

// compareApplies measures goal 1: kubectl first, then the agent's applier,
// each after the cluster has settled from the one before. during runs
// while kubectl's objects become healthy.
func (b *bench) compareApplies(ctx context.Context, a *api.Assignment, during func(context.Context) error) error {
	c := &b.rep.applies
	c.objects = appliedObjects
	c.kubectlBinary = filepath.Join(b.toolsDir, "kubectl")
	// kubectl is built with the control plane, from the same k8s.io/kubernetes.
	c.kubectlVersion = toolVersion(b.root, "k8s.io/kubernetes")
	kubectlRendered, err := renderFor(b.fleet.repos[kubectlNS], a)
	if err != nil {
		return err
	}
	file := filepath.Join(b.dir, "kubectl-objects.yaml")
	if err := writeKubectlFile(file, kubectlRendered); err != nil {
		return err
	}
	cacheDir := filepath.Join(b.dir, "kubectl-cache")

	// The waiter checks health for both, apart from the timed applier.
	waiter, err := apply.New(b.cluster.agentConfig())
	if err != nil {
		return err
	}
	quiet, err := waitQuiet(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	host.Progress("1. kubectl apply --server-side of %s objects into an empty cluster", host.Thousands(appliedObjects))
	if c.kubectlFirst, err = kubectlApply(ctx, c.kubectlBinary, b.cluster.cp.Kubeconfig, cacheDir, file, quiet); err != nil {
		return err
	}
	host.Progress("   %s; waiting for its objects to become healthy, meanwhile:", seconds(c.kubectlFirst.wall))
	start := time.Now()
	duringErr := make(chan error, 1)
	go func() { duringErr <- during(ctx) }()
	if err := waiter.Wait(ctx, apply.InventoryOf(kubectlRendered.Objects), 4*time.Minute); err != nil {
		return errors.Join(fmt.Errorf("kubectl's objects did not become healthy: %w", err), <-duringErr)
	}
	c.kubectlHealthy = time.Since(start)
	if err := <-duringErr; err != nil {
		return err
	}

	b.counter = &requestCounter{}
	if b.applier, err = apply.New(b.counter.wrap(b.cluster.agentConfig())); err != nil {
		return err
	}
	rendered, err := renderFor(b.fleet.repos[inProcessRepo], a)
	if err != nil {
		return err
	}
	if quiet, err = waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	host.Progress("1. the agent's apply (agent/apply.Applier) of the same %s objects into their own namespaces", host.Thousands(appliedObjects))
	var res *apply.Result
	heap := sampleHeap()
	c.agentFirst, res, err = agentApply(ctx, b.applier, b.counter, rendered, nil, quiet)
	c.applyHeap[0], c.applyHeap[1] = heap.end()
	if err != nil {
		return err
	}
	host.Progress("   %s; waiting for its objects to become healthy (Applier.Wait)", seconds(c.agentFirst.wall))
	heap = sampleHeap()
	start = time.Now()
	err = b.applier.Wait(ctx, res.Inventory, 4*time.Minute)
	c.agentHealthy = time.Since(start)
	c.waitHeap[0], c.waitHeap[1] = heap.end()
	if err != nil {
		return fmt.Errorf("the agent's objects did not become healthy: %w", err)
	}

	if quiet, err = waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	host.Progress("1. both again, nothing changed")
	if c.kubectlAgain, err = kubectlApply(ctx, c.kubectlBinary, b.cluster.cp.Kubeconfig, cacheDir, file, quiet); err != nil {
		return err
	}
	if quiet, err = waitQuiet(ctx, 10*time.Second); err != nil {
		return err
	}
	if rendered, err = renderFor(b.fleet.repos[inProcessRepo], a); err != nil {
		return err
	}
	if c.agentAgain, _, err = agentApply(ctx, b.applier, b.counter, rendered, res.Inventory, quiet); err != nil {
		return err
	}
	host.Progress("   kubectl %s, the agent %s", seconds(c.kubectlAgain.wall), seconds(c.agentAgain.wall))
	return nil
}

func summarizeCounts(counts map[string]int) string {
	var parts []string
	for _, k := range []string{"created", "serverside-applied", "configured", "unchanged", "deleted"} {
		if n := counts[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", host.Thousands(n), k))
			delete(counts, k)
		}
	}
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s %s", host.Thousands(n), k))
	}
	return strings.Join(parts, ", ")
}

func tailString(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

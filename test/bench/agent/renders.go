//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// kustomizeVersion is the kustomize CLI built to compare with: the release
// whose sigs.k8s.io/kustomize/api is the one in go.mod (v0.21.2), so that
// both run the same kustomize code.
const kustomizeVersion = "v5.8.2"

// renderRow is goal 5 for one overlay: the agent's render beside kustomize.
type renderRow struct {
	name       string
	objects    int
	render     time.Duration // render.Render, in this process
	krusty     time.Duration // krusty alone on the disk, in this process
	cli        time.Duration // `kustomize build`, a process each time
	cliStartup time.Duration // `kustomize version`, the process's start alone
	cliObjects int
	runs       int
	heap       [2]int64 // this process's Go heap in use before and at its peak during one render
}

// buildKustomize builds the kustomize CLI into dir with the Go toolchain.
func buildKustomize(ctx context.Context, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", "sigs.k8s.io/kustomize/kustomize/v5@"+kustomizeVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building kustomize %s: %w\n%s", kustomizeVersion, err, out)
	}
	return filepath.Join(dir, "kustomize"), nil
}

// renderAssignment is what a cluster of the environment is assigned.
func renderAssignment(env string) api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: account + ":eu-central-1:render-" + env, LocalID: "render-" + env, Alias: "render-" + env,
			InfrastructureAccount: account, Region: "eu-central-1", APIServerURL: "https://kube.example.org", Environment: env,
			Provider: "aws", CriticalityLevel: 1, LifecycleStatus: "ready"},
		Channel: api.AssignedChannel{Name: "dev", Branch: "dev"},
	}
}

// measureRender times one repo's overlay: runs times each, medians.
func measureRender(ctx context.Context, kustomize, name, repo, env string, runs int) (renderRow, error) {
	row := renderRow{name: name, runs: runs}
	a := renderAssignment(env)
	dir := filepath.Join(repo, "kubernetes", "overlays", env)
	fsys := os.DirFS(repo)
	var rs, ks, cs, vs []time.Duration
	for i := range runs + 2 { // two unmeasured warm-ups
		t := time.Now()
		res, err := render.Render(fsys, a)
		if err != nil {
			return row, fmt.Errorf("rendering %s: %w", name, err)
		}
		d := time.Since(t)
		row.objects = len(res.Objects)

		t = time.Now()
		out, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
		if err == nil {
			_, err = out.AsYaml()
		}
		if err != nil {
			return row, fmt.Errorf("krusty on %s: %w", dir, err)
		}
		k := time.Since(t)
		if i >= 2 {
			rs, ks = append(rs, d), append(ks, k)
		}
	}
	heap := sampleHeap()
	_, err := render.Render(fsys, a)
	row.heap[0], row.heap[1] = heap.end()
	if err != nil {
		return row, err
	}
	if kustomize != "" {
		for i := range runs/2 + 1 {
			var out bytes.Buffer
			cmd := exec.CommandContext(ctx, kustomize, "build", dir)
			cmd.Stdout = &out
			t := time.Now()
			if err := cmd.Run(); err != nil {
				return row, fmt.Errorf("kustomize build %s: %w", dir, err)
			}
			c := time.Since(t)
			t = time.Now()
			if err := exec.CommandContext(ctx, kustomize, "version").Run(); err != nil {
				return row, fmt.Errorf("kustomize version: %w", err)
			}
			v := time.Since(t)
			if i > 0 {
				cs, vs = append(cs, c), append(vs, v)
			}
			row.cliObjects = strings.Count("\n"+out.String(), "\n---\n") + 1
		}
	}
	row.render, row.krusty, row.cli, row.cliStartup = median(rs), median(ks), median(cs), median(vs)
	if kustomize != "" && row.cliObjects != row.objects {
		return row, fmt.Errorf("%s: kustomize build gave %d objects, the render %d", name, row.cliObjects, row.objects)
	}
	return row, nil
}

// measureRenders is goal 5: manifests/ (test and production) and the
// benchmark's 1,000-object repo.
func (b *bench) measureRenders(ctx context.Context, runs int) error {
	host.Progress("5. building kustomize %s", kustomizeVersion)
	kustomize, err := buildKustomize(ctx, filepath.Join(b.dir, "kustomize"))
	if err != nil {
		b.rep.kustomizeErr = err.Error()
		host.Progress("   %v; comparing with krusty alone", err)
		kustomize = ""
	}
	// The 1,000-object repo takes most of a second a render; fewer runs
	// keep the benchmark short, and its runs vary little.
	for _, c := range []struct {
		name, repo, env string
		runs            int
	}{
		{"manifests/, test overlay", filepath.Join(b.root, "manifests"), "test", runs},
		{"manifests/, production overlay", filepath.Join(b.root, "manifests"), "production", runs},
		{"the benchmark's repo, test overlay", b.fleet.repos[inProcessRepo], "test", max(runs/4, 3)},
	} {
		host.Progress("5. render vs kustomize build: %s", c.name)
		row, err := measureRender(ctx, kustomize, c.name, c.repo, c.env, c.runs)
		if err != nil {
			return err
		}
		b.rep.renders = append(b.rep.renders, row)
	}
	return nil
}

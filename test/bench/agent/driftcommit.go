//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The one change of item 2: a data value of ConfigMap settings-000 in the
// first namespace, the first ConfigMap of namespace-1.yaml.
const (
	changedFile      = "kubernetes/base/namespace-1.yaml"
	changedConfigMap = "settings-000"
	changedKey       = "feature-flags"
	unchangedFlags   = "alpha=false,beta=true,gamma=false,delta=true"
	changedFlags     = "alpha=true,beta=true,gamma=false,delta=true"
)

// oneChange makes item 2's change in the generated repo dir and returns
// the changed file's path in the repo and its new content.
func oneChange(dir string) (string, []byte, error) {
	path := filepath.Join(dir, filepath.FromSlash(changedFile))
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, err
	}
	from, to := changedKey+": "+unchangedFlags, changedKey+": "+changedFlags
	i, j := strings.Index(string(b), "name: "+changedConfigMap+"\n"), strings.Index(string(b), from)
	if i < 0 || j < i {
		return "", nil, fmt.Errorf("%s: no %s of %s to change", path, changedKey, changedConfigMap)
	}
	changed := []byte(string(b[:j]) + to + string(b[j+len(from):]))
	return changedFile, changed, os.WriteFile(path, changed, 0o644)
}

// commitSide is how one of the three applied the one-object change.
type commitSide struct {
	took     time.Duration
	requests apicount.Tally
	// measured is false when the span could not be found; note says why
	// and what was measured instead.
	measured bool
	note     string
}

// commitResult is item 2.
type commitResult struct {
	commit                 string
	caravan, flux, kubectl commitSide
}

// kubectlOneChange is item 2's reference, on the drift cluster before the
// agent and Flux start: `kubectl apply --server-side` of its own copy of
// the objects, then of the same objects with the one change, through a
// counting proxy. kubectl's namespaces are deleted afterwards: the
// cluster's service range (a /24) holds two copies' 200 Services, not three.
func (d *driftRun) kubectlOneChange(ctx context.Context) error {
	b, r := d.b, &d.rep.commit.kubectl
	repo := filepath.Join(b.dir, "repos", "kubectl-drift")
	if err := generateRepo(repo, kubectlNS); err != nil {
		return err
	}
	files := [2]string{filepath.Join(b.dir, "kubectl-drift-1.yaml"), filepath.Join(b.dir, "kubectl-drift-2.yaml")}
	for i, file := range files {
		if i == 1 {
			if _, _, err := oneChange(repo); err != nil {
				return err
			}
		}
		rendered, err := renderFor(repo, d.assignment)
		if err != nil {
			return err
		}
		if err := writeKubectlFile(file, rendered); err != nil {
			return err
		}
	}
	proxy, err := apicount.Start(d.c.cp.Config)
	if err != nil {
		return err
	}
	defer proxy.Close()
	kubeconfig := filepath.Join(b.dir, "kubectl-drift.kubeconfig")
	if err := proxy.WriteKubeconfig(kubeconfig); err != nil {
		return err
	}
	kubectl, cacheDir := filepath.Join(b.toolsDir, "kubectl"), filepath.Join(b.dir, "kubectl-drift-cache")
	host.Progress("drift 2. kubectl apply --server-side of its copy, then of the same objects with one ConfigMap changed")
	if _, err := kubectlApply(ctx, kubectl, kubeconfig, cacheDir, files[0], 0); err != nil {
		return err
	}
	quiet, err := waitQuiet(ctx, time.Minute)
	if err != nil {
		return err
	}
	from := time.Now()
	run, err := kubectlApply(ctx, kubectl, kubeconfig, cacheDir, files[1], quiet)
	if err != nil {
		return err
	}
	r.took, r.requests, r.measured = run.wall, apicount.Count(proxy.Requests(from, time.Now())), true
	if err := d.checkChanged(ctx, kubectlNS); err != nil {
		return err
	}
	host.Progress("   %s, %s requests", seconds2(r.took), host.Thousands(r.requests.Total))
	return d.deleteNamespaces(ctx, kubectlNS)
}

// checkChanged checks that the copy in namespaces PREFIX-* has the change.
func (d *driftRun) checkChanged(ctx context.Context, prefix string) error {
	cm, err := d.c.cp.Client.CoreV1().ConfigMaps(prefix+"-1").Get(ctx, changedConfigMap, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := cm.Data[changedKey]; got != changedFlags {
		return fmt.Errorf("%s-1/%s has %s %q after the change, want %q", prefix, changedConfigMap, changedKey, got, changedFlags)
	}
	return nil
}

// measureCommit is item 2 for the agent and Flux, one after the other: a
// commit that changes one ConfigMap of the channel, then the same change
// published as Flux's artifact of that commit.
func (d *driftRun) measureCommit(ctx context.Context) error {
	b, r := d.b, &d.rep.commit
	if _, err := waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	file, content, err := oneChange(b.fleet.repos[processRepo])
	if err != nil {
		return err
	}
	host.Progress("drift 2. a commit that changes one ConfigMap: caravan-agent")
	if r.commit, err = b.fleet.push(ctx, processRepo, d.assignment.Channel.Branch, "bench: change one ConfigMap", map[string][]byte{file: content}); err != nil {
		return err
	}
	pushed := time.Now()
	if _, err := d.waitAgentVersion(ctx, r.commit, 3*time.Minute); err != nil {
		return err
	}
	seen := time.Now()
	if err := d.checkChanged(ctx, processNS); err != nil {
		return err
	}
	fetched, applied, err := logSpan(d.agent.log, r.commit)
	if err != nil {
		// Without the log lines, the span from the push to the
		// ClusterConfig's new version, which includes noticing the commit.
		r.caravan.took, r.caravan.requests = seen.Sub(pushed), apicount.Count(d.agentProxy.Requests(pushed, seen))
		r.caravan.note = err.Error()
		host.Progress("   %v; from the push to the new version: %s, %s requests", err, seconds2(r.caravan.took), host.Thousands(r.caravan.requests.Total))
	} else {
		// The log's times are in milliseconds: the span ends with the
		// millisecond of the last line.
		r.caravan.took, r.caravan.measured = applied.Sub(fetched), true
		r.caravan.requests = apicount.Count(d.agentProxy.Requests(fetched, applied.Add(time.Millisecond)))
		host.Progress("   %s, requests: %s", seconds2(r.caravan.took), r.caravan.requests)
	}

	if _, _, err := oneChange(d.fluxRepo); err != nil {
		return err
	}
	artifact := filepath.Join(b.dir, "flux-artifact-2")
	if err := d.renderArtifact(artifact); err != nil {
		return err
	}
	if _, err := waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	// A reconcile of its interval under way would make the new revision
	// wait for its end: start from an idle Kustomization.
	idleCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if err := d.flux.WaitIdle(idleCtx, fluxName); err != nil {
		return err
	}
	host.Progress("drift 2. the same change as kustomize-controller's artifact of the commit")
	revision := fluxRevision(d.assignment.Channel.Branch, r.commit)
	before := time.Now()
	if _, err := d.flux.Publish(ctx, fluxName, artifact, revision); err != nil {
		return err
	}
	published := time.Now()
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	appliedAt, err := d.flux.WaitApplied(waitCtx, fluxName, revision)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, tailFile(d.flux.Log, 3000))
	}
	// Requests from the publish on: the controller may start before the
	// status write's response reaches this process.
	r.flux.took, r.flux.requests, r.flux.measured = appliedAt.Sub(published), apicount.Count(d.fluxProxy.Requests(before, appliedAt)), true
	host.Progress("   %s, %s requests", seconds2(r.flux.took), host.Thousands(r.flux.requests.Total))
	return d.checkChanged(ctx, fluxNS)
}

// logSpan finds, in the agent's JSON log, when it fetched commit and when
// the version of that commit was applied and healthy.
func logSpan(path, commit string) (fetched, applied time.Time, err error) {
	f, err := os.Open(path)
	if err != nil {
		return fetched, applied, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			TS      any    `json:"ts"`
			Msg     string `json:"msg"`
			Commit  string `json:"commit"`
			Version string `json:"version"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		switch {
		case line.Msg == "fetched the commit" && line.Commit == commit && fetched.IsZero():
			fetched, err = logTime(line.TS)
		case line.Msg == "version applied and healthy" && strings.HasPrefix(line.Version, commit+"#") && !fetched.IsZero() && applied.IsZero():
			applied, err = logTime(line.TS)
		}
		if err != nil {
			return fetched, applied, err
		}
	}
	if err := sc.Err(); err != nil {
		return fetched, applied, err
	}
	switch {
	case fetched.IsZero():
		return fetched, applied, errors.New("caravan-agent's log has no `fetched the commit` line for the commit")
	case applied.IsZero():
		return fetched, applied, errors.New("caravan-agent's log has no `version applied and healthy` line for the commit after `fetched the commit`")
	}
	return fetched, applied, nil
}

// logTime reads a zap "ts": ISO 8601 text, or seconds since the epoch.
func logTime(ts any) (time.Time, error) {
	switch v := ts.(type) {
	case string:
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.000Z0700"} {
			if t, err := time.Parse(layout, v); err == nil {
				return t, nil
			}
		}
	case float64:
		sec, frac := math.Modf(v)
		return time.Unix(int64(sec), int64(frac*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("caravan-agent's log: cannot read the time %v", ts)
}

//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/flux"
)

// The drift section: caravan-agent, as its own process, and Flux's
// kustomize-controller keep the same 1,005 objects, from the same commit,
// each in namespaces of its own, on one control plane of their own (the
// other measurements' clusters are stopped by then). Each process reaches
// the API server through a counting proxy of its own (test/apicount).
const (
	driftSectionName = "drift"
	fluxNS           = "flux" // Flux's copy: flux-1 ... flux-5
	// fluxInterval is the Kustomization's, which the issue names: Flux
	// corrects drift only when it applies again, at this interval.
	fluxInterval = time.Minute
	// fluxName names the GitRepository and the Kustomization.
	fluxName = "bench"
	// driftNodes hold the pods of both copies' 400 Deployments (110 a node).
	driftNodes = 5
)

// driftRun is the drift section's state while it runs.
type driftRun struct {
	b          *bench
	c          *cluster
	kube       client.Client // this process's, with the agent's scheme
	agent      *agentProcess
	flux       *flux.Flux
	agentProxy *apicount.Proxy
	fluxProxy  *apicount.Proxy
	assignment *api.Assignment // the caravan-agent process's cluster's
	head       string          // the channel's commit both copies start from
	fluxRepo   string          // the generated repo Flux's artifacts are rendered from
	rep        *driftReport
}

// measureDrift runs the drift section on a control plane of its own;
// everything it starts it stops.
func (b *bench) measureDrift(ctx context.Context) (err error) {
	d := &driftRun{b: b, rep: &b.drift}
	host.Progress("drift: starting a control plane with %d kwok nodes", driftNodes)
	if d.c, _, err = startCluster(ctx, filepath.Join(b.dir, "cluster-drift"), driftNodes); err != nil {
		return err
	}
	defer d.c.stop()
	d.rep.kubeVersion = d.c.version
	if strings.HasPrefix(d.rep.kubeVersion, "v0.0.0") {
		// Built from source without version stamps: say what it was built from.
		d.rep.kubeVersion = toolVersion(b.root, "k8s.io/kubernetes")
	}
	if d.kube, err = d.c.kubeClient(d.c.cp.Config); err != nil {
		return err
	}
	if err := d.loadAssignment(ctx); err != nil {
		return err
	}
	if err := d.kubectlOneChange(ctx); err != nil {
		return err
	}

	if d.agentProxy, err = apicount.Start(d.c.cp.Config); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.agentProxy.Close()) }()
	if d.fluxProxy, err = apicount.Start(d.c.cp.Config); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, d.fluxProxy.Close()) }()
	if err := d.startBoth(ctx); err != nil {
		return errors.Join(err, d.stopBoth())
	}
	defer func() { err = errors.Join(err, d.stopBoth()) }()

	if err := d.measureEdits(ctx); err != nil {
		return err
	}
	if err := d.measureCommit(ctx); err != nil {
		return err
	}
	if err := d.measureQuiet(ctx); err != nil {
		return err
	}
	d.measureMemory()
	return nil
}

// loadAssignment reads the assignment of the agent's cluster, which every
// copy of the objects is rendered for, and its channel's head commit.
func (d *driftRun) loadAssignment(ctx context.Context) error {
	b := d.b
	reg, err := b.fleet.agentRegistry(processID)
	if err != nil {
		return err
	}
	res, err := reg.GetAssignment(ctx, processID, registry.AssignmentOptions{})
	if err != nil {
		return fmt.Errorf("getting the assignment of %s: %w", processID, err)
	}
	d.assignment = res.Assignment
	repo, err := configrepo.Open(b.fleet.Git.RepoURL(processRepo), configrepo.Credentials{Username: b.fleet.Git.User, Password: b.fleet.Git.Password})
	if err != nil {
		return err
	}
	if d.head, err = repo.Head(ctx, d.assignment.Channel.Branch); err != nil {
		return err
	}
	return nil
}

// startBoth starts caravan-agent and kustomize-controller, each on the
// channel's head commit, and waits until both have applied it and found
// its objects healthy. Their first applies run at the same time: they are
// no part of the figures.
func (d *driftRun) startBoth(ctx context.Context) error {
	b := d.b
	if err := d.c.prepareAgentNamespace(ctx, agentNamespace, b.fleet.Git); err != nil {
		return err
	}
	agentKubeconfig := filepath.Join(b.dir, "caravan-agent-drift.kubeconfig")
	if err := d.agentProxy.WriteKubeconfig(agentKubeconfig); err != nil {
		return err
	}
	fluxKubeconfig := filepath.Join(b.dir, "kustomize-controller.kubeconfig")
	if err := d.fluxProxy.WriteKubeconfig(fluxKubeconfig); err != nil {
		return err
	}

	// Flux's copy of the objects: the same generated repo with Flux's
	// namespaces, rendered by the agent's render for the same cluster, so
	// that Flux applies plain manifests, exactly the objects the agent does.
	d.fluxRepo = filepath.Join(b.dir, "repos", fluxNS)
	if err := generateRepo(d.fluxRepo, fluxNS); err != nil {
		return err
	}
	artifact := filepath.Join(b.dir, "flux-artifact-1")
	if err := d.renderArtifact(artifact); err != nil {
		return err
	}
	fluxDir := filepath.Join(b.dir, "flux")
	if err := os.MkdirAll(fluxDir, 0o755); err != nil {
		return err
	}

	host.Progress("drift: starting caravan-agent (%s) and kustomize-controller %s, each applying its %s objects", processNS+"-*", flux.Version, host.Thousands(appliedObjects))
	var err error
	if d.agent, err = b.startAgentProcess(processID, agentKubeconfig, filepath.Join(b.dir, "caravan-agent-drift.log")); err != nil {
		return err
	}
	if d.flux, err = flux.Start(ctx, flux.Options{Kubeconfig: fluxKubeconfig, Admin: d.c.cp.Config, Dir: fluxDir}); err != nil {
		return err
	}
	start := time.Now()
	revision := fluxRevision(d.assignment.Channel.Branch, d.head)
	if _, err := d.flux.Publish(ctx, fluxName, artifact, revision); err != nil {
		return err
	}
	if err := d.flux.CreateKustomization(ctx, flux.Kustomization{Name: fluxName, Source: fluxName, Interval: fluxInterval,
		Timeout: 5 * time.Minute, Prune: true, Wait: true}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	var agentErr, fluxErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.rep.agentFirst, agentErr = d.waitAgentVersion(ctx, d.head, 6*time.Minute)
	}()
	go func() {
		defer wg.Done()
		wctx, cancel := context.WithTimeout(ctx, 6*time.Minute)
		defer cancel()
		var at time.Time
		at, fluxErr = d.flux.WaitApplied(wctx, fluxName, revision)
		d.rep.fluxFirst = at.Sub(start)
		if fluxErr != nil {
			fluxErr = fmt.Errorf("kustomize-controller's first apply: %w\n%s", fluxErr, tailFile(d.flux.Log, 3000))
		}
	}()
	wg.Wait()
	if err := errors.Join(agentErr, fluxErr); err != nil {
		return err
	}
	host.Progress("   caravan-agent at its first version after %s, kustomize-controller after %s", seconds(d.rep.agentFirst), seconds(d.rep.fluxFirst))
	return nil
}

func (d *driftRun) stopBoth() error {
	var err error
	if d.agent != nil {
		err = d.agent.stop()
	}
	if d.flux != nil {
		err = errors.Join(err, d.flux.Stop())
	}
	return err
}

// fluxRevision is a source-controller revision of a commit on a branch.
func fluxRevision(branch, commit string) string { return branch + "@sha1:" + commit }

// renderArtifact renders Flux's repo for the agent's cluster into dir, as
// the one file of manifests the artifact holds.
func (d *driftRun) renderArtifact(dir string) error {
	r, err := renderFor(d.fluxRepo, d.assignment)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return writeObjects(filepath.Join(dir, "objects.yaml"), r)
}

// waitAgentVersion waits until the ClusterConfig of the drift cluster says
// the agent is at a version of commit, with no next version: applied and
// healthy. It returns the time since the agent process started.
func (d *driftRun) waitAgentVersion(ctx context.Context, commit string, limit time.Duration) (time.Duration, error) {
	var last clusterconfig.Status
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, limit, true, func(ctx context.Context) (bool, error) {
		select {
		case <-d.agent.done:
			return false, fmt.Errorf("caravan-agent exited (%v):\n%s", d.agent.waitErr, tailFile(d.agent.log, 3000))
		default:
		}
		cc := &clusterconfig.ClusterConfig{}
		if err := d.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
			if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
				return false, nil // before the agent installed its CRD and object
			}
			return false, err
		}
		last = cc.Status
		return strings.HasPrefix(cc.Status.CurrentVersion, commit+"#") && cc.Status.NextVersion == "", nil
	})
	if err != nil {
		return 0, fmt.Errorf("caravan-agent did not reach a version of %s (current %q, next %q, problems %+v): %w\n%s",
			commit, last.CurrentVersion, last.NextVersion, last.Problems, err, tailFile(d.agent.log, 3000))
	}
	return time.Since(d.agent.started), nil
}

// deleteNamespaces deletes the namespaces PREFIX-1 ... PREFIX-5 and waits
// until they are gone, objects and all.
func (d *driftRun) deleteNamespaces(ctx context.Context, prefix string) error {
	nsClient := d.c.cp.Client.CoreV1().Namespaces()
	for n := 1; n <= namespaces; n++ {
		if err := nsClient.Delete(ctx, fmt.Sprintf("%s-%d", prefix, n), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return wait.PollUntilContextTimeout(ctx, time.Second, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := nsClient.List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ns := range list.Items {
			if strings.HasPrefix(ns.Name, prefix+"-") {
				return false, nil
			}
		}
		return true, nil
	})
}

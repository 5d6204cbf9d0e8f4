// Package rehearsal runs the end-to-end test of a change before it is
// merged: a scratch cluster is converged by the agent's own reconcile to
// the base commit, then to the change's head, and then the config repo's
// tests (Jobs and Pods under tests/) run in it. What would break a cluster
// on the way from one commit to the next breaks the rehearsal first.
package rehearsal

import (
	"context"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// Options are what a rehearsal needs.
type Options struct {
	// Kube reaches the scratch cluster. Everything the config applies is
	// applied there, and prunes there: never point it at a cluster in use.
	Kube *rest.Config
	// Assignment is the registry's assignment of the cluster the scratch
	// cluster stands in for: its fields, config items and node pools.
	Assignment api.Assignment
	Git        configrepo.Credentials
	// From and To are the base and the head: a branch of the assignment's
	// repository, or a full commit id.
	From, To string
	// AWSEndpoint overrides the AWS endpoints, for emulators.
	AWSEndpoint string
	// Timeout bounds each health wait, in place of the config item
	// health_timeout, and each test.
	Timeout time.Duration
	// Version is the agent version the reconciles report.
	Version string
	Log     logr.Logger
	// Progress hears of each step as it ends.
	Progress func(Step)
}

// Step kinds.
const (
	KindConverge = "converge"
	KindTest     = "test"
)

// Step is one part of a rehearsal, passed or failed.
type Step struct {
	Kind     string
	Name     string
	Duration time.Duration
	// Failure says why the step failed; empty when it passed.
	Failure string
}

// Result is a whole rehearsal.
type Result struct {
	Cluster  string
	From, To string // the commits
	Steps    []Step
}

// Passed reports whether every step passed; a rehearsal that stopped
// early has a failed step.
func (r *Result) Passed() bool {
	for _, s := range r.Steps {
		if s.Failure != "" {
			return false
		}
	}
	return len(r.Steps) > 0
}

// Run rehearses the change. An error means the rehearsal could not run at
// all (no cluster, no repository); a change that fails is a Result that
// did not pass.
func Run(ctx context.Context, o Options) (*Result, error) {
	repo, err := configrepo.Open(o.Assignment.Channel.RepositoryURL, o.Git)
	if err != nil {
		return nil, fmt.Errorf("opening the config repo: %w", err)
	}
	from, err := resolve(ctx, repo, o.From)
	if err != nil {
		return nil, err
	}
	to, err := resolve(ctx, repo, o.To)
	if err != nil {
		return nil, err
	}
	c, err := newCluster(ctx, o)
	if err != nil {
		return nil, err
	}
	res := &Result{Cluster: o.Assignment.Cluster.ID, From: from, To: to}
	a := scratchAssignment(o.Assignment, o.Timeout)
	src := &pinnedSource{repo: repo}
	rc := reconciler.New(reconciler.Config{ClusterID: a.Cluster.ID, AgentVersion: o.Version, HealthTimeout: o.Timeout, Git: o.Git},
		nil, c.status, c.kube, c.applier, c.events, o.Log, reconciler.NewMetrics(prometheus.NewRegistry())).
		WithInfrastructure(reconciler.Infrastructure{AWS: c.aws, SkipNodes: true}).
		WithSource(func(string) (reconciler.Source, error) { return src, nil })
	for _, v := range []struct{ name, commit string }{{"base", from}, {"head", to}} {
		src.commit = v.commit
		step := converge(ctx, rc, c, &a, v.name, v.commit)
		res.add(o.Progress, step)
		if step.Failure != "" {
			return res, nil
		}
	}
	files, err := repo.FetchCommit(ctx, to)
	if err != nil {
		return nil, fmt.Errorf("fetching %s for its tests: %w", configrepo.Short(to), err)
	}
	for _, step := range runTests(ctx, c.kube, files, o.Timeout) {
		res.add(o.Progress, step)
	}
	return res, nil
}

func (r *Result) add(progress func(Step), s Step) {
	r.Steps = append(r.Steps, s)
	if progress != nil {
		progress(s)
	}
}

// converge runs one reconcile to commit and reads whether it left the
// scratch cluster at that version, healthy and without problems.
func converge(ctx context.Context, rc *reconciler.Reconciler, c *cluster, a *api.Assignment, name, commit string) Step {
	start := time.Now()
	rc.Reconcile(ctx, a)
	step := Step{Kind: KindConverge, Name: fmt.Sprintf("converge to the %s, %s", name, configrepo.Short(commit)), Duration: time.Since(start)}
	cc := &clusterconfig.ClusterConfig{}
	if err := c.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
		step.Failure = fmt.Sprintf("reading the ClusterConfig: %v", err)
		return step
	}
	st := cc.Status
	var problems []string
	for _, p := range st.Problems {
		problems = append(problems, strings.TrimSuffix(p.Title+": "+p.Detail, ": "))
	}
	switch want := reconciler.Version(commit, a); {
	case len(problems) > 0:
		step.Failure = strings.Join(problems, "; ")
	case st.CurrentVersion != want:
		step.Failure = fmt.Sprintf("the reconcile ended at version %q, not %q (phase %s)", st.CurrentVersion, want, c.status.lastPhase())
	}
	return step
}

// scratchAssignment is the assignment as the scratch cluster follows it:
// the registry's blocks, freezes and update windows are the real
// cluster's, plans are answered by the real cluster's agent, and a health
// wait lasts as long as the rehearsal allows.
func scratchAssignment(a api.Assignment, timeout time.Duration) api.Assignment {
	a.Blocks, a.Freezes, a.Plans = nil, nil, nil
	a.Cluster.LifecycleStatus = api.LifecycleReady
	a.Cluster.DecommissionConfirmed = false
	items := make(map[string]string, len(a.ConfigItems))
	for k, v := range a.ConfigItems {
		if k != api.ConfigUpdateWindows {
			items[k] = v
		}
	}
	if timeout > 0 {
		items[reconciler.ConfigHealthTimeout] = timeout.String()
	}
	a.ConfigItems = items
	return a
}

// resolve is the commit a branch points to, or ref itself when it is a
// full commit id.
func resolve(ctx context.Context, repo *configrepo.Repo, ref string) (string, error) {
	branches, err := repo.Branches(ctx)
	if err != nil {
		return "", err
	}
	if commit, ok := branches[ref]; ok {
		return commit, nil
	}
	if len(ref) == 40 && strings.Trim(ref, "0123456789abcdef") == "" {
		return ref, nil
	}
	return "", fmt.Errorf("%q is neither a branch of %s nor a full commit id", ref, repo.URL)
}

// pinnedSource serves every branch of the repository at the commit being
// rehearsed.
type pinnedSource struct {
	repo   *configrepo.Repo
	commit string
}

func (p *pinnedSource) Location() string { return p.repo.URL + "@" + p.commit }

func (p *pinnedSource) Head(context.Context, string) (string, error) { return p.commit, nil }

func (p *pinnedSource) Fetch(ctx context.Context, _ string) (*configrepo.Snapshot, error) {
	files, err := p.repo.FetchCommit(ctx, p.commit)
	if err != nil {
		return nil, err
	}
	return &configrepo.Snapshot{Commit: p.commit, Files: files}, nil
}

func (p *pinnedSource) FetchCommit(ctx context.Context, commit string) (fs.FS, error) {
	return p.repo.FetchCommit(ctx, commit)
}

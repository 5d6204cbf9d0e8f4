//go:build linux

package main

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The cluster of the goal.
const (
	account   = "aws:" + moto.AccountID
	region    = "eu-central-1"
	clusterID = account + ":" + region + ":kube-1"
	// changedPool is the pool whose instance type the last reconcile changes.
	changedPool  = "default-worker"
	changedType  = "m6i.xlarge"
	stacksInPlay = 6 // the cluster stack and 5 node pool stacks
)

// The waiters' polling, shortened from the agent's 5 s to 30 s: moto
// completes every operation before it answers, so the first poll, which
// the SDK's waiters make at once, finds it done, and these never elapse.
const (
	pollMin = 50 * time.Millisecond
	pollMax = 200 * time.Millisecond
)

// nodePools are the cluster's 5 pools: a control plane pool, three
// on-demand worker pools and one spot pool.
func nodePools() []api.NodePool {
	pool := func(name, profile, discount string, types ...string) api.NodePool {
		return api.NodePool{Name: name, Profile: profile, InstanceTypes: types, MinSize: 1, MaxSize: 3, DiscountStrategy: discount}
	}
	return []api.NodePool{
		pool("default-master", "master-default", api.DiscountNone, "m6i.large"),
		pool(changedPool, "worker-default", api.DiscountNone, "m6i.large"),
		pool("worker-compute", "worker-default", api.DiscountNone, "c6i.xlarge"),
		pool("worker-memory", "worker-default", api.DiscountNone, "r6i.large"),
		pool("worker-spot", "worker-default", api.DiscountSpot, "m6i.large", "m5.large", "m5a.large"),
	}
}

// assignment is what the registry assigns the cluster, built by the
// registry's own api.BuildAssignment from a validated cluster.
func assignment(pools []api.NodePool) (api.Assignment, error) {
	c := api.Cluster{
		ID: clusterID, Alias: "kube-1", InfrastructureAccount: account, Region: region,
		APIServerURL: "https://kube-1.example.org", Environment: "production", Channel: "stable",
		Provider: "aws", CriticalityLevel: 1, LifecycleStatus: "ready", NodePools: pools,
	}
	c.Normalize()
	if err := c.Validate(); err != nil {
		return api.Assignment{}, err
	}
	a, _ := api.BuildAssignment(api.AssignmentInput{
		Account:   api.InfrastructureAccount{ID: account, Name: "production", Environment: "production", ConfigItems: map[string]string{}},
		Cluster:   c,
		NodePools: c.NodePools,
		Channel:   api.Channel{Name: "stable", Branch: "stable", RepositoryURL: "https://git.example.org/config.git"},
	}, time.Now())
	return a, nil
}

// bench holds the parts every reconcile shares.
type bench struct {
	files  fs.FS       // manifests/
	aws    *cloud.AWS  // the agent's AWS access, its calls counted
	calls  *moto.Calls // the counts of aws's clients
	verify aws.Config  // uncounted, for the bench's own checks
}

// stepRun is one reconcile's stack step.
type stepRun struct {
	render  time.Duration // renderStacks, which the reconcile runs before the step
	wall    time.Duration // the step: what reconciler.updateStacks does
	calls   map[string]int
	changed []string // stacks the step created or updated
	orphans []string
}

// mutations are the calls that change something: every operation but
// those that only read (Describe*, Get*, List*).
func (s stepRun) mutations() map[string]int {
	out := map[string]int{}
	for op, n := range s.calls {
		_, name, _ := strings.Cut(op, ".")
		if !strings.HasPrefix(name, "Describe") && !strings.HasPrefix(name, "Get") && !strings.HasPrefix(name, "List") {
			out[op] = n
		}
	}
	return out
}

// reconcile runs one reconcile's stack work for a version of the assignment:
// the effective config items and renderStacks, untimed by the goal, then
// the stack step, timed and its calls counted.
func (b *bench) reconcile(ctx context.Context, a api.Assignment, version string) (stepRun, error) {
	var run stepRun
	items, err := render.ConfigItems(b.files, a)
	if err != nil {
		return run, err
	}
	start := time.Now()
	cluster, _, err := render.Stacks(b.files, a, items)
	if err != nil {
		return run, err
	}
	if cluster == nil {
		return run, fmt.Errorf("manifests/ has no %s", render.ClusterTemplate)
	}
	run.render = time.Since(start)

	b.calls.Reset()
	start = time.Now()
	err = b.updateStacks(ctx, a, items, cluster, version, &run)
	run.wall = time.Since(start)
	run.calls = b.calls.Snapshot()
	slices.Sort(run.changed)
	return run, err
}

// updateStacks is what reconciler.updateStacks does, with the same
// code: the cluster's Stacks from the agent's AWS access (new clients each
// reconcile) and cloud.ConvergeAll; where the reconciler logs a changed
// stack, this records it, and it shortens the waiters' polling.
func (b *bench) updateStacks(ctx context.Context, a api.Assignment, items map[string]string, cluster *render.Stack, version string, run *stepRun) error {
	stacks := b.aws.Stacks(a.Cluster.ID, a.Cluster.Region)
	stacks.PollMin, stacks.PollMax = pollMin, pollMax
	var mu sync.Mutex
	converged, err := stacks.ConvergeAll(ctx, b.files, a, items, cluster, cloud.StackOptions(version, items), func(s *render.Stack, _ cloud.Action, err error) {
		if err == nil {
			mu.Lock()
			defer mu.Unlock()
			run.changed = append(run.changed, s.Name)
		}
	})
	if converged != nil {
		run.orphans = converged.Orphans
	}
	return err
}

// stackStatuses lists the cluster's stacks and their statuses, with the
// bench's uncounted client.
func (b *bench) stackStatuses(ctx context.Context) (map[string]string, error) {
	cfn := cloudformation.NewFromConfig(b.verify)
	out := map[string]string{}
	pages := cloudformation.NewDescribeStacksPaginator(cfn, &cloudformation.DescribeStacksInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, st := range page.Stacks {
			for _, t := range st.Tags {
				if aws.ToString(t.Key) == cloud.TagClusterID && aws.ToString(t.Value) == clusterID {
					out[aws.ToString(st.StackName)] = string(st.StackStatus)
				}
			}
		}
	}
	return out, nil
}

// commit is a made-up commit hash of the i-th version.
func commit(i int) string { return fmt.Sprintf("%040x", 0xc0ffee00+i) }

// measure runs the reconciles: the first, which creates the stacks, the
// no-ops, the change of one pool, and a no-op after it; it fails when a
// reconcile did other than the goal expects of it.
func (b *bench) measure(ctx context.Context, rep *report) error {
	a, err := assignment(nodePools())
	if err != nil {
		return err
	}
	rep.pools = a.NodePools
	// moto loads its CloudFormation emulation at its first request, which
	// takes it a second: an uncounted listing first, so that the first
	// reconcile's Describe is not that.
	if _, err := b.stackStatuses(ctx); err != nil {
		return fmt.Errorf("listing the stacks: %w", err)
	}
	host.Progress("first reconcile: creating the cluster stack and %d node pool stacks", len(a.NodePools))
	if rep.first, err = b.reconcile(ctx, a, reconciler.Version(commit(0), &a)); err != nil {
		return fmt.Errorf("the first reconcile: %w", err)
	}
	if n := rep.first.calls["CloudFormation.CreateStack"]; n != stacksInPlay || len(rep.first.changed) != stacksInPlay {
		return fmt.Errorf("the first reconcile created %d stacks (%d CreateStack calls), want %d", len(rep.first.changed), n, stacksInPlay)
	}
	if err := b.checkSettled(ctx, rep); err != nil {
		return err
	}

	host.Progress("%d no-op reconciles", rep.opts.runs)
	for i := range rep.opts.runs {
		// Each a new version, as when a new commit changed the render's
		// inputs but not the templates: the stack step runs only then.
		run, err := b.reconcile(ctx, a, reconciler.Version(commit(1+i), &a))
		if err != nil {
			return fmt.Errorf("no-op reconcile %d: %w", i+1, err)
		}
		if err := noop(run); err != nil {
			return fmt.Errorf("no-op reconcile %d: %w", i+1, err)
		}
		rep.noops = append(rep.noops, run)
	}

	host.Progress("a reconcile after pool %s changed its instance type to %s", changedPool, changedType)
	pools := nodePools()
	for i := range pools {
		if pools[i].Name == changedPool {
			pools[i].InstanceTypes = []string{changedType}
		}
	}
	changed, err := assignment(pools)
	if err != nil {
		return err
	}
	if rep.change, err = b.reconcile(ctx, changed, reconciler.Version(commit(1+rep.opts.runs), &changed)); err != nil {
		return fmt.Errorf("the reconcile of the changed pool: %w", err)
	}
	want := "nodepool-" + changedPool + "-" + changed.Cluster.LocalID
	if u := rep.change.calls["CloudFormation.UpdateStack"]; u != 1 || !slices.Equal(rep.change.changed, []string{want}) {
		return fmt.Errorf("the change of one pool updated %v with %d UpdateStack calls, want only %s with 1", rep.change.changed, u, want)
	}
	if err := b.checkSettled(ctx, rep); err != nil {
		return err
	}
	host.Progress("a no-op reconcile after the change")
	if rep.after, err = b.reconcile(ctx, changed, reconciler.Version(commit(2+rep.opts.runs), &changed)); err != nil {
		return fmt.Errorf("the no-op reconcile after the change: %w", err)
	}
	if err := noop(rep.after); err != nil {
		return fmt.Errorf("the no-op reconcile after the change: %w", err)
	}
	return nil
}

// noop fails loudly when a reconcile that should change nothing changed
// something or called anything that changes.
func noop(run stepRun) error {
	if m := run.mutations(); len(m) > 0 || len(run.changed) > 0 {
		return fmt.Errorf("a reconcile with nothing to change changed stacks %v with the calls %v", run.changed, m)
	}
	if len(run.orphans) > 0 {
		return fmt.Errorf("a reconcile with every pool in place found orphaned pools %v", run.orphans)
	}
	return nil
}

// checkSettled checks that moto holds the 6 stacks, each complete.
func (b *bench) checkSettled(ctx context.Context, rep *report) error {
	statuses, err := b.stackStatuses(ctx)
	if err != nil {
		return fmt.Errorf("listing the stacks: %w", err)
	}
	if len(statuses) != stacksInPlay {
		return fmt.Errorf("moto holds %d stacks of the cluster, want %d: %v", len(statuses), stacksInPlay, statuses)
	}
	for name, status := range statuses {
		if status != "CREATE_COMPLETE" && status != "UPDATE_COMPLETE" {
			return fmt.Errorf("stack %s is %s", name, status)
		}
	}
	rep.statuses = statuses
	return nil
}

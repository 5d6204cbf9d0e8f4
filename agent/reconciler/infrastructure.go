package reconciler

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Infrastructure is what the loop needs to change the cluster's AWS
// resources and its nodes.
type Infrastructure struct {
	AWS     *cloud.AWS
	Drainer *nodes.Drainer
}

// WithInfrastructure lets the loop update stacks and retire node pools;
// without it, a commit with stack templates is a problem.
func (r *Reconciler) WithInfrastructure(i Infrastructure) *Reconciler {
	r.infra = i
	return r
}

// Config items of the stack updates.
const (
	ConfigCloudFormationTimeout = "cloudformation_timeout"
	defaultStackTimeout         = 25 * time.Minute
	// stackConcurrency bounds the node pool stacks updated at once.
	stackConcurrency = 4
)

// renderStacks renders the cluster stack and checks every node pool
// template against the cluster template's outputs, so that no template
// error is found after a stack changed. A repo without templates has none.
func renderStacks(files fs.FS, a api.Assignment, items map[string]string) (*render.Stack, error) {
	cluster, err := render.ClusterStack(files, a, items)
	if err != nil || cluster == nil {
		return cluster, err
	}
	names, err := render.OutputNames(cluster)
	if err != nil {
		return nil, err
	}
	return cluster, render.CheckNodePoolStacks(files, a, items, names)
}

func stackOptions(version string, items map[string]string) cloud.Options {
	timeout := defaultStackTimeout
	if d, err := time.ParseDuration(items[ConfigCloudFormationTimeout]); err == nil && d > 0 {
		timeout = d
	}
	return cloud.Options{Version: version, Bucket: items[cloud.ConfigTemplateBucket], Timeout: timeout}
}

func (r *Reconciler) stacks(a api.Assignment) (*cloud.Stacks, error) {
	if r.infra.AWS == nil {
		return nil, fmt.Errorf("the commit has CloudFormation templates and the agent has no AWS access")
	}
	return r.infra.AWS.Stacks(a.Cluster.ID, a.Cluster.Region), nil
}

// updateStacks brings the cluster stack, then the node pool stacks (in
// parallel, bounded) to the version; it returns the pools whose stacks the
// assignment no longer has.
func (r *Reconciler) updateStacks(ctx context.Context, cc *clusterconfig.ClusterConfig, files fs.FS, a api.Assignment, items map[string]string, cluster *render.Stack, version string) ([]string, error) {
	stacks, err := r.stacks(a)
	if err != nil {
		return nil, err
	}
	observed, err := stacks.Describe(ctx)
	if err != nil {
		return nil, err
	}
	opts := stackOptions(version, items)
	outputs, err := r.convergeStack(ctx, cc, stacks, cluster, observed, opts)
	if err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(stackConcurrency)
	for _, pool := range a.NodePools {
		g.Go(func() error {
			stack, err := render.NodePoolStack(files, a, items, pool, outputs)
			if err != nil {
				return err
			}
			_, err = r.convergeStack(gctx, cc, stacks, stack, observed, opts)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(cloud.Orphans(observed, a.Cluster.ID, poolNames(a)))), nil
}

// convergeStack converges one stack and makes what it changed visible:
// a log line, an Event and the operations metric.
func (r *Reconciler) convergeStack(ctx context.Context, cc *clusterconfig.ClusterConfig, stacks *cloud.Stacks, s *render.Stack, observed []cloud.Observed, opts cloud.Options) (map[string]string, error) {
	current := cloud.Find(observed, s.Name)
	action := cloud.Plan(s.Digest, current).Action
	outputs, changed, err := stacks.Converge(ctx, s, current, opts)
	if !changed && err == nil {
		return outputs, nil
	}
	r.metrics.stackOperation(action.String(), err)
	if err != nil {
		return nil, err
	}
	r.log.Info("stack converged", "stack", s.Name, "action", action.String(), "version", opts.Version, "digest", s.Digest)
	r.events.Eventf(cc, nil, corev1.EventTypeNormal, "StackUpdated", "UpdateStack", "stack %s: %s for version %s", s.Name, action, opts.Version)
	return outputs, nil
}

func poolNames(a api.Assignment) []string {
	names := make([]string, 0, len(a.NodePools))
	for _, p := range a.NodePools {
		names = append(names, p.Name)
	}
	return names
}

// retirePools makes one pass over the node pools that left the
// assignment: it drains their nodes and, once a pool's nodes hold no more
// pods to move, deletes its stack. Pools still draining stay pending, and
// the next poll makes the next pass.
func (r *Reconciler) retirePools(ctx context.Context, cc *clusterconfig.ClusterConfig, a api.Assignment, out *outcome) {
	stacks, err := r.stacks(a)
	if err != nil {
		out.fail("infrastructure", "Node pools cannot be retired", err)
		return
	}
	observed, err := stacks.Describe(ctx)
	if err != nil {
		out.fail("infrastructure", "Node pools cannot be retired", err)
		return
	}
	orphans := cloud.Orphans(observed, a.Cluster.ID, poolNames(a))
	opts := stackOptions(out.status.CurrentVersion, a.ConfigItems)
	var pending []string
	for _, pool := range slices.Sorted(maps.Keys(orphans)) {
		progress, err := r.infra.Drainer.DrainPool(ctx, pool)
		if err != nil {
			out.fail("nodes", "A retired node pool cannot be drained", err)
			pending = append(pending, pool)
			continue
		}
		if !progress.Done() {
			pending = append(pending, pool)
			out.pools = append(out.pools, api.NodePoolProgress{Name: pool, NodesTotal: progress.Nodes, Outdated: progress.Nodes, Draining: progress.Nodes})
			r.log.Info("draining a retired node pool", "pool", pool, "nodes", progress.Nodes, "pods", progress.Pods, "refused", progress.Refused)
			continue
		}
		err = stacks.Delete(ctx, orphans[pool].Name, false, opts.Timeout)
		r.metrics.stackOperation("delete", err)
		if err != nil {
			out.fail("infrastructure", "The stack of a retired node pool cannot be deleted", err)
			pending = append(pending, pool)
			continue
		}
		r.events.Eventf(cc, nil, corev1.EventTypeNormal, "NodePoolRetired", "Retire", "node pool %s left the registry: its nodes were drained and stack %s deleted", pool, orphans[pool].Name)
	}
	out.status.PendingNodePools = pending
	if len(pending) > 0 && out.phase == api.PhaseIdle {
		out.phase = api.PhaseRollingNodes
	}
}

package reconciler

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// decommission tears the cluster's infrastructure down: first the node pool
// stacks, as soon as the registry asks; the cluster stack, whose deletion
// cannot be undone, only once an operator confirmed it at the registry.
// Every pass reports how far it got; none applies a version.
func (r *Reconciler) decommission(ctx context.Context, a api.Assignment, out *outcome) {
	out.phase = api.PhaseDecommissioning
	stacks, err := r.stacks(a)
	if err != nil {
		out.fail("infrastructure", "The cluster cannot be decommissioned", err)
		return
	}
	observed, err := stacks.Describe(ctx)
	if err != nil {
		out.fail("infrastructure", "The cluster cannot be decommissioned", err)
		return
	}
	opts := cloud.StackOptions(out.status.CurrentVersion, a.ConfigItems)
	var cluster *cloud.Observed
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cloud.StackConcurrency)
	for i, st := range observed {
		if st.Tags[cloud.TagNodePool] == "" {
			cluster = &observed[i]
			continue
		}
		g.Go(func() error { return stacks.Delete(gctx, st.Name, false, opts.Timeout) })
	}
	if err := g.Wait(); err != nil {
		out.fail("infrastructure", "A node pool stack cannot be deleted", err)
		return
	}
	switch {
	case !a.Cluster.DecommissionConfirmed:
		r.log.Info("node pool stacks deleted; the cluster stack waits for the decommission to be confirmed at the registry")
		return
	case cluster != nil:
		if err := stacks.Delete(ctx, cluster.Name, true, opts.Timeout); err != nil {
			out.fail("infrastructure", "The cluster stack cannot be deleted", err)
			return
		}
	}
	out.phase = api.PhaseDecommissioned
}

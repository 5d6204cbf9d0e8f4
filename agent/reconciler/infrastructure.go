package reconciler

import (
	"context"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"time"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Infrastructure is what the loop needs to change the cluster's AWS
// resources and its nodes.
type Infrastructure struct {
	AWS *cloud.AWS
	// Trigger, when set, wakes the loop as soon as a roll can go on.
	Trigger *nodes.Trigger
	// SkipNodes leaves the nodes alone: a rehearsal's scratch cluster runs
	// on nodes that are not its pools' instances.
	SkipNodes bool
}

// WithInfrastructure lets the loop update stacks and retire node pools;
// without it, a commit with stack templates is a problem.
func (r *Reconciler) WithInfrastructure(i Infrastructure) *Reconciler {
	r.infra = i
	return r
}

// roller is the cluster's Roller, kept from pass to pass for what it
// knows of the groups.
func (r *Reconciler) roller(c api.AssignedCluster) *nodes.Roller {
	key := c.ID + "/" + c.Region
	if r.rollers.key != key {
		r.rollers.key = key
		r.rollers.roller = nodes.NewRoller(r.kube, r.infra.AWS.Fleet(c.ID, c.Region), r.events, r.log, r.metrics.nodes).WatchedBy(r.infra.Trigger)
	}
	return r.rollers.roller
}

func (r *Reconciler) stacks(a api.Assignment) (*cloud.Stacks, error) {
	if r.infra.AWS == nil {
		return nil, fmt.Errorf("the commit has CloudFormation templates and the agent has no AWS access")
	}
	return r.infra.AWS.Stacks(a.Cluster.ID, a.Cluster.Region), nil
}

// updateStacks brings the cluster stack, then the node pool stacks to the
// version.
func (r *Reconciler) updateStacks(ctx context.Context, cc *clusterconfig.ClusterConfig, files fs.FS, a api.Assignment, items map[string]string, cluster *render.Stack, version string) (*cloud.Converged, error) {
	stacks, err := r.stacks(a)
	if err != nil {
		return nil, err
	}
	return stacks.ConvergeAll(ctx, files, a, items, cluster, cloud.StackOptions(version, items), func(s *render.Stack, action cloud.Action, err error) {
		r.metrics.stackOperation(action.String(), err)
		if err == nil {
			r.log.Info("stack converged", "stack", s.Name, "action", action.String(), "version", version, "digest", s.Digest)
			events.Publish(r.events, stackUpdatedEvent(cc, s.Name, action, version))
		}
	})
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
	opts := cloud.StackOptions(out.status.CurrentVersion, a.ConfigItems)
	sla, poll, err := r.retireSLA(out.status, a.Cluster.Environment)
	if err != nil {
		out.fail("nodes", "Node pools cannot be retired", err)
		return
	}
	roller := r.roller(a.Cluster)
	var pending []string
	for _, pool := range slices.Sorted(maps.Keys(orphans)) {
		progress, err := roller.Retire(ctx, pool, sla, poll)
		if err != nil {
			out.fail("nodes", "A retired node pool cannot be drained", err)
			pending = append(pending, pool)
			continue
		}
		if !progress.Done() {
			pending = append(pending, pool)
			p := api.NodePoolProgress{Name: pool, NodesTotal: progress.Nodes, Outdated: progress.Nodes, Draining: progress.Nodes}
			if progress.Next != nil {
				at := progress.Next.At
				p.NextForcedEviction, p.HeldBy = &at, progress.Next.Rule
			}
			out.pools = append(out.pools, p)
			r.log.Info("draining a retired node pool", "pool", pool, "nodes", progress.Nodes, "pods", progress.Pods)
			continue
		}
		err = stacks.Delete(ctx, orphans[pool].Name, false, opts.Timeout)
		r.metrics.stackOperation("delete", err)
		if err != nil {
			out.fail("infrastructure", "The stack of a retired node pool cannot be deleted", err)
			pending = append(pending, pool)
			continue
		}
		events.Publish(r.events, nodePoolRetiredEvent(cc, pool, orphans[pool].Name))
	}
	out.status.PendingNodePools = pending
	if len(pending) > 0 && out.phase == api.PhaseIdle {
		out.phase = api.PhaseRollingNodes
	}
}

// rollNodes makes one pass of the node pools' rolls: outdated nodes are
// replaced, a step at a time, under the drain SLA. With blockAll (a block of
// the whole cluster) it only stops them.
func (r *Reconciler) rollNodes(ctx context.Context, a api.Assignment, out *outcome, blockAll bool) {
	settings := out.status.NodeUpdate
	if settings == nil || r.infra.AWS == nil || r.infra.SkipNodes {
		return
	}
	cfg, err := settings.Config(a, blockAll)
	if err != nil {
		out.fail("nodes", "Outdated nodes cannot be replaced", err)
		return
	}
	cfg.Closed, err = nodes.ClosedPools(a, r.now())
	if err != nil {
		out.fail("window", "A node update window cannot be read; its pool's nodes are not replaced", err)
	}
	roller := r.roller(a.Cluster)
	res, err := roller.Pass(ctx, cfg, out.status.Rolls)
	out.status.Rolls, out.status.NodePools = res.Rolls, res.Progress
	out.pools = append(out.pools, res.Progress...)
	if err != nil {
		out.fail("nodes", "Replacing outdated nodes failed", err)
		return
	}
	if len(res.Rolls) > 0 && out.phase == api.PhaseIdle {
		out.phase = api.PhaseRollingNodes
	}
}

// retireSLA is the SLA for the nodes of pools that left the registry, and
// the drain's poll interval: the current version's, or the environment's
// defaults before there is one.
func (r *Reconciler) retireSLA(st clusterconfig.Status, environment string) (nodes.SLA, time.Duration, error) {
	settings := nodes.Settings{SLA: api.DefaultDrainSLA(environment)}
	if st.NodeUpdate != nil {
		settings = *st.NodeUpdate
	}
	sla, err := nodes.ParseSLA(settings.SLA)
	return sla, settings.Poll(), err
}

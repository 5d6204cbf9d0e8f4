package preview

import (
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// nodePools lists the pools whose nodes the commit would replace: those
// whose instances would be outdated with the commit's pool revisions, and
// which ones. Nodes outdated already, without the commit, count too: the
// roll after the commit replaces them all the same.
func (p *Previewer) nodePools(ctx context.Context, a api.Assignment, settings nodes.Settings, current map[string]string) ([]api.NodePoolPlan, error) {
	if p.aws == nil || len(settings.Revisions) == 0 {
		return []api.NodePoolPlan{}, nil
	}
	groups, err := p.aws.Fleet(a.Cluster.ID, a.Cluster.Region).Groups(ctx, nil)
	if err != nil {
		return nil, err
	}
	cfg, err := settings.Config(a, false)
	if err != nil {
		return nil, err
	}
	out := []api.NodePoolPlan{}
	for _, spec := range cfg.Pools {
		i := slices.IndexFunc(groups, func(g nodes.Group) bool { return g.Pool == spec.Name })
		if i < 0 {
			continue
		}
		names, err := p.nodeNames(ctx, spec.Name)
		if err != nil {
			return nil, err
		}
		instances := serving(groups[i].Instances)
		plan := api.NodePoolPlan{Name: spec.Name, CurrentRevision: current[spec.Name], NextRevision: spec.Revision,
			NodesTotal: len(instances), Replaced: replaced(spec, instances, names)}
		if len(plan.Replaced) > 0 {
			out = append(out, plan)
		}
	}
	return out, nil
}

// nodeNames maps the instance ids of a pool's nodes to the nodes' names.
func (p *Previewer) nodeNames(ctx context.Context, pool string) (map[string]string, error) {
	list := &corev1.NodeList{}
	if err := p.kube.List(ctx, list, client.MatchingLabels{nodes.PoolLabel: pool}); err != nil {
		return nil, fmt.Errorf("listing the nodes of pool %s: %w", pool, err)
	}
	names := map[string]string{}
	for _, n := range list.Items {
		names[nodes.InstanceID(n.Spec.ProviderID)] = n.Name
	}
	return names, nil
}

// serving are the instances that are or will be nodes: not those the
// group is terminating already.
func serving(instances []nodes.Instance) []nodes.Instance {
	var out []nodes.Instance
	for _, inst := range instances {
		if nodes.Serving(inst) {
			out = append(out, inst)
		}
	}
	return out
}

// replaced names the instances that the pool's spec makes outdated, by
// their node's name, or by the instance id while the instance has no node
// yet, sorted.
func replaced(spec nodes.PoolSpec, instances []nodes.Instance, nodeNames map[string]string) []string {
	out := []string{}
	for _, inst := range instances {
		if outdated, _ := nodes.Outdated(spec, inst); !outdated {
			continue
		}
		name, ok := nodeNames[inst.ID]
		if !ok {
			name = inst.ID
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

package cli

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

var nodePoolKind = kind[api.NodePool]{
	noun: "node pool", command: "nodepools", keyArg: "NAME", keyField: "name", keyExample: "workers",
	parentArg: "CLUSTER", parentExample: exampleClusterID, fileExample: "workers.yaml",
	sample: `name: workers
profile: worker-default
instance_types: [m6i.large, m6a.large]
min_size: 3
max_size: 20
`,
	patchExample: `{"max_size":30}`,
	key:          func(p *api.NodePool) *string { return &p.Name },
	calls: calls[api.NodePool]{
		get: func(ctx context.Context, cl *registry.Client, r ref) (*api.NodePool, string, error) {
			return cl.GetNodePool(ctx, r.parent, r.key)
		},
		create: func(ctx context.Context, cl *registry.Client, cluster string, p *api.NodePool) (*api.NodePool, string, error) {
			return cl.CreateNodePool(ctx, cluster, p)
		},
		update: func(ctx context.Context, cl *registry.Client, r ref, p *api.NodePool) (*api.NodePool, string, error) {
			return cl.UpdateNodePool(ctx, r.parent, r.key, p, "")
		},
		patch: func(ctx context.Context, cl *registry.Client, r ref, p json.RawMessage) (*api.NodePool, string, error) {
			return cl.PatchNodePool(ctx, r.parent, r.key, p, "")
		},
		delete: func(ctx context.Context, cl *registry.Client, r ref) error {
			return cl.DeleteNodePool(ctx, r.parent, r.key, "")
		},
	},
}

func (a *app) nodePoolsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "nodepools",
		Aliases: []string{"nodepool", "node-pools"},
		Short:   "Manage the node pools of a cluster",
		Long: `Manage the node pools of a cluster. A node pool is a group of nodes of one
shape, backed by one auto scaling group. When a pool changes, the agent
replaces its nodes one at a time under the drain SLA; a pool removed from
the registry is drained, then its stack deleted.`,
		Example: `  caravan nodepools list aws:123456789012:eu-central-1:kube-1
  caravan nodepools patch aws:123456789012:eu-central-1:kube-1 workers --patch '{"max_size":30}'`,
	}, a.nodePoolsListCommand())
	cmd.AddCommand(nodePoolKind.commands(a)...)
	return cmd
}

func (a *app) nodePoolsListCommand() *cobra.Command {
	return listCommand(a, &cobra.Command{
		Use:     "list CLUSTER",
		Short:   "List the node pools of a cluster",
		Long:    "List the node pools of a cluster with their profile, instance types, size bounds and discount strategy.",
		Example: "  caravan nodepools list aws:123456789012:eu-central-1:kube-1\n  caravan nodepools list aws:123456789012:eu-central-1:kube-1 -o yaml",
		Args:    cobra.ExactArgs(1),
	}, lister[api.NodePool]{
		page: func(ctx context.Context, cl *registry.Client, args []string, p registry.Page) (*api.List[api.NodePool], error) {
			return cl.ListNodePools(ctx, args[0], p)
		},
		formats: tableFormats,
		write: table([]string{"NAME", "PROFILE", "INSTANCE-TYPES", "MIN", "MAX", "DISCOUNT"}, func(p api.NodePool) []string {
			return []string{p.Name, p.Profile, strings.Join(p.InstanceTypes, ","),
				strconv.Itoa(p.MinSize), strconv.Itoa(p.MaxSize), p.DiscountStrategy}
		}),
	})
}

package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

var channelKind = kind[api.Channel]{
	noun: "channel", command: "channels", keyArg: "NAME", keyField: "name", keyExample: "beta",
	fileExample: "beta.yaml",
	sample: `name: beta
branch: beta
position: 2
repository_url: https://git.example.org/platform/cluster-config.git
`,
	patchExample: `{"position":3}`,
	key:          func(c *api.Channel) *string { return &c.Name },
	get: func(ctx context.Context, cl *registry.Client, r ref) (*api.Channel, string, error) {
		return cl.GetChannel(ctx, r.key)
	},
	create: func(ctx context.Context, cl *registry.Client, _ string, c *api.Channel) (*api.Channel, string, error) {
		return cl.CreateChannel(ctx, c)
	},
	update: func(ctx context.Context, cl *registry.Client, r ref, c *api.Channel) (*api.Channel, string, error) {
		return cl.UpdateChannel(ctx, r.key, c, "")
	},
	patch: func(ctx context.Context, cl *registry.Client, r ref, p json.RawMessage) (*api.Channel, string, error) {
		return cl.PatchChannel(ctx, r.key, p, "")
	},
	delete: func(ctx context.Context, cl *registry.Client, r ref) error {
		return cl.DeleteChannel(ctx, r.key, "")
	},
}

func (a *app) channelsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "channels",
		Aliases: []string{"channel"},
		Short:   "Manage the release channels",
		Long: `Manage the release channels. A channel is one step of the promotion path
(such as dev, alpha, beta, stable), backed by one branch of the config
repository; every cluster follows one channel. Position orders the path.`,
		Example: `  caravan channels list
  caravan channels patch beta --patch '{"branch":"release/beta"}'`,
	}, a.channelsListCommand())
	cmd.AddCommand(channelKind.commands(a)...)
	return cmd
}

func (a *app) channelsListCommand() *cobra.Command {
	var output *outputFlag
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the release channels in promotion order",
		Long:    "List the release channels ordered by position, the order in which a change is promoted through them.",
		Example: "  caravan channels list\n  caravan channels list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			channels, err := registry.All(func(p registry.Page) (*api.List[api.Channel], error) {
				return cl.ListChannels(ctx, p)
			})
			if err != nil {
				return err
			}
			sortChannels(channels)
			if output.value != formatTable {
				return writeObject(a.out, output.value, channels)
			}
			rows := make([][]string, len(channels))
			for i, c := range channels {
				rows[i] = []string{c.Name, c.Branch, strconv.Itoa(c.Position), c.RepositoryURL}
			}
			return writeTable(a.out, []string{"NAME", "BRANCH", "POSITION", "REPOSITORY"}, rows)
		},
	}
	output = addOutputFlag(cmd, formatTable, formatJSON, formatYAML)
	return cmd
}

func sortChannels(channels []api.Channel) {
	slices.SortStableFunc(channels, func(x, y api.Channel) int {
		return cmp.Or(cmp.Compare(x.Position, y.Position), cmp.Compare(x.Name, y.Name))
	})
}

package cli

import (
	"cmp"
	"context"
	"io"
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
	calls: keyedCalls((*registry.Client).GetChannel, (*registry.Client).CreateChannel,
		(*registry.Client).UpdateChannel, (*registry.Client).PatchChannel, (*registry.Client).DeleteChannel),
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
	return listCommand(a, &cobra.Command{
		Use:     "list",
		Short:   "List the release channels in promotion order",
		Long:    "List the release channels ordered by position, the order in which a change is promoted through them.",
		Example: "  caravan channels list\n  caravan channels list -o json",
		Args:    cobra.NoArgs,
	}, lister[api.Channel]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.Channel], error) {
			return cl.ListChannels(ctx, p)
		},
		formats: tableFormats,
		write: func(w io.Writer, format string, channels []api.Channel) error {
			// Every format shows the promotion order, not the registry's.
			sortChannels(channels)
			return writeList(w, format, channels, []string{"NAME", "BRANCH", "POSITION", "REPOSITORY"}, channelRow)
		},
	})
}

func channelRow(c api.Channel) []string {
	return []string{c.Name, c.Branch, strconv.Itoa(c.Position), c.RepositoryURL}
}

func sortChannels(channels []api.Channel) {
	slices.SortStableFunc(channels, func(x, y api.Channel) int {
		return cmp.Or(cmp.Compare(x.Position, y.Position), cmp.Compare(x.Name, y.Name))
	})
}

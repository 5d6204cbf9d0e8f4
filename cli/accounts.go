package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

var accountKind = kind[api.InfrastructureAccount]{
	noun: "infrastructure account", command: "accounts", keyArg: "ID", keyField: "id", keyExample: "aws:123456789012",
	fileExample: "account.yaml",
	sample: `id: aws:123456789012
name: team-checkout-test
owner: team-checkout
environment: test
`,
	patchExample: `{"config_items":{"cost_center":"4711"}}`,
	key:          func(a *api.InfrastructureAccount) *string { return &a.ID },
	calls: keyedCalls((*registry.Client).GetInfrastructureAccount, (*registry.Client).CreateInfrastructureAccount,
		(*registry.Client).UpdateInfrastructureAccount, (*registry.Client).PatchInfrastructureAccount,
		(*registry.Client).DeleteInfrastructureAccount),
}

func (a *app) accountsCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "accounts",
		Aliases: []string{"account"},
		Short:   "Manage the infrastructure accounts",
		Long: `Manage the infrastructure accounts: the cloud accounts that hold clusters.
An account's config items reach every cluster in it, unless the cluster
sets the item itself. An account that still holds clusters cannot be deleted.`,
		Example: `  caravan accounts list --environment production
  caravan accounts get aws:123456789012`,
	}, a.accountsListCommand())
	cmd.AddCommand(accountKind.commands(a)...)
	return cmd
}

func (a *app) accountsListCommand() *cobra.Command {
	var f registry.AccountFilter
	cmd := listCommand(a, &cobra.Command{
		Use:     "list",
		Short:   "List infrastructure accounts",
		Long:    "List the infrastructure accounts that match every filter given.",
		Example: "  caravan accounts list\n  caravan accounts list --environment production -o yaml",
		Args:    cobra.NoArgs,
	}, lister[api.InfrastructureAccount]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.InfrastructureAccount], error) {
			return cl.ListInfrastructureAccounts(ctx, f, p)
		},
		formats: tableFormats,
		write: table([]string{"ID", "NAME", "OWNER", "ENVIRONMENT", "LIFECYCLE"}, func(acc api.InfrastructureAccount) []string {
			return []string{acc.ID, acc.Name, acc.Owner, acc.Environment, acc.LifecycleStatus}
		}),
	})
	cmd.Flags().StringVar(&f.Environment, "environment", "", "only accounts of this environment")
	cmd.Flags().StringVar(&f.LifecycleStatus, "lifecycle-status", "", "only accounts in this lifecycle state (ready, decommissioned)")
	return cmd
}

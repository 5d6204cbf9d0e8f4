package cli

import (
	"context"
	"encoding/json"

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
	get: func(ctx context.Context, cl *registry.Client, r ref) (*api.InfrastructureAccount, string, error) {
		return cl.GetInfrastructureAccount(ctx, r.key)
	},
	create: func(ctx context.Context, cl *registry.Client, _ string, a *api.InfrastructureAccount) (*api.InfrastructureAccount, string, error) {
		return cl.CreateInfrastructureAccount(ctx, a)
	},
	update: func(ctx context.Context, cl *registry.Client, r ref, a *api.InfrastructureAccount) (*api.InfrastructureAccount, string, error) {
		return cl.UpdateInfrastructureAccount(ctx, r.key, a, "")
	},
	patch: func(ctx context.Context, cl *registry.Client, r ref, p json.RawMessage) (*api.InfrastructureAccount, string, error) {
		return cl.PatchInfrastructureAccount(ctx, r.key, p, "")
	},
	delete: func(ctx context.Context, cl *registry.Client, r ref) error {
		return cl.DeleteInfrastructureAccount(ctx, r.key, "")
	},
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
	var output *outputFlag
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List infrastructure accounts",
		Long:    "List the infrastructure accounts that match every filter given.",
		Example: "  caravan accounts list\n  caravan accounts list --environment production -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			accounts, err := registry.All(func(p registry.Page) (*api.List[api.InfrastructureAccount], error) {
				return cl.ListInfrastructureAccounts(ctx, f, p)
			})
			if err != nil {
				return err
			}
			if output.value != formatTable {
				return writeObject(a.out, output.value, accounts)
			}
			rows := make([][]string, len(accounts))
			for i, acc := range accounts {
				rows[i] = []string{acc.ID, acc.Name, acc.Owner, acc.Environment, acc.LifecycleStatus}
			}
			return writeTable(a.out, []string{"ID", "NAME", "OWNER", "ENVIRONMENT", "LIFECYCLE"}, rows)
		},
	}
	cmd.Flags().StringVar(&f.Environment, "environment", "", "only accounts of this environment")
	cmd.Flags().StringVar(&f.LifecycleStatus, "lifecycle-status", "", "only accounts in this lifecycle state (ready, decommissioned)")
	output = addOutputFlag(cmd, formatTable, formatJSON, formatYAML)
	return cmd
}

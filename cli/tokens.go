package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

func (a *app) tokensCommand() *cobra.Command {
	return group(&cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token"},
		Short:   "Manage the API tokens of the registry",
		Long: `Manage the API tokens of the registry. An admin token may change
everything, a reader token only reads, and an agent token is bound to one
cluster: it reads that cluster's assignment and reports its status.`,
		Example: `  caravan tokens create --name ci-pipeline --role admin
  caravan tokens create --name kube-1-agent --role agent --cluster aws:123456789012:eu-central-1:kube-1
  caravan tokens revoke 0f1e2d3c4b5a6978`,
	}, a.tokensListCommand(), a.tokensCreateCommand(), a.tokensRevokeCommand())
}

func (a *app) tokensListCommand() *cobra.Command {
	return listCommand(a, &cobra.Command{
		Use:     "list",
		Short:   "List the API tokens",
		Long:    "List the API tokens, revoked ones included. Secrets are never shown again after creation.",
		Example: "  caravan tokens list",
		Args:    cobra.NoArgs,
	}, lister[api.Token]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.Token], error) {
			return cl.ListTokens(ctx, p)
		},
		formats: tableFormats,
		write:   table([]string{"ID", "NAME", "ROLE", "CLUSTER", "CREATED", "CREATED-BY", "REVOKED"}, tokenRow),
	})
}

func tokenRow(t api.Token) []string {
	revoked := ""
	if t.RevokedAt != nil {
		revoked = formatTime(*t.RevokedAt)
	}
	return []string{t.ID, t.Name, t.Role, t.ClusterID, formatTime(t.CreatedAt), t.CreatedBy, revoked}
}

func (a *app) tokensCreateCommand() *cobra.Command {
	var req registry.TokenRequest
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "create --name NAME --role ROLE",
		Short: "Issue an API token",
		Long: `Issue an API token and print its secret, alone on stdout so that it can be
captured. The registry keeps only a hash: the secret cannot be shown again.
--role is ` + strings.Join(api.Roles, ", ") + `; an agent token needs --cluster.`,
		Example: `  TOKEN=$(caravan tokens create --name ci-pipeline --role admin)
  caravan tokens create --name kube-1-agent --role agent --cluster aws:123456789012:eu-central-1:kube-1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := api.ValidateToken(req.Name, req.Role, req.ClusterID); err != nil {
				return usagef("%v", err)
			}
			return a.createToken(cmd.Context(), req, output.value)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&req.Name, "name", "", "name of the token, such as who or what uses it")
	flags.StringVar(&req.Role, "role", "", "role of the token: "+strings.Join(api.Roles, ", "))
	flags.StringVar(&req.ClusterID, "cluster", "", "cluster an agent token is bound to")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("role")
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

func (a *app) createToken(ctx context.Context, req registry.TokenRequest, format string) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	t, err := cl.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	if format != formatText {
		return writeObject(a.out, format, t)
	}
	fmt.Fprintf(a.errOut, "token %s created; its secret is shown only this once\n", t.ID)
	fmt.Fprintln(a.out, t.Secret)
	return nil
}

func (a *app) tokensRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke an API token",
		Long:    "Revoke an API token: the registry refuses it from now on. It stays listed, with the time it was revoked.",
		Example: "  caravan tokens revoke 0f1e2d3c4b5a6978",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			if err := cl.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "token %s revoked\n", args[0])
			return nil
		},
	}
}

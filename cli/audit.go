package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

const (
	defaultAuditLimit = 100
	// maxAuditPage is the largest page the registry serves.
	maxAuditPage = 1000
)

func (a *app) auditCommand() *cobra.Command {
	var f registry.AuditFilter
	var limit int
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show who changed what in the registry",
		Long: `Show the audit log: every change to the registry with its time, the token
that made it, and the resource. -o json and -o yaml also show each
resource before and after the change.`,
		Example: `  caravan audit --resource-type cluster --resource-id aws:123456789012:eu-central-1:kube-1
  caravan audit --actor ci-pipeline --limit 20
  caravan audit --limit 0 -o json > audit.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef("--limit must not be negative, got %d", limit)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			entries, err := listAudit(cmd.Context(), cl, f, limit)
			if err != nil {
				return err
			}
			return writeList(a.out, output.value, entries, []string{"TIME", "ACTOR", "ACTION", "RESOURCE"}, auditRow)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.ResourceType, "resource-type", "", "only changes to this type of resource, such as cluster or channel")
	flags.StringVar(&f.ResourceID, "resource-id", "", "only changes to the resource with this id")
	flags.StringVar(&f.Actor, "actor", "", "only changes made by this actor")
	flags.IntVar(&limit, "limit", defaultAuditLimit, "show at most this many entries; 0 shows all")
	output = addOutputFlag(cmd, formatTable, formatJSON, formatYAML)
	return cmd
}

func auditRow(e api.AuditEntry) []string {
	return []string{formatTime(e.Time), e.Actor, e.Action, e.ResourceType + "/" + e.ResourceID}
}

// listAudit follows pages until it has limit entries (all of them for 0):
// the log grows without bound, so reading all of it must be asked for.
func listAudit(ctx context.Context, cl *registry.Client, f registry.AuditFilter, limit int) ([]api.AuditEntry, error) {
	entries := []api.AuditEntry{}
	var page registry.Page
	for {
		if limit > 0 {
			page.Limit = min(limit-len(entries), maxAuditPage)
		}
		l, err := cl.ListAudit(ctx, f, page)
		if err != nil {
			return nil, err
		}
		entries = append(entries, l.Items...)
		if limit > 0 && len(entries) >= limit {
			return entries[:limit], nil
		}
		if l.Next == "" || l.Next == page.Continue {
			return entries, nil
		}
		page.Continue = l.Next
	}
}

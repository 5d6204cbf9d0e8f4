package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

func (a *app) clusterDecommissionCommand() *cobra.Command {
	var confirm bool
	cmd := &cobra.Command{
		Use:   "decommission ID [--confirm]",
		Short: "Decommission a cluster: its node pools, then, once confirmed, the cluster itself",
		Long: `Decommission a cluster, in two steps.

1. Without --confirm: set the cluster's lifecycle_status to
   decommission-requested. Its agent then deletes the stacks of the node
   pools and reports its progress as the phase decommissioning; follow it
   with 'caravan clusters status ID'. The cluster stack stays, protected
   from termination.

2. With --confirm, once the node pool stacks are gone: confirm the
   decommission. The agent then lifts the termination protection of the
   cluster stack and deletes it. When it reports the phase decommissioned,
   the registry records the cluster's lifecycle_status as decommissioned;
   'caravan clusters delete ID' then removes it from the registry.
   --confirm is refused (HTTP 409) unless the cluster is in
   decommission-requested. Confirming twice is harmless.

Deleting the cluster stack cannot be undone. Setting lifecycle_status back
to ready calls a decommission off and drops its confirmation:
caravan clusters patch ID --patch '{"lifecycle_status":"ready"}'.`,
		Example: `  caravan clusters decommission aws:123456789012:eu-central-1:kube-1
  caravan clusters status aws:123456789012:eu-central-1:kube-1
  caravan clusters decommission aws:123456789012:eu-central-1:kube-1 --confirm`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if confirm {
				return a.confirmDecommission(cmd.Context(), args[0])
			}
			return a.requestDecommission(cmd.Context(), args[0])
		},
	}
	cmd.Flags().BoolVar(&confirm, "confirm", false, "confirm the decommission, so that the agent deletes the cluster stack (step 2)")
	return cmd
}

// requestDecommission sets lifecycle_status to decommission-requested with
// a patch carrying If-Match from a fresh read, retried as setConfigItem is.
func (a *app) requestDecommission(ctx context.Context, id string) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	patch := map[string]string{"lifecycle_status": api.LifecycleDecommissionRequested}
	for attempt := 1; ; attempt++ {
		c, etag, err := cl.GetCluster(ctx, id)
		if err != nil {
			return err
		}
		switch c.LifecycleStatus {
		case api.LifecycleDecommissioned:
			fmt.Fprintf(a.out, "cluster %q is decommissioned already; 'caravan clusters delete %s' removes it from the registry\n", id, id)
			return nil
		case api.LifecycleDecommissionRequested:
			if c.DecommissionConfirmedAt != nil {
				fmt.Fprintf(a.out, "cluster %q: decommission requested and confirmed at %s already\n", id, formatTime(*c.DecommissionConfirmedAt))
				fmt.Fprint(a.out, confirmedNextSteps(id))
				return nil
			}
			fmt.Fprintf(a.out, "cluster %q: decommission requested already\n", id)
			fmt.Fprint(a.out, requestedNextSteps(id))
			return nil
		}
		_, _, err = cl.PatchCluster(ctx, id, patch, etag)
		if err == nil {
			fmt.Fprintf(a.out, "cluster %q: decommission requested (lifecycle_status %s, was %s)\n", id, api.LifecycleDecommissionRequested, c.LifecycleStatus)
			fmt.Fprint(a.out, requestedNextSteps(id))
			return nil
		}
		if !registry.IsPreconditionFailed(err) || attempt == configSetAttempts {
			return fmt.Errorf("requesting the decommission of cluster %q: %w", id, err)
		}
	}
}

func (a *app) confirmDecommission(ctx context.Context, id string) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	c, err := cl.DecommissionCluster(ctx, id)
	if err != nil {
		return err
	}
	confirmed := ""
	if c.DecommissionConfirmedAt != nil {
		confirmed = " at " + formatTime(*c.DecommissionConfirmedAt)
	}
	fmt.Fprintf(a.out, "cluster %q: decommission confirmed%s\n", id, confirmed)
	fmt.Fprint(a.out, confirmedNextSteps(id))
	return nil
}

func requestedNextSteps(id string) string {
	return fmt.Sprintf(`Next: the agent deletes the node pool stacks; follow it with
  caravan clusters status %[1]s
Once they are gone, let it delete the cluster stack with
  caravan clusters decommission %[1]s --confirm
`, id)
}

func confirmedNextSteps(id string) string {
	return fmt.Sprintf(`Next: the agent lifts the termination protection of the cluster stack and
deletes it; the registry then records the cluster as decommissioned. Follow it with
  caravan clusters status %s
`, id)
}

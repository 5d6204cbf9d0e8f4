package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

const (
	exampleClusterID = "aws:123456789012:eu-central-1:kube-1"
	// configSetAttempts bounds the read-modify-write of a config item when
	// others keep changing the cluster in between.
	configSetAttempts = 3
)

var clusterKind = kind[api.Cluster]{
	noun: "cluster", command: "clusters", keyArg: "ID", keyField: "id", keyExample: exampleClusterID,
	fileExample: "kube-1.yaml",
	sample: `id: aws:123456789012:eu-central-1:kube-1
infrastructure_account: aws:123456789012
region: eu-central-1
api_server_url: https://kube-1.example.org
environment: test
channel: dev
`,
	patchExample: `{"config_items":{"log_level":"debug","old_item":null}}`,
	key:          func(c *api.Cluster) *string { return &c.ID },
	calls: keyedCalls((*registry.Client).GetCluster, (*registry.Client).CreateCluster,
		(*registry.Client).UpdateCluster, (*registry.Client).PatchCluster, (*registry.Client).DeleteCluster),
}

func (a *app) clustersCommand() *cobra.Command {
	cmd := group(&cobra.Command{
		Use:     "clusters",
		Aliases: []string{"cluster"},
		Short:   "Manage the clusters of the fleet",
		Long: `Manage the clusters of the fleet: register and change them, set their
config items, block and unblock their updates, see what their agents
report, and decommission them.

A cluster id is <infrastructure account>:<region>:<local id>, such as
aws:123456789012:eu-central-1:kube-1.`,
		Example: `  caravan clusters list --environment production -o wide
  caravan clusters config set aws:123456789012:eu-central-1:kube-1 log_level debug
  caravan clusters status aws:123456789012:eu-central-1:kube-1`,
	}, a.clustersListCommand())
	cmd.AddCommand(clusterKind.commands(a)...)
	cmd.AddCommand(
		a.clusterConfigCommand(),
		a.clusterBlockCommand(),
		a.clusterUnblockCommand(),
		a.clusterStatusCommand(),
		a.clusterHistoryCommand(),
		a.clusterDecommissionCommand(),
		a.clusterBootstrapCommand(),
	)
	return cmd
}

func (a *app) clustersListCommand() *cobra.Command {
	var f registry.ClusterFilter
	cmd := listCommand(a, &cobra.Command{
		Use:   "list",
		Short: "List clusters",
		Long: `List the clusters that match every filter given.

VERSION is the version the agent converged to: the first 7 characters of the
config commit and of the assignment hash, or - when it never converged.
STATUS is "blocked" when updates are blocked, else the title of the first
problem the agent reports, else its phase; "unknown" until the agent reports.
-o wide adds REGION, ACCOUNT, LIFECYCLE, PHASE, HEARTBEAT (time since the
agent's last report), DRIFT, NODEPOOLS and NEXT WINDOW.

DRIFT is what the agent found between versions, after the config item
drift_correction: "3 corrected" (objects someone else changed or deleted
that it set back since it became the leader), "report: 2" (drifted objects
it saw and left as they are) or "disabled"; "1 fight, ..." comes first while
another field manager keeps changing objects back ('caravan clusters status
ID' names them); "-" when the agent reports no drift.

NEXT WINDOW is when a new version may start on the cluster, as the registry
computes it from its update windows and the freezes: "open" (now), the next
opening in UTC ("2026-12-07 08:00 UTC (in 3h)"), "frozen until ..." while a
freeze holds it, or "invalid window" when its update_windows do not parse (no
version starts until they are fixed; 'caravan clusters status ID' says why).
-o json and -o yaml print the full clusters as a JSON array or a YAML list.`,
		Example: `  caravan clusters list
  caravan clusters list --channel stable --environment production -o wide
  caravan clusters list --lifecycle-status ready -o json | jq -r '.[].id'`,
		Args: cobra.NoArgs,
	}, lister[api.Cluster]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.Cluster], error) {
			return cl.ListClusters(ctx, f, p)
		},
		formats: []string{formatTable, formatWide, formatJSON, formatYAML},
		write: func(w io.Writer, format string, clusters []api.Cluster) error {
			return writeClusters(w, format, clusters, a.now())
		},
	})
	flags := cmd.Flags()
	flags.StringVar(&f.Channel, "channel", "", "only clusters that follow this channel")
	flags.StringVar(&f.Environment, "environment", "", "only clusters of this environment")
	flags.StringVar(&f.LifecycleStatus, "lifecycle-status", "", "only clusters in this lifecycle state (requested, ready, decommission-requested, decommissioned)")
	flags.StringVar(&f.Alias, "alias", "", "only clusters with this alias")
	flags.StringVar(&f.InfrastructureAccount, "account", "", "only clusters of this infrastructure account")
	return cmd
}

func writeClusters(w io.Writer, format string, clusters []api.Cluster, now time.Time) error {
	switch format {
	case formatTable, formatWide:
		return writeClusterTable(w, clusters, format == formatWide, now)
	default:
		return writeObject(w, format, clusters)
	}
}

func (a *app) clusterConfigCommand() *cobra.Command {
	return group(&cobra.Command{
		Use:   "config",
		Short: "Set and unset config items of a cluster",
		Long: `Set and unset config items of a cluster. Config items parameterise the
cluster's configuration; a cluster's items override those of its account.
The agent picks a change up with its next assignment and reconciles.`,
		Example: `  caravan clusters config set aws:123456789012:eu-central-1:kube-1 drain_grace_period 4h
  caravan clusters config unset aws:123456789012:eu-central-1:kube-1 drain_grace_period`,
	}, a.clusterConfigSetCommand(), a.clusterConfigUnsetCommand())
}

func (a *app) clusterConfigSetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "set ID KEY VALUE",
		Short: "Set a config item of a cluster",
		Long: `Set a config item of a cluster. KEY is lower case letters, digits and _.
Values prefixed aws:kms: are decrypted by the agent inside the cluster's own
account, so the registry only ever holds the ciphertext.`,
		Example: `  caravan clusters config set aws:123456789012:eu-central-1:kube-1 drain_grace_period 4h
  caravan clusters config set aws:123456789012:eu-central-1:kube-1 db_password "aws:kms:$CIPHERTEXT"`,
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.setConfigItem(cmd.Context(), args[0], args[1], &args[2])
		},
	}
}

func (a *app) clusterConfigUnsetCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "unset ID KEY",
		Short:   "Remove a config item of a cluster",
		Long:    "Remove a config item of a cluster: the account's value or the default of the config repository applies again.",
		Example: "  caravan clusters config unset aws:123456789012:eu-central-1:kube-1 drain_grace_period",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.setConfigItem(cmd.Context(), args[0], args[1], nil)
		},
	}
}

// setConfigItem sets (or with a nil value removes) one config item. The
// patch carries If-Match from a fresh read, which makes it safe to retry on
// a transient failure; a 412 means the cluster changed in between (or a
// retried patch already applied), so it reads again and checks.
func (a *app) setConfigItem(ctx context.Context, id, key string, value *string) error {
	if !api.ValidConfigKey(key) {
		return usagef("config item key %q must match [a-z0-9_]+", key)
	}
	cl, err := a.client()
	if err != nil {
		return err
	}
	patch := map[string]map[string]*string{"config_items": {key: value}}
	for attempt := 1; ; attempt++ {
		c, etag, err := cl.GetCluster(ctx, id)
		if err != nil {
			return err
		}
		if configItemIs(c.ConfigItems, key, value) {
			fmt.Fprintln(a.out, configItemMessage(id, key, value))
			return nil
		}
		_, _, err = cl.PatchCluster(ctx, id, patch, etag)
		if err == nil {
			fmt.Fprintln(a.out, configItemMessage(id, key, value))
			return nil
		}
		if !registry.IsPreconditionFailed(err) || attempt == configSetAttempts {
			return fmt.Errorf("changing config item %q of cluster %q: %w", key, id, err)
		}
	}
}

func configItemIs(items map[string]string, key string, value *string) bool {
	current, ok := items[key]
	if value == nil {
		return !ok
	}
	return ok && current == *value
}

func configItemMessage(id, key string, value *string) string {
	if value == nil {
		return fmt.Sprintf("cluster %q: config item %q unset", id, key)
	}
	return fmt.Sprintf("cluster %q: config item %q set", id, key)
}

func (a *app) clusterBlockCommand() *cobra.Command {
	var reason, nodePool, until string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "block ID --reason REASON",
		Short: "Block updates of a cluster or of one of its node pools",
		Long: `Block updates of a cluster, or only of one of its node pools with
--node-pool. The agent stops an update in progress at the next safe point
and starts none until the block is lifted: with 'caravan clusters unblock',
or by itself at --until or after --for.`,
		Example: `  caravan clusters block aws:123456789012:eu-central-1:kube-1 --reason "incident 4711"
  caravan clusters block aws:123456789012:eu-central-1:kube-1 --reason "load test" --node-pool workers --for 6h
  caravan clusters block aws:123456789012:eu-central-1:kube-1 --reason "freeze" --until 2030-01-06T08:00:00Z`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := registry.BlockRequest{Reason: reason, NodePool: nodePool}
			switch {
			case until != "":
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usagef("--until must be an RFC 3339 time such as 2030-01-06T08:00:00Z, got %q", until)
				}
				req.Until = &t
			case cmd.Flags().Changed("for"):
				if duration <= 0 {
					return usagef("--for must be positive, got %s", duration)
				}
				t := a.now().Add(duration).UTC().Truncate(time.Second)
				req.Until = &t
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			b, _, err := cl.CreateBlock(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.out, blockMessage(b, "created"))
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&reason, "reason", "", "why updates are blocked; shown to everyone who looks at the cluster")
	flags.StringVar(&nodePool, "node-pool", "", "block only this node pool")
	flags.StringVar(&until, "until", "", "lift the block at this RFC 3339 time")
	flags.DurationVar(&duration, "for", 0, "lift the block after this long, such as 4h")
	_ = cmd.MarkFlagRequired("reason")
	cmd.MarkFlagsMutuallyExclusive("until", "for")
	return cmd
}

func blockMessage(b *api.Block, verb string) string {
	target := fmt.Sprintf("cluster %q", b.ClusterID)
	if b.NodePool != "" {
		target = fmt.Sprintf("node pool %q of cluster %q", b.NodePool, b.ClusterID)
	}
	msg := fmt.Sprintf("block %s on %s %s", b.ID, target, verb)
	if b.Until != nil && verb == "created" {
		msg += ", until " + formatTime(*b.Until)
	}
	return msg
}

func (a *app) clusterUnblockCommand() *cobra.Command {
	var nodePool string
	cmd := &cobra.Command{
		Use:   "unblock ID",
		Short: "Lift the blocks of a cluster or of one of its node pools",
		Long: `Lift the active blocks of a cluster, or with --node-pool those of one of
its node pools. Blocks of node pools stay when the cluster's are lifted.
Nothing to lift is not an error.`,
		Example: `  caravan clusters unblock aws:123456789012:eu-central-1:kube-1
  caravan clusters unblock aws:123456789012:eu-central-1:kube-1 --node-pool workers`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.unblock(cmd.Context(), args[0], nodePool)
		},
	}
	cmd.Flags().StringVar(&nodePool, "node-pool", "", "lift the blocks of this node pool instead of the cluster's")
	return cmd
}

func (a *app) unblock(ctx context.Context, id, nodePool string) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	blocks, err := registry.All(func(p registry.Page) (*api.List[api.Block], error) {
		return cl.ListBlocks(ctx, id, p)
	})
	if err != nil {
		return err
	}
	now := a.now()
	lifted := 0
	for _, b := range blocks {
		if b.NodePool != nodePool || !b.ActiveAt(now) {
			continue
		}
		// Someone else lifting the same block at the same time is fine.
		if err := cl.DeleteBlock(ctx, id, b.ID, ""); err != nil && !registry.IsNotFound(err) {
			return fmt.Errorf("lifting block %s: %w", b.ID, err)
		}
		fmt.Fprintln(a.out, blockMessage(&b, "lifted"))
		lifted++
	}
	if lifted == 0 {
		fmt.Fprintln(a.out, "no active block to lift")
	}
	return nil
}

func (a *app) clusterStatusCommand() *cobra.Command {
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "status ID",
		Short: "Show what the agent of a cluster reports",
		Long: `Show the last status the agent of a cluster reported: the version it runs,
the version it moves to, its phase, the progress of each node pool's rolling
update, and its problems. In phase waiting-for-window a new version waits for
the cluster's update window: "Window opens" says when. A node pool's roll
that paused outside its node update window shows when it goes on.

Under "Drift" the agent says what it found between versions: the mode (the
config item drift_correction: enabled corrects, report only reports,
disabled does not watch), how many drifted objects it saw and corrected since
it became the leader, the fights (objects whose fields another field manager
keeps changing back: the agent leaves them alone until UNTIL, unless a new
version changes them first) and its last detections (up to 20), newest
first: when, which object, what it did (corrected, recreated or reported),
the fields that had been changed and the field manager that changed them.

Under "Schedule" the registry says when the cluster may change: its update
windows and node update windows (the config items update_windows and
node_update_windows, the cluster's over its account's; none set means
always), when the next version may start (now, at the next opening, or after
a freeze), and the freezes that cover the cluster, in force or to come
(scope, until when, by whom and why). Times are UTC.

-o json and -o yaml print the status document (null when the agent never
reported); 'caravan clusters get ID -o json' has the schedule too.`,
		Example: `  caravan clusters status aws:123456789012:eu-central-1:kube-1
  caravan clusters status aws:123456789012:eu-central-1:kube-1 -o json | jq .problems`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			c, _, err := cl.GetCluster(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output.value != formatText {
				return writeObject(a.out, output.value, c.Status)
			}
			return writeStatus(a.out, c, a.now())
		},
	}
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

func writeStatus(w io.Writer, c *api.Cluster, now time.Time) error {
	s := c.Status
	if s == nil {
		if _, err := fmt.Fprintf(w, "Cluster %s (%s): the agent has not reported yet\n", c.ID, c.Alias); err != nil {
			return err
		}
		return writeSchedule(w, c.Schedule, now)
	}
	heartbeat := ""
	if !s.Heartbeat.IsZero() {
		heartbeat = formatTime(s.Heartbeat) + " (" + age(s.Heartbeat, now) + " ago)"
	}
	fields := [][2]string{
		{"Cluster", c.ID + " (" + c.Alias + ")"},
		{"Status", clusterStatusText(s)},
		{"Phase", s.Phase},
	}
	if s.Phase == api.PhaseWaitingForWindow || s.NextWindow != nil {
		opens := "unknown: the agent did not say"
		if s.NextWindow != nil {
			opens = ahead(*s.NextWindow, now)
		}
		fields = append(fields, [2]string{"Window opens", opens})
	}
	fields = append(fields,
		[2]string{"Current version", s.CurrentVersion},
		[2]string{"Next version", s.NextVersion},
		[2]string{"Last version", s.LastVersion},
		[2]string{"Agent", s.AgentVersion},
		[2]string{"Heartbeat", heartbeat},
	)
	if err := writeFields(w, fields); err != nil {
		return err
	}
	if err := writeSchedule(w, c.Schedule, now); err != nil {
		return err
	}
	if len(s.NodePools) > 0 {
		rows := make([][]string, len(s.NodePools))
		for i, p := range s.NodePools {
			paused := ""
			if p.NextWindow != nil {
				paused = ahead(*p.NextWindow, now)
			}
			rows[i] = []string{p.Name, strconv.Itoa(p.NodesTotal), strconv.Itoa(p.Outdated), strconv.Itoa(p.Draining), paused}
		}
		fmt.Fprintln(w, "\nNode pools:")
		if err := writeTable(w, []string{"NAME", "NODES", "OUTDATED", "DRAINING", "ROLL PAUSED UNTIL"}, rows); err != nil {
			return err
		}
	}
	if err := writeDrift(w, s.Drift, now); err != nil {
		return err
	}
	if len(s.Problems) > 0 {
		rows := make([][]string, len(s.Problems))
		for i, p := range s.Problems {
			rows[i] = []string{formatTime(p.Since), p.Title, p.Detail}
		}
		fmt.Fprintln(w, "\nProblems:")
		return writeTable(w, []string{"SINCE", "TITLE", "DETAIL"}, rows)
	}
	return nil
}

// writeSchedule prints when the cluster may change: its windows, whether a
// new version may start now or when it next may, and the freezes that
// cover it. A registry that sends no schedule gets nothing printed.
func writeSchedule(w io.Writer, sc *api.ClusterSchedule, now time.Time) error {
	if sc == nil {
		return nil
	}
	if err := writeSection(w, "Schedule", [][2]string{
		{"Update windows", windowsText(sc.UpdateWindows)},
		{"Node update windows", windowsText(sc.NodeUpdateWindows)},
		{"Next version starts", scheduleText(sc, now)},
	}); err != nil {
		return err
	}
	if len(sc.Freezes) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nFreezes:")
	rows := make([][]string, len(sc.Freezes))
	for i, f := range sc.Freezes {
		rows[i] = []string{f.ID, freezeState(f, now), f.Scope(), formatTime(f.Since), formatTime(f.Until), f.By, f.Reason}
	}
	return writeTable(w, []string{"ID", "STATE", "SCOPE", "SINCE", "UNTIL", "BY", "REASON"}, rows)
}

// writeSection prints a block of a status: its title, then its fields
// indented under it.
func writeSection(w io.Writer, title string, fields [][2]string) error {
	fmt.Fprintf(w, "\n%s:\n", title)
	var b bytes.Buffer
	if err := writeFields(&b, fields); err != nil {
		return err
	}
	_, err := io.WriteString(w, indent(b.String(), "  "))
	return err
}

// driftModes says what each drift_correction does, after the mode.
var driftModes = map[string]string{
	api.DriftEnabled:  "drift is corrected",
	api.DriftReport:   "drift is reported, not corrected",
	api.DriftDisabled: "drift is not watched",
}

// writeDrift prints what the agent found and corrected between versions:
// the mode and counts, the fights, and the last detections. An agent that
// reports no drift gets nothing printed.
func writeDrift(w io.Writer, d *api.DriftStatus, now time.Time) error {
	if d == nil {
		return nil
	}
	mode := d.Mode
	if what, ok := driftModes[d.Mode]; ok {
		mode += " (" + what + ")"
	}
	if err := writeSection(w, "Drift", [][2]string{
		{"Mode", mode},
		{"Detected", strconv.FormatInt(d.Detected, 10)},
		{"Corrected", strconv.FormatInt(d.Corrected, 10)},
	}); err != nil {
		return err
	}
	if len(d.Fights) > 0 {
		rows := make([][]string, len(d.Fights))
		for i, f := range d.Fights {
			rows[i] = []string{f.Object, strings.Join(f.Fields, ", "), f.Manager, strconv.Itoa(f.Corrections), formatTime(f.Since), ahead(f.Until, now)}
		}
		fmt.Fprintln(w, "\nDrift fights (another manager keeps changing these back; left alone until UNTIL):")
		if err := writeTable(w, []string{"OBJECT", "FIELDS", "MANAGER", "CORRECTIONS", "SINCE", "UNTIL"}, rows); err != nil {
			return err
		}
	}
	if len(d.Recent) == 0 {
		return nil
	}
	rows := make([][]string, len(d.Recent))
	for i, c := range d.Recent {
		rows[i] = []string{formatTime(c.At), c.Object, c.Action, strings.Join(c.Fields, ", "), c.Manager}
	}
	fmt.Fprintln(w, "\nRecent drift:")
	return writeTable(w, []string{"TIME", "OBJECT", "ACTION", "FIELDS", "MANAGER"}, rows)
}

// scheduleText says in words when a new version may start on a cluster.
func scheduleText(sc *api.ClusterSchedule, now time.Time) string {
	switch {
	case sc.Error != "":
		return "never while its window does not parse (" + sc.Error + "): fix the config item"
	case sc.Open:
		return "now (open)"
	}
	until, frozen := api.FrozenUntil(sc.Freezes, now)
	switch {
	case sc.NextOpening == nil && frozen:
		return "frozen until " + clock(until) + ", and no opening of the update window found after"
	case sc.NextOpening == nil:
		return "no opening of the update window found ahead"
	case !frozen:
		return ahead(*sc.NextOpening, now) + ", when the update window opens"
	case !sc.NextOpening.After(until):
		return ahead(*sc.NextOpening, now) + ", when the freeze ends"
	}
	return ahead(*sc.NextOpening, now) + ", when the update window opens after the freeze (frozen until " + clock(until) + ")"
}

func (a *app) clusterHistoryCommand() *cobra.Command {
	return listCommand(a, &cobra.Command{
		Use:   "history ID",
		Short: "Show the versions and phases a cluster went through",
		Long: `Show when the agent of a cluster reached each version and phase, with
versions shortened as in 'caravan clusters list'.`,
		Example: `  caravan clusters history aws:123456789012:eu-central-1:kube-1
  caravan clusters history aws:123456789012:eu-central-1:kube-1 -o json`,
		Args: cobra.ExactArgs(1),
	}, lister[api.StatusHistoryEntry]{
		page: func(ctx context.Context, cl *registry.Client, args []string, p registry.Page) (*api.List[api.StatusHistoryEntry], error) {
			return cl.ListClusterStatusHistory(ctx, args[0], p)
		},
		formats: tableFormats,
		write: table([]string{"TIME", "PHASE", "CURRENT", "NEXT"}, func(e api.StatusHistoryEntry) []string {
			return []string{formatTime(e.Time), e.Phase, shortVersion(e.CurrentVersion), shortVersion(e.NextVersion)}
		}),
	})
}

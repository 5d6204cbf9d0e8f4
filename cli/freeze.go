package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// maxReasonColumn keeps a table of freezes readable; -o wide and -o json
// have the whole reason.
const maxReasonColumn = 60

func (a *app) freezeCommand() *cobra.Command {
	return group(&cobra.Command{
		Use:     "freeze",
		Aliases: []string{"freezes"},
		Short:   "Freeze changes of a channel, an environment or the whole fleet until a time",
		Long: `Freeze changes: while a freeze is in force, the clusters it covers hold
still as under a block ('caravan clusters block'; their agents report phase
blocked with the freeze's reason), and promotion into a frozen channel is
refused unless 'caravan promote' is given --override-gate with a --reason.
A freeze covers a channel, an environment, the clusters of a channel in one
environment (both together), or the whole fleet (--all), from its start (now
unless --from says later) until its end. It ends by itself; 'caravan freeze
delete' lifts it early. Every freeze is kept with who made it and why, and
the registry's audit log records its creation and deletion.

Update windows, the config items update_windows and node_update_windows,
say when a cluster may change week by week; a freeze says when nothing may.
'caravan clusters status ID' shows both for one cluster.`,
		Example: `  caravan freeze create --reason "Cyber Week" --environment production --from 2026-11-23T00:00:00Z --until 2026-12-01T00:00:00Z
  caravan freeze list --active
  caravan freeze delete 0f1e2d3c4b5a6978`,
	}, a.freezeCreateCommand(), a.freezeListCommand(), a.freezeDeleteCommand())
}

type freezeFlags struct {
	reason      string
	from        string
	until       string
	channel     string
	environment string
	all         bool
}

func (a *app) freezeCreateCommand() *cobra.Command {
	f := &freezeFlags{}
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "create --reason TEXT --until T [--from T] (--channel C | --environment E | --all)",
		Short: "Freeze changes until a time",
		Long: `Freeze changes of the clusters of a channel (--channel), of an environment
(--environment), of a channel's clusters in one environment (both), or of the
whole fleet (--all, which goes alone). One of them is required.

--until and --from take an RFC 3339 time such as 2026-12-01T00:00:00Z, or a
duration from now such as 48h or 90m. The freeze starts now unless --from
names a later time, and ends at --until. --reason is shown to everyone who
looks at a frozen cluster or channel, with the name of your token.

From its start until its end the clusters it covers hold still as under a
block, and promotion into a channel it covers whole (--channel alone, or
--all) is refused unless overridden with
'caravan promote FROM TO --override-gate --reason TEXT'.`,
		Example: `  caravan freeze create --reason "Cyber Week" --environment production --from 2026-11-23T00:00:00Z --until 2026-12-01T00:00:00Z
  caravan freeze create --reason "incident 4711" --channel stable --until 48h
  caravan freeze create --reason "registry migration" --all --from 2h --until 6h -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			freeze, err := f.freeze(a.now())
			if err != nil {
				return err
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			created, _, err := cl.CreateFreeze(cmd.Context(), freeze)
			if err != nil {
				return err
			}
			if output.value != formatText {
				return writeObject(a.out, output.value, created)
			}
			fmt.Fprintln(a.out, freezeMessage(created, a.now()))
			fmt.Fprintf(a.out, "Lift it early with: caravan freeze delete %s\n", created.ID)
			return nil
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&f.reason, "reason", "", "why changes must wait; shown with the freeze everywhere")
	flags.StringVar(&f.until, "until", "", "end of the freeze: an RFC 3339 time, or a duration from now such as 48h")
	flags.StringVar(&f.from, "from", "", "start of the freeze, when later than now: an RFC 3339 time, or a duration from now such as 2h")
	flags.StringVar(&f.channel, "channel", "", "freeze the clusters that follow this channel, and promotion into it")
	flags.StringVar(&f.environment, "environment", "", "freeze the clusters of this environment (with --channel: only the channel's clusters of it)")
	flags.BoolVar(&f.all, "all", false, "freeze the whole fleet")
	_ = cmd.MarkFlagRequired("reason")
	_ = cmd.MarkFlagRequired("until")
	output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

// freeze checks the flags and makes the freeze they describe.
func (f *freezeFlags) freeze(now time.Time) (*api.Freeze, error) {
	reason := strings.TrimSpace(f.reason)
	switch {
	case reason == "":
		return nil, usagef("--reason must say why changes must wait: everyone who looks at a frozen cluster sees it")
	case f.all && (f.channel != "" || f.environment != ""):
		return nil, usagef("--all freezes the whole fleet and goes alone: drop --channel and --environment, or drop --all")
	case !f.all && f.channel == "" && f.environment == "":
		return nil, usagef("say what to freeze: --channel C, --environment E (both together: the channel's clusters of that environment), or --all for the whole fleet")
	}
	// Without --from the registry starts the freeze at its own time.
	var since time.Time
	start := now
	if f.from != "" {
		t, err := freezeTime("--from", f.from, now)
		if err != nil {
			return nil, err
		}
		since = t
		if t.After(start) {
			start = t
		}
	}
	until, err := freezeTime("--until", f.until, now)
	if err != nil {
		return nil, err
	}
	if !until.After(start) {
		return nil, usagef("--until (%s) must be later than the start of the freeze (%s)", clock(until), clock(start))
	}
	return &api.Freeze{Reason: reason, All: f.all, Channel: f.channel, Environment: f.environment, Since: since, Until: until}, nil
}

// freezeTime reads an RFC 3339 time, or a positive duration from now.
func freezeTime(flag, value string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, value); err == nil {
		return t.UTC(), nil
	}
	if d, err := time.ParseDuration(value); err == nil {
		if d <= 0 {
			return time.Time{}, usagef("%s must be a time to come: a positive duration such as 48h, got %s", flag, value)
		}
		return now.Add(d).UTC().Truncate(time.Second), nil
	}
	return time.Time{}, usagef("%s must be an RFC 3339 time such as 2026-12-01T00:00:00Z or a duration from now such as 48h, got %q", flag, value)
}

func freezeMessage(f *api.Freeze, now time.Time) string {
	when := "in force now"
	if f.Since.After(now) {
		when = "in force from " + clock(f.Since)
	}
	return fmt.Sprintf("freeze %s of %s created: %s until %s (by %s: %s)", f.ID, f.Scope(), when, clock(f.Until), f.By, f.Reason)
}

func (a *app) freezeListCommand() *cobra.Command {
	var filter registry.FreezeFilter
	cmd := listCommand(a, &cobra.Command{
		Use:   "list [--active]",
		Short: "List the freezes",
		Long: `List the freezes, newest start first: those in force (ACTIVE), those to come
(SCHEDULED) and those that ended (ENDED), or with --active only those in force
now. SCOPE is what a freeze covers, SINCE and UNTIL when (UTC), BY the token
that made it. REASON is cut to keep rows short; -o wide shows it whole with
CREATED, and -o json and -o yaml print the freezes as the registry keeps them.`,
		Example: "  caravan freeze list\n  caravan freeze list --active -o wide\n  caravan freeze list -o json | jq -r '.[] | select(.all) | .id'",
		Args:    cobra.NoArgs,
	}, lister[api.Freeze]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.Freeze], error) {
			return cl.ListFreezes(ctx, filter, p)
		},
		formats: []string{formatTable, formatWide, formatJSON, formatYAML},
		write: func(w io.Writer, format string, freezes []api.Freeze) error {
			sortFreezes(freezes)
			if format == formatJSON || format == formatYAML {
				return writeObject(w, format, freezes)
			}
			return writeFreezeTable(w, freezes, format == formatWide, a.now())
		},
	})
	cmd.Flags().BoolVar(&filter.Active, "active", false, "only the freezes in force now")
	return cmd
}

// sortFreezes orders freezes by start, newest first, then by id.
func sortFreezes(freezes []api.Freeze) {
	slices.SortStableFunc(freezes, func(x, y api.Freeze) int {
		return cmp.Or(y.Since.Compare(x.Since), cmp.Compare(x.ID, y.ID))
	})
}

func writeFreezeTable(w io.Writer, freezes []api.Freeze, wide bool, now time.Time) error {
	header := []string{"ID", "STATE", "SCOPE", "SINCE", "UNTIL", "BY", "REASON"}
	if wide {
		header = append(header, "CREATED")
	}
	rows := make([][]string, len(freezes))
	for i, f := range freezes {
		reason := cell(f.Reason)
		if !wide {
			reason = ellipsis(reason, maxReasonColumn)
		}
		rows[i] = []string{f.ID, freezeState(f, now), f.Scope(), formatTime(f.Since), formatTime(f.Until), f.By, reason}
		if wide {
			rows[i] = append(rows[i], formatTime(f.CreatedAt))
		}
	}
	return writeTable(w, header, rows)
}

func (a *app) freezeDeleteCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Lift a freeze",
		Long: `Delete a freeze, in force or to come, before it ends by itself: the clusters
it held go on inside their update windows, unless another freeze or a block
holds them. The deletion is recorded in the audit log.`,
		Example: "  caravan freeze list --active\n  caravan freeze delete 0f1e2d3c4b5a6978",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			f, etag, err := cl.GetFreeze(ctx, args[0])
			if err != nil {
				return err
			}
			if err := cl.DeleteFreeze(ctx, f.ID, etag); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "freeze %s of %s deleted (%s, until %s, by %s: %s)\n", f.ID, f.Scope(),
				strings.ToLower(freezeState(*f, a.now())), clock(f.Until), f.By, f.Reason)
			return nil
		},
	}
}

package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/channels"
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
promotion_soak: 24h
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
repository; every cluster follows one channel. Position orders the path.
promotion_soak is how long a commit must have run on every cluster of the
channel before 'caravan promote' takes it further (default: dev 0, alpha 1h,
beta and any other channel 24h). The registry reads each branch's head from
git and publishes a commit to each channel's agents (in their assignment).
gate says which: advisory publishes the branch head; enforced (the default of
stable, advisory for the others) publishes only a head that a recorded
promotion let through, one whose gate was met from the channel before or
overridden with a reason ('caravan promote'). A head that only arrived by a
push is held, with the reason, and the agents keep the commit published
before. The first channel (lowest position) has no channel before it and
publishes its head whatever its gate says. Switching a channel to advisory
publishes its head at once. head, clusters and publication are read-only.`,
		Example: `  caravan channels list
  caravan channels history dev
  caravan channels rollout beta
  caravan channels patch beta --patch '{"branch":"release/beta","promotion_soak":"48h"}'
  caravan channels patch beta --patch '{"gate":"enforced"}'`,
	}, a.channelsListCommand(), a.channelsHistoryCommand(), a.channelsRolloutCommand())
	cmd.AddCommand(channelKind.commands(a)...)
	return cmd
}

func (a *app) channelsListCommand() *cobra.Command {
	return listCommand(a, &cobra.Command{
		Use:   "list",
		Short: "List the release channels in promotion order, with their heads",
		Long: `List the release channels ordered by position, the order in which a change is
promoted through them. GATE is the gate in effect (advisory or enforced).
HEAD, SUBJECT, AUTHOR and AGE describe the newest commit of the channel's
branch as the registry last read it (SUBJECT says why when it could not read
it). PUBLISHED is the commit the channel's agents are given: the head, or,
while an enforced gate holds the head ("held" after it), the commit published
before; each held head is listed under the table with since when and why.
CURRENT is how many of the channel's clusters in service run the published
commit, OLDER how many run another one and PROBLEM how many report a problem.
-o wide adds POSITION, SOAK (the promotion soak) and REPOSITORY.`,
		Example: "  caravan channels list\n  caravan channels list -o wide\n  caravan channels list -o json",
		Args:    cobra.NoArgs,
	}, lister[api.Channel]{
		page: func(ctx context.Context, cl *registry.Client, _ []string, p registry.Page) (*api.List[api.Channel], error) {
			return cl.ListChannels(ctx, p)
		},
		formats: []string{formatTable, formatWide, formatJSON, formatYAML},
		write: func(w io.Writer, format string, channels []api.Channel) error {
			// Every format shows the promotion order, not the registry's.
			sortChannels(channels)
			if format == formatJSON || format == formatYAML {
				return writeObject(w, format, channels)
			}
			return writeChannelTable(w, channels, format == formatWide, a.now())
		},
	})
}

func writeChannelTable(w io.Writer, channels []api.Channel, wide bool, now time.Time) error {
	header := []string{"NAME", "BRANCH", "GATE", "HEAD", "PUBLISHED", "SUBJECT", "AUTHOR", "AGE", "CURRENT", "OLDER", "PROBLEM"}
	if wide {
		header = append(header, "POSITION", "SOAK", "REPOSITORY")
	}
	rows := make([][]string, len(channels))
	for i, c := range channels {
		rows[i] = channelRow(c, wide, now)
	}
	if err := writeTable(w, header, rows); err != nil {
		return err
	}
	writeHeldHeads(w, channels, now)
	return nil
}

// writeHeldHeads lists the heads the channels' gates hold, and what is
// wrong with what they publish.
func writeHeldHeads(w io.Writer, channels []api.Channel, now time.Time) {
	for _, c := range channels {
		p := c.Publication
		if p == nil {
			continue
		}
		if p.Held != nil {
			fmt.Fprintf(w, "%s holds its head %s (for %s): %s\n", c.Name, truncate(p.Held.Commit, shortSHALength), age(p.Held.Since, now), cell(p.Held.Reason))
		}
		if p.Problem != "" {
			fmt.Fprintf(w, "%s: %s\n", c.Name, cell(p.Problem))
		}
	}
}

func channelRow(c api.Channel, wide bool, now time.Time) []string {
	var head api.ChannelHead
	if c.Head != nil {
		head = *c.Head
	}
	subject := head.Subject
	if head.Error != "" {
		subject = "unreadable: " + head.Error
	}
	subject = ellipsis(cell(subject), maxSubjectLength)
	var when time.Time
	if head.Time != nil {
		when = *head.Time
	}
	var n api.ClusterCounts
	if c.Clusters != nil {
		n = *c.Clusters
	}
	gate, published := c.GateSetting(), ""
	if p := c.Publication; p != nil {
		gate, published = p.Gate, truncate(p.Commit, shortSHALength)
		if p.Held != nil {
			published += " held"
		}
	}
	row := []string{c.Name, c.Branch, gate, truncate(head.Commit, shortSHALength), published, subject, head.Author, age(when, now),
		fmt.Sprintf("%d/%d", n.Current, n.Total), strconv.Itoa(n.Older), strconv.Itoa(n.Problem)}
	if !wide {
		return row
	}
	return append(row, strconv.Itoa(c.Position), channels.FormatDuration(c.Soak()), c.RepositoryURL)
}

// maxSubjectLength keeps a table of channels readable; -o json has it all.
const maxSubjectLength = 72

// ellipsis cuts s to n runes, marking the cut.
func ellipsis(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func (a *app) channelsHistoryCommand() *cobra.Command {
	var limit int
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "history NAME",
		Short: "Show a channel branch's commits and how far each travelled",
		Long: `Show the newest commits of the channel's branch (first parents from the head,
newest first) and, for each, how many of the channel's clusters in service have
reached it (run it or a newer commit), when the first one did (FIRST) and when
the last one did (ALL, "-" while some have not). Times are ages: 2h is two hours ago.`,
		Example: "  caravan channels history dev\n  caravan channels history beta --limit 5 -o json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := a.client()
			if err != nil {
				return err
			}
			h, err := cl.GetChannelHistory(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if h.Error != "" {
				return fmt.Errorf("the registry cannot read the branch %s of channel %s: %s", h.Branch, h.Channel, h.Error)
			}
			if output.value != formatTable {
				return writeObject(a.out, output.value, h)
			}
			return writeHistoryTable(a.out, h, a.now())
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many commits, from 1 to 200")
	output = addOutputFlag(cmd, tableFormats...)
	return cmd
}

func writeHistoryTable(w io.Writer, h *api.ChannelHistory, now time.Time) error {
	rows := make([][]string, len(h.Commits))
	for i, c := range h.Commits {
		rows[i] = []string{truncate(c.Commit, shortSHALength), c.Subject, c.Author, age(c.Time, now),
			fmt.Sprintf("%d/%d", c.Clusters, h.Total), ageOf(c.FirstReachedAt, now), ageOf(c.AllReachedAt, now)}
	}
	return writeTable(w, []string{"COMMIT", "SUBJECT", "AUTHOR", "AGE", "REACHED", "FIRST", "ALL"}, rows)
}

func ageOf(t *time.Time, now time.Time) string {
	if t == nil {
		return ""
	}
	return age(*t, now)
}

func (a *app) channelsRolloutCommand() *cobra.Command {
	var commit string
	var output *outputFlag
	cmd := &cobra.Command{
		Use:   "rollout NAME [--commit SHA]",
		Short: "Show where a commit stands on a channel's clusters",
		Long: `Show every cluster of the channel in service with the version it runs, its
state against the commit (current, older, unreported), its phase, since when its
commit has been current (as an age, as far as its status history goes back) and
its problems. A cluster whose agent holds a new version back until its update
window opens shows "waiting for window (opens T)", T in UTC. The commit is the
one the channel publishes to its agents (its head, unless an enforced gate
holds it) unless --commit names another.`,
		Example: "  caravan channels rollout dev\n  caravan channels rollout beta --commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if commit != "" && !api.ValidCommit(commit) {
				return usagef("--commit must be a full commit id (40 lower-case hex digits), got %q", commit)
			}
			cl, err := a.client()
			if err != nil {
				return err
			}
			r, err := cl.GetChannelRollout(cmd.Context(), args[0], commit)
			if err != nil {
				return err
			}
			if output.value != formatTable {
				return writeObject(a.out, output.value, r)
			}
			return writeRollout(a.out, r, a.now())
		},
	}
	cmd.Flags().StringVar(&commit, "commit", "", "full id of the commit to show (default: the one the channel publishes)")
	output = addOutputFlag(cmd, tableFormats...)
	return cmd
}

func writeRollout(w io.Writer, r *api.ChannelRollout, now time.Time) error {
	what := "commit " + truncate(r.Commit, shortSHALength)
	switch {
	case r.Commit == "":
		what = "head unknown"
		if r.Head != nil && r.Head.Error != "" {
			what += " (" + r.Head.Error + ")"
		}
	case r.Head != nil && r.Head.Commit == r.Commit:
		what += " (head: " + r.Head.Subject + ")"
	}
	n := r.Counts
	waiting := 0
	for _, c := range r.Clusters {
		if c.Phase == api.PhaseWaitingForWindow {
			waiting++
		}
	}
	fmt.Fprintf(w, "channel %s, %s: %d/%d current, %d older, %d reporting a problem", r.Channel, cell(what), n.Current, n.Total, n.Older, n.Problem)
	if waiting > 0 {
		fmt.Fprintf(w, ", %d waiting for a window", waiting)
	}
	fmt.Fprintln(w)
	rows := make([][]string, len(r.Clusters))
	for i, c := range r.Clusters {
		rows[i] = []string{c.ID, c.State, shortVersion(c.Version), rolloutPhase(c), ageOf(c.Since, now), problemTitles(c.Problems)}
	}
	return writeTable(w, []string{"CLUSTER", "STATE", "VERSION", "PHASE", "SINCE", "PROBLEMS"}, rows)
}

// rolloutPhase is a cluster's phase in a rollout, and for one that waits
// for its update window, when the window opens.
func rolloutPhase(c api.RolloutCluster) string {
	if c.Phase != api.PhaseWaitingForWindow {
		return c.Phase
	}
	if c.NextWindow == nil {
		return "waiting for window"
	}
	return "waiting for window (opens " + clock(*c.NextWindow) + ")"
}

func problemTitles(problems []api.StatusProblem) string {
	titles := make([]string, len(problems))
	for i, p := range problems {
		titles[i] = p.Title
	}
	return strings.Join(titles, "; ")
}

func sortChannels(channels []api.Channel) {
	slices.SortStableFunc(channels, func(x, y api.Channel) int {
		return cmp.Or(cmp.Compare(x.Position, y.Position), cmp.Compare(x.Name, y.Name))
	})
}

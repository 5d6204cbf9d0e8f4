package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

type promoteFlags struct {
	commit       string
	dryRun       bool
	overrideGate bool
	reason       string
	git          gitFlags
	output       *outputFlag
}

// promotion is what promote prints with -o json or yaml.
type promotion struct {
	Gate      *api.PromotionGate `json:"gate"`
	Pushed    bool               `json:"pushed"`
	Promotion *api.Promotion     `json:"promotion,omitempty"`
	// Published is what TO publishes to its agents once the promotion is
	// recorded.
	Published *api.ChannelPublication `json:"published,omitempty"`
}

func (a *app) promoteCommand() *cobra.Command {
	f := &promoteFlags{}
	cmd := &cobra.Command{
		Use:   "promote FROM TO [--commit SHA] [--dry-run] [--override-gate --reason TEXT]",
		Short: "Fast-forward a channel's branch to a commit of the previous channel, gated by the fleet",
		Long: `Promote a commit from channel FROM to channel TO: fast-forward TO's branch to it
and push, then record the promotion in the registry's audit log.

The commit is what FROM publishes to its agents (its head, as the registry
last read it, unless FROM's gate holds that head) unless --commit names
another commit on FROM's branch. First the registry's promotion gate is
checked: every cluster of FROM in service runs the commit, none reports a
problem, and the commit has been current on all of them for at least FROM's
promotion_soak (default: dev 0, alpha 1h, beta 24h), and no freeze covers TO
('caravan freeze list --active'). The evidence (each cluster's version, since
when, problems), the freezes of TO (scope, until, by, reason) and the verdict
are printed. A gate that is not met, a frozen TO among its reasons, refuses
the promotion (exit 1) unless --override-gate is given with a --reason, which
the audit log keeps. --dry-run stops after the verdict, exiting 1 when the
promotion would be refused.

The push is a fast-forward only: it is refused when TO's branch holds commits
that the promoted commit does not (merge TO into FROM first), and when TO's
branch moves during the promotion. Both branches are fetched into memory; the
working directory is not touched. The push uses the operator's git
credentials: --git-username (or $CARAVAN_GIT_USERNAME) with the password or
access token in $CARAVAN_GIT_PASSWORD, a bearer token in $CARAVAN_GIT_TOKEN, or
an SSH key (--git-ssh-key-file or $CARAVAN_GIT_SSH_KEY_FILE, host keys from
--git-known-hosts-file, $CARAVAN_GIT_KNOWN_HOSTS_FILE or ~/.ssh/known_hosts).

When TO's gate is enforced (stable's by default, see 'caravan channels
--help'), the registry gives TO's agents only a head that a recorded
promotion let through: one whose gate was met from the channel before TO, or
overridden with a reason. A plain 'git push' to TO's branch is held there,
and the gate refuses a promotion into TO from any other channel. Promote a
held head with --commit naming it and --override-gate --reason: it need not
be on FROM's branch, since TO's branch has it already, and nothing is
pushed. A promotion that the registry still holds (the verdict changed
between the check and the record) exits 1 saying why.`,
		Example: `  caravan promote dev alpha --dry-run
  CARAVAN_GIT_USERNAME=ops CARAVAN_GIT_PASSWORD="$TOKEN" caravan promote alpha beta
  caravan promote beta stable --commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904 \
    --override-gate --reason "fix for incident 4711, verified on beta by hand"`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(args[0], args[1]); err != nil {
				return err
			}
			return a.promote(cmd.Context(), args[0], args[1], f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.commit, "commit", "", "full id of the commit to promote (default: FROM's head)")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the gate's evidence and verdict, and change nothing")
	fs.BoolVar(&f.overrideGate, "override-gate", false, "promote even when the gate is not met (needs --reason)")
	fs.StringVar(&f.reason, "reason", "", "why the gate is overridden, kept in the audit log")
	f.git.add(cmd)
	f.output = addOutputFlag(cmd, formatText, formatJSON, formatYAML)
	return cmd
}

func (f *promoteFlags) check(from, to string) error {
	switch {
	case from == to:
		return usagef("FROM and TO are both %q: a channel is not promoted to itself", from)
	case f.commit != "" && !api.ValidCommit(f.commit):
		return usagef("--commit must be a full commit id (40 lower-case hex digits), got %q", f.commit)
	case f.overrideGate && strings.TrimSpace(f.reason) == "":
		return usagef("--override-gate needs --reason: the audit log keeps why the gate was overridden")
	case !f.overrideGate && f.reason != "":
		return usagef("--reason goes with --override-gate")
	}
	return nil
}

func (a *app) promote(ctx context.Context, from, to string, f *promoteFlags) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	gate, err := cl.GetPromotionGate(ctx, from, to, f.commit)
	if err != nil {
		return err
	}
	result := &promotion{Gate: gate}
	if f.output.value == formatText {
		if err := writeGate(a.out, gate, a.now); err != nil {
			return err
		}
	}
	refused := refusal(gate, f)
	if f.dryRun {
		if err := a.printResult(f, result, "dry run: nothing changed"); err != nil {
			return err
		}
		if refused != nil {
			return fmt.Errorf("dry run: the promotion would be refused: %w", refused)
		}
		return nil
	}
	if refused != nil {
		return errors.Join(a.printResult(f, result), refused)
	}
	if !gateMet(gate) {
		a.printText(f, fmt.Sprintf("overriding the gate: %s", strings.TrimSpace(f.reason)))
	}
	short := configrepo.Short(gate.Commit)
	if heldHead(gate) {
		// TO's branch has the commit: only the registry's record is missing.
		return a.recordPromotion(ctx, cl, from, to, gate, f, result, "", fmt.Sprintf("%s is at %s already, held back from its agents: recorded the promotion", to, short))
	}
	ff, err := a.fastForward(ctx, cl, from, to, gate.Commit, f)
	if err != nil {
		return err
	}
	switch {
	case ff.UpToDate && awaitsPromotion(gate):
		return a.recordPromotion(ctx, cl, from, to, gate, f, result, ff.Previous, fmt.Sprintf("%s is at %s already, not yet published to its agents: recorded the promotion", to, short))
	case ff.UpToDate:
		return a.printResult(f, result, fmt.Sprintf("%s is at %s already: nothing to promote", to, short))
	}
	result.Pushed = true
	return a.recordPromotion(ctx, cl, from, to, gate, f, result, ff.Previous, fmt.Sprintf("promoted %s (%s) from %s to %s, which was at %s",
		short, ff.Commit.Subject, from, to, configrepo.Short(ff.Previous)))
}

// recordPromotion records the promotion of gate.Commit to TO, whose branch
// points to it, and checks that the registry publishes it: a gate whose
// verdict changed since it was checked may hold it back.
func (a *app) recordPromotion(ctx context.Context, cl *registry.Client, from, to string, gate *api.PromotionGate, f *promoteFlags, result *promotion, previous, done string) error {
	short := configrepo.Short(gate.Commit)
	// The errors after a change are formatted, not wrapped: the command
	// line prints a wrapped registry problem alone, which would hide that
	// the branch has moved, or that the promotion is recorded.
	rec, err := cl.RecordPromotion(ctx, to, &api.PromotionRequest{From: from, Commit: gate.Commit, PreviousCommit: previous, OverrideReason: strings.TrimSpace(f.reason)})
	if err != nil {
		return fmt.Errorf("%s now points to %s, but recording the promotion in the registry failed: %v", to, short, err)
	}
	result.Promotion = rec
	target, _, err := cl.GetChannel(ctx, to)
	if err != nil {
		return fmt.Errorf("the promotion of %s to %s is recorded, but reading what %s publishes failed: %v", short, to, to, err)
	}
	result.Published = target.Publication
	if held := target.Publication; held != nil && held.Held != nil && held.Held.Commit == gate.Commit {
		return errors.Join(a.printResult(f, result, done),
			fmt.Errorf("the registry holds %s back from the agents of %s: %s", short, to, held.Held.Reason))
	}
	return a.printResult(f, result, done)
}

// awaitsPromotion reports whether TO's gate is enforced and TO does not
// publish the commit yet: its branch may point there already, by a push
// that a promotion has not recorded.
func awaitsPromotion(gate *api.PromotionGate) bool {
	p := gate.ToPublication
	return p != nil && p.Gate == api.GateEnforced && p.Commit != gate.Commit
}

// heldHead reports whether the commit is the head that TO's gate holds.
func heldHead(gate *api.PromotionGate) bool {
	return awaitsPromotion(gate) && gate.ToPublication.Held != nil && gate.ToPublication.Held.Commit == gate.Commit
}

// gateMet reports whether the gate lets the promotion through: a freeze of
// the target channel holds it back even from a registry that counted it
// apart from the gate's reasons.
func gateMet(gate *api.PromotionGate) bool { return gate.Met && len(gate.Freezes) == 0 }

// refusal is why the promotion does not go ahead, if it does not.
func refusal(gate *api.PromotionGate, f *promoteFlags) error {
	switch {
	case gateMet(gate):
		return nil
	case !f.overrideGate && len(gate.Freezes) > 0:
		fz := gate.Freezes[0]
		return fmt.Errorf("%s is frozen until %s (%s, by %s: %s), so the promotion from %s is refused; to promote anyway, say why: --override-gate --reason \"...\"",
			gate.To, clock(fz.Until), fz.Scope(), fz.By, fz.Reason, gate.From)
	case !f.overrideGate:
		return fmt.Errorf("the promotion gate of %s to %s is not met (the reasons are listed with the verdict); --override-gate --reason \"...\" promotes anyway",
			gate.From, gate.To)
	case gate.Commit == "":
		return fmt.Errorf("the head of %s is unknown to the registry: name the commit with --commit", gate.From)
	}
	return nil
}

// printResult prints the outcome: lines of text, or the result as an object.
func (a *app) printResult(f *promoteFlags, result *promotion, lines ...string) error {
	if f.output.value != formatText {
		return writeObject(a.out, f.output.value, result)
	}
	a.printText(f, lines...)
	return nil
}

func (a *app) printText(f *promoteFlags, lines ...string) {
	if f.output.value != formatText {
		return
	}
	for _, l := range lines {
		fmt.Fprintln(a.out, l)
	}
}

// fastForward pushes TO's branch to commit, which must be on FROM's.
func (a *app) fastForward(ctx context.Context, cl *registry.Client, from, to, commit string, f *promoteFlags) (configrepo.FastForward, error) {
	source, _, err := cl.GetChannel(ctx, from)
	if err != nil {
		return configrepo.FastForward{}, err
	}
	target, _, err := cl.GetChannel(ctx, to)
	if err != nil {
		return configrepo.FastForward{}, err
	}
	if source.RepositoryURL != target.RepositoryURL {
		return configrepo.FastForward{}, fmt.Errorf("%s follows %s and %s follows %s: a promotion moves a commit within one repository",
			from, source.RepositoryURL, to, target.RepositoryURL)
	}
	creds, err := f.git.credentials(a.getenv)
	if err != nil {
		return configrepo.FastForward{}, err
	}
	repo, err := configrepo.Open(source.RepositoryURL, creds)
	if err != nil {
		return configrepo.FastForward{}, err
	}
	return repo.FastForward(ctx, source.Branch, target.Branch, commit)
}

// writeGate prints the gate's evidence, one cluster a row, and its verdict.
func writeGate(w io.Writer, g *api.PromotionGate, now func() time.Time) error {
	commit := configrepo.Short(g.Commit)
	if commit == "" {
		commit = "unknown"
	}
	heartbeat := ""
	if g.HeartbeatTimeout != "" {
		heartbeat = ", heartbeat timeout " + g.HeartbeatTimeout
	}
	fmt.Fprintf(w, "promotion gate %s -> %s, commit %s, soak %s%s\n", g.From, g.To, commit, g.Soak, heartbeat)
	rows := make([][]string, len(g.Evidence))
	for i, e := range g.Evidence {
		met := "yes"
		if !e.Met {
			met = "no"
		}
		// REPORTED is the age of the last report the registry received:
		// a silent cluster is no evidence, whatever it said last.
		reported := ageOf(e.LastReport, now())
		switch {
		case e.LastReport == nil && e.Phase == "":
			reported = "never"
		case e.LastReport == nil:
			reported = "unknown"
		case e.Silent:
			reported += " (silent)"
		}
		rows[i] = []string{e.Cluster, shortVersion(e.Version), ageOf(e.Since, now()), reported, problemTitles(e.Problems), met, e.Reason}
	}
	if len(rows) > 0 {
		if err := writeTable(w, []string{"CLUSTER", "VERSION", "SINCE", "REPORTED", "PROBLEMS", "MET", "REASON"}, rows); err != nil {
			return err
		}
	}
	if len(g.Freezes) > 0 {
		fmt.Fprintf(w, "%s is frozen:\n", g.To)
		rows := make([][]string, len(g.Freezes))
		for i, f := range g.Freezes {
			rows[i] = []string{f.ID, f.Scope(), formatTime(f.Until), f.By, f.Reason}
		}
		if err := writeTable(w, []string{"FREEZE", "SCOPE", "UNTIL", "BY", "REASON"}, rows); err != nil {
			return err
		}
	}
	if p := g.ToPublication; p != nil && p.Held != nil {
		fmt.Fprintf(w, "%s holds its head %s back from its agents since %s: %s\n", g.To, configrepo.Short(p.Held.Commit), clock(p.Held.Since), p.Held.Reason)
	}
	if g.Met && len(g.Freezes) == 0 {
		fmt.Fprintln(w, "verdict: met")
		return nil
	}
	fmt.Fprintln(w, "verdict: not met")
	for _, r := range g.Reasons {
		fmt.Fprintln(w, "  - "+r)
	}
	if len(g.Reasons) == 0 {
		for _, f := range g.Freezes {
			fmt.Fprintf(w, "  - %s is frozen until %s by %s: %s\n", g.To, clock(f.Until), f.By, f.Reason)
		}
	}
	return nil
}

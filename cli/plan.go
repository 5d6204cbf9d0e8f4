package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// planPollInterval is how often a waiting plan is read again.
const planPollInterval = time.Second

type planFlags struct {
	cluster string
	commit  string
	timeout time.Duration
	output  *outputFlag
}

func (a *app) planCommand() *cobra.Command {
	f := &planFlags{}
	cmd := &cobra.Command{
		Use:   "plan --cluster ID --commit SHA [--timeout 10m] [-o text|json]",
		Short: "Preview what a commit would change in a cluster, changing nothing",
		Long: `Ask a cluster's agent, through the registry, what a commit would change in the
cluster, and print the answer as a diff. Nothing is changed.

The commit may be on any branch of the config repo (the head of dev, to see
what it would do to a cluster on stable, say); the agent looks for it among the
newest 200 commits of every branch. It renders the commit with the cluster's
assignment, as a reconcile would, and answers with:
  - per CloudFormation stack, a change set summary: resources to add, change
    (and whether they are replaced) and remove. The change set is made and
    deleted again, never executed. A stack whose template is unchanged needs
    none;
  - a server-side dry run of the manifests: objects to create, to change (with
    the paths of the changed fields), to prune (they left the config) and to
    delete (deletions.yaml);
  - the nodes that would be replaced, per node pool, with its revision now and
    with the commit;
  - when there are any, the objects whose live state differs from the
    cluster's current version right now (drift the agent has not corrected):
    "~" for changed fields, "-" for a deleted object, with the field manager
    that changed them and why the drift is held: report (drift_correction is
    report), fight (another manager keeps changing it back), disabled
    (drift_correction is disabled), annotation (the object is annotated
    caravan.io/reconcile: disabled) or blocked (a block, a freeze or a
    suspension holds corrections); "not corrected yet" when the agent is about to
    correct it.
A commit that cannot be fetched or rendered is the answer too: the plan fails
with the problem a reconcile would report.

The line under the plan's header says when the commit would start on the
cluster if it reached the cluster now, from the schedule the registry computes
(times in UTC): "would start now" inside an update window, "would start at T
..." when the update window opens next or a freeze ends, and "would not start"
while the cluster is blocked or its update_windows do not parse.

While it waits, a progress line on stderr says the plan's state and the time
elapsed. The agent answers plans after its reconcile, so a cluster busy with a
long update answers late; after --timeout the command gives up (the plan stays
open and fails by itself after an hour). Exit code 1 when the plan failed or
timed out.`,
		Example: `  caravan plan --cluster aws:123456789012:eu-central-1:kube-1 --commit "$(git rev-parse origin/dev)"
  caravan plan --cluster aws:123456789012:eu-central-1:kube-1 --commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			return a.plan(cmd.Context(), f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.cluster, "cluster", "", "id of the cluster whose agent computes the preview")
	fs.StringVar(&f.commit, "commit", "", "full id of the commit to preview (40 lower-case hex digits)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "how long to wait for the agent's answer")
	f.output = addOutputFlag(cmd, formatText, formatJSON)
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("commit")
	return cmd
}

func (f *planFlags) check() error {
	switch {
	case !api.ValidCommit(f.commit):
		return usagef("--commit must be a full commit id (40 lower-case hex digits), got %q", f.commit)
	case f.timeout <= 0:
		return usagef("--timeout must be positive, got %s", f.timeout)
	}
	return nil
}

func (a *app) plan(ctx context.Context, f *planFlags) error {
	cl, err := a.client()
	if err != nil {
		return err
	}
	plan, err := cl.CreatePlan(ctx, f.cluster, f.commit)
	if err != nil {
		return err
	}
	plan, err = a.awaitPlan(ctx, cl, plan, f.timeout)
	if err != nil {
		return err
	}
	if f.output.value == formatJSON {
		err = writeJSON(a.out, plan)
	} else {
		err = writePlan(a.out, plan, a.startLine(ctx, cl, plan))
	}
	if err != nil {
		return err
	}
	if plan.State == api.PlanFailed {
		return fmt.Errorf("plan %s failed: %s", plan.ID, plan.Result.Problem.Title)
	}
	return nil
}

// awaitPlan reads the plan until it ends or the timeout passes, with a
// progress line on stderr: rewritten in place on a terminal, a line per
// state otherwise.
func (a *app) awaitPlan(ctx context.Context, cl *registry.Client, plan *api.Plan, timeout time.Duration) (*api.Plan, error) {
	start := a.now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	progress := newProgressLine(a.errOut)
	defer progress.end()
	for {
		progress.show(fmt.Sprintf("plan %s of commit %s on %s: %s, %s", plan.ID, configrepo.Short(plan.Commit), plan.ClusterID, plan.State,
			a.now().Sub(start).Round(time.Second)), plan.State)
		if plan.Final() {
			return plan, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			return nil, fmt.Errorf("the agent of %s did not answer plan %s within %s; it stays open (GET /api/v1/clusters/%s/plans/%s) and fails by itself after %s",
				plan.ClusterID, plan.ID, timeout, plan.ClusterID, plan.ID, api.PlanTimeout)
		case <-time.After(planPollInterval):
		}
		next, err := cl.GetPlan(ctx, plan.ClusterID, plan.ID)
		if err != nil {
			return nil, err
		}
		plan = next
	}
}

// progressLine is a status line on stderr.
type progressLine struct {
	w        io.Writer
	terminal bool
	state    string
	width    int
}

func newProgressLine(w io.Writer) *progressLine {
	f, ok := w.(*os.File)
	terminal := false
	if ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			terminal = true
		}
	}
	return &progressLine{w: w, terminal: terminal}
}

func (p *progressLine) show(line, state string) {
	if p.terminal {
		fmt.Fprintf(p.w, "\r%-*s", p.width, line)
		p.width = len(line)
		return
	}
	if state != p.state {
		fmt.Fprintln(p.w, line)
		p.state = state
	}
}

func (p *progressLine) end() {
	if p.terminal && p.width > 0 {
		fmt.Fprintln(p.w)
	}
}

// startLine says when the commit would start on the plan's cluster, were it
// its channel's head now: at once, at the next opening of its update window,
// after a freeze, or not while a block holds it or its window does not
// parse. Empty when the plan failed (the commit would not start at all) or
// the registry says nothing of the cluster's schedule.
func (a *app) startLine(ctx context.Context, cl *registry.Client, plan *api.Plan) string {
	if plan.State != api.PlanDone {
		return ""
	}
	c, _, err := cl.GetCluster(ctx, plan.ClusterID)
	if err != nil {
		return fmt.Sprintf("when it would start is unknown: reading cluster %s failed: %v", plan.ClusterID, err)
	}
	blocks, err := registry.All(func(p registry.Page) (*api.List[api.Block], error) {
		return cl.ListBlocks(ctx, plan.ClusterID, p)
	})
	if err != nil {
		return fmt.Sprintf("when it would start is unknown: reading the blocks of cluster %s failed: %v", plan.ClusterID, err)
	}
	return startText(c, blocks, a.now())
}

func startText(c *api.Cluster, blocks []api.Block, now time.Time) string {
	for _, b := range blocks {
		if b.NodePool == "" && b.ActiveAt(now) {
			return fmt.Sprintf("would not start while the cluster is blocked (by %s: %s); 'caravan clusters unblock %s' lifts the block", b.By, b.Reason, c.ID)
		}
	}
	sc := c.Schedule
	if sc == nil {
		return ""
	}
	if sc.Error != "" {
		return fmt.Sprintf("would not start: the cluster's update window does not parse (%s); fix the config item first", sc.Error)
	}
	if sc.Open {
		if strings.TrimSpace(sc.UpdateWindows) == "" {
			return "would start now: the cluster has no update window (always open) and no freeze holds it"
		}
		return "would start now: the update window " + sc.UpdateWindows + " is open and no freeze holds the cluster"
	}
	if until, ok := api.FrozenUntil(sc.Freezes, now); ok {
		var by []string
		for _, f := range sc.Freezes {
			if f.ActiveAt(now) {
				by = append(by, fmt.Sprintf("%s by %s: %s", f.Scope(), f.By, f.Reason))
			}
		}
		line := "frozen until " + clock(until) + " (" + strings.Join(by, "; ") + ")"
		if sc.NextOpening == nil {
			return "would not start: " + line + ", and no opening of its update window was found after it"
		}
		if !sc.NextOpening.After(until) {
			return "would start at " + ahead(*sc.NextOpening, now) + ": " + line
		}
		return "would start at " + ahead(*sc.NextOpening, now) + ", when the update window " + sc.UpdateWindows + " opens after the freeze: " + line
	}
	if sc.NextOpening == nil {
		return "would not start: no opening of the update window " + sc.UpdateWindows + " was found ahead"
	}
	return "would start at " + ahead(*sc.NextOpening, now) + ", when the update window " + sc.UpdateWindows + " opens"
}

// writePlan prints a plan's result as a readable diff, after the line that
// says when the commit would start (none when start is empty).
func writePlan(w io.Writer, plan *api.Plan, start string) error {
	fmt.Fprintf(w, "plan %s of commit %s on %s: %s\n", plan.ID, plan.Commit, plan.ClusterID, plan.State)
	if start != "" {
		fmt.Fprintln(w, start)
	}
	res := plan.Result
	if res == nil {
		return nil
	}
	if p := res.Problem; p != nil {
		fmt.Fprintf(w, "\n%s\n", p.Title)
		if p.Detail != "" {
			fmt.Fprintln(w, indent(p.Detail, "  "))
		}
		return nil
	}
	writeStacks(w, res.Stacks)
	writeObjects(w, res.Objects)
	writeDrifted(w, res.Drifted)
	writeNodePools(w, res.NodePools)
	return nil
}

// writeDrifted lists the objects that differ from the cluster's current
// version now, with why the agent leaves them so; nothing when none does.
func writeDrifted(w io.Writer, drifted []api.DriftedObject) {
	if len(drifted) == 0 {
		return
	}
	fmt.Fprintf(w, "\nDrift: %s whose live state differs from the cluster's current version\n", plural(len(drifted), "object"))
	for _, d := range drifted {
		line := "~ " + d.Object
		switch {
		case d.Deleted:
			line = "- " + d.Object + " (deleted)"
		case len(d.Fields) > 0:
			line += " (" + strings.Join(d.Fields, ", ") + ")"
		}
		if d.Manager != "" {
			line += " by " + d.Manager
		}
		if d.Held != "" {
			line += "; held: " + d.Held
		} else {
			line += "; not corrected yet"
		}
		fmt.Fprintln(w, "  "+line)
	}
}

func writeStacks(w io.Writer, stacks []api.StackPlan) {
	if len(stacks) == 0 {
		return
	}
	fmt.Fprintln(w, "\nStacks:")
	for _, s := range stacks {
		switch s.Action {
		case api.StackUnchanged:
			fmt.Fprintf(w, "  = %s: unchanged\n", s.Name)
		case api.StackCreate, api.StackUpdate:
			sign := map[string]string{api.StackCreate: "+", api.StackUpdate: "~"}[s.Action]
			fmt.Fprintf(w, "  %s %s: %s\n", sign, s.Name, changeSetSummary(s))
			for _, r := range s.Resources {
				fmt.Fprintf(w, "      %s\n", resourceLine(r))
			}
		case api.StackDelete:
			fmt.Fprintf(w, "  - %s: to delete (%s)\n", s.Name, s.Reason)
		default:
			fmt.Fprintf(w, "  ! %s: %s (%s)\n", s.Name, s.Action, s.Reason)
		}
	}
}

// changeSetSummary counts a change set's resources as
// "3 to add, 1 to change (1 replacement), 0 to remove".
func changeSetSummary(s api.StackPlan) string {
	var add, change, remove, replaced, other int
	for _, r := range s.Resources {
		switch r.Action {
		case "Add":
			add++
		case "Modify":
			change++
			if r.Replacement == "True" || r.Replacement == "Conditional" {
				replaced++
			}
		case "Remove":
			remove++
		default:
			other++
		}
	}
	out := fmt.Sprintf("%d to add, %d to change", add, change)
	if replaced > 0 {
		out += fmt.Sprintf(" (%s)", plural(replaced, "replacement"))
	}
	out += fmt.Sprintf(", %d to remove", remove)
	if other > 0 {
		out += fmt.Sprintf(", %d other", other)
	}
	if s.Reason != "" {
		out += "; " + s.Reason
	}
	return out
}

func resourceLine(r api.ResourceChange) string {
	sign := map[string]string{"Add": "+", "Modify": "~", "Remove": "-"}[r.Action]
	if sign == "" {
		sign = "? " + r.Action
	}
	line := fmt.Sprintf("%s %s (%s)", sign, r.LogicalID, r.Type)
	switch r.Replacement {
	case "True":
		line += ", replaced"
	case "Conditional":
		line += ", may be replaced"
	}
	return line
}

func writeObjects(w io.Writer, objects []api.ObjectPlan) {
	counts := map[string]int{}
	for _, o := range objects {
		counts[o.Action]++
	}
	fmt.Fprintf(w, "\nManifests: %d to create, %d to change, %d to prune, %d to delete", counts[api.ObjectCreate], counts[api.ObjectChange],
		counts[api.ObjectPrune], counts[api.ObjectDelete])
	if n := counts[api.ObjectRefused]; n > 0 {
		fmt.Fprintf(w, ", %d refused", n)
	}
	fmt.Fprintln(w)
	for _, o := range objects {
		name := strings.TrimPrefix(o.Namespace+"/"+o.Name, "/")
		switch o.Action {
		case api.ObjectCreate:
			fmt.Fprintf(w, "  + %s %s\n", o.Kind, name)
		case api.ObjectChange:
			fmt.Fprintf(w, "  ~ %s %s (%s)%s\n", o.Kind, name, strings.Join(o.Fields, ", "), suffix(o.Reason))
		case api.ObjectPrune:
			fmt.Fprintf(w, "  - %s %s (prune)\n", o.Kind, name)
		case api.ObjectDelete:
			fmt.Fprintf(w, "  - %s %s (%s)\n", o.Kind, name, o.Reason)
		default:
			fmt.Fprintf(w, "  ! %s %s (refused: %s)\n", o.Kind, name, o.Reason)
		}
	}
}

func writeNodePools(w io.Writer, pools []api.NodePoolPlan) {
	fmt.Fprintln(w, "\nNodes:")
	if len(pools) == 0 {
		fmt.Fprintln(w, "  no node would be replaced")
		return
	}
	for _, p := range pools {
		fmt.Fprintf(w, "  pool %s: %d of %s would be replaced (revision %s -> %s): %s\n", p.Name, len(p.Replaced), plural(p.NodesTotal, "node"),
			orDash(p.CurrentRevision), orDash(p.NextRevision), strings.Join(p.Replaced, ", "))
	}
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func suffix(reason string) string {
	if reason == "" {
		return ""
	}
	return "; " + reason
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

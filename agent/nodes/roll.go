package nodes

import (
	"context"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// RollState is a roll under way, kept by the caller (in the ClusterConfig
// status) so that a restarted agent goes on with the same target.
type RollState struct {
	Pool string `json:"pool"`
	// Target is the group's desired capacity without the roll's surge: the
	// size the roll ends at. It was the desired capacity when the roll
	// began, moved since by what others (the cluster autoscaler) changed.
	Target int `json:"target"`
	// Desired is the desired capacity the roll last set or left; any other
	// value found on the group was set by someone else. Absent from the
	// states of agents before it was kept.
	Desired int `json:"desired,omitempty"`
}

// RollConfig is what one pass follows.
type RollConfig struct {
	Pools       []PoolSpec
	Surge       int
	TaintEffect corev1.TaintEffect
	// Blocked pools stop at once: marked nodes are un-marked; a node being
	// drained is finished, or with HardBlock uncordoned and left.
	Blocked   map[string]bool
	HardBlock bool
	// Closed pools are outside their node update window, which opens at
	// the time given (zero when the window does not parse): a roll under
	// way finishes the node being drained and pauses with its marks kept,
	// and no roll starts.
	Closed map[string]time.Time
	// Poll is drain_poll_interval: a refused pod is asked again at the
	// latest after it, whatever its budgets show.
	Poll time.Duration
}

// PassResult is what one pass left.
type PassResult struct {
	Rolls    []RollState
	Progress []api.NodePoolProgress
}

// NextWake is the earliest forecast force, or opening of a paused pool's
// node update window, among the pools' progress: the next pass is due then
// at the latest. Zero when there is none.
func NextWake(pools []api.NodePoolProgress) time.Time {
	var at time.Time
	for _, p := range pools {
		for _, t := range []*time.Time{p.NextForcedEviction, p.NextWindow} {
			if t != nil {
				at = api.Earliest(at, *t)
			}
		}
	}
	return at
}

// Roller replaces a cluster's outdated nodes, a pass at a time: it never
// waits inside a pass, so the agent's loop stays responsive. A pass reads
// a Snapshot, Plan decides on it, and the Roller makes the commands; what
// it carries between passes is the Memory the plans leave, by scope (the
// roll, and each retired pool's drain).
type Roller struct {
	kube     client.Client
	fleet    *Fleet
	events   events.Recorder
	log      logr.Logger
	metrics  *Metrics
	now      func() time.Time
	memories map[string]Memory
	forces   ForceLog
	// trigger, when set, gives the budgets' counts a pass compares with
	// its refusals', without listing the budgets.
	trigger *Trigger
}

// WatchedBy lets the Roller read the budgets' counts from the Trigger's
// watch while it runs.
func (r *Roller) WatchedBy(t *Trigger) *Roller {
	r.trigger = t
	return r
}

// NewRoller returns a Roller.
func NewRoller(kube client.Client, fleet *Fleet, recorder events.Recorder, log logr.Logger, metrics *Metrics) *Roller {
	return &Roller{kube: kube, fleet: fleet, events: recorder, log: log, metrics: metrics, now: time.Now, memories: map[string]Memory{}}
}

// Wake is the rule of a roll's passes (Trigger.Wake), with the trigger
// told which budgets the refused pods wait on. A nil Roller has no
// refused pods.
func (r *Roller) Wake(t *Trigger, next time.Time, backstop time.Duration) (<-chan struct{}, func()) {
	if r != nil {
		t.WaitFor(r.waited())
	}
	return t.Wake(next, backstop)
}

// waited are the budgets the refused pods wait on, each with the counts of
// its latest decision, and whether one waits with no time known, for a pod
// to leave.
func (r *Roller) waited() (map[string]BudgetCounts, bool) {
	out := map[string]BudgetCounts{}
	latest := map[string]time.Time{}
	pods := false
	for _, m := range r.memories {
		for _, ref := range m.Refusals {
			pods = pods || !ref.Decided || ref.Decision.At.IsZero()
			for key, counts := range ref.Budgets {
				if ref.Asked.After(latest[key]) || latest[key].IsZero() {
					out[key], latest[key] = counts, ref.Asked
				}
			}
		}
	}
	return out, pods
}

// rollScope is the memory of the rolls; a retired pool's is its name's.
const rollScope = ""

// passRounds bounds the read → plan → execute rounds of a pass: each
// round decides at once on the pods whose eviction the round before saw
// refused, and a pass ends with the first round that saw none.
const passRounds = 4

// Pass makes one step of every pool's roll.
func (r *Roller) Pass(ctx context.Context, cfg RollConfig, rolls []RollState) (PassResult, error) {
	out := PassResult{Rolls: rolls}
	var snap Snapshot
	var cmds []Command
	stale := false
	for round := 0; round < passRounds; round++ {
		src := r.source(ctx, stale)
		var err error
		if round > 0 && !stale && !changesGroups(cmds) {
			// The round before changed no group, and its changes to Nodes
			// came back into its snapshot's Nodes: only pods and budgets
			// are read again.
			snap, err = r.rereadRoll(ctx, src, cfg, snap, out.Rolls)
		} else {
			snap, err = r.readRoll(ctx, src, cfg, out.Rolls)
		}
		if err != nil {
			return out, err
		}
		var planned Outcome
		cmds, planned = Plan(snap, cfg)
		r.memories[rollScope] = planned.Memory
		done, refused, err := r.execute(ctx, rollScope, cmds)
		out = PassResult{Rolls: settle(planned.Rolls, snap, cmds, done), Progress: planned.Progress}
		if stale = planBehind(err); stale {
			r.log.V(1).Info("the pass read the cluster behind the API server; reading again", "error", err.Error())
			continue
		}
		if err != nil || !refused {
			return out, err
		}
	}
	return out, nil
}

// changesGroups says whether commands change a group or its instances.
func changesGroups(cmds []Command) bool {
	for _, c := range cmds {
		switch c.Kind {
		case SuspendRebalance, ResumeRebalance, SetDesiredCapacity, TerminateInstance:
			return true
		}
	}
	return false
}

// settle is the rolls a plan leaves when only its first done commands were
// made: a roll whose start failed has not started, one whose end failed
// goes on, and each keeps the desired capacity of the last group command
// made, else the group's as read.
func settle(planned []RollState, snap Snapshot, cmds []Command, done int) []RollState {
	if done == len(cmds) {
		return planned
	}
	out := slices.Clone(planned)
	for _, c := range cmds[done:] {
		switch c.Kind {
		case SuspendRebalance:
			out = slices.DeleteFunc(out, func(s RollState) bool { return s.Pool == c.Pool })
		case ResumeRebalance:
			if i := slices.IndexFunc(snap.Rolls, func(s RollState) bool { return s.Pool == c.Pool }); i >= 0 {
				out = append(out, snap.Rolls[i])
			}
		}
	}
	for i := range out {
		desired, set := -1, false
		for _, c := range cmds[:done] {
			if c.Pool == out[i].Pool && (c.Kind == SetDesiredCapacity || c.Kind == TerminateInstance) {
				desired, set = c.Desired, true
			}
		}
		if !set {
			if g := slices.IndexFunc(snap.Groups, func(g Group) bool { return g.Pool == out[i].Pool }); g >= 0 {
				desired = snap.Groups[g].Desired
			}
		}
		if desired >= 0 {
			out[i].Desired = desired
		}
	}
	return out
}

package nodes

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// RollState is a roll under way, kept by the caller (in the ClusterConfig
// status) so that a restarted agent goes on with the same target.
type RollState struct {
	Pool string `json:"pool"`
	// Target is the group's desired capacity when the roll began; the
	// roll ends at it.
	Target int `json:"target"`
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
// waits inside a pass, so the agent's loop stays responsive, and every
// decision is made again from what the cluster says and what its Fleet
// last read of AWS. It carries from pass to pass only the next node it
// chose to drain.
type Roller struct {
	kube    client.Client
	fleet   *Fleet
	events  events.Recorder
	log     logr.Logger
	metrics *Metrics
	now     func() time.Time
	// chosen is each pool's next node to drain, once picked.
	chosen map[string]Candidate
}

// NewRoller returns a Roller.
func NewRoller(kube client.Client, fleet *Fleet, recorder events.Recorder, log logr.Logger, metrics *Metrics) *Roller {
	return &Roller{kube: kube, fleet: fleet, events: recorder, log: log, metrics: metrics, now: time.Now, chosen: map[string]Candidate{}}
}

// Pass makes one step of every pool's roll.
func (r *Roller) Pass(ctx context.Context, cfg RollConfig, rolls []RollState) (PassResult, error) {
	list := &corev1.NodeList{}
	if err := r.kube.List(ctx, list, client.HasLabels{PoolLabel}); err != nil {
		return PassResult{Rolls: rolls}, fmt.Errorf("listing the pools' nodes: %w", err)
	}
	known := make([]string, 0, len(list.Items))
	for i := range list.Items {
		known = append(known, InstanceID(list.Items[i].Spec.ProviderID))
	}
	groups, err := r.fleet.Groups(ctx, known)
	if err != nil {
		return PassResult{Rolls: rolls}, err
	}
	var out PassResult
	for _, spec := range cfg.Pools {
		i := slices.IndexFunc(groups, func(g Group) bool { return g.Pool == spec.Name })
		state := findRoll(rolls, spec.Name)
		if i < 0 {
			continue
		}
		next, progress, err := r.poolPass(ctx, cfg, spec, view(spec, groups[i], list.Items), state)
		if next != nil {
			out.Rolls = append(out.Rolls, *next)
		}
		out.Progress = append(out.Progress, progress)
		if err != nil {
			return out, fmt.Errorf("node pool %s: %w", spec.Name, err)
		}
	}
	return out, nil
}

func findRoll(rolls []RollState, pool string) *RollState {
	for i := range rolls {
		if rolls[i].Pool == pool {
			return &rolls[i]
		}
	}
	return nil
}

// poolView is a pool's nodes joined with its group's instances.
type poolView struct {
	group    Group
	nodes    map[string]*corev1.Node // by instance id
	outdated []string                // instance ids
	draining *corev1.Node
	// leaving nodes lost their instance and wait for their Node to go.
	leaving []*corev1.Node
	ready   int
}

// view joins a pool's nodes with its group's instances.
func view(spec PoolSpec, g Group, all []corev1.Node) *poolView {
	v := &poolView{group: g, nodes: map[string]*corev1.Node{}}
	live := map[string]Instance{}
	for _, inst := range g.Instances {
		live[inst.ID] = inst
	}
	for i := range all {
		n := &all[i]
		if n.Labels[PoolLabel] != spec.Name {
			continue
		}
		id := InstanceID(n.Spec.ProviderID)
		inst, ok := live[id]
		if !ok || inst.Lifecycle != "InService" && inst.Lifecycle != "Pending" {
			v.leaving = append(v.leaving, n)
			continue
		}
		v.nodes[id] = n
		if nodeReady(n) {
			v.ready++
		}
		if n.Labels[LifecycleLabel] == DrainingValue {
			v.draining = n
		}
	}
	for _, inst := range g.Instances {
		if outdated, _ := Outdated(spec, inst); outdated && v.nodes[inst.ID] != nil {
			v.outdated = append(v.outdated, inst.ID)
		}
	}
	return v
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// poolPass makes one step of a pool's roll and returns its state after it.
func (r *Roller) poolPass(ctx context.Context, cfg RollConfig, spec PoolSpec, v *poolView, state *RollState) (*RollState, api.NodePoolProgress, error) {
	g := v.group
	progress := api.NodePoolProgress{Name: spec.Name, NodesTotal: len(v.nodes), Outdated: len(v.outdated)}
	if v.draining != nil {
		progress.Draining = 1
	}
	if cfg.Blocked[spec.Name] {
		if err := r.stop(ctx, v, cfg.HardBlock); err != nil || cfg.HardBlock || v.draining == nil {
			return state, progress, err
		}
		// A soft block lets the node being drained finish.
		_, _, err := r.drainStep(ctx, spec.SLA, v.draining)
		return state, progress, err
	}
	if len(v.outdated) == 0 && v.draining == nil {
		if state != nil && len(v.leaving) == 0 {
			r.log.Info("node pool rolled", "pool", spec.Name)
			return nil, progress, r.fleet.ResumeRebalance(ctx, g.Name)
		}
		return state, progress, nil
	}
	if opens, closed := cfg.Closed[spec.Name]; closed {
		if !opens.IsZero() {
			progress.NextWindow = &opens
		}
		return r.pause(ctx, spec, v, state, progress)
	}
	if state == nil {
		state = &RollState{Pool: spec.Name, Target: g.Desired}
		r.log.Info("rolling a node pool", "pool", spec.Name, "outdated", len(v.outdated), "target", state.Target)
		if err := r.fleet.SuspendRebalance(ctx, g.Name); err != nil {
			return state, progress, err
		}
	}
	if err := r.mark(ctx, v, cfg.TaintEffect); err != nil {
		return state, progress, err
	}
	if v.draining == nil {
		selected, err := r.select_(ctx, cfg, state, v)
		if err != nil || selected == nil {
			return state, progress, err
		}
		v.draining, progress.Draining = selected, 1
	}
	terminated, err := r.drain(ctx, spec, v, &progress)
	if err != nil || !terminated {
		return state, progress, err
	}
	// The group shrank with the terminated instance: surge again now, so
	// that the next node's replacement launches while this Node goes.
	if err := r.surge(ctx, cfg, state, v); err != nil || len(v.outdated) == 0 {
		return state, progress, err
	}
	_, _, err = r.choose(ctx, v)
	return state, progress, err
}

// pause holds a pool's roll outside its node update window: the node being
// drained is drained to its end, and no other node is chosen, so the roll
// goes on from its marks when the window opens.
func (r *Roller) pause(ctx context.Context, spec PoolSpec, v *poolView, state *RollState, progress api.NodePoolProgress) (*RollState, api.NodePoolProgress, error) {
	if v.draining == nil {
		return state, progress, nil
	}
	_, err := r.drain(ctx, spec, v, &progress)
	return state, progress, err
}

// drain makes one step of the drain of the pool's draining node, with the
// next forecast force in the progress; a node it terminated leaves the view.
func (r *Roller) drain(ctx context.Context, spec PoolSpec, v *poolView, progress *api.NodePoolProgress) (bool, error) {
	next, terminated, err := r.drainStep(ctx, spec.SLA, v.draining)
	if next != nil {
		at := next.At
		progress.NextForcedEviction, progress.HeldBy = &at, next.Rule
	}
	if err != nil || !terminated {
		return false, err
	}
	v.leave(v.draining)
	progress.Outdated, progress.Draining = len(v.outdated), 0
	return true, nil
}

// leave takes a terminated node out of the view: the group no longer
// counts its instance.
func (v *poolView) leave(n *corev1.Node) {
	id := InstanceID(n.Spec.ProviderID)
	delete(v.nodes, id)
	v.outdated = slices.DeleteFunc(v.outdated, func(o string) bool { return o == id })
	v.leaving = append(v.leaving, n)
	v.draining = nil
	v.group.Desired--
	if nodeReady(n) {
		v.ready--
	}
}

// surge raises the group's desired capacity to what the roll wants now.
func (r *Roller) surge(ctx context.Context, cfg RollConfig, state *RollState, v *poolView) error {
	want := Capacity(state.Target, cfg.Surge, len(v.outdated), v.group.Max)
	if v.group.Desired >= want {
		return nil
	}
	r.log.Info("surging", "group", v.group.Name, "desired", want)
	if err := r.fleet.SetDesired(ctx, v.group.Name, want); err != nil {
		return err
	}
	v.group.Desired = want
	return nil
}

// select_ surges the group when it needs to, and once every instance has a
// Ready node, picks the next node and starts its drain.
func (r *Roller) select_(ctx context.Context, cfg RollConfig, state *RollState, v *poolView) (*corev1.Node, error) {
	desired := v.group.Desired
	if err := r.surge(ctx, cfg, state, v); err != nil {
		return nil, err
	}
	next, ok, err := r.choose(ctx, v)
	if err != nil || !ok || v.group.Desired > desired || v.ready < v.group.Desired {
		return nil, err
	}
	delete(r.chosen, v.group.Pool)
	n := v.nodes[next.Name]
	if err := r.startDrain(ctx, n); err != nil {
		return nil, err
	}
	events.Publish(r.events, drainStartedEvent(n, next.Pods))
	return n, nil
}

// choose picks the pool's next node to drain, once: while the surge's new
// node launches, so that the drain can start as soon as it is Ready.
func (r *Roller) choose(ctx context.Context, v *poolView) (Candidate, bool, error) {
	if c, ok := r.chosen[v.group.Pool]; ok && slices.Contains(v.outdated, c.Name) {
		return c, true, nil
	}
	candidates, err := r.candidates(ctx, v)
	if err != nil {
		return Candidate{}, false, err
	}
	next, ok := Next(candidates)
	if ok {
		r.chosen[v.group.Pool] = next
	}
	return next, ok, nil
}

// candidates counts the pods of every outdated node, a few nodes at a
// time: at the roll's start that is every node of the pool.
func (r *Roller) candidates(ctx context.Context, v *poolView) ([]Candidate, error) {
	out := make([]Candidate, len(v.outdated))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(candidateConcurrency)
	for i, id := range v.outdated {
		n := v.nodes[id]
		g.Go(func() error {
			pods, err := r.podsToMove(ctx, n.Name)
			out[i] = Candidate{Name: id, Pods: len(pods), Created: n.CreationTimestamp.Time}
			return err
		})
	}
	return out, g.Wait()
}

// candidateConcurrency bounds the pod listings of candidates in flight.
const candidateConcurrency = 8

// mark labels and taints every outdated node, so that new pods avoid them.
func (r *Roller) mark(ctx context.Context, v *poolView, effect corev1.TaintEffect) error {
	for _, id := range v.outdated {
		n := v.nodes[id]
		if n.Labels[LifecycleLabel] != "" {
			continue
		}
		err := r.patchNode(ctx, n, func(n *corev1.Node) {
			n.Labels[LifecycleLabel] = DecommissionValue
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: DecommissionTaint, Value: decommissionReason, Effect: effect})
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// stop ends a blocked pool's roll for now: nodes only marked are un-marked,
// and with a hard block the node being drained is uncordoned and left.
func (r *Roller) stop(ctx context.Context, v *poolView, hard bool) error {
	for _, n := range v.nodes {
		value := n.Labels[LifecycleLabel]
		if value != DecommissionValue && (value != DrainingValue || !hard) {
			continue
		}
		err := r.patchNode(ctx, n, func(n *corev1.Node) {
			delete(n.Labels, LifecycleLabel)
			delete(n.Annotations, DrainStartAnnotation)
			n.Spec.Unschedulable = false
			n.Spec.Taints = slices.DeleteFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == DecommissionTaint })
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// startDrain labels the node draining, records when (once: a restarted
// agent keeps the first time), and cordons it.
func (r *Roller) startDrain(ctx context.Context, n *corev1.Node) error {
	now := r.now().UTC().Format(time.RFC3339Nano)
	return r.patchNode(ctx, n, func(n *corev1.Node) {
		n.Labels[LifecycleLabel] = DrainingValue
		if n.Annotations[DrainStartAnnotation] == "" {
			n.Annotations[DrainStartAnnotation] = now
		}
		n.Spec.Unschedulable = true
	})
}

func (r *Roller) patchNode(ctx context.Context, n *corev1.Node, change func(*corev1.Node)) error {
	patch := client.MergeFrom(n.DeepCopy())
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	change(n)
	if err := r.kube.Patch(ctx, n, patch); err != nil {
		return fmt.Errorf("updating node %s: %w", n.Name, err)
	}
	return nil
}

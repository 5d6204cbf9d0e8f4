package nodes

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

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
}

// PassResult is what one pass left.
type PassResult struct {
	Rolls    []RollState
	Progress []api.NodePoolProgress
}

// Roller replaces a cluster's outdated nodes, a pass at a time: it never
// waits inside a pass, so the agent's loop stays responsive, and every
// decision is made again from what the cluster and AWS say.
type Roller struct {
	kube    client.Client
	fleet   *Fleet
	events  events.EventRecorder
	log     logr.Logger
	metrics *Metrics
	now     func() time.Time
}

// NewRoller returns a Roller.
func NewRoller(kube client.Client, fleet *Fleet, recorder events.EventRecorder, log logr.Logger, metrics *Metrics) *Roller {
	return &Roller{kube: kube, fleet: fleet, events: recorder, log: log, metrics: metrics, now: time.Now}
}

// Pass makes one step of every pool's roll.
func (r *Roller) Pass(ctx context.Context, cfg RollConfig, rolls []RollState) (PassResult, error) {
	groups, err := r.fleet.Groups(ctx)
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
		next, progress, err := r.poolPass(ctx, cfg, spec, groups[i], state)
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

func (r *Roller) view(ctx context.Context, spec PoolSpec, g Group) (*poolView, error) {
	list := &corev1.NodeList{}
	if err := r.kube.List(ctx, list, client.MatchingLabels{PoolLabel: spec.Name}); err != nil {
		return nil, fmt.Errorf("listing the nodes: %w", err)
	}
	v := &poolView{group: g, nodes: map[string]*corev1.Node{}}
	live := map[string]Instance{}
	for _, inst := range g.Instances {
		live[inst.ID] = inst
	}
	for i := range list.Items {
		n := &list.Items[i]
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
	return v, nil
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
func (r *Roller) poolPass(ctx context.Context, cfg RollConfig, spec PoolSpec, g Group, state *RollState) (*RollState, api.NodePoolProgress, error) {
	v, err := r.view(ctx, spec, g)
	if err != nil {
		return state, api.NodePoolProgress{Name: spec.Name}, err
	}
	progress := api.NodePoolProgress{Name: spec.Name, NodesTotal: len(v.nodes), Outdated: len(v.outdated)}
	if v.draining != nil {
		progress.Draining = 1
	}
	if cfg.Blocked[spec.Name] {
		if err := r.stop(ctx, v, cfg.HardBlock); err != nil || cfg.HardBlock || v.draining == nil {
			return state, progress, err
		}
		// A soft block lets the node being drained finish.
		_, err := r.drainStep(ctx, spec.SLA, v.draining)
		return state, progress, err
	}
	if len(v.outdated) == 0 && v.draining == nil {
		if state != nil && len(v.leaving) == 0 {
			r.log.Info("node pool rolled", "pool", spec.Name)
			return nil, progress, r.fleet.ResumeRebalance(ctx, g.Name)
		}
		return state, progress, nil
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
	if len(v.leaving) > 0 {
		return state, progress, nil
	}
	if v.draining == nil {
		selected, err := r.select_(ctx, cfg, state, v)
		if err != nil || selected == nil {
			return state, progress, err
		}
		v.draining, progress.Draining = selected, 1
	}
	next, err := r.drainStep(ctx, spec.SLA, v.draining)
	if next != nil {
		at := next.At
		progress.NextForcedEviction, progress.HeldBy = &at, next.Rule
	}
	return state, progress, err
}

// select_ surges the group when it needs to, and once every instance has a
// Ready node, picks the next node and starts its drain.
func (r *Roller) select_(ctx context.Context, cfg RollConfig, state *RollState, v *poolView) (*corev1.Node, error) {
	want := Capacity(state.Target, cfg.Surge, len(v.outdated), v.group.Max)
	if v.group.Desired < want {
		r.log.Info("surging", "group", v.group.Name, "desired", want)
		return nil, r.fleet.SetDesired(ctx, v.group.Name, want)
	}
	if v.ready < v.group.Desired {
		return nil, nil
	}
	var candidates []Candidate
	for _, id := range v.outdated {
		n := v.nodes[id]
		pods, err := r.podsToMove(ctx, n.Name)
		if err != nil {
			return nil, err
		}
		candidates = append(candidates, Candidate{Name: id, Pods: len(pods), Created: n.CreationTimestamp.Time})
	}
	next, ok := Next(candidates)
	if !ok {
		return nil, nil
	}
	n := v.nodes[next.Name]
	if err := r.startDrain(ctx, n); err != nil {
		return nil, err
	}
	r.events.Eventf(n, nil, corev1.EventTypeNormal, "DrainStarted", "Drain", "outdated node selected for replacement; %d pods to move", next.Pods)
	return n, nil
}

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

package reconciler

import (
	"context"
	"fmt"
	"slices"

	"github.com/fluxcd/pkg/runtime/conditions"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// stage is a step of applying a version, as the registry's phase and the
// ClusterConfig's Reconciling condition name it. finish writes how the
// pass ended; the stages say, while it runs, what it is doing: a stack
// update or a health wait can take many minutes.
type stage struct {
	phase  string
	reason Reason
	// doing is what the stage does to the version, for the message.
	doing string
}

var (
	stageRendering      = stage{api.PhaseRendering, ReasonProgressing, "rendering"}
	stageInfrastructure = stage{api.PhaseUpdatingInfrastructure, ReasonUpdatingInfrastructure, "updating the CloudFormation stacks to"}
	stageApplying       = stage{api.PhaseApplying, ReasonProgressing, "applying"}
	stageHealth         = stage{api.PhaseApplying, ReasonWaitingForHealth, "waiting for the applied objects to become healthy at"}
)

// mark sets the conditions of a version under way: kstatus reads
// Reconciling=True as InProgress, and Ready is Unknown until the version is
// applied and healthy.
func (s stage) mark(cc *clusterconfig.ClusterConfig, version string) {
	previous := slices.Clone(cc.Status.Conditions)
	message := fmt.Sprintf("%s version %s", s.doing, version)
	conditions.MarkReconciling(cc, string(s.reason), "%s", message)
	conditions.MarkUnknown(cc, ReadyCondition, string(s.reason), "%s", message)
	keepTransitionTimes(cc.Status.Conditions, previous)
}

// enter starts a stage whose only record is its conditions. A status that
// cannot be written is logged and the version goes on: the conditions
// inform, and finish tries again.
func (r *Reconciler) enter(ctx context.Context, cc *clusterconfig.ClusterConfig, out *outcome, s stage, version string) {
	if err := r.begin(ctx, cc, out, s, version, nil); err != nil {
		r.log.Error(err, "writing the ClusterConfig status", "reason", s.reason)
	}
}

// begin starts a stage: it reports the phase to the registry when it
// changed, and writes the stage's conditions, with what record sets, in one
// status write (none when nothing changed). cc and out then hold what was
// written, so that the next stage and finish write only what changes after.
func (r *Reconciler) begin(ctx context.Context, cc *clusterconfig.ClusterConfig, out *outcome, s stage, version string, record func(*clusterconfig.Status)) error {
	if s.phase != out.stage.phase {
		r.report(ctx, out.status, s.phase, nil)
	}
	out.stage = s
	next := cc.DeepCopyObject().(*clusterconfig.ClusterConfig)
	if record != nil {
		record(&next.Status)
	}
	next.Status.ObservedGeneration = next.Generation
	s.mark(next, version)
	if err := r.writeStatus(ctx, cc, next); err != nil {
		return fmt.Errorf("writing the conditions of stage %s: %w", s.reason, err)
	}
	*cc = *next
	out.status.Conditions = next.Status.Conditions
	return nil
}

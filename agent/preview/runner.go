package preview

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// PlanTimeout bounds one plan's preview, so that plans never hold the
// cluster's own reconciling back for long.
const PlanTimeout = 5 * time.Minute

// Reporter sends the answers to plans; *registry.Client is one.
type Reporter interface {
	PutPlan(ctx context.Context, clusterID, planID string, report *api.PlanReport) error
}

// Runner answers the plans of a cluster's assignment, one after another.
type Runner struct {
	previewer *Previewer
	registry  Reporter
	clusterID string
	log       logr.Logger
	// answered are the plans answered already that the assignment may
	// still hold: the registry drops them from the next one.
	answered map[string]bool
	// drifted lists the objects that differ from the cluster's version
	// now, when the agent watches them.
	drifted func(context.Context) []api.DriftedObject
}

// WithDrifted makes every plan also list the objects drifted lists.
func (r *Runner) WithDrifted(drifted func(context.Context) []api.DriftedObject) *Runner {
	r.drifted = drifted
	return r
}

// NewRunner returns a Runner of the cluster's plans.
func NewRunner(p *Previewer, r Reporter, clusterID string, log logr.Logger) *Runner {
	return &Runner{previewer: p, registry: r, clusterID: clusterID, log: log, answered: map[string]bool{}}
}

// Answer previews each plan not answered yet and sends the result. A plan
// whose answer cannot be sent is tried again with the next assignment.
func (r *Runner) Answer(ctx context.Context, a api.Assignment, st clusterconfig.Status, plans []api.AssignedPlan) {
	open := map[string]bool{}
	for _, plan := range plans {
		open[plan.ID] = true
		if r.answered[plan.ID] || ctx.Err() != nil {
			continue
		}
		r.answered[plan.ID] = r.answer(ctx, a, st, plan)
	}
	for id := range r.answered {
		if !open[id] {
			delete(r.answered, id)
		}
	}
}

// answer runs one plan; it reports whether the plan needs no more answers.
func (r *Runner) answer(ctx context.Context, a api.Assignment, st clusterconfig.Status, plan api.AssignedPlan) bool {
	log := r.log.WithValues("plan", plan.ID, "commit", plan.Commit)
	if ended, err := r.send(ctx, plan, &api.PlanReport{State: api.PlanRunning}); ended || err != nil {
		return ended
	}
	start := time.Now()
	planCtx, cancel := context.WithTimeout(ctx, PlanTimeout)
	result, err := r.previewer.Preview(planCtx, a, st, plan)
	cancel()
	report := &api.PlanReport{State: api.PlanDone, Result: result}
	if err == nil && result != nil && r.drifted != nil {
		result.Drifted = r.drifted(ctx)
	}
	if err != nil {
		var f *Failure
		if !errors.As(err, &f) {
			f = &Failure{Kind: "preview", Title: "The preview failed", Err: err}
		}
		report = &api.PlanReport{State: api.PlanFailed, Result: &api.PlanResult{Problem: f.Problem(time.Now().UTC())}}
	}
	log.Info("plan previewed", "state", report.State, "duration", time.Since(start).String())
	ended, err := r.send(ctx, plan, report)
	return ended || err == nil
}

// send sends an answer; ended says the registry takes no more answers to
// the plan: it ended already, or it is gone.
func (r *Runner) send(ctx context.Context, plan api.AssignedPlan, report *api.PlanReport) (ended bool, err error) {
	err = r.registry.PutPlan(ctx, r.clusterID, plan.ID, report)
	if registry.IsConflict(err) || registry.IsNotFound(err) {
		return true, nil
	}
	if err != nil && ctx.Err() == nil {
		r.log.Info("answering a plan failed", "plan", plan.ID, "state", report.State, "error", err.Error())
	}
	return false, err
}

package reconciler

import (
	"context"
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// nodeWake is what ends the loop's wait early while nodes are being
// replaced or drained, by the roll's own rule (nodes.Roller.Wake). Without
// node work it never fires and the Trigger's watches are stopped.
func (r *Reconciler) nodeWake(ctx context.Context) (<-chan struct{}, func()) {
	cc := r.config
	if cc == nil || cc.Status.NodeUpdate == nil || len(cc.Status.Rolls) == 0 && len(cc.Status.PendingNodePools) == 0 {
		r.stopTrigger()
		return nil, func() {}
	}
	return r.rollers.roller.Wake(r.startTrigger(ctx), r.wakeAt, cc.Status.NodeUpdate.Poll())
}

// timerAt fires at t; never for the zero time. stop releases the timer.
func timerAt(t time.Time) (<-chan time.Time, func()) {
	if t.IsZero() {
		return nil, func() {}
	}
	timer := time.NewTimer(max(time.Until(t), 0))
	return timer.C, func() { timer.Stop() }
}

func (r *Reconciler) startTrigger(ctx context.Context) *nodes.Trigger {
	if r.infra.Trigger != nil {
		r.infra.Trigger.Start(ctx)
	}
	return r.infra.Trigger
}

func (r *Reconciler) stopTrigger() {
	if r.infra.Trigger != nil {
		r.infra.Trigger.Stop()
	}
}

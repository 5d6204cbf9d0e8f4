package reconciler

import (
	"context"
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// nodeWake is what ends the loop's wait early while nodes are being
// replaced or drained: the Trigger's next change, the next forecast force,
// or drain_poll_interval. Without node work it never fires and the
// Trigger's watches are stopped. stop releases the timer.
func (r *Reconciler) nodeWake(ctx context.Context) (<-chan struct{}, func()) {
	cc := r.config
	if cc == nil || cc.Status.NodeUpdate == nil || len(cc.Status.Rolls) == 0 && len(cc.Status.PendingNodePools) == 0 {
		r.stopTrigger()
		return nil, func() {}
	}
	wait := cc.Status.NodeUpdate.Poll()
	if !r.wakeAt.IsZero() {
		wait = max(min(wait, time.Until(r.wakeAt)), 0)
	}
	wake := make(chan struct{})
	timer := time.AfterFunc(wait, func() { close(wake) })
	trigger := r.startTrigger(ctx)
	if trigger == nil {
		return wake, func() { timer.Stop() }
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-trigger.C():
			if timer.Stop() {
				close(wake)
			}
		case <-done:
		}
	}()
	return wake, func() { timer.Stop(); close(done) }
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

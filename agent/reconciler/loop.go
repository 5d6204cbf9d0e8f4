package reconciler

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// registryBackoffCap bounds the wait between two polls of a registry that
// cannot be reached.
const registryBackoffCap = 30 * time.Second

// Run loops until ctx ends. It reconciles after every answer of the
// registry's long-poll: a new assignment, which names the channel's head
// commit, or none within the interval. While the registry names no head or
// cannot be reached, it also reconciles when the branch is due to be
// listed (git_poll_interval). While nodes are being replaced it also
// reconciles after every change the roll waits for (the nodes.Trigger), at
// the next forecast force, and at the latest after drain_poll_interval: a
// roll's steps follow one another as soon as the cluster allows, not at
// the pace of a poll. A version that waits for its update window is taken
// up when the window opens.
func (r *Reconciler) Run(ctx context.Context) error {
	updates := make(chan assignment.Update, 1)
	go r.pollAssignments(ctx, updates)
	defer r.stopTrigger()
	var current *api.Assignment
	for {
		wake, stop := r.nodeWake(ctx)
		opens, stopWindow := timerAt(r.windowAt)
		listing, stopListing := timerAt(r.nextListing())
		select {
		case <-ctx.Done():
			stop()
			stopWindow()
			stopListing()
			return nil
		case upd := <-updates:
			current = upd.Assignment
			r.clock.observe(upd.RegistryTime, upd.ReceivedAt)
		case <-wake:
		case <-opens:
		case <-listing:
		}
		stop()
		stopWindow()
		stopListing()
		if current == nil {
			r.log.Info("no assignment yet; waiting for the registry")
			continue
		}
		start := r.now()
		r.reconcile(ctx, current, followRegistry)
		r.metrics.duration.Observe(r.now().Sub(start).Seconds())
	}
}

// pollAssignments long-polls the registry and hands every answer to the
// loop, also an unchanged one. Without a registry it hands on the last
// good assignment, and polls again after a jittered backoff that grows to
// registryBackoffCap, so that a fleet does not hammer a registry coming
// back. It goes on polling while the loop reconciles, an answer replacing
// the one the loop has not taken yet, so that the keeper's Latest stays
// fresh for a health wait under way (watchForNewer).
func (r *Reconciler) pollAssignments(ctx context.Context, updates chan assignment.Update) {
	failures := 0
	for ctx.Err() == nil {
		upd, err := r.keeper.Poll(ctx, r.cfg.Interval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log.Error(err, "keeping the assignment")
		}
		r.registryDown.Store(upd.RegistryErr != nil)
		if upd.RegistryErr != nil {
			r.log.Info("registry unreachable; going on with the last good assignment", "error", upd.RegistryErr.Error())
			r.metrics.registryErrors.Inc()
		}
		offer(updates, upd)
		switch {
		case upd.RegistryErr != nil:
			sleep(ctx, registry.Backoff(r.cfg.Interval/6, registryBackoffCap, failures, rand.Float64()))
			failures++
		case upd.Assignment == nil:
			sleep(ctx, r.cfg.Interval/6)
		default:
			failures = 0
		}
	}
}

// offer puts upd into the one-slot updates, in place of an update the
// loop has not taken yet: the latest answer is all the loop needs. It is
// called by the only sender, so it never blocks.
func offer(updates chan assignment.Update, upd assignment.Update) {
	for {
		select {
		case updates <- upd:
			return
		default:
		}
		select {
		case <-updates:
		default:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

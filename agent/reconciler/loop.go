package reconciler

import (
	"context"
	"time"

	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Run loops until ctx ends. It reconciles after every answer of the
// registry's long-poll: a new assignment, or none within the interval, and
// then the branch head is listed again. While nodes are being replaced it
// also reconciles, with the head it listed last, after every change the
// roll waits for (the nodes.Trigger), at the next forecast force, and at
// the latest after drain_poll_interval: a roll's steps follow one another
// as soon as the cluster allows, not at the pace of a poll. A version that
// waits for its update window is taken up when the window opens.
func (r *Reconciler) Run(ctx context.Context) error {
	updates := make(chan assignment.Update, 1)
	go r.pollAssignments(ctx, updates)
	defer r.stopTrigger()
	var current *api.Assignment
	for {
		listHead := false
		wake, stop := r.nodeWake(ctx)
		opens, stopWindow := timerAt(r.windowAt)
		select {
		case <-ctx.Done():
			stop()
			stopWindow()
			return nil
		case upd := <-updates:
			current, listHead = upd.Assignment, true
			r.clock.observe(upd.RegistryTime, upd.ReceivedAt)
		case <-wake:
		case <-opens:
		}
		stop()
		stopWindow()
		if current == nil {
			r.log.Info("no assignment yet; waiting for the registry")
			continue
		}
		start := r.now()
		r.reconcile(ctx, current, listHead)
		r.metrics.duration.Observe(r.now().Sub(start).Seconds())
	}
}

// pollAssignments long-polls the registry and hands every answer to the
// loop, also an unchanged one: it is the loop's pace for listing the branch
// head. Without a registry it hands on the last good assignment, less
// often, so as not to hammer the registry. It goes on polling while the
// loop reconciles, an answer replacing the one the loop has not taken yet,
// so that the keeper's Latest stays fresh for a health wait under way
// (watchForNewer).
func (r *Reconciler) pollAssignments(ctx context.Context, updates chan assignment.Update) {
	for ctx.Err() == nil {
		upd, err := r.keeper.Poll(ctx, r.cfg.Interval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.log.Error(err, "keeping the assignment")
		}
		if upd.RegistryErr != nil {
			r.log.Info("registry unreachable; going on with the last good assignment", "error", upd.RegistryErr.Error())
			r.metrics.registryErrors.Inc()
		}
		offer(updates, upd)
		if upd.Assignment == nil || upd.RegistryErr != nil {
			sleep(ctx, r.cfg.Interval/6)
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

// head is the branch's head commit: listed again when asked to, and when
// the last listing was of another branch or repository.
func (r *Reconciler) head(ctx context.Context, repo Source, branch string, list bool) (string, error) {
	if !list && r.listed.url == repo.Location() && r.listed.branch == branch && r.listed.commit != "" {
		return r.listed.commit, nil
	}
	commit, err := repo.Head(ctx, branch)
	if err != nil {
		return "", err
	}
	r.listed = listedHead{url: repo.Location(), branch: branch, commit: commit}
	return commit, nil
}

func sleep(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

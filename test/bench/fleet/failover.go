//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// errNoFailover is scenario 3's failing check: the agents can be given
// one registry URL only, so a killed replica's agents have nowhere to go.
var errNoFailover = errors.New("pkg/registry's client does not fail over between several registry URLs (--registry-url a,b): scenario 3 needs it")

// clientFailsOver asks the registry client, given a dead URL and then a
// live one, for the channels a few times: the client picks where it
// starts, so only one that fails over is answered every time.
func clientFailsOver(ctx context.Context, live, token string) error {
	dead, err := host.FreeAddr()
	if err != nil {
		return err
	}
	for range 8 {
		c, err := registry.New("http://"+dead+","+live, token, registry.WithRetryMax(1), registry.WithRetryWait(10*time.Millisecond, 10*time.Millisecond))
		if err != nil {
			return fmt.Errorf("%w: %w", errNoFailover, err)
		}
		if _, err := c.ListChannels(ctx, registry.Page{}); err != nil {
			return fmt.Errorf("%w: %w", errNoFailover, err)
		}
	}
	return nil
}

// killedReplica is the replica scenario 3 kills: the second, so the
// bench's admin client keeps its replica.
const killedReplica = 1

// failoverResult is scenario 3: a replica killed with SIGKILL under the fleet.
type failoverResult struct {
	size int
	// unsupported is why the scenario could not run.
	unsupported error
	steady      window // the attempts in the window before the kill
	afterKill   window // and in the window after it
	// moved counts the agents the killed replica answered last.
	moved int
	// gaps are the agents' times without a registry after the kill, sorted.
	gaps []time.Duration
	// missed counts the agents that did not hold the write made after
	// the kill, or whose last accepted status the registry does not have.
	missed, statusesLost int
	waitingBefore        [replicas]int
	waitingAfterKill     [replicas]int
	waitingAfterRestart  [replicas]int
	// survivorAfterKill is what the survivor's counters added over the
	// window after the kill.
	survivorAfterKill replicaMetrics
	// survivorPeakInWindow is the survivor's peak RSS by the end of the
	// window after the kill, when it served every agent; survivorPeak
	// once every agent also took the write made after it, and reported.
	survivorPeakInWindow, survivorPeak int64
	// failures counts the agents' failed polls and reports from the kill
	// until every agent held the write made after it.
	failures map[string]int
	// spread is from the restart until the restarted replica held its
	// share of long-polls again; zero when it did not within the wait.
	spread     time.Duration
	spreadWait time.Duration
}

func (r failoverResult) ratio() float64 {
	if r.steady.rate() == 0 {
		return 0
	}
	return r.afterKill.rate() / r.steady.rate()
}

func (r failoverResult) longest() time.Duration {
	if len(r.gaps) == 0 {
		return 0
	}
	return r.gaps[len(r.gaps)-1]
}

// measureFailover runs scenario 3: a steady window, the second replica
// killed with SIGKILL, the window after it, a write every agent must
// hold, every agent's last status checked at the registry, and the
// replica started again until it holds its share of the fleet's polls.
func (d *deployment) measureFailover(ctx context.Context) (failoverResult, error) {
	res := failoverResult{size: d.size, unsupported: d.failoverErr}
	if d.failoverErr != nil {
		host.Progress("3. not run: %v", d.failoverErr)
		return res, nil
	}
	win := d.w.opts.killWindow
	killed, survivor := d.replicas[killedReplica], d.replicas[1-killedReplica]
	host.Progress("3. %s of steady state, then replica %d killed with SIGKILL", win, killedReplica+1)
	from := time.Now()
	sleep(ctx, win)
	if err := d.waitingOnBoth(ctx, &res.waitingBefore); err != nil {
		return res, err
	}
	survivor0, err := survivor.metrics(ctx)
	if err != nil {
		return res, err
	}
	for _, a := range d.fleet.agents {
		if a.snapshot().link.replica == killed.host() {
			res.moved++
		}
	}
	failures0 := d.fleet.failures()
	killedAt := time.Now()
	if err := killed.Kill(); err != nil {
		return res, err
	}
	res.steady = d.log.between(from, killedAt)
	sleep(ctx, time.Until(killedAt.Add(win)))
	res.afterKill = d.log.between(killedAt, killedAt.Add(win))
	survivor1, err := survivor.metrics(ctx)
	if err != nil {
		return res, err
	}
	res.survivorAfterKill = survivor1.minus(survivor0)
	res.waitingAfterKill[1-killedReplica] = survivor1.waiting
	mem, err := survivor.Memory()
	if err != nil {
		return res, err
	}
	res.survivorPeakInWindow = mem.Peak
	if err := d.afterKill(ctx, &res, killedAt); err != nil {
		return res, err
	}
	res.failures = since(d.fleet.failures(), failures0)
	mem, err = survivor.Memory()
	if err != nil {
		return res, err
	}
	res.survivorPeak = mem.Peak
	host.Progress("3. replica %d started again; waiting for the agents to spread", killedReplica+1)
	if err := killed.restart(ctx); err != nil {
		return res, err
	}
	restarted := time.Now()
	res.spreadWait = d.w.opts.failback + 2*d.w.opts.interval
	res.spread, err = d.awaitSpread(ctx, killed, res.moved, restarted, res.spreadWait)
	if err != nil {
		return res, err
	}
	return res, d.waitingOnBoth(ctx, &res.waitingAfterRestart)
}

// afterKill checks that nothing was lost: every agent has a registry
// again, holds a write made through the survivor, and the registry has
// every agent's last accepted status.
func (d *deployment) afterKill(ctx context.Context, res *failoverResult, killedAt time.Time) error {
	timeout := 2*d.w.opts.interval + time.Duration(d.size)*10*time.Millisecond
	if err := await(ctx, "a registry again after the kill", d.fleet.agents, timeout, func(s snapshot) bool {
		return s.link.downSince.IsZero()
	}); err != nil {
		return err
	}
	for _, a := range d.fleet.agents {
		var gap time.Duration
		for _, o := range a.snapshot().link.outages {
			if !o.to.Before(killedAt) {
				gap = max(gap, o.length())
			}
		}
		res.gaps = append(res.gaps, gap)
	}
	slices.Sort(res.gaps)
	writers, err := d.adminClients()
	if err != nil {
		return err
	}
	item := writeReach{item: "fleet_after_kill"}
	if err := writeItem(ctx, writers[1-killedReplica], &item, time.Minute); err != nil {
		return err
	}
	if err := d.awaitItems(ctx, item.item); err != nil {
		res.missed = d.countMissing(item.item)
		host.Progress("   %v", err)
	}
	res.statusesLost, err = d.lostStatuses(ctx)
	return err
}

func (d *deployment) countMissing(item string) int {
	n := 0
	for _, a := range d.fleet.agents {
		if s := a.snapshot(); s.held == nil || !hasItems(s.held, item) {
			n++
		}
	}
	return n
}

// lostStatuses counts the agents whose last status the registry accepted
// is not the one it has: a report acknowledged and then lost.
func (d *deployment) lostStatuses(ctx context.Context) (int, error) {
	var lost atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan *simAgent)
	for range 16 {
		wg.Go(func() {
			for a := range work {
				sent := a.snapshot().lastSent
				got, _, err := d.admin.GetClusterStatus(ctx, a.cluster.ID)
				switch {
				case err != nil:
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				case got.Heartbeat.Before(sent.Heartbeat):
					// The agent goes on reporting: a newer status is no loss.
					lost.Add(1)
				}
			}
		})
	}
	for _, a := range d.fleet.agents {
		work <- a
	}
	close(work)
	wg.Wait()
	return int(lost.Load()), firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// awaitSpread waits until the restarted replica holds the polls of at
// least half the agents it served before the kill, those whose client
// started at it and comes back after the failback, or the wait ends.
func (d *deployment) awaitSpread(ctx context.Context, r *replica, served int, since time.Time, wait time.Duration) (time.Duration, error) {
	for time.Since(since) < wait {
		m, err := r.metrics(ctx)
		if err != nil {
			return 0, err
		}
		if 2*m.waiting >= served {
			return time.Since(since), nil
		}
		sleep(ctx, time.Second)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	return 0, nil
}

func (d *deployment) waitingOnBoth(ctx context.Context, into *[replicas]int) error {
	for i, r := range d.replicas {
		m, err := r.metrics(ctx)
		if err != nil {
			return err
		}
		into[i] = m.waiting
	}
	return nil
}

//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// lostListenLine is what a replica logs when its LISTEN connection broke.
const lostListenLine = "lost the database notification connection"

// outageResult is scenario 2: PostgreSQL stopped and started under the fleet.
type outageResult struct {
	size                int
	stopTook, startTook time.Duration
	// down is from the stop's end to the start's beginning.
	down      time.Duration
	readiness [replicas]readinessOutcome
	// listenLost counts the replica's log lines saying its LISTEN
	// connection broke; it is ready again only once listening again.
	listenLost [replicas]int
	before     writeReach // accepted just before the stop
	after      writeReach // made just after the start
	// failures counts the agents' failed polls and reports meanwhile.
	failures map[string]int
}

// readinessOutcome is what a replica's /readyz did around the outage.
type readinessOutcome struct {
	wentFalse  bool
	falseAfter time.Duration // from the stop's beginning
	cameBack   bool
	trueAfter  time.Duration // from the start's end
}

// writeReach is how one write reached the agents: from its acceptance to
// each agent holding it, and to each agent reporting the version it makes.
type writeReach struct {
	item     string
	accepted time.Time
	// tries and trying are the attempts, and the time, it took until the
	// registry accepted the write.
	tries    int
	trying   time.Duration
	toHold   []time.Duration
	toReport []time.Duration
	// beforeDown counts the agents that held it before PostgreSQL was
	// down (pg_ctl stop returned).
	beforeDown int
}

// measureOutage runs scenario 2: a config item of the fleet's account
// written through replica 1, PostgreSQL stopped at once and, after the
// outage, started again; a second item written through replica 2 as soon
// as the registry takes writes again. Every agent must hold both, and
// both replicas go unready and ready again.
func (d *deployment) measureOutage(ctx context.Context) (outageResult, error) {
	res := outageResult{size: d.size}
	watchers, logMarks := make([]*readiness, replicas), make([]int, replicas)
	for i, r := range d.replicas {
		watchers[i] = watchReadiness(r)
		logMarks[i] = logSize(r.LogPath)
	}
	failures0 := d.fleet.failures()
	writers, err := d.adminClients()
	if err != nil {
		return res, err
	}
	res.before, res.after = writeReach{item: "fleet_outage_before"}, writeReach{item: "fleet_outage_after"}
	host.Progress("2. a write through replica 1, then PostgreSQL stopped for %s", d.w.opts.outage)
	if err := writeItem(ctx, writers[0], &res.before, time.Second); err != nil {
		return res, err
	}
	stopBegan := time.Now()
	if err := d.w.pgctl.stop(ctx); err != nil {
		return res, err
	}
	stopped := time.Now()
	res.stopTook = stopped.Sub(stopBegan)
	sleep(ctx, d.w.opts.outage)
	res.down = time.Since(stopBegan) - res.stopTook
	startBegan := time.Now()
	if err := d.w.pgctl.start(ctx); err != nil {
		return res, err
	}
	started := time.Now()
	res.startTook = started.Sub(startBegan)
	host.Progress("2. PostgreSQL started again after %s; a write through replica 2", res.down.Round(time.Millisecond))
	if err := writeItem(ctx, writers[1], &res.after, 2*time.Minute); err != nil {
		return res, err
	}
	if err := d.awaitItems(ctx, res.before.item, res.after.item); err != nil {
		return res, err
	}
	if err := awaitReady(ctx, watchers, 2*time.Minute); err != nil {
		return res, err
	}
	for i, w := range watchers {
		changes := w.end()
		res.readiness[i] = readinessAround(changes, stopBegan, started)
		res.listenLost[i] = countLines(d.replicas[i].LogPath, logMarks[i], lostListenLine)
	}
	for _, reach := range []*writeReach{&res.before, &res.after} {
		d.reach(reach, stopped)
	}
	res.failures = since(d.fleet.failures(), failures0)
	return res, nil
}

// adminClients are one admin client per replica, without retries: the
// scenarios retry themselves, and count.
func (d *deployment) adminClients() ([]*registry.Client, error) {
	var out []*registry.Client
	for _, r := range d.replicas {
		c, err := registry.New(r.URL, d.w.secrets.admin, registry.WithRetryMax(0))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// writeItem sets a config item on the fleet's account, which is in every
// cluster's assignment, trying every 100 ms until the registry accepts it
// or within fails.
func writeItem(ctx context.Context, c *registry.Client, w *writeReach, within time.Duration) error {
	began := time.Now()
	patch := map[string]any{"config_items": map[string]string{w.item: strconv.FormatInt(began.UnixNano(), 10)}}
	for {
		w.tries++
		_, _, err := c.PatchInfrastructureAccount(ctx, host.FleetAccount, patch, "")
		if err == nil {
			w.accepted, w.trying = time.Now(), time.Since(began)
			return nil
		}
		if time.Since(began) > within {
			return fmt.Errorf("writing %s: not accepted within %s: %w", w.item, within, err)
		}
		sleep(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// awaitItems waits until every agent holds an assignment with the items
// and the registry accepted its report of the version it makes.
func (d *deployment) awaitItems(ctx context.Context, items ...string) error {
	timeout := 3*time.Minute + time.Duration(d.size)*10*time.Millisecond
	return await(ctx, fmt.Sprintf("the config items %v held and reported", items), d.fleet.agents, timeout, func(s snapshot) bool {
		return s.held != nil && hasItems(s.held, items...) && s.lastSent.CurrentVersion == reconciler.Version(s.held.Channel.Commit, s.held)
	})
}

func hasItems(a *api.Assignment, items ...string) bool {
	for _, item := range items {
		if _, ok := a.ConfigItems[item]; !ok {
			return false
		}
	}
	return true
}

// reach fills in how the write reached each agent.
func (d *deployment) reach(w *writeReach, stopped time.Time) {
	holds := func(a *api.Assignment) bool { return hasItems(a, w.item) }
	for _, a := range d.fleet.agents {
		s := a.snapshot()
		held, ok := s.firstAssignment(w.accepted.Add(-time.Second), holds)
		if !ok {
			continue
		}
		w.toHold = append(w.toHold, max(held.at.Sub(w.accepted), 0))
		if held.at.Before(stopped) {
			w.beforeDown++
		}
		version := reconciler.Version(held.assignment.Channel.Commit, held.assignment)
		if reported, ok := s.firstReport(held.at, func(v string) bool { return v == version }); ok {
			w.toReport = append(w.toReport, reported.at.Sub(w.accepted))
		}
	}
	slices.Sort(w.toHold)
	slices.Sort(w.toReport)
}

// readinessAround reads the first change to unready after the stop began
// and the first change back to ready after the start ended.
func readinessAround(changes []readinessChange, stopBegan, started time.Time) readinessOutcome {
	var o readinessOutcome
	for _, c := range changes {
		switch {
		case !c.ready && !o.wentFalse && !c.at.Before(stopBegan):
			o.wentFalse, o.falseAfter = true, c.at.Sub(stopBegan)
		case c.ready && o.wentFalse && !c.at.Before(started):
			o.cameBack, o.trueAfter = true, c.at.Sub(started)
		}
	}
	if n := len(changes); n > 0 && !changes[n-1].ready {
		o.cameBack = false
	}
	return o
}

func logSize(path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return int(fi.Size())
}

// countLines counts the lines of the log after offset that contain text.
func countLines(path string, offset int, text string) int {
	b, err := os.ReadFile(path)
	if err != nil || offset > len(b) {
		return 0
	}
	n := 0
	for _, line := range bytes.Split(b[offset:], []byte("\n")) {
		if bytes.Contains(line, []byte(text)) {
			n++
		}
	}
	return n
}

//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// agentVersion is what the simulated agents report as theirs.
const agentVersion = "fleet-bench"

// simAgent does on the wire what caravan-agent's loop does with the
// registry (agent/reconciler's Run and pollAssignments): it long-polls its
// assignment with the ETag it holds, waiting up to the interval; after
// each answer it reconciles, which for it is instant, and reports its
// status: the new version when the assignment brought one, else the same
// version again, a heartbeat. Without an answer it goes on with the
// assignment it holds, reports, and polls again after a sixth of the
// interval. It neither lists nor fetches the config repo: the registry's
// assignment names the channel's head.
type simAgent struct {
	cluster  host.SeededCluster
	client   *registry.Client
	interval time.Duration

	mu       sync.Mutex
	etag     string
	held     *api.Assignment
	version  string
	events   []event
	counts   agentCounts
	lastErr  string
	lastSent api.ClusterStatus // the last status the registry accepted
	link     link
}

// event is a new assignment the agent took, or a new version it reported.
type event struct {
	at time.Time
	// replica is the host:port whose answer it was.
	replica    string
	assignment *api.Assignment // a new assignment
	reported   string          // or the version reported
}

type agentCounts struct {
	polls, pollErrors, reports, reportErrors int
	// errors counts the failed polls and reports by errorKind.
	errors map[string]int
}

func (c *agentCounts) failed(err error) {
	if c.errors == nil {
		c.errors = map[string]int{}
	}
	c.errors[errorKind(err)]++
}

// errorKind names what went wrong without what differs from agent to
// agent (cluster ids, addresses): the registry's answer, or the innermost
// transport error.
func errorKind(err error) string {
	var p *api.Problem
	if errors.As(err, &p) {
		return fmt.Sprintf("%d %s", p.Status, p.Title)
	}
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// link follows the agent's connection to the registry, from the attempts
// its client makes: when it lost it and when it had it back.
type link struct {
	replica   string    // whose answer came last
	downSince time.Time // the end of the first failed attempt since then
	outages   []outage
}

// outage is a time an agent had no registry: from its first failed
// attempt to the start of the next one that was answered.
type outage struct{ from, to time.Time }

func (o outage) length() time.Duration { return o.to.Sub(o.from) }

func (a *simAgent) run(ctx context.Context) {
	for ctx.Err() == nil {
		res, err := a.client.GetAssignment(ctx, a.cluster.ID, registry.AssignmentOptions{IfNoneMatch: a.currentETag(), Wait: a.interval})
		if ctx.Err() != nil {
			return
		}
		a.polled(res, err)
		holding := a.holding()
		if holding {
			a.report(ctx)
		}
		if err != nil || !holding {
			sleep(ctx, a.interval/6)
		}
	}
}

func (a *simAgent) currentETag() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.etag
}

func (a *simAgent) holding() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held != nil
}

func (a *simAgent) polled(res *registry.AssignmentResult, err error) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts.polls++
	if err != nil {
		a.counts.pollErrors++
		a.counts.failed(err)
		a.lastErr = err.Error()
		return
	}
	if res.NotModified {
		return
	}
	a.etag, a.held = res.ETag, res.Assignment
	a.events = append(a.events, event{at: now, replica: a.link.replica, assignment: res.Assignment})
}

// report sends the status of the version the agent holds, as the agent's
// finish does after every reconcile.
func (a *simAgent) report(ctx context.Context) {
	a.mu.Lock()
	held, previous := a.held, a.version
	a.mu.Unlock()
	version := reconciler.Version(held.Channel.Commit, held)
	st := api.ClusterStatus{
		CurrentVersion: version, LastVersion: previous, Phase: api.PhaseIdle, AgentVersion: agentVersion, Heartbeat: time.Now().UTC(),
		NodePools: []api.NodePoolProgress{{Name: "system", NodesTotal: 2}, {Name: "workers", NodesTotal: 3}},
	}
	err := a.client.PutClusterStatus(ctx, a.cluster.ID, &st)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.counts.reports++
	if err != nil {
		if ctx.Err() == nil {
			a.counts.reportErrors++
			a.counts.failed(err)
			a.lastErr = err.Error()
		}
		return
	}
	a.lastSent = st
	if version != a.version {
		a.version = version
		a.events = append(a.events, event{at: now, replica: a.link.replica, reported: version})
	}
}

// attempted follows the link from each attempt of the agent's client.
func (a *simAgent) attempted(began, ended time.Time, replica string, failed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := &a.link
	if failed {
		if l.downSince.IsZero() {
			l.downSince = ended
		}
		return
	}
	l.replica = replica
	if !l.downSince.IsZero() {
		// An agent makes one attempt at a time, so an answered attempt
		// began after the failure before it ended.
		to := began
		if to.Before(l.downSince) {
			to = l.downSince
		}
		l.outages = append(l.outages, outage{from: l.downSince, to: to})
		l.downSince = time.Time{}
	}
}

// snapshot is what the scenarios read of an agent, copied under its lock.
type snapshot struct {
	held     *api.Assignment
	events   []event
	counts   agentCounts
	lastErr  string
	lastSent api.ClusterStatus
	link     link
}

func (a *simAgent) snapshot() snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.link
	l.outages = append([]outage(nil), l.outages...)
	c := a.counts
	c.errors = maps.Clone(c.errors)
	return snapshot{held: a.held, events: append([]event(nil), a.events...), counts: c, lastErr: a.lastErr, lastSent: a.lastSent, link: l}
}

// inspect calls fn with the agent's state without copying it, under the
// agent's lock: fn must not keep what it is given.
func (a *simAgent) inspect(fn func(snapshot) bool) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return fn(snapshot{held: a.held, events: a.events, counts: a.counts, lastErr: a.lastErr, lastSent: a.lastSent, link: a.link})
}

// firstAssignment is the first new assignment taken at or after from that
// satisfies want, and whether there is one.
func (s snapshot) firstAssignment(from time.Time, want func(*api.Assignment) bool) (event, bool) {
	for _, e := range s.events {
		if e.assignment != nil && !e.at.Before(from) && want(e.assignment) {
			return e, true
		}
	}
	return event{}, false
}

// firstReport is the first version reported at or after from that
// satisfies want.
func (s snapshot) firstReport(from time.Time, want func(version string) bool) (event, bool) {
	for _, e := range s.events {
		if e.assignment == nil && !e.at.Before(from) && want(e.reported) {
			return e, true
		}
	}
	return event{}, false
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Assignment is a cluster's assignment encoded, with its strong ETag and the
// time at which it changes by itself (a block running out, a freeze
// starting or ending, a plan its agent did not answer in time), if any.
type Assignment struct {
	Body      []byte
	ETag      string
	ChangesAt time.Time
}

type cachedAssignment struct {
	gen   Generation
	fleet uint64
	Assignment
}

// assignmentCache keeps every cluster's encoded assignment, and what it was
// made of, until the hub says what changed: the agents' steady-state poll
// costs a map lookup, and an assignment that changes because something
// clusters share changed (a channel's new head, a freeze) is made again
// without reading the database.
type assignmentCache struct {
	mu      sync.RWMutex
	entries map[string]cachedAssignment
	inputs  map[string]clusterInputs

	// fleet holds the fleet's inputs; fleetMu makes one reader read them
	// while the others wait for its result.
	fleet   atomic.Pointer[fleetInputs]
	fleetMu sync.Mutex
}

func newAssignmentCache() *assignmentCache {
	return &assignmentCache{entries: map[string]cachedAssignment{}, inputs: map[string]clusterInputs{}}
}

// Assignment returns a cluster's current assignment.
func (s *Store) Assignment(ctx context.Context, clusterID string) (Assignment, error) {
	now := s.now()
	// The generations are read before the database, so a write racing with
	// this read leaves a stale entry that the next call recomputes.
	gen, fleetGen := s.hub.Generation(clusterID), s.hub.FleetGeneration()
	s.cache.mu.RLock()
	c, ok := s.cache.entries[clusterID]
	s.cache.mu.RUnlock()
	if ok && s.cacheTrusted() && c.gen == gen && c.fleet == fleetGen && (c.ChangesAt.IsZero() || now.Before(c.ChangesAt)) {
		return c.Assignment, nil
	}
	own, err := s.clusterInputs(ctx, clusterID)
	if err != nil {
		return Assignment{}, err
	}
	fleet, err := s.fleetInputs(ctx)
	if err != nil {
		return Assignment{}, err
	}
	a, changesAt, err := buildAssignment(own, fleet, now)
	if err != nil {
		return Assignment{}, err
	}
	body, err := json.Marshal(a)
	if err != nil {
		return Assignment{}, fmt.Errorf("encoding assignment: %w", err)
	}
	out := Assignment{Body: body, ETag: etagOf(body), ChangesAt: changesAt}
	s.cache.mu.Lock()
	s.cache.entries[clusterID] = cachedAssignment{gen: own.gen, fleet: fleet.gen, Assignment: out}
	s.cache.mu.Unlock()
	return out, nil
}

// cacheTrusted reports whether what the caches hold can be used: without
// the other replicas' notifications it may be stale.
func (s *Store) cacheTrusted() bool {
	return s.listener == nil || s.listener.connected.Load()
}

// buildAssignment makes a cluster's assignment at now from its own inputs
// and the fleet's.
func buildAssignment(own clusterInputs, fleet *fleetInputs, now time.Time) (api.Assignment, time.Time, error) {
	c := own.cluster
	account, ok := fleet.accounts[c.InfrastructureAccount]
	if !ok {
		return api.Assignment{}, time.Time{}, fmt.Errorf("account of cluster %q: %s %q: %w", c.ID, Accounts.resource, c.InfrastructureAccount, ErrNotFound)
	}
	channel, ok := fleet.channels[c.Channel]
	if !ok {
		return api.Assignment{}, time.Time{}, fmt.Errorf("channel of cluster %q: %s %q: %w", c.ID, Channels.resource, c.Channel, ErrNotFound)
	}
	// Every freeze that has not ended: BuildAssignment takes those that
	// cover the cluster, and when the next of them starts or ends.
	in := api.AssignmentInput{Account: account, Cluster: c, NodePools: own.pools, Channel: channel, Blocks: own.blocks, Freezes: fleet.freezes}
	a, changesAt := api.BuildAssignment(in, now)
	plans, plansExpire := openPlans(own.plans, now)
	a.Plans, changesAt = plans, api.Earliest(changesAt, plansExpire)
	// The channel carries the commit the registry publishes on it: the
	// branch head as last read (SetChannelHead), unless an enforced gate
	// holds that head back. A newly published commit reaches the waiting
	// long-polls of the channel's clusters.
	p := fleet.published[channel.Name]
	a.Channel.Commit, a.Channel.Gate = p.commit, p.gate
	return a, changesAt, nil
}

// openPlans lists the plans its agent has yet to answer at now, oldest
// first, and when the first of them expires (zero without any).
func openPlans(stored []api.Plan, now time.Time) ([]api.AssignedPlan, time.Time) {
	var plans []api.AssignedPlan
	var expires time.Time
	for _, p := range stored {
		if p = p.At(now); p.Final() {
			continue
		}
		plans = append(plans, api.AssignedPlan{ID: p.ID, Commit: p.Commit})
		expires = api.Earliest(expires, p.ExpiresAt())
	}
	return plans, expires
}

// forget drops the entries of deleted clusters, so the cache holds only
// clusters that exist.
func (c *assignmentCache) forget(ids []string) {
	if len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		delete(c.entries, id)
		delete(c.inputs, id)
	}
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
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
	gen Generation
	Assignment
}

// assignmentCache keeps every cluster's encoded assignment until the hub
// says the cluster changed: the agents' steady-state poll costs a map lookup.
type assignmentCache struct {
	mu      sync.RWMutex
	entries map[string]cachedAssignment
}

func newAssignmentCache() *assignmentCache {
	return &assignmentCache{entries: map[string]cachedAssignment{}}
}

// Assignment returns a cluster's current assignment.
func (s *Store) Assignment(ctx context.Context, clusterID string) (Assignment, error) {
	now := s.now()
	// The generation is read before the database, so a write racing with
	// this read leaves a stale entry that the next call recomputes.
	gen := s.hub.Generation(clusterID)
	s.cache.mu.RLock()
	c, ok := s.cache.entries[clusterID]
	s.cache.mu.RUnlock()
	// Without the other replicas' notifications the cache may be stale.
	trusted := s.listener == nil || s.listener.connected.Load()
	if ok && trusted && c.gen == gen && (c.ChangesAt.IsZero() || now.Before(c.ChangesAt)) {
		return c.Assignment, nil
	}
	in, err := s.assignmentInput(ctx, clusterID, now)
	if err != nil {
		return Assignment{}, err
	}
	a, changesAt := api.BuildAssignment(in, now)
	plans, plansExpire, err := s.openPlans(ctx, clusterID, now)
	if err != nil {
		return Assignment{}, err
	}
	a.Plans, changesAt = plans, api.Earliest(changesAt, plansExpire)
	// The channel carries the commit the registry publishes on it: the
	// branch head as last read (SetChannelHead), unless an enforced gate
	// holds that head back. A newly published commit reaches the waiting
	// long-polls of the channel's clusters.
	a.Channel.Commit, a.Channel.Gate, err = s.published(ctx, in.Channel.Name)
	if err != nil {
		return Assignment{}, err
	}
	body, err := json.Marshal(a)
	if err != nil {
		return Assignment{}, fmt.Errorf("encoding assignment: %w", err)
	}
	out := Assignment{Body: body, ETag: etagOf(body), ChangesAt: changesAt}
	s.cache.mu.Lock()
	s.cache.entries[clusterID] = cachedAssignment{gen: gen, Assignment: out}
	s.cache.mu.Unlock()
	return out, nil
}

func (s *Store) assignmentInput(ctx context.Context, clusterID string, now time.Time) (api.AssignmentInput, error) {
	cluster, err := Get(ctx, s, Clusters, clusterID)
	if err != nil {
		return api.AssignmentInput{}, err
	}
	account, err := Get(ctx, s, Accounts, cluster.Value.InfrastructureAccount)
	if err != nil {
		return api.AssignmentInput{}, fmt.Errorf("account of cluster %q: %w", clusterID, err)
	}
	channel, err := Get(ctx, s, Channels, cluster.Value.Channel)
	if err != nil {
		return api.AssignmentInput{}, fmt.Errorf("channel of cluster %q: %w", clusterID, err)
	}
	pools, err := s.NodePoolsOf(ctx, clusterID)
	if err != nil {
		return api.AssignmentInput{}, err
	}
	blocks, _, err := List(ctx, s, Blocks, Filter{Parent: clusterID, Limit: 10000})
	if err != nil {
		return api.AssignmentInput{}, err
	}
	// Every freeze that has not ended: BuildAssignment takes those that
	// cover the cluster, and when the next of them starts or ends.
	freezes, err := s.CurrentFreezes(ctx, now)
	if err != nil {
		return api.AssignmentInput{}, err
	}
	in := api.AssignmentInput{Account: account.Value, Cluster: cluster.Value, NodePools: pools, Channel: channel.Value, Freezes: freezes}
	for _, b := range blocks {
		in.Blocks = append(in.Blocks, b.Value)
	}
	return in, nil
}

// NodePoolsOf returns the node pools of one cluster, ordered by name.
func (s *Store) NodePoolsOf(ctx context.Context, clusterID string) ([]api.NodePool, error) {
	recs, _, err := List(ctx, s, NodePools, Filter{Parent: clusterID, Limit: 10000})
	if err != nil {
		return nil, err
	}
	pools := make([]api.NodePool, len(recs))
	for i, r := range recs {
		pools[i] = r.Value
	}
	return pools, nil
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
	}
}

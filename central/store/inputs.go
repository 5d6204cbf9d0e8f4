package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// clusterInputs are what a cluster's assignment is made of that is its
// own, as read at generation gen.
type clusterInputs struct {
	gen     Generation
	cluster api.Cluster
	pools   []api.NodePool
	blocks  []api.Block
	// plans are those stored pending or running: which of them are still
	// open is decided at each build, since a plan expires by itself.
	plans []api.Plan
}

// fleetInputs are what clusters' assignments share, as read at fleet
// generation gen: a handful of rows, read once for all clusters.
type fleetInputs struct {
	gen       uint64
	accounts  map[string]api.InfrastructureAccount
	channels  map[string]api.Channel
	published map[string]publishedCommit
	// freezes are those that had not ended when read.
	freezes []api.Freeze
}

// publishedCommit is what a channel's assignments carry of its publication.
type publishedCommit struct{ commit, gate string }

// clusterInputs returns the cluster's own inputs, from the cache while
// its generation has not moved.
func (s *Store) clusterInputs(ctx context.Context, clusterID string) (clusterInputs, error) {
	gen := s.hub.Generation(clusterID)
	s.cache.mu.RLock()
	in, ok := s.cache.inputs[clusterID]
	s.cache.mu.RUnlock()
	if ok && in.gen == gen && s.cacheTrusted() {
		return in, nil
	}
	in, found, err := s.inputReader.get(ctx, clusterID)
	if err == nil && !found {
		err = fmt.Errorf("%s %q: %w", Clusters.resource, clusterID, ErrNotFound)
	}
	return in, err
}

// fleetInputs returns the fleet's inputs, from the cache while the fleet
// generation has not moved; one caller reads them for all.
func (s *Store) fleetInputs(ctx context.Context) (*fleetInputs, error) {
	if !s.cacheTrusted() {
		return s.readFleetInputs(ctx, s.hub.FleetGeneration())
	}
	if f := s.cache.fleet.Load(); f != nil && f.gen == s.hub.FleetGeneration() {
		return f, nil
	}
	s.cache.fleetMu.Lock()
	defer s.cache.fleetMu.Unlock()
	gen := s.hub.FleetGeneration()
	if f := s.cache.fleet.Load(); f != nil && f.gen == gen {
		return f, nil
	}
	f, err := s.readFleetInputs(ctx, gen)
	if err != nil {
		return nil, err
	}
	s.cache.fleet.Store(f)
	return f, nil
}

func (s *Store) readFleetInputs(ctx context.Context, gen uint64) (*fleetInputs, error) {
	s.stats.FleetReads.Add(1)
	f := &fleetInputs{gen: gen, accounts: map[string]api.InfrastructureAccount{}, channels: map[string]api.Channel{}, published: map[string]publishedCommit{}}
	err := s.scanDocs(ctx, `SELECT key, doc FROM accounts`, nil, func(key string, doc []byte) error {
		var a api.InfrastructureAccount
		if err := json.Unmarshal(doc, &a); err != nil {
			return fmt.Errorf("decoding %s %q: %w", Accounts.resource, key, err)
		}
		f.accounts[key] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the accounts: %w", err)
	}
	chans, err := s.channelsIn(ctx, s.read)
	if err != nil {
		return nil, err
	}
	for _, c := range chans {
		f.channels[c.Name] = c
	}
	pubs, err := s.publicationsIn(ctx, s.read)
	if err != nil {
		return nil, err
	}
	for name, p := range pubs {
		f.published[name] = publishedCommit{commit: p.Commit, gate: p.Gate}
	}
	if f.freezes, err = currentFreezes(ctx, s, s.read, s.now()); err != nil {
		return nil, err
	}
	return f, nil
}

// readClusterInputs reads the own inputs of the clusters that exist among
// ids, and keeps them in the cache.
func (s *Store) readClusterInputs(ctx context.Context, ids []string) (map[string]clusterInputs, error) {
	s.stats.InputBatches.Add(1)
	s.stats.InputClusters.Add(uint64(len(ids)))
	gens := make(map[string]Generation, len(ids))
	for _, id := range ids {
		gens[id] = s.hub.Generation(id)
	}
	out := make(map[string]*clusterInputs, len(ids))
	for page := range slices.Chunk(ids, pageSize) {
		if err := s.readInputPage(ctx, page, gens, out); err != nil {
			return nil, err
		}
	}
	found := make(map[string]clusterInputs, len(out))
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	for id, in := range out {
		found[id] = *in
		s.cache.inputs[id] = *in
	}
	return found, nil
}

// readInputPage reads the inputs of ids, each of which had its generation
// in gens before, into out.
func (s *Store) readInputPage(ctx context.Context, ids []string, gens map[string]Generation, out map[string]*clusterInputs) error {
	args := queryArgs(ids)
	in := inList(len(ids))
	err := s.scanDocs(ctx, `SELECT key, doc FROM clusters WHERE key IN `+in, args, func(key string, doc []byte) error {
		var c api.Cluster
		if err := json.Unmarshal(doc, &c); err != nil {
			return fmt.Errorf("decoding %s %q: %w", Clusters.resource, key, err)
		}
		out[key] = &clusterInputs{gen: gens[key], cluster: c}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading clusters: %w", err)
	}
	err = s.scanDocs(ctx, `SELECT parent, doc FROM node_pools WHERE parent IN `+in+` ORDER BY key`, args, func(parent string, doc []byte) error {
		return appendDecoded(out, parent, doc, NodePools.resource, func(ci *clusterInputs) *[]api.NodePool { return &ci.pools })
	})
	if err != nil {
		return fmt.Errorf("reading node pools: %w", err)
	}
	err = s.scanDocs(ctx, `SELECT parent, doc FROM blocks WHERE parent IN `+in+` ORDER BY key`, args, func(parent string, doc []byte) error {
		return appendDecoded(out, parent, doc, Blocks.resource, func(ci *clusterInputs) *[]api.Block { return &ci.blocks })
	})
	if err != nil {
		return fmt.Errorf("reading blocks: %w", err)
	}
	planArgs := append(args, api.PlanPending, api.PlanRunning)
	err = s.scanDocs(ctx, `SELECT parent, doc FROM plans WHERE parent IN `+in+` AND state IN (?, ?) ORDER BY key`, planArgs, func(parent string, doc []byte) error {
		return appendDecoded(out, parent, doc, Plans.resource, func(ci *clusterInputs) *[]api.Plan { return &ci.plans })
	})
	if err != nil {
		return fmt.Errorf("reading plans: %w", err)
	}
	return nil
}

// appendDecoded decodes doc, a resource of cluster parent, onto the list of
// out[parent] that field names; a cluster deleted between the reads is
// not in out, and its resources are skipped.
func appendDecoded[T any](out map[string]*clusterInputs, parent string, doc []byte, resource string, field func(*clusterInputs) *[]T) error {
	ci, ok := out[parent]
	if !ok {
		return nil
	}
	var v T
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Errorf("decoding a %s of cluster %q: %w", resource, parent, err)
	}
	list := field(ci)
	*list = append(*list, v)
	return nil
}

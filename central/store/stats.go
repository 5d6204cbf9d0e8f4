package store

import "sync/atomic"

// Stats counts what the store read and wrote for the agents, and in how
// many batches: what its caches and batches save the database.
type Stats struct {
	// InputBatches counts the reads of clusters' own assignment inputs
	// the cache lacked, InputClusters the clusters they read.
	InputBatches, InputClusters atomic.Uint64
	// FleetReads counts the reads of the inputs clusters share.
	FleetReads atomic.Uint64
	// StatusBatches counts the transactions that wrote agents' reports,
	// StatusReports the reports they wrote.
	StatusBatches, StatusReports atomic.Uint64
}

// Stats is what the store did so far.
func (s *Store) Stats() *Stats { return &s.stats }

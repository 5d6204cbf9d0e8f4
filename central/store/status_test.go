package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func report(version, phase string) api.ClusterStatus {
	return api.ClusterStatus{CurrentVersion: version, Phase: phase, ReceivedAt: time.Now().UTC(), NodePools: []api.NodePoolProgress{}, Problems: []api.StatusProblem{}}
}

// Regression: every report was a transaction of its own, five statements
// and a commit, and a change that answered every agent at once queued
// thousands of them on the database. Reports arriving together are
// written together, each as it would be alone.
func TestReportsArrivingTogetherAreWrittenTogether(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		s := openFleet(t, databaseURL, true)
		ctx := context.Background()
		ids := addClusters(t, s, "dev", 300)
		for _, id := range ids[:100] {
			require.NoError(t, s.PutStatus(ctx, id, report("v1", api.PhaseIdle), "agent"))
		}
		stats := s.Stats()
		batches := stats.StatusBatches.Load()

		var wg sync.WaitGroup
		errs := make([]error, len(ids))
		for i, id := range ids {
			version := "v2"
			if i < 100 {
				// The first hundred report their version again, a heartbeat.
				version = "v1"
			}
			wg.Go(func() { errs[i] = s.PutStatus(ctx, id, report(version, api.PhaseIdle), "agent") })
		}
		var missing, twice [2]error
		for i := range 2 {
			wg.Go(func() {
				missing[i] = s.PutStatus(ctx, "aws:123456789012:eu-central-1:kube-none", report("v1", api.PhaseIdle), "agent")
			})
			wg.Go(func() {
				twice[i] = s.PutStatus(ctx, onDev, report(fmt.Sprintf("v%d", i+1), api.PhaseApplying), "agent")
			})
		}
		wg.Wait()
		for i, id := range ids {
			require.NoError(t, errs[i], id)
			st, err := s.Status(ctx, id)
			require.NoError(t, err)
			history, err := s.StatusHistory(ctx, id, 10)
			require.NoError(t, err)
			if i < 100 {
				assert.Equal(t, "v1", st.CurrentVersion)
				assert.Len(t, history, 1, "a heartbeat adds no history")
				continue
			}
			assert.Equal(t, "v2", st.CurrentVersion)
			assert.Len(t, history, 1)
		}
		for i := range 2 {
			assert.ErrorIs(t, missing[i], ErrNotFound, "a report of a cluster that does not exist fails alone")
			assert.NoError(t, twice[i])
		}
		history, err := s.StatusHistory(ctx, onDev, 10)
		require.NoError(t, err)
		assert.Len(t, history, 2, "two reports of one cluster arriving together are both written")
		assert.Less(t, stats.StatusBatches.Load()-batches, uint64(len(ids)/4), "in a few transactions")
	})
}

func TestStatusHistoryKeepsTheNewestEntries(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		s := openFleet(t, databaseURL, true)
		ctx := context.Background()
		other := addClusters(t, s, "dev", 1)[0]
		require.NoError(t, s.PutStatus(ctx, other, report("other", api.PhaseIdle), "agent"))
		for i := range historyLength + 5 {
			require.NoError(t, s.PutStatus(ctx, onDev, report(fmt.Sprintf("v%d", i), api.PhaseIdle), "agent"))
		}
		history, err := s.StatusHistory(ctx, onDev, 1000)
		require.NoError(t, err)
		require.Len(t, history, historyLength)
		assert.Equal(t, fmt.Sprintf("v%d", historyLength+4), history[0].CurrentVersion)
		assert.Equal(t, "v5", history[historyLength-1].CurrentVersion)
		kept, err := s.StatusHistory(ctx, other, 1000)
		require.NoError(t, err)
		assert.Len(t, kept, 1, "another cluster's history is untouched")
	})
}

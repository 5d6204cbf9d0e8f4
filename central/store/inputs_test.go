package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// addClusters creates n clusters on channel, named after it, and returns their ids.
func addClusters(t *testing.T, s *Store, channel string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("aws:123456789012:eu-central-1:kube-%s-%04d", channel, i)
		c := api.Cluster{ID: ids[i], InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", Environment: "test", Channel: channel,
			ConfigItems: map[string]string{"index": fmt.Sprint(i)}}
		_, err := CreateCluster(context.Background(), s, c, "test")
		require.NoError(t, err)
		_, err = Create(context.Background(), s, NodePools, Ref{Key: NodePoolKey(ids[i], "workers"), Parent: ids[i]},
			api.NodePool{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m5.large"}, MinSize: 1, MaxSize: 3}, "test")
		require.NoError(t, err)
	}
	return ids
}

func assignmentOf(t *testing.T, s *Store, clusterID string) api.Assignment {
	t.Helper()
	a, err := s.Assignment(context.Background(), clusterID)
	require.NoError(t, err)
	var decoded api.Assignment
	require.NoError(t, json.Unmarshal(a.Body, &decoded))
	return decoded
}

// Regression: every poll a channel's new head woke read its cluster, node
// pools, blocks, plans, freezes and the channel's publication from the
// database, at once for a quarter of the fleet.
func TestANewHeadIsAssignedWithoutReadingTheClustersAgain(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		s := openFleet(t, databaseURL, true)
		ctx := context.Background()
		setHead(t, s, "dev", commitID('a'))
		require.Equal(t, commitID('a'), assigned(t, s, onDev).Commit)
		assigned(t, s, onStable)
		reads := s.Stats()
		batches, fleet := reads.InputBatches.Load(), reads.FleetReads.Load()

		devWoken, stableWoken := s.Hub().Watch(onDev), s.Hub().Watch(onStable)
		setHead(t, s, "dev", commitID('b'))
		assert.True(t, closed(devWoken), "the dev cluster's polls are woken")
		assert.False(t, closed(stableWoken), "the stable cluster's are not")
		assert.Equal(t, commitID('b'), assigned(t, s, onDev).Commit)
		assigned(t, s, onStable)
		assert.Equal(t, batches, reads.InputBatches.Load(), "no cluster's own inputs were read again")
		assert.Equal(t, fleet+1, reads.FleetReads.Load(), "what clusters share was read once")

		rec, err := Get(ctx, s, Clusters, onDev)
		require.NoError(t, err)
		changed := rec.Value
		changed.ConfigItems = map[string]string{"after": "head"}
		_, err = Update(ctx, s, Clusters, Ref{Key: onDev}, rec.Revision, rec.Value, changed, "test")
		require.NoError(t, err)
		a := assignmentOf(t, s, onDev)
		assert.Equal(t, "head", a.ConfigItems["after"], "a write of the cluster itself is read")
		assert.Equal(t, commitID('b'), a.Channel.Commit)
		assert.Equal(t, batches+1, reads.InputBatches.Load())
	})
}

// The inputs of clusters asked for at once, by polls woken together or
// arriving on a replica together, are read in a few queries, and
// correctly across the pages of a read.
func TestInputsOfManyClustersAreReadTogether(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		seeded := openFleet(t, databaseURL, true)
		setHead(t, seeded, "dev", commitID('a'))
		ids := addClusters(t, seeded, "dev", pageSize+20)
		cold := openFleet(t, databaseURL, false)

		var wg sync.WaitGroup
		got := make([]api.Assignment, len(ids))
		errs := make([]error, len(ids))
		for i, id := range ids {
			wg.Go(func() {
				a, err := cold.Assignment(context.Background(), id)
				if errs[i] = err; err == nil {
					errs[i] = json.Unmarshal(a.Body, &got[i])
				}
			})
		}
		wg.Wait()
		for i, id := range ids {
			require.NoError(t, errs[i], id)
			assert.Equal(t, id, got[i].Cluster.ID)
			assert.Equal(t, fmt.Sprint(i), got[i].ConfigItems["index"], id)
			require.Len(t, got[i].NodePools, 1, id)
			assert.Equal(t, "workers", got[i].NodePools[0].Name)
			assert.Equal(t, commitID('a'), got[i].Channel.Commit)
		}
		reads := cold.Stats()
		assert.Equal(t, uint64(len(ids)), reads.InputClusters.Load(), "each cluster was read once")
		assert.Less(t, reads.InputBatches.Load(), uint64(len(ids)/2), "in batches")

		_, err := cold.Assignment(context.Background(), "aws:123456789012:eu-central-1:kube-none")
		assert.ErrorIs(t, err, ErrNotFound)
	})
}

// lookups read what was asked for while a read was under way in one read,
// and hand each caller its own key's value.
func TestLookupsBatchWhatIsAskedForDuringARead(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var reads [][]string
	r := newLookups(func(_ context.Context, ids []string) (map[string]clusterInputs, error) {
		mu.Lock()
		reads = append(reads, ids)
		first := len(reads) == 1
		mu.Unlock()
		if first {
			<-release
		}
		out := map[string]clusterInputs{}
		for _, id := range ids {
			if id != "missing" {
				out[id] = clusterInputs{cluster: api.Cluster{ID: id}}
			}
		}
		return out, nil
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		in, found, err := r.get(ctx, "first")
		assert.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, "first", in.cluster.ID)
	})
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reads) == 1
	}, 5*time.Second, time.Millisecond)
	for i := range 50 {
		id := fmt.Sprintf("c%02d", i%25)
		wg.Go(func() {
			in, found, err := r.get(ctx, id)
			assert.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, id, in.cluster.ID)
		})
	}
	wg.Go(func() {
		_, found, err := r.get(ctx, "missing")
		assert.NoError(t, err)
		assert.False(t, found)
	})
	require.Eventually(t, func() bool {
		r.batches.mu.Lock()
		defer r.batches.mu.Unlock()
		return len(r.batches.queued) == 51
	}, 5*time.Second, time.Millisecond)
	close(release)
	wg.Wait()
	require.Len(t, reads, 2, "what was asked for during the first read is read in one")
	assert.Len(t, reads[1], 26, "each cluster once")

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err := r.get(canceled, "late")
	assert.ErrorIs(t, err, context.Canceled)
}

// Regression: a change too long for one notification was sent as "*",
// and every other replica woke every poll and read every cluster again.
func TestAChannelOfManyClustersWakesOnlyItsPollsOnTheOtherReplica(t *testing.T) {
	databaseURL := sharedPostgres(t).NewDatabase(t)
	one := openFleet(t, databaseURL, true)
	setHead(t, one, "dev", commitID('a'))
	ids := addClusters(t, one, "dev", 400)
	require.Greater(t, len(idPayloads("w:", ids, true)), 1, "the clusters' ids take several notifications")
	other := openFleet(t, databaseURL, false)
	for _, id := range append(ids, onStable) {
		assignmentOf(t, other, id)
	}
	reads := other.Stats()
	batches, fleet := reads.InputBatches.Load(), reads.FleetReads.Load()

	first, last, stable := other.Hub().Watch(ids[0]), other.Hub().Watch(ids[len(ids)-1]), other.Hub().Watch(onStable)
	setHead(t, one, "dev", commitID('b'))
	for _, woken := range []<-chan struct{}{first, last} {
		awaitWoken(t, woken, "the other replica did not wake every cluster of dev")
	}
	// Notifications arrive in order: the last cluster's was the last.
	assert.False(t, closed(stable), "a cluster of another channel is not woken")
	for _, id := range ids {
		require.Equal(t, commitID('b'), assignmentOf(t, other, id).Channel.Commit)
	}
	assert.Equal(t, batches, reads.InputBatches.Load(), "the other replica read no cluster again")
	assert.Equal(t, fleet+1, reads.FleetReads.Load(), "and what clusters share once")
}

func TestIDPayloadsStayUnderTheNotificationLimit(t *testing.T) {
	assert.Equal(t, []string{"f:"}, idPayloads("f:", nil, true), "a change of shared inputs is sent without clusters too")
	assert.Empty(t, idPayloads("c:", nil, false))
	var ids []string
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("aws:123456789012:eu-central-1:kube-%04d", i))
	}
	payloads := idPayloads("c:", ids, false)
	var back []string
	for _, p := range payloads {
		assert.LessOrEqual(t, len(p), maxNotifyPayload)
		back = append(back, idList(p[2:])...)
	}
	assert.Equal(t, ids, back)
}

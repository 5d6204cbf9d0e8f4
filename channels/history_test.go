package channels

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

func TestHistoryCountsWhenEachCommitReachedTheClusters(t *testing.T) {
	commitC := strings.Repeat("c", 40)
	commitX := strings.Repeat("f", 40)
	log := []configrepo.Commit{
		{Hash: commitC, Subject: "third", Author: "Ann", Time: ago(6 * time.Hour)},
		{Hash: commitB, Subject: "second", Author: "Bob", Time: ago(7 * time.Hour)},
		{Hash: commitA, Subject: "first", Author: "Ann", Time: ago(8 * time.Hour)},
	}
	clusters := []Cluster{
		member("kube-1", commitC+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(5*time.Hour)), ran(commitB+"#h1", ago(3*time.Hour)), ran(commitC+"#h1", ago(time.Hour))}),
		// kube-2 went from A straight to C: it reached B then too.
		member("kube-2", commitC+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(4*time.Hour)), ran(commitC+"#h1", ago(30*time.Minute))}),
		// kube-3 was rolled back from C to A: it did reach B and C.
		member("kube-3", commitA+"#h1", []api.StatusHistoryEntry{ran(commitA+"#h1", ago(2*time.Hour)), ran(commitC+"#h1", ago(90*time.Minute)), ran(commitA+"#h2", ago(10*time.Minute))}),
		// kube-4 ran a commit older than the log first.
		member("kube-4", commitA+"#h1", []api.StatusHistoryEntry{ran(commitX+"#h1", ago(9*time.Hour)), ran(commitA+"#h1", ago(time.Hour))}),
		withLifecycle(member("kube-5", commitC+"#h1", []api.StatusHistoryEntry{ran(commitC+"#h1", ago(7*time.Hour))}), api.LifecycleDecommissioned),
	}

	h := History(log, clusters)
	require.Len(t, h, 3)
	at := func(d time.Duration) *time.Time { t := ago(d); return &t }
	assert.Equal(t, api.HistoryCommit{Commit: commitC, Subject: "third", Author: "Ann", Time: ago(6 * time.Hour),
		Clusters: 3, FirstReachedAt: at(90 * time.Minute)}, h[0])
	assert.Equal(t, api.HistoryCommit{Commit: commitB, Subject: "second", Author: "Bob", Time: ago(7 * time.Hour),
		Clusters: 3, FirstReachedAt: at(3 * time.Hour)}, h[1])
	assert.Equal(t, api.HistoryCommit{Commit: commitA, Subject: "first", Author: "Ann", Time: ago(8 * time.Hour),
		Clusters: 4, FirstReachedAt: at(5 * time.Hour), AllReachedAt: at(time.Hour)}, h[2])

	withSilent := append(clusters, member("kube-6", "", nil))
	assert.Nil(t, History(log, withSilent)[2].AllReachedAt, "a cluster that never reported has not reached anything")
	assert.Equal(t, 4, History(log, withSilent)[2].Clusters)
}

func TestHistoryOfAnEmptyChannel(t *testing.T) {
	h := History([]configrepo.Commit{{Hash: commitA, Subject: "first"}}, nil)
	require.Len(t, h, 1)
	assert.Zero(t, h[0].Clusters)
	assert.Nil(t, h[0].FirstReachedAt)
	assert.Nil(t, h[0].AllReachedAt)
	assert.Empty(t, History(nil, recordedFleet()))
}

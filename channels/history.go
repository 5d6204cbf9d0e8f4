package channels

import (
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// History describes each commit of a branch's log (newest first, as
// configrepo.Repo.Log returns it) with how far it travelled through the clusters in
// service: a cluster has reached a commit from the moment its status
// history shows it running that commit or a newer one of the log. A
// cluster that skipped a commit (it went from an older to a newer one
// directly) reached it then too. Commits the log does not hold, and times
// before a cluster's history begins, are not seen.
func History(log []configrepo.Commit, clusters []Cluster) []api.HistoryCommit {
	inService := InService(clusters)
	index := make(map[string]int, len(log))
	for i, c := range log {
		index[c.Hash] = i
	}
	reached := make([][]time.Time, len(log))
	for _, c := range inService {
		for i, t := range reachedTimes(c, index, len(log)) {
			if !t.IsZero() {
				reached[i] = append(reached[i], t)
			}
		}
	}
	out := make([]api.HistoryCommit, len(log))
	for i, c := range log {
		out[i] = api.HistoryCommit{Commit: c.Hash, Subject: c.Subject, Author: c.Author, Time: c.Time, Clusters: len(reached[i])}
		if len(reached[i]) == 0 {
			continue
		}
		first, last := reached[i][0], reached[i][0]
		for _, t := range reached[i][1:] {
			first, last = earlier(first, t), later(last, t)
		}
		out[i].FirstReachedAt = &first
		if len(reached[i]) == len(inService) {
			out[i].AllReachedAt = &last
		}
	}
	return out
}

// reachedTimes is, for each commit of the log, when the cluster reached it;
// the zero time where it has not. Walking the history from its oldest
// entry, a version newer than any seen before reaches every commit between
// it and the newest one reached so far.
func reachedTimes(c Cluster, index map[string]int, n int) []time.Time {
	out := make([]time.Time, n)
	newest := n
	for _, e := range c.History {
		i, ok := index[CommitOf(e.CurrentVersion)]
		if !ok || i >= newest {
			continue
		}
		for j := i; j < newest; j++ {
			out[j] = e.Time
		}
		newest = i
	}
	return out
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

package channels

import (
	"context"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Cluster is a cluster of a channel as rollouts, histories and gates see
// it: its last status report and its status history, oldest first.
type Cluster struct {
	ID              string
	Alias           string
	LifecycleStatus string
	Status          *api.ClusterStatus
	History         []api.StatusHistoryEntry
}

// ClustersOf makes the Clusters of registry clusters (with their status)
// and their status histories (oldest first, by cluster id), as the
// registry's store reads them.
func ClustersOf(cs []api.Cluster, history map[string][]api.StatusHistoryEntry) []Cluster {
	out := make([]Cluster, len(cs))
	for i, c := range cs {
		out[i] = Cluster{ID: c.ID, Alias: c.Alias, LifecycleStatus: c.LifecycleStatus, Status: c.Status, History: history[c.ID]}
	}
	return out
}

// Records is where the registry keeps clusters and their status histories.
type Records interface {
	ClustersByChannel(ctx context.Context, channel string) (map[string][]api.Cluster, error)
	StatusHistories(ctx context.Context, clusterIDs []string) (map[string][]api.StatusHistoryEntry, error)
}

// ReadClusters reads the clusters of a channel, or of every channel when
// channel is "", by channel, with the status histories of those in service.
func ReadClusters(ctx context.Context, records Records, channel string) (map[string][]Cluster, error) {
	byChannel, err := records.ClustersByChannel(ctx, channel)
	if err != nil {
		return nil, err
	}
	var inService []string
	for _, cs := range byChannel {
		for _, c := range cs {
			if c.LifecycleStatus == api.LifecycleReady {
				inService = append(inService, c.ID)
			}
		}
	}
	histories, err := records.StatusHistories(ctx, inService)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]Cluster, len(byChannel))
	for name, cs := range byChannel {
		out[name] = ClustersOf(cs, histories)
	}
	return out, nil
}

// InService reports whether the cluster counts for its channel: a cluster
// still being set up or on its way out neither shows where a commit stands
// nor holds a promotion back.
func (c Cluster) InService() bool { return c.LifecycleStatus == api.LifecycleReady }

// InService returns the clusters that are in service, in the same order.
func InService(clusters []Cluster) []Cluster {
	var out []Cluster
	for _, c := range clusters {
		if c.InService() {
			out = append(out, c)
		}
	}
	return out
}

// CommitOf is the commit of a version "<commit sha>#<assignment hash>".
func CommitOf(version string) string {
	commit, _, _ := strings.Cut(version, "#")
	return commit
}

// version is the version the cluster runs; empty when it never reported one.
func (c Cluster) version() string {
	if c.Status == nil {
		return ""
	}
	return c.Status.CurrentVersion
}

// HasProblem reports whether the cluster's last report names a problem or
// the phase failed.
func (c Cluster) HasProblem() bool {
	return c.Status != nil && (len(c.Status.Problems) > 0 || c.Status.Phase == api.PhaseFailed)
}

// CurrentSince is when the commit the cluster runs became current on it:
// the oldest entry of the newest unbroken run of that commit in its status
// history. A new assignment hash on the same commit does not break the
// run. Nil when the cluster runs nothing or its history does not show it.
func (c Cluster) CurrentSince() *time.Time {
	commit := CommitOf(c.version())
	if commit == "" {
		return nil
	}
	var since *time.Time
	for i := len(c.History) - 1; i >= 0; i-- {
		if CommitOf(c.History[i].CurrentVersion) != commit {
			break
		}
		t := c.History[i].Time
		since = &t
	}
	return since
}

// State is where the cluster stands against commit: it runs it, runs
// another (older) one, never reported a version, or, while commit is
// unknown, cannot be told.
func (c Cluster) State(commit string) string {
	switch v := c.version(); {
	case v == "":
		return api.RolloutUnreported
	case commit == "":
		return api.RolloutUnknown
	case CommitOf(v) == commit:
		return api.RolloutCurrent
	default:
		return api.RolloutOlder
	}
}

// Counts sums up the clusters in service against commit.
func Counts(clusters []Cluster, commit string) api.ClusterCounts {
	var n api.ClusterCounts
	for _, c := range InService(clusters) {
		n.Total++
		switch c.State(commit) {
		case api.RolloutCurrent:
			n.Current++
		case api.RolloutOlder:
			n.Older++
		}
		if c.HasProblem() {
			n.Problem++
		}
	}
	return n
}

// Rollout is where commit stands on the channel's clusters in service;
// an empty commit means the channel's head.
func Rollout(ch api.Channel, head api.ChannelHead, commit string, clusters []Cluster) api.ChannelRollout {
	if commit == "" {
		commit = head.Commit
	}
	out := api.ChannelRollout{
		Channel: ch.Name, Branch: ch.Branch, Commit: commit, Head: &head,
		Counts: Counts(clusters, commit), Clusters: []api.RolloutCluster{},
	}
	for _, c := range InService(clusters) {
		out.Clusters = append(out.Clusters, rolloutCluster(c, commit))
	}
	return out
}

func rolloutCluster(c Cluster, commit string) api.RolloutCluster {
	rc := api.RolloutCluster{ID: c.ID, Alias: c.Alias, State: c.State(commit), Since: c.CurrentSince(), Problems: []api.StatusProblem{}}
	if s := c.Status; s != nil {
		rc.Version, rc.NextVersion, rc.Phase = s.CurrentVersion, s.NextVersion, s.Phase
		if !s.Heartbeat.IsZero() {
			hb := s.Heartbeat
			rc.Heartbeat = &hb
		}
		if s.Problems != nil {
			rc.Problems = s.Problems
		}
		if s.Phase == api.PhaseWaitingForWindow && s.NextWindow != nil {
			next := *s.NextWindow
			rc.NextWindow = &next
		}
	}
	return rc
}

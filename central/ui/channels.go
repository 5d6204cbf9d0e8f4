package ui

import (
	"context"
	"net/http"
	"time"

	"github.com/caravan-gitops/caravan/central/publication"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
)

type channelsPage struct {
	frame
	Channels []channelView
}

// channelView is one channel: what it publishes to its agents, where that
// commit stands on its clusters and, for every channel but the last, the
// verdict on promoting it on.
type channelView struct {
	api.Channel
	// Published is what the registry publishes to the channel's agents,
	// and the head it holds back; nil before it was decided on.
	Published *api.ChannelPublication
	Rollout   api.ChannelRollout
	Gate      *api.PromotionGate
	Bar       bar
	Rows      []rolloutRow
	// Freezes are those that cover the channel's clusters, all of them or
	// those of one environment, in force or to come.
	Freezes []channelFreeze
}

// channelFreeze is a freeze of a channel's page; Partly marks one that
// covers only the channel's clusters of one environment.
type channelFreeze struct {
	freezeView
	Partly bool
}

// rolloutRow is a cluster of the rollout with what it says to the gate.
type rolloutRow struct {
	api.RolloutCluster
	Gate *api.GateEvidence
}

// showChannels computes rollouts and gates as GET /api/v1/channels/{name}/rollout
// and .../promotion do, for every channel at once.
func (u *UI) showChannels(w http.ResponseWriter, r *http.Request, viewer *session) {
	ctx := r.Context()
	views, err := u.channelViews(ctx)
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	u.render(w, r, http.StatusOK, "channels", channelsPage{frame: frame{Title: "Channels", Nav: "channels", Viewer: viewer}, Channels: views})
}

func (u *UI) channelViews(ctx context.Context) ([]channelView, error) {
	chans, err := u.store.AllChannels(ctx)
	if err != nil {
		return nil, err
	}
	byChannel, err := channels.ReadClusters(ctx, u.store, "")
	if err != nil {
		return nil, err
	}
	now := u.now().UTC()
	freezes, err := u.store.CurrentFreezes(ctx, now)
	if err != nil {
		return nil, err
	}
	shown := freezeViews(freezes, now)
	heads := u.heads.Of(ctx, chans)
	pubs, err := publication.Of(ctx, u.store, u.heads, chans)
	if err != nil {
		return nil, err
	}
	views := make([]channelView, len(chans))
	for i, ch := range chans {
		ch.Gate = ch.GateSetting()
		head, pub := heads[ch.Name], pubs[ch.Name]
		commit := publication.Commit(pub, head)
		clusters := byChannel[ch.Name]
		view := channelView{Channel: ch, Published: pub, Rollout: channels.Rollout(ch, head, commit, clusters), Freezes: channelFreezes(ch.Name, shown)}
		if i+1 < len(chans) {
			gate := channels.Gate(channels.GateInput{
				From: ch, To: chans[i+1], Commit: commit, HeadError: head.Error, Clusters: clusters, Freezes: freezes, Now: now,
				HeartbeatTimeout: u.heartbeatTimeout,
			})
			view.Gate = &gate
		}
		view.Rows = rolloutRows(view.Rollout, view.Gate)
		view.Bar = rolloutBar(ch.Name, view.Rollout)
		views[i] = view
	}
	return views, nil
}

// channelFreezes are the freezes that cover the channel: the whole fleet,
// the channel, or (partly) an environment of its clusters.
func channelFreezes(channel string, freezes []freezeView) []channelFreeze {
	var out []channelFreeze
	for _, f := range freezes {
		switch {
		case f.All || f.Channel == channel && f.Environment == "":
			out = append(out, channelFreeze{freezeView: f})
		case f.Channel == channel || f.Channel == "" && f.Environment != "":
			out = append(out, channelFreeze{freezeView: f, Partly: true})
		}
	}
	return out
}

func rolloutRows(rollout api.ChannelRollout, gate *api.PromotionGate) []rolloutRow {
	evidence := map[string]*api.GateEvidence{}
	if gate != nil {
		for i := range gate.Evidence {
			evidence[gate.Evidence[i].Cluster] = &gate.Evidence[i]
		}
	}
	rows := make([]rolloutRow, len(rollout.Clusters))
	for i, c := range rollout.Clusters {
		rows[i] = rolloutRow{RolloutCluster: c, Gate: evidence[c.ID]}
	}
	return rows
}

// rolloutBar shows each cluster in service once: reporting a problem,
// waiting for its update window, on the published commit (the head unless
// the gate holds it), on an older commit, silent,
// or, while the head is unknown, reporting a version that cannot be placed.
func rolloutBar(channel string, rollout api.ChannelRollout) bar {
	counts := map[string]int{}
	var opens *time.Time
	for _, c := range rollout.Clusters {
		switch {
		case len(c.Problems) > 0 || c.Phase == api.PhaseFailed:
			counts["problem"]++
		case c.Phase == api.PhaseWaitingForWindow:
			counts["waiting"]++
			if c.NextWindow != nil && (opens == nil || c.NextWindow.Before(*opens)) {
				opens = c.NextWindow
			}
		default:
			counts[c.State]++
		}
	}
	waiting := "waiting for a window"
	if opens != nil {
		waiting += " (the first opens " + timestamp(opens) + ")"
	}
	current := "on the head"
	if rollout.Head != nil && rollout.Commit != rollout.Head.Commit {
		current = "on the published commit"
	}
	return newBar(channel+" rollout",
		barPart{class: "seg-ok", label: current, count: counts[api.RolloutCurrent]},
		barPart{class: "seg-waiting", label: waiting, count: counts["waiting"]},
		barPart{class: "seg-pending", label: "on an older commit", count: counts[api.RolloutOlder]},
		barPart{class: "seg-failed", label: "with problems", count: counts["problem"]},
		barPart{class: "seg-a", label: "on a commit not placed: the head is unknown", count: counts[api.RolloutUnknown]},
		barPart{class: "seg-unknown", label: "not reporting", count: counts[api.RolloutUnreported]},
	)
}

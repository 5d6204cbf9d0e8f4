package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caravan-gitops/caravan/central/publication"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	defaultHistoryLimit = 20
	maxHistoryLimit     = 200
)

// presentChannels sorts channels into promotion order and adds each one's
// head, as last read from git, what it publishes to its agents, and its
// cluster counts against the published commit.
func (s *Server) presentChannels(ctx context.Context, cs []api.Channel) error {
	sortChannels(cs)
	if len(cs) == 0 {
		return nil
	}
	only := ""
	if len(cs) == 1 {
		only = cs[0].Name
	}
	byChannel, err := s.store.ClustersByChannel(ctx, only)
	if err != nil {
		return err
	}
	heads := s.heads.Of(ctx, cs)
	pubs, err := publication.Of(ctx, s.store, s.heads, cs)
	if err != nil {
		return err
	}
	for i := range cs {
		head, pub := heads[cs[i].Name], pubs[cs[i].Name]
		counts := channels.Counts(channels.ClustersOf(byChannel[cs[i].Name], nil), publication.Commit(pub, head))
		cs[i].Gate, cs[i].Head, cs[i].Clusters, cs[i].Publication = cs[i].GateSetting(), &head, &counts, pub
	}
	return nil
}

// clustersWithHistory reads a channel's clusters with the status history
// of those in service.
func (s *Server) clustersWithHistory(ctx context.Context, channel string) ([]channels.Cluster, error) {
	byChannel, err := channels.ReadClusters(ctx, s.store, channel)
	return byChannel[channel], err
}

func (s *Server) channel(ctx context.Context, name string) (api.Channel, error) {
	rec, err := store.Get(ctx, s.store, store.Channels, name)
	return rec.Value, err
}

// commitParam reads an optional full commit id from the query.
func commitParam(q url.Values, param string) (string, error) {
	c := q.Get(param)
	if c != "" && !api.ValidCommit(c) {
		return "", queryProblem(param, "must be a full commit id (40 lower-case hex digits), got "+strconv.Quote(c))
	}
	return c, nil
}

func (s *Server) getRollout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	commit, err := commitParam(r.URL.Query(), "commit")
	if err != nil {
		writeError(w, r, err)
		return
	}
	ch, err := s.channel(ctx, r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	clusters, err := s.clustersWithHistory(ctx, ch.Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	head := s.heads.Head(ctx, ch)
	if commit == "" {
		pub, err := publication.One(ctx, s.store, s.heads, ch)
		if err != nil {
			writeError(w, r, err)
			return
		}
		commit = publication.Commit(pub, head)
	}
	writeJSON(w, http.StatusOK, channels.Rollout(ch, head, commit, clusters))
}

func historyLimit(q url.Values) (int, error) {
	raw := q.Get("limit")
	if raw == "" {
		return defaultHistoryLimit, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > maxHistoryLimit {
		return 0, queryProblem("limit", "must be a whole number from 1 to "+strconv.Itoa(maxHistoryLimit)+", got "+strconv.Quote(raw))
	}
	return n, nil
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	limit, err := historyLimit(r.URL.Query())
	if err != nil {
		writeError(w, r, err)
		return
	}
	ch, err := s.channel(ctx, r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	clusters, err := s.clustersWithHistory(ctx, ch.Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	head := s.heads.Head(ctx, ch)
	pub, err := publication.One(ctx, s.store, s.heads, ch)
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := api.ChannelHistory{Channel: ch.Name, Branch: ch.Branch, Head: &head, Total: len(channels.InService(clusters)), Commits: []api.HistoryCommit{}, Publication: pub}
	log, err := s.heads.Log(ctx, ch, limit)
	if err != nil {
		// An unreachable repository is the answer's to report, not a failure.
		out.Error = err.Error()
	} else {
		out.Commits = channels.History(log, clusters)
	}
	writeJSON(w, http.StatusOK, out)
}

// targetChannel reads the channel a promotion goes to, named by a query
// parameter or body field: it must exist and differ from the source.
func (s *Server) targetChannel(ctx context.Context, field, name string, other api.Channel) (api.Channel, error) {
	ch, err := s.channel(ctx, name)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ch, &api.ValidationError{Errors: []api.FieldError{{Field: field, Detail: "no channel " + strconv.Quote(name) + " exists"}}}
		}
		return ch, err
	}
	if ch.Name == other.Name {
		return ch, &api.ValidationError{Errors: []api.FieldError{{Field: field, Detail: "a channel is not promoted to itself"}}}
	}
	return ch, nil
}

// gate decides on promoting commit (what from publishes when empty) from
// from to to, and says what to publishes now.
func (s *Server) gate(ctx context.Context, from, to api.Channel, commit string) (api.PromotionGate, error) {
	clusters, err := s.clustersWithHistory(ctx, from.Name)
	if err != nil {
		return api.PromotionGate{}, err
	}
	now := s.timestamp()
	freezes, err := s.store.CurrentFreezes(ctx, now)
	if err != nil {
		return api.PromotionGate{}, err
	}
	in := channels.GateInput{From: from, To: to, Commit: commit, Clusters: clusters, Freezes: freezes, Now: now, HeartbeatTimeout: s.heartbeatTimeout}
	if commit == "" {
		// The clusters of from run what it publishes, not a head its gate holds.
		head := s.heads.Head(ctx, from)
		pub, err := publication.One(ctx, s.store, s.heads, from)
		if err != nil {
			return api.PromotionGate{}, err
		}
		in.Commit, in.HeadError = publication.Commit(pub, head), head.Error
	}
	g := channels.Gate(in)
	skipped, err := s.skippedChannel(ctx, from, to)
	if err != nil {
		return api.PromotionGate{}, err
	}
	if skipped != "" {
		g.Reasons, g.Met = append(g.Reasons, skipped), false
	}
	if g.ToPublication, err = publication.One(ctx, s.store, s.heads, to); err != nil {
		return api.PromotionGate{}, err
	}
	return g, nil
}

// skippedChannel says why an enforced gate does not take a promotion into
// to from a channel other than the one before it; empty when it does.
func (s *Server) skippedChannel(ctx context.Context, from, to api.Channel) (string, error) {
	chans, err := s.store.AllChannels(ctx)
	if err != nil {
		return "", err
	}
	for i, ch := range chans {
		if ch.Name != to.Name {
			continue
		}
		if i == 0 || ch.GateSetting() != api.GateEnforced || chans[i-1].Name == from.Name {
			return "", nil
		}
		return fmt.Sprintf("the gate of channel %s is enforced: it takes promotions from %s, the channel before it, not from %s", to.Name, chans[i-1].Name, from.Name), nil
	}
	return "", nil
}

func (s *Server) getPromotionGate(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	commit, err := commitParam(q, "commit")
	if err != nil {
		writeError(w, r, err)
		return
	}
	toName := q.Get("to")
	if toName == "" {
		writeError(w, r, queryProblem("to", "must name the channel to promote to"))
		return
	}
	from, err := s.channel(ctx, r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	to, err := s.targetChannel(ctx, "to", toName, from)
	if err != nil {
		writeError(w, r, err)
		return
	}
	g, err := s.gate(ctx, from, to, commit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, g)
}

// recordPromotion records a promotion that was pushed, with the gate's
// verdict at this moment, into the audit log; it is recorded even when the
// gate no longer holds, since the branch has moved already. Only a freeze
// in force on the target channel refuses it (409) unless the request says
// why it was overridden: a freeze is the owners' word that nothing moves.
func (s *Server) recordPromotion(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	to, err := s.channel(ctx, r.PathValue("name"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	var req api.PromotionRequest
	if !readValid(w, r, &req) {
		return
	}
	from, err := s.targetChannel(ctx, "from", req.From, to)
	if err != nil {
		writeError(w, r, err)
		return
	}
	g, err := s.gate(ctx, from, to, req.Commit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(g.Freezes) > 0 && req.OverrideReason == "" {
		writeProblem(w, r, frozenProblem(g.Freezes, to.Name))
		return
	}
	p := api.Promotion{
		From: from.Name, To: to.Name, Commit: req.Commit, PreviousCommit: req.PreviousCommit, OverrideReason: req.OverrideReason,
		GateMet: g.Met, GateReasons: g.Reasons, By: principalFrom(ctx).Name, At: s.timestamp(),
	}
	if err := s.store.RecordPromotion(ctx, p, p.By); err != nil {
		writeError(w, r, err)
		return
	}
	s.heads.Forget(to.RepositoryURL)
	writeJSON(w, http.StatusCreated, p)
}

// frozenProblem refuses a promotion into a frozen channel, naming each freeze.
func frozenProblem(freezes []api.Freeze, channel string) api.Problem {
	parts := make([]string, len(freezes))
	for i, f := range freezes {
		parts[i] = api.FrozenReason(f, channel) + " (freeze " + f.ID + ")"
	}
	return api.Problem{
		Type: api.ProblemChannelFrozen, Status: http.StatusConflict, Title: "Channel frozen", Field: "override_reason",
		Detail: strings.Join(parts, "; ") + "; a promotion into a frozen channel is recorded only with override_reason",
	}
}

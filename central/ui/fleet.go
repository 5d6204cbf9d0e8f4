package ui

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	// fleetPageSize is how many clusters a page of the fleet shows (at least,
	// unless the fleet ends: filtering in memory may add a few more).
	fleetPageSize = 50
	// maxScannedPages bounds the store pages one request reads looking for
	// clusters that match a phase or text filter.
	maxScannedPages = 20
	// phaseUnknown stands for clusters whose agent never reported, as in
	// the caravan_central_clusters metric.
	phaseUnknown = "unknown"
)

// fleetFilter is what the fleet page's form asks for. Channel and
// environment are filtered by the store; phase and text, which it cannot
// filter by, in memory.
type fleetFilter struct {
	Channel     string
	Environment string
	Phase       string
	Query       string
}

func parseFleetFilter(q url.Values) (fleetFilter, error) {
	f := fleetFilter{
		Channel: q.Get("channel"), Environment: q.Get("environment"),
		Phase: q.Get("phase"), Query: strings.TrimSpace(q.Get("q")),
	}
	if f.Phase != "" && f.Phase != phaseUnknown && !slices.Contains(api.Phases, f.Phase) {
		return f, &api.Problem{Status: http.StatusBadRequest, Field: "phase",
			Detail: "phase must be one of " + strings.Join(append(slices.Clone(api.Phases), phaseUnknown), ", ") + ", got " + f.Phase}
	}
	return f, nil
}

func (f fleetFilter) storeFilter(cursor string) store.Filter {
	sf := store.Filter{Equal: map[string]string{}, Limit: fleetPageSize, Continue: cursor}
	if f.Channel != "" {
		sf.Equal["channel"] = f.Channel
	}
	if f.Environment != "" {
		sf.Equal["environment"] = f.Environment
	}
	return sf
}

func (f fleetFilter) inMemory() bool { return f.Phase != "" || f.Query != "" }

func (f fleetFilter) matches(c api.Cluster) bool {
	if f.Phase != "" && clusterPhase(c) != f.Phase {
		return false
	}
	q := strings.ToLower(f.Query)
	return q == "" || strings.Contains(strings.ToLower(c.ID), q) || strings.Contains(strings.ToLower(c.Alias), q)
}

// link is the fleet page's URL with this filter and the cursor of a page.
func (f fleetFilter) link(cursor string) template.URL {
	v := url.Values{}
	for key, value := range map[string]string{"channel": f.Channel, "environment": f.Environment, "phase": f.Phase, "q": f.Query, "continue": cursor} {
		if value != "" {
			v.Set(key, value)
		}
	}
	return template.URL("/?" + v.Encode())
}

func clusterPhase(c api.Cluster) string {
	if c.Status == nil || c.Status.Phase == "" {
		return phaseUnknown
	}
	return c.Status.Phase
}

// fleetRow is a cluster of the fleet page with its window state and drift.
type fleetRow struct {
	api.Cluster
	Window windowView
	Drift  driftView
}

type fleetPage struct {
	frame
	Filter       fleetFilter
	Channels     []api.Channel
	Environments []string
	Phases       []string
	Clusters     []fleetRow
	// Freezes are those in force and to come, for the banner.
	Freezes []freezeView
	// Next links the next page, empty on the last one; First links the
	// first page when a later one is shown.
	Next, First template.URL
}

func (u *UI) fleet(w http.ResponseWriter, r *http.Request, viewer *session) {
	ctx := r.Context()
	f, err := parseFleetFilter(r.URL.Query())
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	cursor := r.URL.Query().Get("continue")
	clusters, next, err := u.fleetClusters(ctx, f, cursor)
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	channels, err := u.store.AllChannels(ctx)
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	envs, err := u.environments(ctx)
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	freezes, err := u.freezes(ctx)
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	now := u.now()
	rows := make([]fleetRow, len(clusters))
	for i, c := range clusters {
		rows[i] = fleetRow{Cluster: c, Window: windowOf(c.Schedule, now), Drift: driftOf(c.Status)}
	}
	page := fleetPage{
		frame:  frame{Title: "Fleet", Nav: "fleet", Viewer: viewer},
		Filter: f, Channels: channels, Environments: envs, Phases: append(slices.Clone(api.Phases), phaseUnknown),
		Clusters: rows, Freezes: freezes,
	}
	if next != "" {
		page.Next = f.link(next)
	}
	if cursor != "" {
		page.First = f.link("")
	}
	u.render(w, r, http.StatusOK, "fleet", page)
}

// fleetClusters reads one page of clusters with their status. With a phase
// or text filter it reads on until the page is full, the fleet ends or
// maxScannedPages were read; the cursor returned continues after the last
// cluster read.
func (u *UI) fleetClusters(ctx context.Context, f fleetFilter, cursor string) ([]api.Cluster, string, error) {
	var out []api.Cluster
	for range maxScannedPages {
		recs, next, err := store.List(ctx, u.store, store.Clusters, f.storeFilter(cursor))
		if err != nil {
			return nil, "", err
		}
		clusters := make([]api.Cluster, len(recs))
		for i, rec := range recs {
			clusters[i] = rec.Value
		}
		if err := u.store.Details(ctx, clusters); err != nil {
			return nil, "", err
		}
		for _, c := range clusters {
			if f.matches(c) {
				out = append(out, c)
			}
		}
		cursor = next
		if next == "" || !f.inMemory() || len(out) >= fleetPageSize {
			break
		}
	}
	return out, cursor, nil
}

// environments are those of the infrastructure accounts, offered as
// suggestions in the fleet's filter: accounts are few, clusters many.
func (u *UI) environments(ctx context.Context) ([]string, error) {
	var out []string
	cursor := ""
	for {
		recs, next, err := store.List(ctx, u.store, store.Accounts, store.Filter{Limit: 1000, Continue: cursor})
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if !slices.Contains(out, rec.Value.Environment) {
				out = append(out, rec.Value.Environment)
			}
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	slices.Sort(out)
	return out, nil
}

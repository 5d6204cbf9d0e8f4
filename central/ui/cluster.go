package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	historyShown = 50
	auditShown   = 50
	// auditScanned bounds how many of the fleet's newest block and node
	// pool entries are searched for those of one cluster: the store filters
	// the audit log by exact resource id only, and theirs is "<cluster>/<name>".
	auditScanned = 1000
)

type clusterPage struct {
	frame
	Cluster     api.Cluster
	ConfigItems []configItem
	NodePools   []poolView
	// Window is when a new version may next start; Freezes are those that
	// cover the cluster, in force or to come.
	Window  windowView
	Freezes []freezeView
	History []api.StatusHistoryEntry
	Blocks  []blockView
	Audit   []auditView
	// BlockForm holds what was sent when a block was refused, and why.
	BlockForm blockForm
}

type poolView struct {
	api.NodePool
	ConfigItems []configItem
	// Progress is the agent's last report on the pool; nil before the first.
	Progress *api.NodePoolProgress
}

type blockView struct {
	api.Block
	Active bool
}

type blockForm struct {
	Reason   string
	NodePool string
	For      string
	Error    string
}

func (u *UI) cluster(w http.ResponseWriter, r *http.Request, viewer *session) {
	u.showCluster(w, r, viewer, http.StatusOK, blockForm{})
}

func (u *UI) showCluster(w http.ResponseWriter, r *http.Request, viewer *session, status int, form blockForm) {
	page, err := u.clusterPage(r.Context(), r.PathValue("id"))
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	page.frame = frame{Title: page.Cluster.Alias, Nav: "fleet", Viewer: viewer}
	page.BlockForm = form
	u.render(w, r, status, "cluster", page)
}

func (u *UI) clusterPage(ctx context.Context, id string) (clusterPage, error) {
	rec, err := store.Get(ctx, u.store, store.Clusters, id)
	if err != nil {
		return clusterPage{}, err
	}
	clusters := []api.Cluster{rec.Value}
	if err := u.store.Details(ctx, clusters); err != nil {
		return clusterPage{}, err
	}
	c := clusters[0]
	now := u.now()
	page := clusterPage{Cluster: c, ConfigItems: configItems(c.ConfigItems), NodePools: poolViews(c), Window: windowOf(c.Schedule, now)}
	if c.Schedule != nil {
		page.Freezes = freezeViews(c.Schedule.Freezes, now)
	}
	if page.History, err = u.store.StatusHistory(ctx, id, historyShown); err != nil {
		return clusterPage{}, err
	}
	if page.Blocks, err = u.blocks(ctx, id); err != nil {
		return clusterPage{}, err
	}
	if page.Audit, err = u.clusterAudit(ctx, id); err != nil {
		return clusterPage{}, err
	}
	return page, nil
}

func poolViews(c api.Cluster) []poolView {
	out := make([]poolView, len(c.NodePools))
	for i, p := range c.NodePools {
		out[i] = poolView{NodePool: p, ConfigItems: configItems(p.ConfigItems)}
		if c.Status == nil {
			continue
		}
		for _, progress := range c.Status.NodePools {
			if progress.Name == p.Name {
				out[i].Progress = &progress
			}
		}
	}
	return out
}

func (u *UI) blocks(ctx context.Context, clusterID string) ([]blockView, error) {
	var out []blockView
	cursor := ""
	now := u.now()
	for {
		recs, next, err := store.List(ctx, u.store, store.Blocks, store.Filter{Parent: clusterID, Limit: 1000, Continue: cursor})
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			out = append(out, blockView{Block: rec.Value, Active: rec.Value.ActiveAt(now)})
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	slices.SortFunc(out, func(a, b blockView) int { return b.Since.Compare(a.Since) })
	return out, nil
}

// auditView is an audit entry as the cluster page lists it: what changed,
// never the values, which may hold encrypted config items.
type auditView struct {
	api.AuditEntry
	Summary string
}

// clusterAudit lists the newest audit entries of a cluster, its node pools
// and its blocks.
func (u *UI) clusterAudit(ctx context.Context, clusterID string) ([]auditView, error) {
	own, _, err := u.store.Audit(ctx, store.AuditFilter{ResourceType: store.Clusters.Resource(), ResourceID: clusterID, Limit: auditShown})
	if err != nil {
		return nil, err
	}
	entries := own
	for _, kind := range []string{store.Blocks.Resource(), store.NodePools.Resource()} {
		fleet, _, err := u.store.Audit(ctx, store.AuditFilter{ResourceType: kind, Limit: auditScanned})
		if err != nil {
			return nil, err
		}
		for _, e := range fleet {
			if strings.HasPrefix(e.ResourceID, clusterID+"/") {
				entries = append(entries, e)
			}
		}
	}
	slices.SortFunc(entries, func(a, b api.AuditEntry) int { return int(b.ID - a.ID) })
	if len(entries) > auditShown {
		entries = entries[:auditShown]
	}
	out := make([]auditView, len(entries))
	for i, e := range entries {
		out[i] = auditView{AuditEntry: e, Summary: auditSummary(e)}
	}
	return out, nil
}

// auditSummary says what an entry changed: the block's reason, or the
// names of the fields an update changed.
func auditSummary(e api.AuditEntry) string {
	before, after := auditDoc(e.Before), auditDoc(e.After)
	if e.ResourceType == store.Blocks.Resource() {
		doc := after
		if doc == nil {
			doc = before
		}
		reason, _ := doc["reason"].(string)
		return "reason: " + reason
	}
	if before == nil || after == nil {
		return ""
	}
	var changed []string
	for k := range mapKeys(before, after) {
		b, _ := json.Marshal(before[k])
		a, _ := json.Marshal(after[k])
		if string(a) != string(b) && k != "updated_at" {
			changed = append(changed, k)
		}
	}
	slices.Sort(changed)
	if len(changed) == 0 {
		return ""
	}
	return "changed " + strings.Join(changed, ", ")
}

func auditDoc(v any) map[string]any {
	raw, ok := v.(json.RawMessage)
	if !ok || len(raw) == 0 {
		return nil
	}
	var doc map[string]any
	if json.Unmarshal(raw, &doc) != nil {
		return nil
	}
	return doc
}

func mapKeys(maps ...map[string]any) map[string]bool {
	keys := map[string]bool{}
	for _, m := range maps {
		for k := range m {
			keys[k] = true
		}
	}
	return keys
}

// block stores a block the way POST /api/v1/clusters/{id}/blocks does: the
// same fields set by the server, the same validation, the same store call,
// audited as the signed-in token.
func (u *UI) block(w http.ResponseWriter, r *http.Request, viewer *session) {
	ctx := r.Context()
	clusterID := r.PathValue("id")
	form := blockForm{Reason: r.PostFormValue("reason"), NodePool: r.PostFormValue("node_pool"), For: strings.TrimSpace(r.PostFormValue("for"))}
	if _, err := store.Get(ctx, u.store, store.Clusters, clusterID); err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	b, err := u.newBlock(clusterID, viewer.Name, form)
	if err == nil {
		_, err = store.Create(ctx, u.store, store.Blocks, store.Ref{Key: store.BlockKey(clusterID, b.ID), Parent: clusterID}, b, viewer.Name)
	}
	var verr *api.ValidationError
	if errors.As(err, &verr) {
		form.Error = verr.Error()
		u.showCluster(w, r, viewer, http.StatusUnprocessableEntity, form)
		return
	}
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	http.Redirect(w, r, clusterPath(clusterID), http.StatusSeeOther)
}

func (u *UI) newBlock(clusterID, by string, form blockForm) (api.Block, error) {
	id, err := store.NewID()
	if err != nil {
		return api.Block{}, err
	}
	now := u.now().UTC().Truncate(time.Millisecond)
	b := api.Block{ID: id, ClusterID: clusterID, NodePool: form.NodePool, Reason: strings.TrimSpace(form.Reason), By: by, Since: now, UpdatedAt: now}
	if form.For != "" {
		d, err := time.ParseDuration(form.For)
		if err != nil || d <= 0 {
			return api.Block{}, &api.ValidationError{Errors: []api.FieldError{{Field: "for", Detail: "must be a duration such as 2h or 30m, got " + form.For}}}
		}
		until := now.Add(d)
		b.Until = &until
	}
	return b, b.Validate()
}

// unblock deletes a block the way DELETE /api/v1/clusters/{id}/blocks/{block_id} does.
func (u *UI) unblock(w http.ResponseWriter, r *http.Request, viewer *session) {
	ctx := r.Context()
	clusterID := r.PathValue("id")
	ref := store.Ref{Key: store.BlockKey(clusterID, r.PathValue("block")), Parent: clusterID}
	rec, err := store.Get(ctx, u.store, store.Blocks, ref.Key)
	if err == nil {
		err = store.Delete(ctx, u.store, store.Blocks, ref, rec.Revision, rec.Value, viewer.Name)
	}
	if err != nil {
		u.fail(w, r, viewer, err)
		return
	}
	http.Redirect(w, r, clusterPath(clusterID), http.StatusSeeOther)
}

func clusterPath(id string) string { return "/clusters/" + url.PathEscape(id) }

// Bar shows the pool's nodes: up to date, draining, and outdated ones still
// waiting for their turn.
func (p poolView) Bar() bar {
	if p.Progress == nil {
		return bar{}
	}
	pr := p.Progress
	return newBar(p.Name+" nodes",
		barPart{class: "seg-ok", label: "up to date", count: max(pr.NodesTotal-pr.Outdated, 0)},
		barPart{class: "seg-busy", label: "draining", count: pr.Draining},
		barPart{class: "seg-pending", label: "outdated, waiting", count: max(pr.Outdated-pr.Draining, 0)},
	)
}

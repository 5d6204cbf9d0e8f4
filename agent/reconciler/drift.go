package reconciler

import (
	"context"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/drift"
	"github.com/caravan-gitops/caravan/agent/pipeline"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// WithDrift makes the loop keep the cluster as each version left it, and
// apply only what a version changed.
func (r *Reconciler) WithDrift(t *drift.Tracker) *Reconciler {
	r.drift = t
	r.applier.UseLiveState(t)
	return r
}

// holdDrift holds corrections while a suspension, block or freeze holds
// changes: a hand fix made during an incident or a freeze stays until it
// ends. A closed update window holds new versions, not the current one.
func (r *Reconciler) holdDrift(d Decision) {
	if r.drift == nil {
		return
	}
	switch d.Action {
	case Suspended, Blocked:
		r.drift.Hold(d.Reason)
	default:
		r.drift.Hold("")
	}
}

// applyVersion applies a version while drift corrections wait, and hands
// the tracker what it applied. After a failed apply the cluster holds a
// mix of two versions, and nothing is corrected until one is whole.
func (r *Reconciler) applyVersion(ctx context.Context, rendered *render.Result, previous apply.Inventory) (*apply.Result, error) {
	if r.drift == nil {
		return r.applier.Apply(ctx, rendered, previous)
	}
	r.drift.Pause(ctx, previous)
	defer r.drift.Unpause()
	res, err := r.applier.Apply(ctx, rendered, previous)
	if err != nil {
		r.drift.Track(nil, previous, rendered.ConfigItems)
	} else {
		r.drift.Track(rendered.Objects, res.Inventory, rendered.ConfigItems)
	}
	return res, err
}

// adoptVersion starts keeping the current version when the tracker has
// none, as after the agent started: it renders the commit the version was
// applied from, and keeps it when it renders the objects applied.
func (r *Reconciler) adoptVersion(ctx context.Context, cc *clusterconfig.ClusterConfig, repo Source, a *api.Assignment) {
	st := cc.Status
	if r.drift == nil || r.drift.Tracking() || st.CurrentVersion == "" || st.AppliedObjects == "" || st.LastAppliedRevision == "" ||
		r.adoptTried == st.CurrentVersion {
		return
	}
	// One try per version: a render costs seconds of CPU for a large config.
	r.adoptTried = st.CurrentVersion
	files, err := repo.FetchCommit(ctx, st.LastAppliedRevision)
	if err != nil {
		r.log.Error(err, "fetching the current version's commit to keep it")
		return
	}
	built, err := pipeline.Render(ctx, files, *a, pipeline.Options{KMS: r.kms(a.Cluster.Region)})
	if err != nil {
		r.log.Error(err, "rendering the current version to keep it")
		return
	}
	rendered := built.Manifests
	if digest, err := rendered.Digest(); err != nil || digest != st.AppliedObjects {
		r.log.Info("the assignment no longer renders the current version's objects; drift is corrected from the next version on")
		return
	}
	r.keepVersion(rendered, st.Inventory)
	r.log.Info("keeping the current version", "version", st.CurrentVersion, "objects", len(rendered.Objects))
}

// keepVersion hands the tracker a version taken without an apply: its
// objects as an apply would send them, and the records of inv.
func (r *Reconciler) keepVersion(rendered *render.Result, inv apply.Inventory) {
	if r.drift == nil {
		return
	}
	apply.Label(rendered.Objects)
	r.drift.Track(rendered.Objects, inv, rendered.ConfigItems)
}

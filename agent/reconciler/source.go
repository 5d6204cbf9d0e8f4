package reconciler

import (
	"context"
	"io/fs"

	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// Source is the config repo as a reconcile reads it. An agent reads the
// repository itself; a rehearsal pins each branch to the commit it
// rehearses.
type Source interface {
	// Location names the repository, for telling two sources apart.
	Location() string
	Head(ctx context.Context, branch string) (string, error)
	Fetch(ctx context.Context, branch string) (*configrepo.Snapshot, error)
	FetchCommit(ctx context.Context, commit string) (fs.FS, error)
}

// BranchReader is a Source that reads a given commit of a branch, once the
// branch shows it holds it (configrepo.ErrNotOnBranch otherwise): the
// agent's own repository, which checks so the commit the registry
// publishes. A source without it, such as a rehearsal's that pins every
// branch to one commit, is followed by its head alone.
type BranchReader interface {
	FetchOnBranch(ctx context.Context, branch, commit string) (*configrepo.Snapshot, error)
}

// OpenSource opens the config repo at a URL.
type OpenSource func(url string) (Source, error)

// WithSource makes the reconciles read the config repo through open
// instead of from the repository the assignment names.
func (r *Reconciler) WithSource(open OpenSource) *Reconciler {
	r.open = open
	return r
}

func (r *Reconciler) openSource(url string) (Source, error) {
	if r.open != nil {
		return r.open(url)
	}
	return configrepo.Open(url, r.cfg.Git)
}

package configrepo

import (
	"context"
	"io/fs"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/test/gitserver"
)

// The agent takes a commit its registry names only once the branch shows
// it holds it: the head, an older commit of the branch, or one merged into
// it; never a commit of another branch, nor one no branch has.
func TestFetchOnBranchReadsOnlyCommitsTheBranchHolds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	repo := gitserver.StartChannelRepo(t)
	older := repo.Commit("dev", "older")
	onAlpha := repo.Commit("alpha", "feature")
	merge := repo.Merge("dev", "alpha")
	head := repo.Commit("dev", "head")
	onBeta := repo.Commit("beta", "elsewhere")
	r, err := Open(repo.URL, repo.Credentials())
	require.NoError(t, err)

	for name, c := range map[string]struct{ commit, file string }{
		"the head":                {head, "changes/head"},
		"an older commit":         {older, "changes/older"},
		"a merge commit":          {merge, "changes/feature"},
		"a commit merged into it": {onAlpha, "changes/feature"},
		"the first commit":        {repo.First, "config-defaults.yaml"},
	} {
		snap, err := r.FetchOnBranch(ctx, "dev", c.commit)
		require.NoError(t, err, name)
		assert.Equal(t, c.commit, snap.Commit, name)
		_, err = fs.Stat(snap.Files, c.file)
		assert.NoError(t, err, "%s: the commit's own files", name)
	}
	snap, err := r.FetchOnBranch(ctx, "dev", older)
	require.NoError(t, err)
	_, err = fs.Stat(snap.Files, "changes/head")
	assert.ErrorIs(t, err, fs.ErrNotExist, "an older commit's files are its own, not the head's")

	_, err = r.FetchOnBranch(ctx, "dev", onBeta)
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit of another branch of the same repository")
	assert.ErrorContains(t, err, onBeta+" is not on branch dev of "+repo.URL+" (at "+Short(head)+") among its newest 200 commits")
	_, err = r.FetchOnBranch(ctx, "dev", "0123456789abcdef0123456789abcdef01234567")
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit no branch has")

	_, err = r.FetchOnBranch(ctx, "nope", head)
	assert.ErrorIs(t, err, ErrBranchNotFound)
}

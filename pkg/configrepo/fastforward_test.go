package configrepo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

func TestFastForwardPushesACommitOfTheSourceBranch(t *testing.T) {
	repo := newTestRepo(t)
	one := repo.commit("dev", "one")
	two := repo.commit("dev", "two")
	r, err := Open(repo.url, repo.creds())
	require.NoError(t, err)
	ctx := context.Background()

	ff, err := r.FastForward(ctx, "dev", "alpha", one)
	require.NoError(t, err)
	assert.Equal(t, FastForward{Commit: Commit{Hash: one, Subject: "one", Author: "Caravan Test", Time: ff.Commit.Time}, Previous: repo.first}, ff)
	assert.Equal(t, one, repo.head("alpha"), "an older commit of dev may be promoted")

	ff, err = r.FastForward(ctx, "dev", "alpha", two)
	require.NoError(t, err)
	assert.Equal(t, one, ff.Previous)
	assert.Equal(t, two, repo.head("alpha"))
	assert.Equal(t, two, repo.head("dev"), "the source branch stays")

	ff, err = r.FastForward(ctx, "dev", "alpha", two)
	require.NoError(t, err)
	assert.True(t, ff.UpToDate, "promoting what is there already pushes nothing")
	assert.Equal(t, two, ff.Previous)
}

func TestFastForwardRefusesWhatIsNotOne(t *testing.T) {
	repo := newTestRepo(t)
	devCommit := repo.commit("dev", "dev work")
	hotfix := repo.commit("alpha", "hotfix on alpha")
	betaOnly := repo.commit("beta", "beta only")
	r, err := Open(repo.url, repo.creds())
	require.NoError(t, err)
	ctx := context.Background()

	_, err = r.FastForward(ctx, "dev", "alpha", devCommit)
	require.ErrorIs(t, err, ErrNotFastForward)
	assert.ErrorContains(t, err, "alpha (at "+Short(hotfix)+") is not an ancestor of "+Short(devCommit))
	assert.Equal(t, hotfix, repo.head("alpha"), "a refused promotion changes nothing")

	_, err = r.FastForward(ctx, "dev", "beta", hotfix)
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit of the target branch is not on the source")
	_, err = r.FastForward(ctx, "dev", "alpha", betaOnly)
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit of neither branch")
	assert.ErrorContains(t, err, Short(betaOnly)+" is not on dev")
	assert.Equal(t, betaOnly, repo.head("beta"))

	_, err = r.FastForward(ctx, "dev", "stable", devCommit)
	require.ErrorIs(t, err, ErrBranchNotFound)

	wrong, err := Open(repo.url, gitauth.Credentials{Username: repo.srv.User, Password: "nope"})
	require.NoError(t, err)
	_, err = wrong.FastForward(ctx, "dev", "beta", devCommit)
	assert.Error(t, err, "a wrong password is refused")
}

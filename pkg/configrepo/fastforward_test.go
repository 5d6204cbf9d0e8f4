package configrepo

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/gitauth"

	"github.com/caravan-gitops/caravan/test/gitserver"
)

func TestFastForwardPushesACommitOfTheSourceBranch(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	one := repo.Commit("dev", "one")
	two := repo.Commit("dev", "two")
	r, err := Open(repo.URL, repo.Credentials())
	require.NoError(t, err)
	ctx := context.Background()

	ff, err := r.FastForward(ctx, "dev", "alpha", one)
	require.NoError(t, err)
	assert.Equal(t, FastForward{Commit: Commit{Hash: one, Subject: "one", Author: "Caravan Test", Time: ff.Commit.Time}, Previous: repo.First}, ff)
	assert.Equal(t, one, repo.Head("alpha"), "an older commit of dev may be promoted")

	ff, err = r.FastForward(ctx, "dev", "alpha", two)
	require.NoError(t, err)
	assert.Equal(t, one, ff.Previous)
	assert.Equal(t, two, repo.Head("alpha"))
	assert.Equal(t, two, repo.Head("dev"), "the source branch stays")

	ff, err = r.FastForward(ctx, "dev", "alpha", two)
	require.NoError(t, err)
	assert.True(t, ff.UpToDate, "promoting what is there already pushes nothing")
	assert.Equal(t, two, ff.Previous)
}

func TestFastForwardRefusesWhatIsNotOne(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	devCommit := repo.Commit("dev", "dev work")
	hotfix := repo.Commit("alpha", "hotfix on alpha")
	betaOnly := repo.Commit("beta", "beta only")
	r, err := Open(repo.URL, repo.Credentials())
	require.NoError(t, err)
	ctx := context.Background()

	_, err = r.FastForward(ctx, "dev", "alpha", devCommit)
	require.ErrorIs(t, err, ErrNotFastForward)
	assert.ErrorContains(t, err, "alpha (at "+Short(hotfix)+") is not an ancestor of "+Short(devCommit))
	assert.Equal(t, hotfix, repo.Head("alpha"), "a refused promotion changes nothing")

	_, err = r.FastForward(ctx, "dev", "beta", hotfix)
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit of the target branch is not on the source")
	_, err = r.FastForward(ctx, "dev", "alpha", betaOnly)
	require.ErrorIs(t, err, ErrNotOnBranch, "a commit of neither branch")
	assert.ErrorContains(t, err, Short(betaOnly)+" is not on dev")
	assert.Equal(t, betaOnly, repo.Head("beta"))

	_, err = r.FastForward(ctx, "dev", "stable", devCommit)
	require.ErrorIs(t, err, ErrBranchNotFound)

	wrong, err := Open(repo.URL, gitauth.Credentials{Username: repo.Server.User, Password: "nope"})
	require.NoError(t, err)
	_, err = wrong.FastForward(ctx, "dev", "beta", devCommit)
	assert.Error(t, err, "a wrong password is refused")
}

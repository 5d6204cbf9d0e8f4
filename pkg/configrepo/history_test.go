package configrepo

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/test/gitserver"
)

func TestLogFollowsFirstParents(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	one := repo.Commit("dev", "one")
	two := repo.Commit("dev", "two")
	repo.Commit("alpha", "feature work")
	merge := repo.Merge("dev", "alpha")
	r, err := Open(repo.URL, repo.Credentials())
	require.NoError(t, err)

	log, err := r.Log(context.Background(), "dev", 10)
	require.NoError(t, err)
	var hashes, subjects []string
	for _, c := range log {
		hashes, subjects = append(hashes, c.Hash), append(subjects, c.Subject)
	}
	assert.Equal(t, []string{merge, two, one, repo.First}, hashes, "the merged branch's own commits are not the branch's heads")
	assert.Equal(t, []string{"Merge alpha into dev", "two", "one", "Initial configuration"}, subjects)
	assert.Equal(t, "Merger", log[0].Author)

	short, err := r.Log(context.Background(), "dev", 2)
	require.NoError(t, err)
	assert.Len(t, short, 2)

	_, err = r.Log(context.Background(), "nightly", 2)
	assert.ErrorIs(t, err, ErrBranchNotFound)
}

func TestHeadCommitsDescribeEachBranchHead(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	dns := repo.Commit("dev", "four DNS replicas\n\nThe cluster grew.")
	r, err := Open(repo.URL, repo.Credentials())
	require.NoError(t, err)

	heads, err := r.HeadCommits(context.Background(), []string{"dev", "alpha"})
	require.NoError(t, err)
	require.Len(t, heads, 2)
	assert.Equal(t, dns, heads["dev"].Hash)
	assert.Equal(t, "four DNS replicas", heads["dev"].Subject, "the subject is the message's first line")
	assert.Equal(t, "Caravan Test", heads["dev"].Author)
	assert.WithinDuration(t, time.Now(), heads["dev"].Time, time.Minute)
	assert.Equal(t, time.UTC, heads["dev"].Time.Location())
	assert.Equal(t, Commit{Hash: repo.First, Subject: "Initial configuration", Author: "Caravan Test", Time: heads["alpha"].Time}, heads["alpha"])

	_, err = r.HeadCommits(context.Background(), []string{"dev", "nightly"})
	assert.ErrorIs(t, err, ErrBranchNotFound)
}

func TestShortIsSevenCharacters(t *testing.T) {
	assert.Equal(t, "0123456", Short("0123456789abcdef0123456789abcdef01234567"))
	assert.Equal(t, "abc", Short("abc"))
}

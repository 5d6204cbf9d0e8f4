package source

import (
	"context"
	"errors"
	"fmt"
	"io/fs"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
)

// searchDepth is how many commits of each branch a commit is looked for
// among: a preview is of a commit about to travel, and the current version
// of a cluster one that travelled not long ago, near a branch's head.
const searchDepth = 200

// ErrCommitNotFound means no branch has the commit within searchDepth.
var ErrCommitNotFound = errors.New("commit not found")

// FetchCommit reads the files of a commit of the repo, whichever branch
// holds it: a branch head is fetched alone, one commit deep, as a
// reconcile does; any other commit is looked for among the newest
// searchDepth commits of every branch.
func (r *Repo) FetchCommit(ctx context.Context, commit string) (fs.FS, error) {
	url, auth := r.URL, r.auth
	refs, err := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}}).
		ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", url, err)
	}
	var heads []config.RefSpec
	for _, ref := range refs {
		if !ref.Name().IsBranch() {
			continue
		}
		spec := config.RefSpec(ref.Name().String() + ":refs/remotes/origin/" + ref.Name().Short())
		if ref.Hash().String() == commit {
			return fetchFiles(ctx, url, auth, []config.RefSpec{spec}, 1, commit)
		}
		heads = append(heads, spec)
	}
	if len(heads) == 0 {
		return nil, fmt.Errorf("%s has no branches: %w", url, ErrCommitNotFound)
	}
	return fetchFiles(ctx, url, auth, heads, searchDepth, commit)
}

// fetchFiles fetches the branches depth commits deep into memory and reads
// the commit's files.
func fetchFiles(ctx context.Context, url string, auth transport.AuthMethod, branches []config.RefSpec, depth int, commit string) (fs.FS, error) {
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		return nil, err
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return nil, err
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{Auth: auth, RefSpecs: branches, Depth: depth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, fmt.Errorf("fetching the branches of %s: %w", url, err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("%s is not among the newest %d commits of any branch of %s: %w", commit, depth, url, ErrCommitNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", commit, err)
	}
	return TreeFiles(c)
}

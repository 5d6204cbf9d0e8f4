package configrepo

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// FetchOnBranch reads the files of commit once the branch shows that it
// holds it: the commit is the branch's head, or one of its newest
// searchDepth ancestors (through any parent, so a commit merged in counts).
// The agent checks so the commit its registry names: git stays the truth.
// The head alone is fetched first, one commit deep, as a commit named
// just after a push is the head; the history only when it is not. A
// commit the branch does not hold is ErrNotOnBranch, even when another
// branch has it.
func (r *Repo) FetchOnBranch(ctx context.Context, branch, commit string) (*Snapshot, error) {
	want := plumbing.NewHash(commit)
	var head *object.Commit
	for _, depth := range []int{1, searchDepth} {
		repo, err := r.fetch(ctx, depth, branch)
		if err != nil {
			return nil, err
		}
		if head, err = fetchedHead(repo, branch); err != nil {
			return nil, err
		}
		found, err := ancestor(repo, head, want)
		if err != nil {
			return nil, fmt.Errorf("walking the history of %s of %s: %w", branch, r.URL, err)
		}
		if found != nil {
			files, err := treeFiles(found)
			if err != nil {
				return nil, err
			}
			return &Snapshot{Commit: commit, Files: files}, nil
		}
	}
	return nil, fmt.Errorf("%s is not on branch %s of %s (at %s) among its newest %d commits: %w",
		commit, branch, r.URL, Short(head.Hash.String()), searchDepth, ErrNotOnBranch)
}

// ancestor finds want among head and its ancestors that the fetch brought:
// the walk ends at the edge of a shallow fetch, where parents are absent.
// It returns nil when want is not among them.
func ancestor(repo *git.Repository, head *object.Commit, want plumbing.Hash) (*object.Commit, error) {
	seen := map[plumbing.Hash]bool{head.Hash: true}
	queue := []*object.Commit{head}
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		if c.Hash == want {
			return c, nil
		}
		for _, h := range c.ParentHashes {
			if seen[h] {
				continue
			}
			seen[h] = true
			parent, err := repo.CommitObject(h)
			if errors.Is(err, plumbing.ErrObjectNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("reading commit %s: %w", h, err)
			}
			queue = append(queue, parent)
		}
	}
	return nil, nil
}

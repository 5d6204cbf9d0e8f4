package configrepo

import (
	"context"
	"errors"
	"fmt"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Errors of a fast-forward that is refused.
var (
	ErrNotOnBranch    = errors.New("the commit is not on the branch")
	ErrNotFastForward = errors.New("not a fast-forward")
	ErrTargetMovedOn  = errors.New("the target branch moved during the promotion")
)

// FastForward is a fast-forward of one branch to a commit of another.
type FastForward struct {
	// Commit is what the target branch points to now.
	Commit Commit
	// Previous is the target branch's head before.
	Previous string
	// UpToDate says the target branch pointed to Commit already, and
	// nothing was pushed.
	UpToDate bool
}

// FastForward moves branch to to commit, which must be on branch from, and
// pushes it: only when to's head is an ancestor of commit (a fast-forward),
// and only if to has not moved since it was read. Both branches are
// fetched whole into memory, as the ancestry needs their history.
func (r *Repo) FastForward(ctx context.Context, from, to, commit string) (FastForward, error) {
	repo, err := r.fetch(ctx, 0, from, to)
	if err != nil {
		return FastForward{}, err
	}
	fromHead, err := fetchedHead(repo, from)
	if err != nil {
		return FastForward{}, err
	}
	toHead, err := fetchedHead(repo, to)
	if err != nil {
		return FastForward{}, err
	}
	target, err := commitOnBranch(repo, commit, from, fromHead)
	if err != nil {
		return FastForward{}, err
	}
	ff := FastForward{Commit: describe(target), Previous: toHead.Hash.String()}
	if toHead.Hash == target.Hash {
		ff.UpToDate = true
		return ff, nil
	}
	if ok, err := toHead.IsAncestor(target); err != nil || !ok {
		return FastForward{}, fmt.Errorf("%s (at %s) is not an ancestor of %s, so moving it there would drop its commits: %w; merge %s into %s first",
			to, Short(ff.Previous), Short(commit), notAncestor(err), to, from)
	}
	err = repo.PushContext(ctx, &git.PushOptions{
		RemoteName:        "origin",
		RefSpecs:          []config.RefSpec{config.RefSpec(commit + ":" + plumbing.NewBranchReferenceName(to).String())},
		RequireRemoteRefs: []config.RefSpec{config.RefSpec(ff.Previous + ":" + plumbing.NewBranchReferenceName(to).String())},
		Auth:              r.auth,
	})
	switch {
	case err == nil:
		return ff, nil
	case errors.Is(err, git.NoErrAlreadyUpToDate):
		ff.UpToDate = true
		return ff, nil
	}
	return FastForward{}, fmt.Errorf("pushing %s to %s of %s: %w", Short(commit), to, r.URL, pushError(err))
}

func notAncestor(err error) error {
	if err != nil {
		return fmt.Errorf("%w (%v)", ErrNotFastForward, err)
	}
	return ErrNotFastForward
}

// pushError tells a branch that moved since it was read, which go-git
// reports only in its message, from other failures.
func pushError(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "required to be") {
		return fmt.Errorf("%w: %v", ErrTargetMovedOn, err)
	}
	if strings.Contains(msg, "non-fast-forward") {
		return fmt.Errorf("%w: %v", ErrNotFastForward, err)
	}
	return err
}

// commitOnBranch reads commit and checks that the branch's head is it or
// descends from it.
func commitOnBranch(repo *git.Repository, commit, branch string, head *object.Commit) (*object.Commit, error) {
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		// Both branches were fetched whole: a commit of either is here.
		return nil, fmt.Errorf("%s is not on %s (at %s): %w", Short(commit), branch, Short(head.Hash.String()), ErrNotOnBranch)
	}
	ok, err := c.IsAncestor(head)
	if err != nil {
		return nil, fmt.Errorf("walking the history of %s: %w", branch, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s is not on %s (at %s): %w", Short(commit), branch, Short(head.Hash.String()), ErrNotOnBranch)
	}
	return c, nil
}

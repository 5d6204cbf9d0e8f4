package configrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"slices"
	"testing/fstest"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// searchDepth is how many commits of each branch a commit is looked for
// among: a preview is of a commit about to travel, and the current version
// of a cluster one that travelled not long ago, near a branch's head.
const searchDepth = 200

// ErrCommitNotFound means no branch has the commit within searchDepth.
var ErrCommitNotFound = errors.New("commit not found")

// Snapshot is the files of one commit.
type Snapshot struct {
	Commit string
	Files  fs.FS
}

// Fetch fetches the branch's newest commit alone (depth 1, no tags, no
// checkout) into memory and returns its files. The commit may be newer than
// one Head returned just before, and Snapshot.Commit says which it is.
func (r *Repo) Fetch(ctx context.Context, branch string) (*Snapshot, error) {
	repo, err := r.fetch(ctx, 1, branch)
	if err != nil {
		return nil, err
	}
	head, err := fetchedHead(repo, branch)
	if err != nil {
		return nil, err
	}
	files, err := treeFiles(head)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Commit: head.Hash.String(), Files: files}, nil
}

// FetchCommit reads the files of a commit of the repo, whichever branch
// holds it: a branch head is fetched alone, one commit deep, as a
// reconcile does; any other commit is looked for among the newest
// searchDepth commits of every branch.
func (r *Repo) FetchCommit(ctx context.Context, commit string) (fs.FS, error) {
	heads, err := r.Branches(ctx)
	if err != nil {
		return nil, err
	}
	branches := slices.Sorted(maps.Keys(heads))
	for _, b := range branches {
		if heads[b] == commit {
			return r.commitFiles(ctx, commit, 1, b)
		}
	}
	if len(branches) == 0 {
		return nil, fmt.Errorf("%s has no branches: %w", r.URL, ErrCommitNotFound)
	}
	return r.commitFiles(ctx, commit, searchDepth, branches...)
}

// commitFiles fetches the branches depth commits deep and reads the
// commit's files.
func (r *Repo) commitFiles(ctx context.Context, commit string, depth int, branches ...string) (fs.FS, error) {
	repo, err := r.fetch(ctx, depth, branches...)
	if err != nil {
		return nil, err
	}
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, fmt.Errorf("%s is not among the newest %d commits of any branch of %s: %w", commit, depth, r.URL, ErrCommitNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", commit, err)
	}
	return treeFiles(c)
}

// treeFiles reads every file of the commit into an in-memory file system;
// config repos are small, and rendering reads every file anyway.
// fstest.MapFS is the standard library's map-backed fs.FS.
func treeFiles(commit *object.Commit) (fs.FS, error) {
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of %s: %w", commit.Hash, err)
	}
	files := fstest.MapFS{}
	err = tree.Files().ForEach(func(f *object.File) error {
		rd, err := f.Reader()
		if err != nil {
			return err
		}
		defer rd.Close()
		content, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		files[f.Name] = &fstest.MapFile{Data: content, Mode: 0o644}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the files of %s: %w", commit.Hash, err)
	}
	return files, nil
}

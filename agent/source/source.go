// Package source reads the config repo: which commit a channel's branch
// points to, and that one commit's files, fetched shallowly into memory.
package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"testing/fstest"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// Credentials authenticate to the git server; set at most one kind.
type Credentials = gitauth.Credentials

// Repo is a config repo at a URL.
type Repo struct {
	URL  string
	auth transport.AuthMethod
}

// New returns the repo at url with credentials.
func New(url string, c Credentials) (*Repo, error) {
	auth, err := c.Method()
	if err != nil {
		return nil, err
	}
	return &Repo{URL: url, auth: auth}, nil
}

// ErrBranchNotFound means the remote has no such branch.
var ErrBranchNotFound = errors.New("branch not found")

// Head returns the commit the branch points to, listing the remote's refs
// without fetching anything: the cheap check of every steady-state poll.
func (r *Repo) Head(ctx context.Context, branch string) (string, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: r.auth})
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", r.URL, err)
	}
	want := plumbing.NewBranchReferenceName(branch)
	for _, ref := range refs {
		if ref.Name() == want {
			return ref.Hash().String(), nil
		}
	}
	return "", fmt.Errorf("%s in %s: %w", branch, r.URL, ErrBranchNotFound)
}

// Snapshot is the files of one commit.
type Snapshot struct {
	Commit string
	Files  fs.FS
}

// Fetch fetches the branch's newest commit alone (depth 1, no tags, no
// checkout) into memory and returns its files. The commit may be newer than
// one Head returned just before, and Snapshot.Commit says which it is.
func (r *Repo) Fetch(ctx context.Context, branch string) (*Snapshot, error) {
	repo, err := git.CloneContext(ctx, memory.NewStorage(), nil, &git.CloneOptions{
		URL: r.URL, Auth: r.auth, ReferenceName: plumbing.NewBranchReferenceName(branch),
		SingleBranch: true, Depth: 1, NoCheckout: true, Tags: git.NoTags,
	})
	if err != nil {
		return nil, fmt.Errorf("fetching %s of %s: %w", branch, r.URL, err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("reading the fetched head: %w", err)
	}
	commit, err := repo.CommitObject(head.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", head.Hash(), err)
	}
	files, err := TreeFiles(commit)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Commit: head.Hash().String(), Files: files}, nil
}

// TreeFiles reads every file of the commit into an in-memory file system;
// config repos are small, and rendering reads every file anyway.
// fstest.MapFS is the standard library's map-backed fs.FS.
func TreeFiles(commit *object.Commit) (fs.FS, error) {
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

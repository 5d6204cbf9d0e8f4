// Package configrepo is Caravan's one way to the config repository, for
// every part that reaches it: the agent lists a channel's branch and
// fetches one commit's files shallowly into memory, caravan-central reads
// the channels' heads and histories, and the command line fast-forwards a
// branch to promote a commit. Everything is read and written in memory;
// nothing touches the disk.
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
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// Credentials authenticate to the git server; set at most one kind.
type Credentials = gitauth.Credentials

// ErrBranchNotFound means the repository has no such branch.
var ErrBranchNotFound = errors.New("branch not found")

// Repo is a config repository at a URL.
type Repo struct {
	URL  string
	auth transport.AuthMethod
}

// Open returns the repository at url, reached with creds. It reaches
// nothing yet.
func Open(url string, creds Credentials) (*Repo, error) {
	auth, err := creds.Method()
	if err != nil {
		return nil, err
	}
	return &Repo{URL: url, auth: auth}, nil
}

// Location is the repository's URL.
func (r *Repo) Location() string { return r.URL }

// Branches lists the remote's branches and the commit each points to,
// fetching nothing.
func (r *Repo) Branches(ctx context.Context) (map[string]string, error) {
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: r.auth})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", r.URL, err)
	}
	out := map[string]string{}
	for _, ref := range refs {
		if ref.Name().IsBranch() && ref.Type() == plumbing.HashReference {
			out[ref.Name().Short()] = ref.Hash().String()
		}
	}
	return out, nil
}

// Head returns the commit the branch points to, listing the remote's refs
// without fetching anything: the cheap check of every steady-state poll.
func (r *Repo) Head(ctx context.Context, branch string) (string, error) {
	branches, err := r.Branches(ctx)
	if err != nil {
		return "", err
	}
	if hash, ok := branches[branch]; ok {
		return hash, nil
	}
	return "", fmt.Errorf("%s in %s: %w", branch, r.URL, ErrBranchNotFound)
}

// fetch fetches branches (no tags) into a new in-memory repository, as
// refs/remotes/origin/<branch>; depth 0 fetches their whole history.
func (r *Repo) fetch(ctx context.Context, depth int, branches ...string) (*git.Repository, error) {
	repo, err := git.Init(memory.NewStorage(), nil)
	if err != nil {
		return nil, err
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	if err != nil {
		return nil, err
	}
	specs := make([]config.RefSpec, len(branches))
	for i, b := range branches {
		specs[i] = config.RefSpec("+" + plumbing.NewBranchReferenceName(b).String() + ":" + trackingRef(b).String())
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Depth: depth, Tags: git.NoTags, Auth: r.auth})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		if errors.Is(err, git.NoMatchingRefSpecError{}) {
			return nil, fmt.Errorf("fetching %s of %s: %w", strings.Join(branches, ", "), r.URL, ErrBranchNotFound)
		}
		return nil, fmt.Errorf("fetching %s of %s: %w", strings.Join(branches, ", "), r.URL, err)
	}
	return repo, nil
}

func trackingRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName("origin", branch)
}

// fetchedHead is the commit a fetched branch points to.
func fetchedHead(repo *git.Repository, branch string) (*object.Commit, error) {
	ref, err := repo.Reference(trackingRef(branch), true)
	if err != nil {
		return nil, fmt.Errorf("branch %s: %w", branch, ErrBranchNotFound)
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading commit %s of %s: %w", ref.Hash(), branch, err)
	}
	return c, nil
}

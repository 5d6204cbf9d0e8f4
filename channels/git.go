// Package channels is the channel model and promotion: the channels'
// branch heads and histories read from git, where a commit stands on a
// channel's clusters (from the registry's status history), the promotion
// gate, and the fast-forward of one channel's branch to a commit of another.
// The computations over registry data are pure functions, shared by the
// registry's API and its web UI.
package channels

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

// ErrBranchNotFound means the repository has no such branch.
var ErrBranchNotFound = errors.New("branch not found")

// Commit is what the registry and the command line show of a commit.
type Commit struct {
	Hash    string
	Subject string
	Author  string
	Time    time.Time
}

// Repo is a config repository at a URL, read and written in memory.
type Repo struct {
	URL  string
	auth transport.AuthMethod
}

// OpenRepo returns the repository at url, reached with creds.
func OpenRepo(url string, creds gitauth.Credentials) (*Repo, error) {
	auth, err := creds.Method()
	if err != nil {
		return nil, err
	}
	return &Repo{URL: url, auth: auth}, nil
}

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

// fetch fetches branches into a new in-memory repository, as
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

// HeadCommits fetches the newest commit of each branch alone (depth 1, no
// tags) and describes it.
func (r *Repo) HeadCommits(ctx context.Context, branches []string) (map[string]Commit, error) {
	repo, err := r.fetch(ctx, 1, branches...)
	if err != nil {
		return nil, err
	}
	out := map[string]Commit{}
	for _, b := range branches {
		c, err := fetchedHead(repo, b)
		if err != nil {
			return nil, err
		}
		out[b] = describe(c)
	}
	return out, nil
}

// Log returns up to limit commits of the branch, newest first, following
// first parents only: the commits that were the branch's head one after
// the other when changes are merged into it. A fetch of depth limit holds
// all of them.
func (r *Repo) Log(ctx context.Context, branch string, limit int) ([]Commit, error) {
	repo, err := r.fetch(ctx, limit, branch)
	if err != nil {
		return nil, err
	}
	c, err := fetchedHead(repo, branch)
	if err != nil {
		return nil, err
	}
	var out []Commit
	for c != nil && len(out) < limit {
		out = append(out, describe(c))
		if c.NumParents() == 0 {
			break
		}
		parent, err := c.Parent(0)
		if err != nil {
			// The fetch is shallow: the first parent beyond its depth is absent.
			break
		}
		c = parent
	}
	return out, nil
}

func describe(c *object.Commit) Commit {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Commit{Hash: c.Hash.String(), Subject: strings.TrimSpace(subject), Author: c.Author.Name, Time: c.Committer.When.UTC()}
}

// Short is the first seven characters of a commit id, as git shows it.
func Short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

package configrepo

import (
	"context"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"
)

// Commit is what the registry and the command line show of a commit.
type Commit struct {
	Hash    string
	Subject string
	Author  string
	Time    time.Time
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

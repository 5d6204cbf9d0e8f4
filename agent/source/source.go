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
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

// Credentials authenticate to the git server; set at most one kind.
type Credentials struct {
	Username    string
	Password    string
	BearerToken string
	// SSHKey is a PEM private key; KnownHosts, when set, pins the server keys.
	SSHKey     []byte
	SSHUser    string
	KnownHosts []byte
}

// Repo is a config repo at a URL.
type Repo struct {
	URL  string
	auth transport.AuthMethod
}

// New returns the repo at url with credentials.
func New(url string, c Credentials) (*Repo, error) {
	auth, err := c.method()
	if err != nil {
		return nil, err
	}
	return &Repo{URL: url, auth: auth}, nil
}

func (c Credentials) method() (transport.AuthMethod, error) {
	switch {
	case len(c.SSHKey) > 0:
		user := c.SSHUser
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, c.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("reading the SSH key: %w", err)
		}
		if len(c.KnownHosts) > 0 {
			cb, err := knownHostsCallback(c.KnownHosts)
			if err != nil {
				return nil, err
			}
			keys.HostKeyCallback = cb
		}
		return keys, nil
	case c.BearerToken != "":
		return &githttp.TokenAuth{Token: c.BearerToken}, nil
	case c.Username != "" || c.Password != "":
		return &githttp.BasicAuth{Username: c.Username, Password: c.Password}, nil
	}
	return nil, nil
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
	files, err := treeFiles(commit)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Commit: head.Hash().String(), Files: files}, nil
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

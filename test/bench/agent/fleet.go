//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// The two clusters of the registry: the agent run in this process (its
// reconciler, applier and renderer, timed piece by piece) follows dev; the
// caravan-agent process, whose memory is measured, follows alpha. Each
// channel has its own copy of the config repo, with its own namespaces.
const (
	account        = "aws:123456789012"
	inProcessID    = account + ":eu-central-1:bench-agent"
	processID      = account + ":eu-central-1:bench-process"
	inProcessRepo  = "agent"
	processRepo    = "process"
	inProcessNS    = "agent"   // namespaces agent-1 ... agent-5
	processNS      = "process" // process-1 ... process-5
	kubectlNS      = "kubectl" // kubectl's copy, applied from the rendered file
	agentNamespace = "caravan-system"
)

// fleet is the registry, in this process, and the git server.
type fleet struct {
	host.Fleet
	url    string
	admin  *registry.Client
	tokens map[string]string // agent tokens by cluster id
	repos  map[string]string // generated repo folders by name
}

// webhookSecret signs the git server's push webhooks to the registry.
const webhookSecret = "caravan-bench-webhook-secret"

// push commits files to a branch of a repo and tells the registry, as a
// git host's webhook does: agents learn new commits from the registry.
func (f *fleet) push(ctx context.Context, repo, branch, message string, files map[string][]byte) (string, error) {
	sha, err := f.Git.Commit(repo, branch, message, files)
	if err != nil {
		return "", err
	}
	return sha, gitserver.AnnouncePush(ctx, f.url, webhookSecret, branch)
}

// startFleet generates the config repos, serves them from the git server
// and runs caravan-central with the two clusters.
func startFleet(ctx context.Context, dir string) (*fleet, error) {
	f := &fleet{tokens: map[string]string{}, repos: map[string]string{}}
	for name, prefix := range map[string]string{inProcessRepo: inProcessNS, processRepo: processNS, kubectlNS: kubectlNS} {
		f.repos[name] = filepath.Join(dir, "repos", name)
		if err := generateRepo(f.repos[name], prefix); err != nil {
			return nil, fmt.Errorf("generating the config repo %s: %w", name, err)
		}
	}
	gitRoot := filepath.Join(dir, "git")
	if err := os.MkdirAll(gitRoot, 0o755); err != nil {
		return nil, err
	}
	var err error
	if f.Git, err = gitserver.Launch(gitRoot, "caravan", "bench"); err != nil {
		return nil, err
	}
	if _, err := f.Git.CreateRepo(inProcessRepo, f.repos[inProcessRepo], "dev"); err != nil {
		return nil, fmt.Errorf("creating the git repo %s: %w", inProcessRepo, err)
	}
	if _, err := f.Git.CreateRepo(processRepo, f.repos[processRepo], "alpha"); err != nil {
		return nil, fmt.Errorf("creating the git repo %s: %w", processRepo, err)
	}

	f.Registry, err = host.StartRegistry(ctx, dir, central.Config{RepositoryURL: f.Git.RepoURL(inProcessRepo),
		Git: gitauth.Credentials{Username: f.Git.User, Password: f.Git.Password}, WebhookSecret: webhookSecret})
	if err != nil {
		return nil, err
	}
	f.url, f.admin = f.Registry.URL, f.Registry.Admin
	if err := f.seed(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("seeding the registry: %w", err), f.stop())
	}
	return f, nil
}

func (f *fleet) seed(ctx context.Context) error {
	if _, _, err := f.admin.PatchChannel(ctx, "alpha", map[string]any{"repository_url": f.Git.RepoURL(processRepo)}, ""); err != nil {
		return err
	}
	if _, _, err := f.admin.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{ID: account, Name: "bench", Owner: "bench", Environment: "test"}); err != nil {
		return err
	}
	for id, channel := range map[string]string{inProcessID: "dev", processID: "alpha"} {
		if _, _, err := f.admin.CreateCluster(ctx, &api.Cluster{ID: id, InfrastructureAccount: account, Region: "eu-central-1",
			APIServerURL: "https://kube.example.org", Environment: "test", Channel: channel, LifecycleStatus: "ready"}); err != nil {
			return err
		}
		var err error
		if f.tokens[id], err = f.Registry.Token(ctx, api.RoleAgent, id); err != nil {
			return err
		}
	}
	return nil
}

// agentRegistry is the registry client as the agent builds it.
func (f *fleet) agentRegistry(clusterID string) (*registry.Client, error) {
	return registry.New(f.url, f.tokens[clusterID], registry.WithUserAgent("caravan-agent/bench"),
		registry.WithRetryMax(1), registry.WithRetryWait(500*time.Millisecond, 2*time.Second))
}

func (f *fleet) stop() error { return f.Fleet.Stop() }

// assignment is the in-process cluster's assignment, as the agent gets it.
func (b *bench) assignment(ctx context.Context) (*api.Assignment, error) {
	reg, err := b.fleet.agentRegistry(inProcessID)
	if err != nil {
		return nil, err
	}
	res, err := reg.GetAssignment(ctx, inProcessID, registry.AssignmentOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting the assignment: %w", err)
	}
	return res.Assignment, nil
}

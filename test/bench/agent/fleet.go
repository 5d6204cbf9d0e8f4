//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/pkg/registry"
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
	git    *gitserver.Server
	url    string
	admin  *registry.Client
	tokens map[string]string // agent tokens by cluster id
	repos  map[string]string // generated repo folders by name
	cancel context.CancelFunc
	done   chan error
}

// webhookSecret signs the git server's push webhooks to the registry.
const webhookSecret = "caravan-bench-webhook-secret"

// push commits files to a branch of a repo and tells the registry, as a
// git host's webhook does: agents learn new commits from the registry.
func (f *fleet) push(ctx context.Context, repo, branch, message string, files map[string][]byte) (string, error) {
	sha, err := f.git.Commit(repo, branch, message, files)
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
	if f.git, err = gitserver.Launch(gitRoot, "caravan", "bench"); err != nil {
		return nil, err
	}
	if _, err := f.git.CreateRepo(inProcessRepo, f.repos[inProcessRepo], "dev"); err != nil {
		return nil, fmt.Errorf("creating the git repo %s: %w", inProcessRepo, err)
	}
	if _, err := f.git.CreateRepo(processRepo, f.repos[processRepo], "alpha"); err != nil {
		return nil, fmt.Errorf("creating the git repo %s: %w", processRepo, err)
	}

	db := "sqlite://" + filepath.Join(dir, "registry.db")
	addr := make(chan string, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	f.cancel, f.done = cancel, make(chan error, 1)
	go func() {
		f.done <- central.Run(runCtx, central.Config{Listen: "127.0.0.1:0", Database: db, RepositoryURL: f.git.RepoURL(inProcessRepo),
			Git: gitauth.Credentials{Username: f.git.User, Password: f.git.Password}, WebhookSecret: webhookSecret,
			Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), Ready: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		f.url = "http://" + a
	case err := <-f.done:
		return nil, fmt.Errorf("starting caravan-central: %w", err)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("caravan-central did not start within 30 s")
	}
	if err := f.seed(ctx, db); err != nil {
		f.stop()
		return nil, fmt.Errorf("seeding the registry: %w", err)
	}
	return f, nil
}

func (f *fleet) seed(ctx context.Context, db string) error {
	adminToken, err := createToken(ctx, db, api.RoleAdmin, "")
	if err != nil {
		return err
	}
	if f.admin, err = registry.New(f.url, adminToken, registry.WithRetryMax(0)); err != nil {
		return err
	}
	if _, _, err := f.admin.PatchChannel(ctx, "alpha", map[string]any{"repository_url": f.git.RepoURL(processRepo)}, ""); err != nil {
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
		if f.tokens[id], err = createToken(ctx, db, api.RoleAgent, id); err != nil {
			return err
		}
	}
	return nil
}

// createToken creates a token in the database, as `caravan-central token create` does.
func createToken(ctx context.Context, db, role, clusterID string) (string, error) {
	st, err := store.Open(ctx, db)
	if err != nil {
		return "", err
	}
	defer st.Close()
	tok, err := st.CreateToken(ctx, strings.NewReplacer(":", ".").Replace("bench-"+role+"-"+clusterID), role, clusterID, "bench")
	if err != nil {
		return "", fmt.Errorf("creating a %s token: %w", role, err)
	}
	return tok.Secret, nil
}

// agentRegistry is the registry client as the agent builds it.
func (f *fleet) agentRegistry(clusterID string) (*registry.Client, error) {
	return registry.New(f.url, f.tokens[clusterID], registry.WithUserAgent("caravan-agent/bench"),
		registry.WithRetryMax(1), registry.WithRetryWait(500*time.Millisecond, 2*time.Second))
}

func (f *fleet) stop() error {
	var err error
	if f.cancel != nil {
		f.cancel()
		select {
		case err = <-f.done:
		case <-time.After(40 * time.Second):
			err = fmt.Errorf("caravan-central did not stop within 40 s")
		}
		f.cancel = nil
	}
	if f.git != nil {
		_ = f.git.Close()
	}
	return err
}

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

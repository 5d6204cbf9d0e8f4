package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

// Registry is caravan-central run in the benchmark's process on a SQLite
// file, with an admin client: the registry a benchmark's agents poll.
type Registry struct {
	URL   string
	Admin *registry.Client
	db    string

	cancel context.CancelFunc
	done   chan error
}

// StartRegistry runs caravan-central as cfg says, on a SQLite file in dir
// and a free loopback port, its log discarded, and makes an admin token.
func StartRegistry(ctx context.Context, dir string, cfg central.Config) (*Registry, error) {
	r := &Registry{db: "sqlite://" + filepath.Join(dir, "registry.db"), done: make(chan error, 1)}
	cfg.Listen, cfg.Database = "127.0.0.1:0", r.db
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	addr := make(chan string, 1)
	cfg.Ready = func(a string) { addr <- a }
	var runCtx context.Context
	runCtx, r.cancel = context.WithCancel(context.Background())
	go func() { r.done <- central.Run(runCtx, cfg) }()
	select {
	case a := <-addr:
		r.URL = "http://" + a
	case err := <-r.done:
		r.cancel = nil
		return nil, fmt.Errorf("starting caravan-central: %w", err)
	case <-time.After(30 * time.Second):
		return nil, errors.Join(errors.New("caravan-central did not start within 30 s"), r.Stop())
	}
	admin, err := r.Token(ctx, api.RoleAdmin, "")
	if err == nil {
		r.Admin, err = registry.New(r.URL, admin, registry.WithRetryMax(0))
	}
	if err != nil {
		return nil, errors.Join(err, r.Stop())
	}
	return r, nil
}

// Token creates a token in the database, as `caravan-central token create`
// does.
func (r *Registry) Token(ctx context.Context, role, clusterID string) (string, error) {
	st, err := store.Open(ctx, r.db)
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

// Stop ends caravan-central, waiting for its shutdown.
func (r *Registry) Stop() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		return err
	case <-time.After(40 * time.Second):
		return errors.New("caravan-central did not stop within 40 s")
	}
}

// Fleet is the git server and the registry a benchmark's agents follow.
type Fleet struct {
	Git      *gitserver.Server
	Registry *Registry
}

// Stop ends the registry, then the git server.
func (f *Fleet) Stop() error {
	var err error
	if f.Registry != nil {
		err = f.Registry.Stop()
	}
	if f.Git != nil {
		_ = f.Git.Close()
	}
	return err
}

//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/gitserver"
	"github.com/caravan-gitops/caravan/test/postgres"
)

// configRepo is the config repo's name on the git server.
const configRepo = "config"

// channelNames are the registry's default channels, one branch each.
var channelNames = func() []string {
	var names []string
	for _, ch := range central.DefaultChannels("") {
		names = append(names, ch.Name)
	}
	return names
}()

// world is what every fleet size shares: caravan-central's binary,
// PostgreSQL, the git server with the config repo, and the secrets the
// replicas read from files.
type world struct {
	opts    options
	dir     string
	central string
	pg      *postgres.Server
	pgctl   *pgControl
	git     *gitserver.Server
	secrets secretFiles
	dbs     int
}

// secretFiles are the files of the replicas' --*-file flags, and the
// secrets in them.
type secretFiles struct {
	webhook, webhookFile string
	admin, adminFile     string
	gitPasswordFile      string
}

func startWorld(ctx context.Context, o options, dir string) (_ *world, err error) {
	w := &world{opts: o, dir: dir}
	defer func() {
		if err != nil {
			w.stop()
		}
	}()
	host.Progress("building caravan-central")
	if w.central, err = host.BuildCentral(ctx, dir); err != nil {
		return nil, err
	}
	host.Progress("starting PostgreSQL and the git server")
	if w.pg, err = postgres.Launch(); err != nil {
		return nil, err
	}
	if w.pgctl, err = newPGControl(ctx, w.pg.URL("postgres")); err != nil {
		return nil, err
	}
	if err := w.startGit(); err != nil {
		return nil, err
	}
	if w.secrets, err = writeSecrets(dir, w.git.Password); err != nil {
		return nil, err
	}
	return w, nil
}

// startGit serves the config repo, one branch per channel at one commit.
func (w *world) startGit() error {
	root := filepath.Join(w.dir, "git")
	src := filepath.Join(w.dir, "config-src")
	for _, d := range []string{root, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(src, "config-defaults.yaml"), []byte("coredns_replicas: \"2\"\n"), 0o644); err != nil {
		return err
	}
	var err error
	if w.git, err = gitserver.Launch(root, "caravan", randomSecret()); err != nil {
		return err
	}
	if _, err := w.git.CreateRepo(configRepo, src, channelNames...); err != nil {
		return fmt.Errorf("creating the config repo: %w", err)
	}
	return nil
}

func writeSecrets(dir, gitPassword string) (secretFiles, error) {
	s := secretFiles{
		webhook: randomSecret(), webhookFile: filepath.Join(dir, "webhook-secret"),
		admin: randomSecret(), adminFile: filepath.Join(dir, "admin-token"),
		gitPasswordFile: filepath.Join(dir, "git-password"),
	}
	for path, secret := range map[string]string{s.webhookFile: s.webhook, s.adminFile: s.admin, s.gitPasswordFile: gitPassword} {
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return secretFiles{}, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return s, nil
}

// randomSecret is 64 hex digits.
func randomSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newDatabase creates an empty database for one fleet size.
func (w *world) newDatabase(ctx context.Context) (string, error) {
	w.dbs++
	name := fmt.Sprintf("fleet_%d", w.dbs)
	db, err := sql.Open("pgx", w.pg.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	return w.pg.URL(name), nil
}

// registryListings counts the registry's ref listings of the config repo
// so far: go-git's, the git command's being the benchmark's own pushes.
func (w *world) registryListings() (listings, fetches int) {
	counts := w.git.Requests()
	return counts[gitserver.RequestKey{Repo: configRepo, Kind: gitserver.RefListing, Client: "go-git"}],
		counts[gitserver.RequestKey{Repo: configRepo, Kind: gitserver.Fetch, Client: "go-git"}]
}

func (w *world) stop() {
	if w.git != nil {
		if err := w.git.Close(); err != nil {
			host.Progress("stopping the git server: %v", err)
		}
	}
	if w.pg != nil {
		w.pg.Stop()
	}
}

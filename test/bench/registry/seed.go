//go:build linux

package main

import (
	"context"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// repositoryURL is the default channels' config repo; nothing reads it.
const repositoryURL = "https://git.example.com/platform/kubernetes-config.git"

// agent is what one cluster's agent knows: its cluster, its token and,
// once fetched, the ETag of its assignment.
type agent struct {
	clusterID string
	token     string
	etag      string
}

// seedFleet fills the database with n clusters spread over the default
// channels, each with its own agent token (host.SeedFleet).
func seedFleet(ctx context.Context, databaseURL string, n int) ([]*agent, error) {
	seeded, err := host.SeedFleet(ctx, databaseURL, repositoryURL, n, []string{"dev", "alpha", "beta", "stable"})
	if err != nil {
		return nil, err
	}
	agents := make([]*agent, len(seeded))
	for i, c := range seeded {
		agents[i] = &agent{clusterID: c.ID, token: c.Token}
	}
	return agents, nil
}

package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/demo"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/channels"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/moto"
)

// liveClusters are the demo clusters that get a control plane and an agent.
var liveClusters = []string{"test-dev", "production-stable"}

// localAccount holds the live clusters: moto, which plays AWS for their
// agents, keeps every resource in its one account.
var localAccount = api.InfrastructureAccount{ID: "aws:" + moto.AccountID, Name: "platform-local", Owner: "team-platform", Environment: "test"}

// livePools are the live clusters' node pools, small ones: moto launches
// their instances (min_size of them), the nodes are kwok's.
var livePools = map[string][]api.NodePool{
	"test-dev": {
		{Name: "default-worker", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 2, DiscountStrategy: api.DiscountNone},
		{Name: "spot-worker", Profile: "worker-default", InstanceTypes: []string{"m6i.large", "m5.large"}, MinSize: 1, MaxSize: 2, DiscountStrategy: api.DiscountSpot},
	},
	"production-stable": {
		{Name: "default-worker", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 1, MaxSize: 2, DiscountStrategy: api.DiscountNone},
	},
}

// liveItems are config items the live clusters get on top of their own.
//
// Every live cluster turns the spot check of node updates off: moto
// reports no instance as spot (no InstanceLifecycle), so the agent would
// take every node of a spot pool (test-dev's spot-worker) for outdated and
// roll it forever.
//
// test-dev, a test cluster, also gets a short drain SLA and poll interval,
// so that a pool change (caravan nodepools patch ... instance_types) rolls
// its nodes in a few minutes while you watch; production-stable keeps the
// production SLA. Its nodes are drained only inside a node update window,
// open but for the last half hour of each UTC day, so that its status and
// `caravan clusters list -o wide` show a window.
var liveItems = map[string]map[string]string{
	"test-dev": {
		nodes.ConfigCheckSpot:                      "false",
		nodes.ConfigPollInterval:                   "5s",
		api.ConfigDrainMinPodLifetime:              "1m",
		api.ConfigDrainGracePeriod:                 "2m",
		api.ConfigDrainForceEvictInterval:          "30s",
		api.ConfigDrainMinHealthySiblingLifetime:   "1m",
		api.ConfigDrainMinUnhealthySiblingLifetime: "1m",
		api.ConfigNodeUpdateWindows:                "daily 00:00-23:30 UTC",
	},
	"production-stable": {
		nodes.ConfigCheckSpot: "false",
	},
}

// fleet is the demo fleet of central/demo with the live clusters moved
// into moto's account (keeping their region, and the config items their
// account gave them) and given the small pools and the items above.
//
// The clusters without an agent are registered but not in service
// (lifecycle_status requested, as a cluster is before its agent first
// runs): they never report, and the promotion gate would otherwise name
// each one as a silent cluster, missing evidence, and never be met.
func fleet() ([]api.InfrastructureAccount, []api.Cluster) {
	accounts := append(slices.Clone(demo.Accounts), localAccount)
	clusters := demo.Clusters()
	for i, c := range clusters {
		pools, live := livePools[c.Alias]
		if !live {
			clusters[i].LifecycleStatus = api.LifecycleRequested
			continue
		}
		_, region, local, _ := api.ParseClusterID(c.ID)
		for _, a := range demo.Accounts {
			if a.ID == c.InfrastructureAccount {
				c.ConfigItems = api.MergeConfigItems(a.ConfigItems, c.ConfigItems)
			}
		}
		c.ConfigItems = api.MergeConfigItems(c.ConfigItems, liveItems[c.Alias])
		c.ID = localAccount.ID + ":" + region + ":" + local
		c.InfrastructureAccount = localAccount.ID
		c.NodePools = slices.Clone(pools)
		clusters[i] = c
	}
	return accounts, clusters
}

func liveCluster(alias string) api.Cluster {
	_, clusters := fleet()
	for _, c := range clusters {
		if c.Alias == alias {
			return c
		}
	}
	panic("no demo cluster " + alias)
}

func clusterID(alias string) string { return liveCluster(alias).ID }

// seed stores the demo fleet, points every channel at the demo's git
// server, gives dev the promotion soak devSoak, and creates an admin token
// and an agent token for each live cluster.
func seed(ctx context.Context, database, repoURL string, devSoak time.Duration) (string, map[string]string, error) {
	const actor = "demo"
	st, err := store.Open(ctx, database)
	if err != nil {
		return "", nil, err
	}
	defer st.Close()
	chans := central.DefaultChannels(repoURL)
	chans[0].PromotionSoak = channels.FormatDuration(devSoak)
	if err := st.SeedChannels(ctx, chans, actor); err != nil {
		return "", nil, err
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	accounts, clusters := fleet()
	for _, a := range accounts {
		a.CreatedAt, a.UpdatedAt = now, now
		a.Normalize()
		if _, err := store.Create(ctx, st, store.Accounts, store.Ref{Key: a.ID}, a, actor); err != nil {
			return "", nil, fmt.Errorf("seeding account %s: %w", a.ID, err)
		}
	}
	for _, c := range clusters {
		c.CreatedAt, c.UpdatedAt = now, now
		c.Normalize()
		for i := range c.NodePools {
			c.NodePools[i].CreatedAt, c.NodePools[i].UpdatedAt = now, now
		}
		if err := c.Validate(); err != nil {
			return "", nil, fmt.Errorf("demo cluster %s: %w", c.ID, err)
		}
		if _, err := store.CreateCluster(ctx, st, c, actor); err != nil {
			return "", nil, fmt.Errorf("seeding cluster %s: %w", c.ID, err)
		}
	}
	admin, err := st.CreateToken(ctx, "demo-admin", api.RoleAdmin, "", actor)
	if err != nil {
		return "", nil, err
	}
	tokens := map[string]string{}
	for _, alias := range liveClusters {
		t, err := st.CreateToken(ctx, alias+"-agent", api.RoleAgent, clusterID(alias), actor)
		if err != nil {
			return "", nil, err
		}
		tokens[clusterID(alias)] = t.Secret
	}
	return admin.Secret, tokens, nil
}

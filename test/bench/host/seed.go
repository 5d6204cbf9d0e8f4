package host

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	seedActor = "bench-seed"
	// FleetAccount is the infrastructure account of every cluster SeedFleet makes.
	FleetAccount = "aws:123456789012"
	// seedWorkers write clusters at once: PostgreSQL takes them in
	// parallel, SQLite's single writer one after the other.
	seedWorkers = 8
)

// SeededCluster is a cluster SeedFleet made, with its agent's token.
type SeededCluster struct {
	ID, Channel, Token string
}

// SeedFleet fills the database with one account and n clusters, each with
// two node pools and its own agent token, the i-th on channels[i %
// len(channels)]. It seeds the default channels, with repositoryURL, as
// caravan-central does on start (which then finds them there). It uses
// the store API, as the server would, so the rows are exactly what the
// server writes.
func SeedFleet(ctx context.Context, databaseURL, repositoryURL string, n int, channels []string) ([]SeededCluster, error) {
	if len(channels) == 0 {
		return nil, fmt.Errorf("seeding %d clusters on no channel", n)
	}
	st, err := store.Open(ctx, databaseURL)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", databaseURL, err)
	}
	defer st.Close()
	if err := st.SeedChannels(ctx, central.DefaultChannels(repositoryURL), seedActor); err != nil {
		return nil, fmt.Errorf("seeding channels: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	account := api.InfrastructureAccount{
		ID: FleetAccount, Name: "platform-production", Owner: "team-platform", Environment: "production",
		ConfigItems: map[string]string{"vpc_cidr": "10.20.0.0/16", "log_retention_days": "30"},
		CreatedAt:   now, UpdatedAt: now,
	}
	if err := CreateAccount(ctx, st, account); err != nil {
		return nil, err
	}
	seeded := make([]SeededCluster, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(seedWorkers)
	for i := range n {
		g.Go(func() error {
			c := benchCluster(i, channels, now)
			if err := CreateCluster(gctx, st, c); err != nil {
				return err
			}
			t, err := st.CreateToken(gctx, "agent-"+c.Alias, api.RoleAgent, c.ID, seedActor)
			if err != nil {
				return fmt.Errorf("creating the agent token of %s: %w", c.ID, err)
			}
			seeded[i] = SeededCluster{ID: c.ID, Channel: c.Channel, Token: t.Secret}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return seeded, nil
}

// CreateAccount stores a bench account, normalized and validated as the
// API would.
func CreateAccount(ctx context.Context, st *store.Store, a api.InfrastructureAccount) error {
	a.Normalize()
	if err := a.Validate(); err != nil {
		return fmt.Errorf("bench account: %w", err)
	}
	if _, err := store.Create(ctx, st, store.Accounts, store.Ref{Key: a.ID}, a, seedActor); err != nil {
		return fmt.Errorf("creating account %s: %w", a.ID, err)
	}
	return nil
}

// CreateCluster stores a bench cluster, validated as the API would, and
// its node pools.
func CreateCluster(ctx context.Context, st *store.Store, c api.Cluster) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("bench cluster %s: %w", c.ID, err)
	}
	if _, err := store.Create(ctx, st, store.Clusters, store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}, c, seedActor); err != nil {
		return fmt.Errorf("creating cluster %s: %w", c.ID, err)
	}
	for _, p := range c.NodePools {
		ref := store.Ref{Key: store.NodePoolKey(c.ID, p.Name), Parent: c.ID}
		if _, err := store.Create(ctx, st, store.NodePools, ref, p, seedActor); err != nil {
			return fmt.Errorf("creating node pool %s of %s: %w", p.Name, c.ID, err)
		}
	}
	return nil
}

var regions = []string{"eu-central-1", "eu-west-1", "us-east-1", "ap-southeast-2"}

// benchCluster is the i-th cluster of the fleet, shaped like the demo's:
// a few config items and a system and a worker pool.
func benchCluster(i int, channels []string, now time.Time) api.Cluster {
	channel, region := channels[i%len(channels)], regions[(i/len(channels))%len(regions)]
	env := "test"
	if channel == "beta" || channel == "stable" {
		env = api.EnvironmentProduction
	}
	local := fmt.Sprintf("kube-%05d", i)
	c := api.Cluster{
		ID: FleetAccount + ":" + region + ":" + local, Alias: local, InfrastructureAccount: FleetAccount, Region: region,
		APIServerURL: "https://" + local + "." + region + ".k8s.example.com", Environment: env, Channel: channel,
		LifecycleStatus: api.LifecycleReady, CriticalityLevel: 1 + i%3,
		ConfigItems: map[string]string{
			"cluster_dns_zone": local + ".k8s.example.com", "autoscaling_buffer_cpu": "500m", "etcd_instance_type": "m6i.large",
		},
		NodePools: []api.NodePool{
			{Name: "system", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4,
				Labels: map[string]string{"caravan.io/role": "system"}, Taints: []api.Taint{{Key: "dedicated", Value: "system", Effect: "NoSchedule"}}},
			{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m6i.xlarge", "m5.xlarge"}, MinSize: 1, MaxSize: 20,
				DiscountStrategy: api.DiscountSpot, ConfigItems: map[string]string{"node_volume_size": "100"}},
		},
		CreatedAt: now, UpdatedAt: now,
	}
	c.Normalize()
	for j := range c.NodePools {
		c.NodePools[j].CreatedAt, c.NodePools[j].UpdatedAt = now, now
	}
	return c
}

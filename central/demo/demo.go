// Package demo seeds a registry with a small fleet for `make run`: clusters
// in every channel and in both environments, with node pools and config items.
package demo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const actor = "demo-seed"

// Accounts are the demo's infrastructure accounts, one per environment.
var Accounts = []api.InfrastructureAccount{
	{ID: "aws:111111111111", Name: "platform-test", Owner: "team-platform", Environment: "test", ConfigItems: map[string]string{"vpc_cidr": "10.10.0.0/16"}},
	{ID: "aws:222222222222", Name: "platform-production", Owner: "team-platform", Environment: "production", ConfigItems: map[string]string{"vpc_cidr": "10.20.0.0/16"}},
}

// Clusters returns the demo fleet: one test and one production cluster per channel.
func Clusters() []api.Cluster {
	var out []api.Cluster
	for _, ch := range []string{"dev", "alpha", "beta", "stable"} {
		for _, acc := range Accounts {
			local := acc.Environment + "-" + ch
			region := "eu-central-1"
			id := acc.ID + ":" + region + ":" + local
			out = append(out, api.Cluster{
				ID: id, Alias: local, InfrastructureAccount: acc.ID, Region: region,
				APIServerURL: "https://" + local + ".demo.caravan.local", Environment: acc.Environment, Channel: ch,
				LifecycleStatus: api.LifecycleReady, CriticalityLevel: criticality(acc.Environment),
				ConfigItems: map[string]string{"cluster_dns_zone": local + ".demo.caravan.local", "autoscaling_buffer_cpu": "500m"},
				NodePools: []api.NodePool{
					{Name: "system", Profile: "worker-default", InstanceTypes: []string{"m6i.large"}, MinSize: 2, MaxSize: 4, DiscountStrategy: api.DiscountNone,
						Labels: map[string]string{"caravan.io/role": "system"}, Taints: []api.Taint{{Key: "dedicated", Value: "system", Effect: "NoSchedule"}}},
					{Name: "workers", Profile: "worker-default", InstanceTypes: []string{"m6i.xlarge", "m5.xlarge"}, MinSize: 1, MaxSize: 20, DiscountStrategy: workerDiscount(acc.Environment),
						ConfigItems: map[string]string{"node_volume_size": "100"}},
				},
			})
		}
	}
	return out
}

func criticality(env string) int {
	if env == api.EnvironmentProduction {
		return 3
	}
	return 1
}

func workerDiscount(env string) string {
	if env == api.EnvironmentProduction {
		return api.DiscountNone
	}
	return api.DiscountSpot
}

// Seed stores the demo fleet unless it is there already, and returns a new
// admin token for the demo's user.
func Seed(ctx context.Context, st *store.Store) (string, error) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, a := range Accounts {
		a.CreatedAt, a.UpdatedAt = now, now
		a.Normalize()
		if _, err := store.Create(ctx, st, store.Accounts, store.Ref{Key: a.ID}, a, actor); err != nil && !errors.Is(err, store.ErrExists) {
			return "", fmt.Errorf("seeding account %s: %w", a.ID, err)
		}
	}
	for _, c := range Clusters() {
		c.CreatedAt, c.UpdatedAt = now, now
		c.Normalize()
		if err := c.Validate(); err != nil {
			return "", fmt.Errorf("demo cluster %s: %w", c.ID, err)
		}
		if _, err := store.Create(ctx, st, store.Clusters, store.Ref{Key: c.ID, Parent: c.InfrastructureAccount}, c, actor); err != nil {
			if errors.Is(err, store.ErrExists) {
				continue
			}
			return "", fmt.Errorf("seeding cluster %s: %w", c.ID, err)
		}
		for _, p := range c.NodePools {
			p.CreatedAt, p.UpdatedAt = now, now
			ref := store.Ref{Key: store.NodePoolKey(c.ID, p.Name), Parent: c.ID}
			if _, err := store.Create(ctx, st, store.NodePools, ref, p, actor); err != nil {
				return "", fmt.Errorf("seeding node pool %s of %s: %w", p.Name, c.ID, err)
			}
		}
	}
	t, err := st.CreateToken(ctx, "demo-admin-"+now.Format("20060102-150405.000"), api.RoleAdmin, "", actor)
	if err != nil {
		return "", err
	}
	return t.Secret, nil
}

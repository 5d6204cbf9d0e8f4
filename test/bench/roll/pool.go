//go:build linux

package main

import (
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The cluster, its pool and the pool's two revisions.
const (
	region       = "eu-central-1"
	clusterID    = "aws:" + moto.AccountID + ":" + region + ":bench-roll"
	pool         = "workers"
	instanceType = "m6i.large"
	// newInstanceType is the pool's instance type after the change that
	// makes every node outdated.
	newInstanceType = "m6i.xlarge"
	// replicas of each Deployment; the pool has as many Deployments as
	// nodes, so 10 pods a node.
	replicas = 10
	// surgeRoom is how far above its size the group may grow.
	surgeRoom = 10
)

// The drain SLA of the roll, scaled from the non-production defaults of
// config-defaults.yaml (1 h to 1 s); the force interval, 5 min there, is
// 1 s, the finest step the roller's annotations keep.
var (
	scaledSLA = map[string]string{
		"drain_min_pod_lifetime":               "8s",
		"drain_grace_period":                   "2s",
		"drain_force_evict_interval":           "1s",
		"drain_min_healthy_sibling_lifetime":   "1s",
		"drain_min_unhealthy_sibling_lifetime": "1s",
	}
	unscaledSLA = map[string]string{
		"drain_min_pod_lifetime":               "8h",
		"drain_grace_period":                   "2h",
		"drain_force_evict_interval":           "5m",
		"drain_min_healthy_sibling_lifetime":   "1h",
		"drain_min_unhealthy_sibling_lifetime": "1h",
	}
	slaOrder = []string{"drain_min_pod_lifetime", "drain_grace_period", "drain_force_evict_interval",
		"drain_min_healthy_sibling_lifetime", "drain_min_unhealthy_sibling_lifetime"}
)

// rollItems are the cluster's config items: the scaled SLA, surge 1, and
// drain_poll_interval; moto shows no instance as spot.
func rollItems(poll time.Duration) map[string]string {
	items := map[string]string{nodes.ConfigSurge: "1", nodes.ConfigCheckSpot: "false", nodes.ConfigPollInterval: poll.String()}
	for k, v := range scaledSLA {
		items[k] = v
	}
	return items
}

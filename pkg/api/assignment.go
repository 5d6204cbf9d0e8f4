package api

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Config item keys of the drain SLA; each overrides its environment default.
const (
	ConfigDrainMinPodLifetime              = "drain_min_pod_lifetime"
	ConfigDrainGracePeriod                 = "drain_grace_period"
	ConfigDrainForceEvictInterval          = "drain_force_evict_interval"
	ConfigDrainMinHealthySiblingLifetime   = "drain_min_healthy_sibling_lifetime"
	ConfigDrainMinUnhealthySiblingLifetime = "drain_min_unhealthy_sibling_lifetime"
)

// DefaultDrainSLA is the drain SLA of an environment before config items
// override it: production is strict, every other environment uses the test values.
func DefaultDrainSLA(environment string) DrainSLA {
	if environment == EnvironmentProduction {
		return DrainSLA{
			MinPodLifetime:              "72h0m0s",
			GracePeriod:                 "6h0m0s",
			ForceEvictInterval:          "5m0s",
			MinHealthySiblingLifetime:   "1h0m0s",
			MinUnhealthySiblingLifetime: "6h0m0s",
		}
	}
	return DrainSLA{
		MinPodLifetime:              "8h0m0s",
		GracePeriod:                 "2h0m0s",
		ForceEvictInterval:          "5m0s",
		MinHealthySiblingLifetime:   "1h0m0s",
		MinUnhealthySiblingLifetime: "1h0m0s",
	}
}

// EffectiveDrainSLA applies the drain config items over the environment
// defaults.
func EffectiveDrainSLA(environment string, items map[string]string) DrainSLA {
	return DefaultDrainSLA(environment).With(items)
}

// With applies the drain config items over sla. A value that is not a
// non-negative duration keeps sla's, so a typo in one item never disables
// the SLA.
func (sla DrainSLA) With(items map[string]string) DrainSLA {
	for key, field := range map[string]*string{
		ConfigDrainMinPodLifetime:              &sla.MinPodLifetime,
		ConfigDrainGracePeriod:                 &sla.GracePeriod,
		ConfigDrainForceEvictInterval:          &sla.ForceEvictInterval,
		ConfigDrainMinHealthySiblingLifetime:   &sla.MinHealthySiblingLifetime,
		ConfigDrainMinUnhealthySiblingLifetime: &sla.MinUnhealthySiblingLifetime,
	} {
		if d, err := time.ParseDuration(items[key]); err == nil && d >= 0 {
			*field = d.String()
		}
	}
	return sla
}

// MergeConfigItems layers config items: each later level overrides the earlier ones.
func MergeConfigItems(levels ...map[string]string) map[string]string {
	merged := map[string]string{}
	for _, level := range levels {
		maps.Copy(merged, level)
	}
	return merged
}

// AssignmentInput is what the registry holds about one cluster.
type AssignmentInput struct {
	Account   InfrastructureAccount
	Cluster   Cluster
	NodePools []NodePool
	Channel   Channel
	Blocks    []Block
	// Freezes may be the fleet's: the assignment takes those that cover
	// the cluster.
	Freezes []Freeze
}

// BuildAssignment computes a cluster's assignment. It is deterministic for
// its input and now, so its JSON encoding can be hashed into a strong ETag.
// It also returns when the assignment next changes by itself (the earliest
// end of an active block or freeze, or start of a freeze), or the zero time.
func BuildAssignment(in AssignmentInput, now time.Time) (Assignment, time.Time) {
	c := in.Cluster
	_, _, local, _ := ParseClusterID(c.ID)
	items := MergeConfigItems(in.Account.ConfigItems, c.ConfigItems)
	a := Assignment{
		Cluster: AssignedCluster{
			ID: c.ID, LocalID: local, Alias: c.Alias, InfrastructureAccount: c.InfrastructureAccount,
			Region: c.Region, APIServerURL: c.APIServerURL, Environment: c.Environment, Provider: c.Provider,
			CriticalityLevel: c.CriticalityLevel, LifecycleStatus: c.LifecycleStatus,
			DecommissionConfirmed: c.DecommissionConfirmedAt != nil,
		},
		Channel:     AssignedChannel{Name: in.Channel.Name, Branch: in.Channel.Branch, RepositoryURL: in.Channel.RepositoryURL},
		ConfigItems: items,
		NodePools:   make([]AssignedNodePool, 0, len(in.NodePools)),
		Blocks:      []Block{},
		Freezes:     []Freeze{},
	}
	pools := slices.Clone(in.NodePools)
	slices.SortFunc(pools, func(x, y NodePool) int { return strings.Compare(x.Name, y.Name) })
	for _, p := range pools {
		a.NodePools = append(a.NodePools, AssignedNodePool{
			Name: p.Name, Profile: p.Profile, InstanceTypes: p.InstanceTypes, MinSize: p.MinSize, MaxSize: p.MaxSize,
			DiscountStrategy: p.DiscountStrategy, ConfigItems: MergeConfigItems(items, p.ConfigItems),
			Labels: p.Labels, Taints: p.Taints,
		})
	}
	var changesAt time.Time
	for _, b := range in.Blocks {
		if !b.ActiveAt(now) {
			continue
		}
		a.Blocks = append(a.Blocks, b)
		if b.Until != nil {
			changesAt = Earliest(changesAt, *b.Until)
		}
	}
	slices.SortFunc(a.Blocks, func(x, y Block) int { return strings.Compare(x.ID, y.ID) })
	for _, f := range in.Freezes {
		if !f.Covers(in.Channel.Name, c.Environment) || !now.Before(f.Until) {
			continue
		}
		next := f.Until
		if !f.ActiveAt(now) {
			next = f.Since
		} else {
			a.Freezes = append(a.Freezes, f)
		}
		changesAt = Earliest(changesAt, next)
	}
	slices.SortFunc(a.Freezes, func(x, y Freeze) int { return strings.Compare(x.ID, y.ID) })
	return a, changesAt
}

// Earliest is the earlier of two times, the zero time meaning never.
func Earliest(a, b time.Time) time.Time {
	if a.IsZero() || !b.IsZero() && b.Before(a) {
		return b
	}
	return a
}

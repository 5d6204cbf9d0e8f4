package nodes

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/window"
)

// Config items of node updates; config-defaults.yaml documents them.
const (
	ConfigSurge        = "node_update_surge"
	ConfigTaintEffect  = "node_update_taint_effect"
	ConfigBlockMode    = "node_update_block_mode"
	ConfigCheckSpot    = "node_update_check_spot"
	ConfigPollInterval = "drain_poll_interval"
)

// Settings are a version's node update settings, from its effective config
// items, and each pool's revision. The agent keeps them with its status,
// so that a roll goes on between versions exactly as its version said.
type Settings struct {
	Revisions    map[string]string  `json:"revisions"`
	SLA          api.DrainSLA       `json:"sla"`
	Surge        int                `json:"surge"`
	TaintEffect  corev1.TaintEffect `json:"taintEffect"`
	HardBlock    bool               `json:"hardBlock,omitempty"`
	CheckSpot    bool               `json:"checkSpot"`
	PollInterval string             `json:"pollInterval"`
}

// SettingsOf reads the settings from effective config items; a value that
// does not parse keeps its default, as the drain SLA's items do.
func SettingsOf(environment string, items, revisions map[string]string) Settings {
	s := Settings{Revisions: revisions, SLA: api.EffectiveDrainSLA(environment, items), Surge: 1,
		TaintEffect: corev1.TaintEffectPreferNoSchedule, CheckSpot: true, PollInterval: "30s"}
	if n, err := strconv.Atoi(items[ConfigSurge]); err == nil && n >= 0 {
		s.Surge = n
	}
	switch effect := corev1.TaintEffect(items[ConfigTaintEffect]); effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
		s.TaintEffect = effect
	}
	s.HardBlock = items[ConfigBlockMode] == "hard"
	if b, err := strconv.ParseBool(items[ConfigCheckSpot]); err == nil {
		s.CheckSpot = b
	}
	if d, err := time.ParseDuration(items[ConfigPollInterval]); err == nil && d > 0 {
		s.PollInterval = d.String()
	}
	return s
}

// Poll is how often a roll or a drain makes its next pass.
func (s Settings) Poll() time.Duration {
	d, err := time.ParseDuration(s.PollInterval)
	if err != nil || d <= 0 {
		return 30 * time.Second
	}
	return d
}

// Config is one pass's configuration for the assignment's pools; with
// blockAll (a block of the whole cluster) every pool stops. A pool's own
// drain config items override the cluster's SLA for its nodes.
func (s Settings) Config(a api.Assignment, blockAll bool) (RollConfig, error) {
	cfg := RollConfig{Surge: s.Surge, TaintEffect: s.TaintEffect, HardBlock: s.HardBlock, Blocked: map[string]bool{}, Poll: s.Poll()}
	for _, p := range a.NodePools {
		sla, err := ParseSLA(s.SLA.With(api.PoolOwnItems(a.ConfigItems, p.ConfigItems)))
		if err != nil {
			return RollConfig{}, fmt.Errorf("the drain SLA of node pool %s: %w", p.Name, err)
		}
		cfg.Pools = append(cfg.Pools, PoolSpec{Name: p.Name, Revision: s.Revisions[p.Name], InstanceTypes: p.InstanceTypes,
			Spot: p.DiscountStrategy == api.DiscountSpot, CheckSpot: s.CheckSpot, SLA: sla})
		cfg.Blocked[p.Name] = blockAll
	}
	for _, b := range a.Blocks {
		if b.NodePool != "" {
			cfg.Blocked[b.NodePool] = true
		}
	}
	return cfg, nil
}

// ClosedPools are the pools outside their node update window at now (the
// node_update_windows config item of the registry), each with when its
// window opens. A window that does not parse closes its pool with no
// opening: the registry refuses such values, so it came from an older
// registry, and when it is unclear whether nodes may be replaced, none are.
func ClosedPools(a api.Assignment, now time.Time) (map[string]time.Time, error) {
	closed := map[string]time.Time{}
	var errs []error
	for _, p := range a.NodePools {
		windows := p.ConfigItems[api.ConfigNodeUpdateWindows]
		s, err := window.Parse(windows)
		switch {
		case err != nil:
			closed[p.Name] = time.Time{}
			errs = append(errs, fmt.Errorf("node pool %s: config item %s %q: %w", p.Name, api.ConfigNodeUpdateWindows, windows, err))
		case !s.Contains(now):
			closed[p.Name] = s.NextOpening(now)
		}
	}
	return closed, errors.Join(errs...)
}

package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestSettingsFollowTheConfigItems(t *testing.T) {
	defaults := SettingsOf("production", map[string]string{}, nil)
	assert.Equal(t, 1, defaults.Surge)
	assert.Equal(t, corev1.TaintEffectPreferNoSchedule, defaults.TaintEffect)
	assert.False(t, defaults.HardBlock)
	assert.True(t, defaults.CheckSpot)
	assert.Equal(t, 30*time.Second, defaults.Poll())
	assert.Equal(t, api.DefaultDrainSLA("production"), defaults.SLA)

	s := SettingsOf("test", map[string]string{ConfigSurge: "2", ConfigTaintEffect: "NoSchedule", ConfigBlockMode: "hard",
		ConfigCheckSpot: "false", ConfigPollInterval: "5s", "drain_grace_period": "10m"}, map[string]string{"workers": "r2"})
	assert.Equal(t, 2, s.Surge)
	assert.Equal(t, corev1.TaintEffectNoSchedule, s.TaintEffect)
	assert.True(t, s.HardBlock)
	assert.False(t, s.CheckSpot)
	assert.Equal(t, 5*time.Second, s.Poll())
	assert.Equal(t, "10m0s", s.SLA.GracePeriod)

	typos := SettingsOf("test", map[string]string{ConfigSurge: "many", ConfigTaintEffect: "Never", ConfigPollInterval: "soon"}, nil)
	assert.Equal(t, 1, typos.Surge, "a typo keeps the default")
	assert.Equal(t, corev1.TaintEffectPreferNoSchedule, typos.TaintEffect)
	assert.Equal(t, 30*time.Second, typos.Poll())
}

func TestConfigGivesEachPoolItsOwnSLAAndBlocks(t *testing.T) {
	s := SettingsOf("test", map[string]string{"drain_grace_period": "10m"}, map[string]string{"workers": "r2", "batch": "r3"})
	cluster := map[string]string{"drain_grace_period": "10m", "team": "a"}
	a := api.Assignment{
		ConfigItems: cluster,
		NodePools: []api.AssignedNodePool{
			{Name: "workers", InstanceTypes: []string{"m6i.large"}, ConfigItems: map[string]string{"drain_grace_period": "10m", "team": "a"}},
			{Name: "batch", DiscountStrategy: api.DiscountSpot, ConfigItems: map[string]string{"drain_grace_period": "1m", "team": "a"}},
		},
		Blocks: []api.Block{{NodePool: "batch", Reason: "capacity"}},
	}
	cfg, err := s.Config(a, false)
	require.NoError(t, err)
	require.Len(t, cfg.Pools, 2)
	assert.Equal(t, 10*time.Minute, cfg.Pools[0].SLA.GracePeriod)
	assert.Equal(t, time.Minute, cfg.Pools[1].SLA.GracePeriod, "the pool's own item wins")
	assert.Equal(t, "r3", cfg.Pools[1].Revision)
	assert.True(t, cfg.Pools[1].Spot)
	assert.Equal(t, map[string]bool{"workers": false, "batch": true}, cfg.Blocked)

	all, err := s.Config(a, true)
	require.NoError(t, err)
	assert.Equal(t, map[string]bool{"workers": true, "batch": true}, all.Blocked)
}

func TestClosedPoolsAreThoseOutsideTheirNodeUpdateWindow(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC) // a Monday
	a := api.Assignment{NodePools: []api.AssignedNodePool{
		{Name: "always", ConfigItems: map[string]string{}},
		{Name: "open", ConfigItems: map[string]string{api.ConfigNodeUpdateWindows: "Mon 11:00-13:00 UTC"}},
		{Name: "nightly", ConfigItems: map[string]string{api.ConfigNodeUpdateWindows: "daily 22:00-04:00 Europe/Berlin"}},
	}}
	closed, err := ClosedPools(a, now)
	require.NoError(t, err)
	assert.Equal(t, map[string]time.Time{"nightly": time.Date(2026, 12, 7, 21, 0, 0, 0, time.UTC)}, utc(closed))

	a.NodePools = append(a.NodePools, api.AssignedNodePool{Name: "broken", ConfigItems: map[string]string{api.ConfigNodeUpdateWindows: "nightly"}})
	closed, err = ClosedPools(a, now)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `node pool broken: config item node_update_windows "nightly"`)
	opens, isClosed := closed["broken"]
	assert.True(t, isClosed, "a window that does not parse closes its pool")
	assert.True(t, opens.IsZero(), "with no opening")
	assert.NotContains(t, closed, "open")
}

func utc(m map[string]time.Time) map[string]time.Time {
	out := map[string]time.Time{}
	for k, v := range m {
		out[k] = v.UTC()
	}
	return out
}

func TestNextWakeIsTheEarliestForceOrWindow(t *testing.T) {
	at := func(m int) *time.Time { t := time.Date(2026, 12, 7, 12, m, 0, 0, time.UTC); return &t }
	assert.True(t, NextWake(nil).IsZero())
	assert.Equal(t, *at(5), NextWake([]api.NodePoolProgress{{NextForcedEviction: at(9)}, {NextWindow: at(5)}, {}}))
	assert.Equal(t, *at(3), NextWake([]api.NodePoolProgress{{NextForcedEviction: at(3), NextWindow: at(4)}}))
}

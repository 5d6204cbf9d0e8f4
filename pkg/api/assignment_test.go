package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMergeConfigItemsLaterLevelsWin(t *testing.T) {
	got := MergeConfigItems(
		map[string]string{"a": "account", "b": "account", "c": "account"},
		map[string]string{"b": "cluster", "c": "cluster"},
		nil,
		map[string]string{"c": "pool"},
	)
	assert.Equal(t, map[string]string{"a": "account", "b": "cluster", "c": "pool"}, got)
	assert.Empty(t, MergeConfigItems())
}

func TestDrainSLADefaultsAndOverrides(t *testing.T) {
	prod := EffectiveDrainSLA("production", nil)
	assert.Equal(t, "72h0m0s", prod.MinPodLifetime)
	assert.Equal(t, "6h0m0s", prod.GracePeriod)
	assert.Equal(t, "6h0m0s", prod.MinUnhealthySiblingLifetime)
	test := EffectiveDrainSLA("test", nil)
	assert.Equal(t, "8h0m0s", test.MinPodLifetime)
	assert.Equal(t, "2h0m0s", test.GracePeriod)
	assert.Equal(t, "1h0m0s", test.MinUnhealthySiblingLifetime)
	assert.Equal(t, test, EffectiveDrainSLA("staging", nil), "every environment but production uses the test values")

	got := EffectiveDrainSLA("production", map[string]string{
		ConfigDrainGracePeriod:        "30m",
		ConfigDrainForceEvictInterval: "banana",
		ConfigDrainMinPodLifetime:     "-1h",
	})
	assert.Equal(t, "30m0s", got.GracePeriod)
	assert.Equal(t, "5m0s", got.ForceEvictInterval, "an unparsable value keeps the default")
	assert.Equal(t, "72h0m0s", got.MinPodLifetime, "a negative value keeps the default")
}

func TestBuildAssignment(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	soon, past := now.Add(time.Hour), now.Add(-time.Hour)
	later := now.Add(3 * time.Hour)
	in := AssignmentInput{
		Account: InfrastructureAccount{ConfigItems: map[string]string{"vpc": "10.0.0.0/16", "x": "account"}},
		Cluster: Cluster{ID: "aws:123456789012:eu-central-1:kube-1", Alias: "k1", Environment: "production",
			ConfigItems: map[string]string{"x": "cluster", ConfigDrainGracePeriod: "1h"}},
		NodePools: []NodePool{
			{Name: "workers", ConfigItems: map[string]string{"x": "pool"}},
			{Name: "system"},
		},
		Channel: Channel{Name: "beta", Branch: "beta", RepositoryURL: "https://git/x.git", Position: 2},
		Blocks: []Block{
			{ID: "b2", Reason: "until later", Until: &later},
			{ID: "b1", Reason: "expired", Until: &past},
			{ID: "b3", Reason: "until soon", Until: &soon},
			{ID: "b0", Reason: "forever"},
		},
	}
	a, changesAt := BuildAssignment(in, now)
	assert.Equal(t, "kube-1", a.Cluster.LocalID)
	assert.Equal(t, map[string]string{"vpc": "10.0.0.0/16", "x": "cluster", ConfigDrainGracePeriod: "1h"}, a.ConfigItems)
	require.Len(t, a.NodePools, 2)
	assert.Equal(t, "system", a.NodePools[0].Name, "pools are sorted by name")
	assert.Equal(t, "cluster", a.NodePools[0].ConfigItems["x"])
	assert.Equal(t, "pool", a.NodePools[1].ConfigItems["x"], "pool items override cluster items")
	var ids []string
	for _, b := range a.Blocks {
		ids = append(ids, b.ID)
	}
	assert.Equal(t, []string{"b0", "b2", "b3"}, ids, "expired blocks are left out, the rest sorted")
	assert.Equal(t, soon, changesAt, "the assignment changes by itself when the first block runs out")

	again, _ := BuildAssignment(in, now)
	b1, _ := json.Marshal(a)
	b2, _ := json.Marshal(again)
	assert.Equal(t, b1, b2, "the same input encodes the same, so the ETag is stable")

	_, none := BuildAssignment(AssignmentInput{Cluster: in.Cluster}, now)
	assert.True(t, none.IsZero())
	assert.False(t, a.Cluster.DecommissionConfirmed)
	assert.NotContains(t, string(b1), "decommission_confirmed", "left out until confirmed, so existing ETags stay")
}

func TestBuildAssignmentTellsTheAgentADecommissionIsConfirmed(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	confirmed := now.Add(-time.Minute)
	c := Cluster{ID: "aws:123456789012:eu-central-1:kube-1", LifecycleStatus: LifecycleDecommissionRequested, DecommissionConfirmedAt: &confirmed}
	a, _ := BuildAssignment(AssignmentInput{Cluster: c}, now)
	assert.True(t, a.Cluster.DecommissionConfirmed)
	assert.Equal(t, LifecycleDecommissionRequested, a.Cluster.LifecycleStatus)
	body, err := json.Marshal(a)
	require.NoError(t, err)
	assert.Contains(t, string(body), `"decommission_confirmed":true`)
}

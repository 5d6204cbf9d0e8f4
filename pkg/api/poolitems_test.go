package api

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPoolConfigItemsOverrideTheClustersEffectiveItems(t *testing.T) {
	cluster := map[string]string{"secret": "aws:kms:cipher", "size": "10", "zone": "a"}
	pool := MergeConfigItems(cluster, map[string]string{"size": "20", "own": "x", "empty": "", "zone": ""})
	assert.Equal(t, map[string]string{"size": "20", "own": "x", "empty": "", "zone": ""}, PoolOwnItems(cluster, pool),
		"an item the pool sets to \"\" is its own, whether the cluster has it or not")
	// Effective items as the agent holds them: the repo's defaults, and the
	// secret decrypted.
	effective := map[string]string{"secret": "plain", "size": "10", "zone": "a", "default_only": "d"}
	assert.Equal(t, map[string]string{"secret": "plain", "size": "20", "own": "x", "empty": "", "zone": "", "default_only": "d"},
		PoolConfigItems(cluster, effective, pool))
	assert.Equal(t, map[string]string{"secret": "plain", "size": "10", "zone": "a", "default_only": "d"}, effective, "the effective items are left alone")
}

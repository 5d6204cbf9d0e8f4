package agent_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// blockSLA is the scaled drain SLA with a grace period that outlasts the
// test, and the items given: the node being drained stays so while the
// test looks at it.
func blockSLA(items map[string]string) map[string]string {
	sla := maps.Clone(scaledSLA)
	sla["drain_grace_period"] = "10m"
	maps.Copy(sla, items)
	return sla
}

func hasTaint(n corev1.Node, key string) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

// rolling says whether the ClusterConfig keeps a roll of the pool.
func (f *fleet) rolling(pool string) bool {
	return slices.ContainsFunc(f.clusterConfig().Status.Rolls, func(s nodes.RollState) bool { return s.Pool == pool })
}

// A block of one node pool stops that pool's roll at once, its node only
// marked un-marked and no other selected, while another pool rolls to the
// end.
func TestAPoolBlockStopsOnlyThatPoolsRoll(t *testing.T) {
	f := startFleet(t)
	// batch's taint keeps every pod off it: its drain is only a terminate.
	_, _, err := f.reg.CreateNodePool(f.ctx, clusterID, &api.NodePool{Name: "batch", Profile: "worker-default", InstanceTypes: []string{"m6i.large"},
		MinSize: 1, MaxSize: 2, DiscountStrategy: "none", Taints: []api.Taint{{Key: "dedicated", Value: "batch", Effect: "NoSchedule"}}})
	require.NoError(t, err)
	_, old := rollingPool(t, f, blockSLA(nil), f.inProcess)
	draining, ok := drainingNode(f)
	require.True(t, ok)
	var marked string
	for name, n := range f.poolNodes("workers") {
		if _, isOld := old[name]; isOld && n.Labels[nodes.LifecycleLabel] == nodes.DecommissionValue {
			marked = name
		}
	}
	require.NotEmpty(t, marked, "the other old node of workers is marked")
	oldBatch := f.poolNodes("batch")
	require.Len(t, oldBatch, 1)

	_, _, err = f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "workers incident", NodePool: "workers"})
	require.NoError(t, err)
	f.eventually("the block un-marks the workers node not yet draining", func() bool {
		n, ok := f.poolNodes("workers")[marked]
		return ok && n.Labels[nodes.LifecycleLabel] == "" && !hasTaint(n, nodes.DecommissionTaint)
	})

	_, _, err = f.reg.PatchNodePool(f.ctx, clusterID, "batch", map[string]any{"instance_types": []string{"m6i.xlarge"}}, "")
	require.NoError(t, err)
	f.eventually("batch rolls to the end while workers is blocked", func() bool {
		current := f.poolNodes("batch")
		for name := range oldBatch {
			if _, still := current[name]; still {
				return false
			}
		}
		return len(current) == 1 && !f.rolling("batch")
	})
	for _, n := range f.poolNodes("batch") {
		assert.Equal(t, "m6i.xlarge", n.Labels["node.kubernetes.io/instance-type"])
	}

	workers := f.poolNodes("workers")
	require.Contains(t, workers, marked)
	assert.Empty(t, workers[marked].Labels[nodes.LifecycleLabel], "no node of the blocked pool is selected")
	assert.Empty(t, workers[marked].Annotations[nodes.DrainStartAnnotation])
	assert.False(t, workers[marked].Spec.Unschedulable)
	assert.False(t, f.hasNodeEventAfter(marked, nodes.ReasonDrainStarted, time.Time{}), "no drain of %s began", marked)
	require.Contains(t, workers, draining.Name, "the node being drained waits out its grace period")
	assert.Equal(t, nodes.DrainingValue, workers[draining.Name].Labels[nodes.LifecycleLabel], "a soft block lets the node being drained finish")
	assert.Equal(t, draining.Annotations[nodes.DrainStartAnnotation], workers[draining.Name].Annotations[nodes.DrainStartAnnotation])
	assert.True(t, f.rolling("workers"), "the blocked pool's roll is stopped, not ended")
}

// With node_update_block_mode=hard a block leaves the node being drained
// at once: uncordoned, un-marked, its drain start forgotten, so that a
// roll after the block selects and times its drain afresh.
func TestAHardBlockLeavesTheNodeBeingDrained(t *testing.T) {
	f := startFleet(t)
	_, old := rollingPool(t, f, blockSLA(map[string]string{nodes.ConfigBlockMode: "hard"}), f.inProcess)
	draining, ok := drainingNode(f)
	require.True(t, ok)
	require.NotEmpty(t, draining.Annotations[nodes.DrainStartAnnotation])
	require.True(t, draining.Spec.Unschedulable, "the node being drained is cordoned")

	_, _, err := f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "incident"})
	require.NoError(t, err)
	f.eventually("the hard block leaves the node being drained and un-marks the other", func() bool {
		current := f.poolNodes("workers")
		for name := range old {
			n, ok := current[name]
			if !ok || n.Labels[nodes.LifecycleLabel] != "" || hasTaint(n, nodes.DecommissionTaint) {
				return false
			}
		}
		return f.status().Phase == api.PhaseBlocked
	})
	left := f.poolNodes("workers")[draining.Name]
	assert.False(t, left.Spec.Unschedulable, "the node being drained is uncordoned")
	assert.NotContains(t, left.Annotations, nodes.DrainStartAnnotation, "and its drain start removed")
}

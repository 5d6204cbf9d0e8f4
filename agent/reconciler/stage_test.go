package reconciler

import (
	"testing"

	kstatus "github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// readStatus is what kstatus, and so Flux, Argo CD and kubectl wait, read
// from the ClusterConfig.
func readStatus(t *testing.T, cc *clusterconfig.ClusterConfig) *kstatus.Result {
	t.Helper()
	cc.APIVersion, cc.Kind = clusterconfig.GroupVersion.String(), "ClusterConfig"
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(cc)
	require.NoError(t, err)
	res, err := kstatus.Compute(&unstructured.Unstructured{Object: obj})
	require.NoError(t, err)
	return res
}

// Every stage of a version under way reads as InProgress, with the stage's
// reason on Reconciling and Ready Unknown, whatever the last pass left;
// the pass that applies the version reads as Current.
func TestStagesReadAsInProgressUntilTheVersionIsApplied(t *testing.T) {
	version := "abc#123"
	for _, c := range []struct {
		stage   stage
		phase   string
		reason  Reason
		message string
	}{
		{stageRendering, api.PhaseRendering, ReasonProgressing, "rendering version abc#123"},
		{stageInfrastructure, api.PhaseUpdatingInfrastructure, ReasonUpdatingInfrastructure, "updating the CloudFormation stacks to version abc#123"},
		{stageApplying, api.PhaseApplying, ReasonProgressing, "applying version abc#123"},
		{stageHealth, api.PhaseApplying, ReasonWaitingForHealth, "waiting for the applied objects to become healthy at version abc#123"},
	} {
		cc := &clusterconfig.ClusterConfig{}
		conditions.MarkStalled(cc, string(ReasonBroken), "the last version did not render")
		conditions.MarkFalse(cc, ReadyCondition, string(ReasonBroken), "the last version did not render")
		c.stage.mark(cc, version)

		assert.Equal(t, c.phase, c.stage.phase, c.message)
		assert.Equal(t, kstatus.InProgressStatus, readStatus(t, cc).Status, c.message)
		reconciling := conditions.Get(cc, ReconcilingCondition)
		require.NotNil(t, reconciling, c.message)
		assert.Equal(t, string(c.reason), reconciling.Reason)
		assert.Equal(t, c.message, reconciling.Message)
		ready := conditions.Get(cc, ReadyCondition)
		require.NotNil(t, ready, c.message)
		assert.Equal(t, metav1.ConditionUnknown, ready.Status, c.message)
		assert.Equal(t, string(c.reason), ready.Reason, c.message)
		assert.False(t, conditions.IsStalled(cc), "a version under way is no longer stalled")

		(&Reconciler{}).setConditions(cc, &outcome{appliedNow: true, status: clusterconfig.Status{CurrentVersion: version}})
		assert.Equal(t, kstatus.CurrentStatus, readStatus(t, cc).Status, "once the version is applied")
	}
}

// A stage marked again as it is changes nothing, so begin writes nothing.
func TestAStageMarkedAgainChangesNothing(t *testing.T) {
	cc := &clusterconfig.ClusterConfig{}
	stageHealth.mark(cc, "abc#123")
	before := cc.DeepCopyObject().(*clusterconfig.ClusterConfig)
	stageHealth.mark(cc, "abc#123")
	assert.True(t, sameJSON(before.Status, cc.Status))
	stageApplying.mark(cc, "abc#123")
	assert.False(t, sameJSON(before.Status, cc.Status))
}

// A block names the version it holds back, and only a new one.
func TestABlockNamesTheVersionItHolds(t *testing.T) {
	st := clusterconfig.Status{CurrentVersion: "abc#123"}
	assert.Empty(t, heldVersion(Decision{Action: Blocked, Version: "abc#123"}, st))
	assert.Equal(t, "def#456", heldVersion(Decision{Action: Blocked, Version: "def#456"}, st))
}

package reconciler

import (
	"testing"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// The conditions follow kstatus: Reconciling while nodes roll, Stalled on
// a problem that retrying cannot fix, Ready otherwise; suspension and
// blocks are reasons of their own, whatever their message says.
func TestConditionsSayWhatTheClusterIsDoing(t *testing.T) {
	version := "abc#123"
	problem := &api.StatusProblem{Title: "render", Detail: "bad"}
	for name, c := range map[string]struct {
		o           outcome
		ready       metav1.ConditionStatus
		reason      Reason
		reconciling bool
		stalled     bool
	}{
		"suspended":                   {outcome{blockReason: "a reason of any wording", suspended: true}, metav1.ConditionUnknown, ReasonSuspended, false, false},
		"blocked, worded as suspends": {outcome{blockReason: "suspended by the on-call"}, metav1.ConditionFalse, ReasonBlocked, false, false},
		"rolling nodes":               {outcome{phase: api.PhaseRollingNodes, status: clusterconfig.Status{CurrentVersion: version}}, metav1.ConditionUnknown, ReasonRollingNodes, true, false},
		"a broken commit":             {outcome{problem: problem, stalled: true}, metav1.ConditionFalse, ReasonBroken, false, true},
		"a failure retried":           {outcome{problem: problem}, metav1.ConditionFalse, ReasonFailed, true, false},
		"applied":                     {outcome{appliedNow: true, status: clusterconfig.Status{CurrentVersion: version}}, metav1.ConditionTrue, ReasonApplied, false, false},
		"up to date":                  {outcome{status: clusterconfig.Status{CurrentVersion: version}}, metav1.ConditionTrue, ReasonUpToDate, false, false},
	} {
		cc := &clusterconfig.ClusterConfig{}
		conditions.MarkReconciling(cc, "Stale", "from before")
		(&Reconciler{}).setConditions(cc, &c.o)
		ready := conditions.Get(cc, ReadyCondition)
		if assert.NotNil(t, ready, name) {
			assert.Equal(t, c.ready, ready.Status, name)
			assert.Equal(t, string(c.reason), ready.Reason, name)
		}
		assert.Equal(t, c.reconciling, conditions.IsReconciling(cc), name)
		assert.Equal(t, c.stalled, conditions.IsStalled(cc), name)
	}
}

package reconciler

import (
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
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

// A condition's transition time is when its status last changed: a new
// reason or message leaves it, a new status moves it.
func TestAConditionKeepsItsTransitionTimeWhileItsStatusHolds(t *testing.T) {
	hourAgo := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	cc := &clusterconfig.ClusterConfig{}
	cc.Status.Conditions = []metav1.Condition{
		{Type: ReconcilingCondition, Status: metav1.ConditionTrue, Reason: string(ReasonProgressing), Message: "applying", LastTransitionTime: hourAgo},
		{Type: ReadyCondition, Status: metav1.ConditionUnknown, Reason: string(ReasonProgressing), Message: "applying", LastTransitionTime: hourAgo},
	}
	held := func(reason Reason) {
		t.Helper()
		for _, typ := range []string{ReconcilingCondition, ReadyCondition} {
			if c := conditions.Get(cc, typ); assert.NotNil(t, c, typ) {
				assert.Equal(t, string(reason), c.Reason, typ)
				assert.Equal(t, hourAgo, c.LastTransitionTime, "%s changed its reason, not its status", typ)
			}
		}
	}
	stageHealth.mark(cc, "abc#1")
	held(ReasonWaitingForHealth)
	r := &Reconciler{}
	r.setConditions(cc, &outcome{phase: api.PhaseRollingNodes, status: clusterconfig.Status{CurrentVersion: "abc#1"}})
	held(ReasonRollingNodes)

	r.setConditions(cc, &outcome{appliedNow: true, status: clusterconfig.Status{CurrentVersion: "abc#1"}})
	ready := conditions.Get(cc, ReadyCondition)
	if assert.NotNil(t, ready) {
		assert.Equal(t, metav1.ConditionTrue, ready.Status)
		assert.True(t, ready.LastTransitionTime.After(hourAgo.Time), "Ready became True: its transition time moves")
	}
	assert.Nil(t, conditions.Get(cc, ReconcilingCondition))
}

func TestOnlyTheProgressOfARollWaitsToBeWritten(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	next := time.Date(2026, 12, 7, 12, 5, 0, 0, time.UTC)
	rolling := clusterconfig.Status{CurrentVersion: "abc#1", Rolls: []nodes.RollState{{Pool: "workers", Target: 3, Desired: 4}},
		NodePools: []api.NodePoolProgress{{Name: "workers", NodesTotal: 4, Outdated: 3, Draining: 1}}}
	rolling.Conditions = []metav1.Condition{{Type: ReconcilingCondition, Status: metav1.ConditionTrue, Reason: string(ReasonRollingNodes),
		Message: "at version abc#1; pool workers: 3 of 4 nodes outdated, 1 draining"}}
	moved := rolling
	moved.NodePools = []api.NodePoolProgress{{Name: "workers", NodesTotal: 4, Outdated: 3, Draining: 1, NextForcedEviction: &next, HeldBy: "drain_grace_period"}}
	stepped := moved
	stepped.Rolls = []nodes.RollState{{Pool: "workers", Target: 3, Desired: 3}}
	counted := moved
	counted.Conditions = []metav1.Condition{{Type: ReconcilingCondition, Status: metav1.ConditionTrue, Reason: string(ReasonRollingNodes),
		Message: "at version abc#1; pool workers: 3 of 5 nodes outdated, 1 draining"}}
	done := moved
	done.Conditions = []metav1.Condition{{Type: ReadyCondition, Status: metav1.ConditionTrue, Reason: string(ReasonUpToDate)}}
	for _, c := range []struct {
		name          string
		after         clusterconfig.Status
		writtenBefore time.Duration
		held          bool
	}{
		{"progress, just after a write", moved, time.Second, true},
		{"progress, the interval after a write", moved, progressWriteInterval, false},
		{"progress and a roll's step", stepped, time.Second, false},
		{"progress and a condition's message telling it", counted, time.Second, true},
		{"a condition's reason", done, time.Second, false},
		{"nothing changed: nothing to hold", rolling, time.Second, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.held, progressHeld(rolling, c.after, now.Add(-c.writtenBefore), now))
		})
	}
}

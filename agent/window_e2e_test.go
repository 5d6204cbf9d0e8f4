package agent_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// dailyFrom is a daily update window of one hour that opens at the given
// instant (to the second), in UTC.
func dailyFrom(opens time.Time) string {
	opens = opens.UTC()
	return fmt.Sprintf("daily %s-%s UTC", opens.Format("15:04:05"), opens.Add(time.Hour).Format("15:04:05"))
}

// settingsCommit adds a ConfigMap to the config repo's base.
func (f *fleet) settingsCommit(message string) string {
	return f.commit(message, map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n"),
		base:                            addResource(f.t, "settings.yaml"),
	})
}

// heartbeatAfter waits for a status report made after t: the agent has
// looked at the branch and the assignment since.
func (f *fleet) heartbeatAfter(t time.Time) *api.ClusterStatus {
	var st *api.ClusterStatus
	f.eventually("the agent reports again", func() bool {
		st = f.status()
		return st.Heartbeat.After(t)
	})
	return st
}

// A commit pushed while the cluster's update window is closed waits for
// the window, says so (phase, next opening, condition, Event), and is
// applied when the window opens.
func TestANewVersionWaitsForItsUpdateWindow(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	first := f.status().CurrentVersion

	opens := time.Now().Add(15 * time.Second).Truncate(time.Second)
	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"config_items": map[string]string{api.ConfigUpdateWindows: dailyFrom(opens)}}, "")
	require.NoError(t, err)
	sha := f.settingsCommit("a change made outside the window")

	var st *api.ClusterStatus
	f.eventually("the new version waits for the window", func() bool {
		st = f.status()
		return st.Phase == api.PhaseWaitingForWindow
	})
	require.NotNil(t, st.NextWindow, "the registry is told when the window opens")
	assert.True(t, opens.Equal(*st.NextWindow), "next window %s, want %s", st.NextWindow, opens)
	assert.Equal(t, first, st.CurrentVersion, "the cluster stays on its version")
	assert.Empty(t, st.NextVersion, "the waiting version is not under way")
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "nothing of the new version is applied before the window opens")
	cc := f.clusterConfig()
	require.NotNil(t, cc.Status.NextWindow)
	assert.True(t, opens.Equal(cc.Status.NextWindow.Time))
	assert.True(t, conditions.IsReady(cc), "a closed window is no fault")
	assert.Equal(t, string(reconciler.ReasonWaitingForWindow), conditions.GetReason(cc, reconciler.ReadyCondition))
	f.eventually("an Event says the version waits", func() bool { return f.hasEvent("waits for the update window", opens.UTC().Format(time.RFC3339)) })

	f.eventually("the version is applied once the window opens", f.atCommit(sha))
	cc = f.clusterConfig()
	require.NotNil(t, cc.Status.LastAppliedTime)
	assert.False(t, cc.Status.LastAppliedTime.Time.Before(opens), "applied at %s, the window opened at %s", cc.Status.LastAppliedTime, opens)
	assert.Nil(t, cc.Status.NextWindow)
	assert.Nil(t, f.status().NextWindow)
	_, err = f.configMap("settings")
	assert.NoError(t, err)
}

// A freeze of the cluster's channel holds a new version, as a block does,
// and once it ends, by the registry's and the agent's clocks, the version
// goes through.
func TestAFreezeHoldsTheClusterUntilItEnds(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })

	until := time.Now().Add(20 * time.Second)
	_, _, err := f.reg.CreateFreeze(f.ctx, &api.Freeze{Reason: "cyber week", Channel: "dev", Until: until})
	require.NoError(t, err)
	f.eventually("the freeze shows as the phase", func() bool {
		st := f.status()
		return st.Phase == api.PhaseBlocked && len(st.Problems) > 0 && strings.Contains(st.Problems[0].Title, "cyber week")
	})
	assert.Contains(t, f.status().Problems[0].Title, "frozen at the registry (channel dev)")
	sha := f.settingsCommit("a change pushed during the freeze")
	pushed := time.Now()
	// Two reports after the push: the agent listed the branch since.
	st := f.heartbeatAfter(f.heartbeatAfter(pushed).Heartbeat)
	assert.Equal(t, api.PhaseBlocked, st.Phase)
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "nothing changes while frozen")

	f.eventually("the ended freeze lets the version through", f.atCommit(sha))
	assert.False(t, f.clusterConfig().Status.LastAppliedTime.Time.Before(until.Truncate(time.Second)))
}

// A node update window that closes during a roll lets the node being
// drained finish, keeps the other node marked and not drained, and the
// roll goes on when the window opens again.
func TestARollPausesOutsideItsNodeUpdateWindow(t *testing.T) {
	f := startFleet(t)
	_, old := rollingPool(t, f, scaledSLA, f.inProcess)
	first, ok := drainingNode(f)
	require.True(t, ok)

	opens := time.Now().Add(40 * time.Second).Truncate(time.Second)
	_, _, err := f.reg.PatchNodePool(f.ctx, clusterID, "workers", map[string]any{"config_items": map[string]string{api.ConfigNodeUpdateWindows: dailyFrom(opens)}}, "")
	require.NoError(t, err)

	var paused api.NodePoolProgress
	f.eventually("the draining node finishes and the roll pauses until the window opens", func() bool {
		current := f.poolNodes("workers")
		if _, still := current[first.Name]; still {
			return false
		}
		for _, p := range f.status().NodePools {
			if p.Name == "workers" && p.NextWindow != nil && p.Draining == 0 {
				paused = p
				return true
			}
		}
		return false
	})
	require.True(t, time.Now().Before(opens), "the pause was seen before the window opened; make the window open later if this fails")
	assert.True(t, opens.Equal(*paused.NextWindow), "the pool's progress names the opening %s, got %s", opens, paused.NextWindow)
	var second string
	for name := range old {
		if name != first.Name {
			second = name
		}
	}
	n := f.poolNodes("workers")[second]
	assert.Equal(t, nodes.DecommissionValue, n.Labels[nodes.LifecycleLabel], "the other old node keeps its mark")
	assert.Empty(t, n.Annotations[nodes.DrainStartAnnotation], "and is not drained outside the window")
	assert.NotEmpty(t, f.clusterConfig().Status.Rolls, "the roll is paused, not ended")

	f.eventually("the roll goes on when the window opens and completes", func() bool {
		_, still := f.poolNodes("workers")[second]
		return !still && len(f.clusterConfig().Status.Rolls) == 0
	})
	assert.True(t, f.hasNodeEventAfter(second, "DrainStarted", opens), "the second drain began once the window opened")
}

// hasNodeEventAfter reports whether the Node's Event of the reason came at
// or after t; false when there is none.
func (f *fleet) hasNodeEventAfter(node, reason string, t time.Time) bool {
	list := &corev1.EventList{}
	require.NoError(f.t, f.kube.List(f.ctx, list))
	for _, e := range list.Items {
		if e.InvolvedObject.Kind != "Node" || e.InvolvedObject.Name != node || e.Reason != reason {
			continue
		}
		at := e.EventTime.Time
		if at.IsZero() {
			at = e.FirstTimestamp.Time
		}
		return !at.Before(t.Truncate(time.Second))
	}
	return false
}

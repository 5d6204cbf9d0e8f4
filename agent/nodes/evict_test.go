package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pass decides on its refused pods one after the other: a force made
// earlier in the pass makes that pod a terminating sibling, and the last
// force in each budget it shares, for the pods decided after it.
func TestARefusalCountsTheForcesMadeBeforeItInThePass(t *testing.T) {
	budget := func(name string) policyv1.PodDisruptionBudget {
		return policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name}}
	}
	pod := func(ns, name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	}
	forcedAt := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	earlier := forcedAt.Add(-time.Hour)
	forced := &refusal{pod: pod("team", "a-1"), budgets: []policyv1.PodDisruptionBudget{budget("a")}, forcedAt: forcedAt}

	sibling := &refusal{pod: pod("team", "a-2"), budgets: []policyv1.PodDisruptionBudget{budget("a"), budget("all")},
		siblings: []Sibling{{Name: "a-1", Ready: true}, {Name: "a-3", Ready: true}}, history: History{LastForcedInPDB: earlier}}
	sibling.after([]*refusal{forced})
	assert.Equal(t, []Sibling{{Name: "a-1", Ready: true, Terminating: true}, {Name: "a-3", Ready: true}}, sibling.siblings)
	assert.Equal(t, forcedAt, sibling.history.LastForcedInPDB)

	other := &refusal{pod: pod("team", "b-1"), budgets: []policyv1.PodDisruptionBudget{budget("b")},
		siblings: []Sibling{{Name: "b-2"}}, history: History{LastForcedInPDB: earlier}}
	other.after([]*refusal{forced})
	assert.Equal(t, []Sibling{{Name: "b-2"}}, other.siblings)
	assert.Equal(t, earlier, other.history.LastForcedInPDB, "no budget shared")

	elsewhere := &refusal{pod: pod("other-team", "a-2"), budgets: []policyv1.PodDisruptionBudget{{ObjectMeta: metav1.ObjectMeta{Namespace: "other-team", Name: "a"}}},
		siblings: []Sibling{{Name: "a-1"}}}
	elsewhere.after([]*refusal{forced})
	assert.False(t, elsewhere.siblings[0].Terminating, "a pod of the same name in another namespace")
	assert.True(t, elsewhere.history.LastForcedInPDB.IsZero())
}

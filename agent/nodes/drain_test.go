package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMustLeave(t *testing.T) {
	yes := true
	no := false
	for name, c := range map[string]struct {
		pod  corev1.Pod
		want bool
	}{
		"a Deployment's pod":                   {corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Controller: &yes}}}}, true},
		"a bare pod":                           {corev1.Pod{}, true},
		"a DaemonSet's pod":                    {corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Controller: &yes}}}}, false},
		"owned by a DaemonSet, not controlled": {corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Controller: &no}}}}, true},
		"a mirror pod":                         {corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}}}, false},
		"a pod that succeeded":                 {corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodSucceeded}}, false},
		"a pod that failed":                    {corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}}, false},
		"a running pod":                        {corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodRunning}}, true},
	} {
		assert.Equal(t, c.want, MustLeave(&c.pod), name)
	}
}

// A pod is kept, in the cache and in a pass that read the API server, with
// what a pass reads: its metadata, node, phase and Ready condition.
func TestAPodIsKeptWithWhatAPassReads(t *testing.T) {
	since := metav1.NewTime(time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC))
	yes := true
	meta := metav1.ObjectMeta{Name: "app-1", Namespace: "team", UID: "u1", Labels: map[string]string{"app": "a"},
		Annotations:     map[string]string{ForceEvictAfterAnnotation: "2026-12-07T13:00:00Z"},
		OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "app", Controller: &yes}}}
	pod := &corev1.Pod{ObjectMeta: meta,
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: since},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
		}}}
	pod.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}

	kept, err := keepOfPod(pod)
	require.NoError(t, err)
	assert.Equal(t, &corev1.Pod{ObjectMeta: meta, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: since}}}}, kept)
	assert.Equal(t, Sibling{Name: "app-1", Ready: true, ReadySince: latest(since)}, siblingOf(kept.(*corev1.Pod)))
}

package nodes

import (
	"testing"

	"github.com/stretchr/testify/assert"
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

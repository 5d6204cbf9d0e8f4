package controlplane

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestAPodWithAnExitCodeFails checks the control plane's own kwok stage: a
// pod annotated with an exit code fails with it, where one without ends
// as kwok's stages have it.
func TestAPodWithAnExitCodeFails(t *testing.T) {
	cp := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := cp.AddNode(ctx, Node{Name: "node-a"})
	require.NoError(t, err)
	pod := func(name string, annotations map[string]string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations},
			Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "check", Image: "busybox"}}},
		}
	}
	_, err = cp.Client.CoreV1().Pods("default").Create(ctx, pod("fails", map[string]string{PodExitCodeAnnotation: "3", PodCompleteWeightAnnotation: "0"}), metav1.CreateOptions{})
	require.NoError(t, err)
	// A Job's pod, which kwok's pod-complete stage matches too, fails all
	// the same.
	for i := range 3 {
		template := pod("", map[string]string{PodExitCodeAnnotation: "4", PodCompleteWeightAnnotation: "0"})
		_, err = cp.Client.BatchV1().Jobs("default").Create(ctx, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("job-%d", i)},
			Spec:       batchv1.JobSpec{BackoffLimit: new(int32(0)), Template: corev1.PodTemplateSpec{ObjectMeta: template.ObjectMeta, Spec: template.Spec}},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}

	var got *corev1.Pod
	require.NoError(t, wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		got, err = cp.Client.CoreV1().Pods("default").Get(ctx, "fails", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodFailed, err
	}), "the pod fails")
	require.Len(t, got.Status.ContainerStatuses, 1)
	terminated := got.Status.ContainerStatuses[0].State.Terminated
	require.NotNil(t, terminated)
	assert.Equal(t, int32(3), terminated.ExitCode)
	assert.Equal(t, "Error", terminated.Reason)

	for i := range 3 {
		name := fmt.Sprintf("job-%d", i)
		var job *batchv1.Job
		require.NoError(t, wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			job, err = cp.Client.BatchV1().Jobs("default").Get(ctx, name, metav1.GetOptions{})
			return err == nil && (job.Status.Failed > 0 || job.Status.Succeeded > 0), err
		}))
		assert.Equal(t, int32(1), job.Status.Failed, "%s's pod failed, never completed", name)
		assert.Zero(t, job.Status.Succeeded, name)
	}
}

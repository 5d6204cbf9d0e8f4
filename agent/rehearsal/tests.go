package rehearsal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Where the config repo keeps its tests, and where they run unless they
// name a namespace.
const (
	TestsDir      = "tests"
	TestNamespace = "caravan-rehearsal"
	// testLabel marks the objects of the tests, for finding them afterwards.
	testLabel = "caravan.io/rehearsal"
	// testPoll is how often a test's status is read; a test takes seconds
	// at least, and a Job's status changes a few times in its life.
	testPoll = 500 * time.Millisecond
)

// testObject is one Job or Pod of tests/.
type testObject struct {
	file string
	obj  *unstructured.Unstructured
}

func (t testObject) name() string {
	return fmt.Sprintf("test %s: %s %s/%s", t.file, t.obj.GetKind(), t.obj.GetNamespace(), t.obj.GetName())
}

// runTests runs the Jobs and Pods under tests/ of the head commit, all at
// once, and waits for each to succeed or fail, up to timeout.
func runTests(ctx context.Context, kube client.Client, files fs.FS, timeout time.Duration) []Step {
	tests, failed := readTests(files)
	if len(failed) > 0 {
		return failed
	}
	if len(tests) == 0 {
		return nil
	}
	if err := ensureTestNamespace(ctx, kube); err != nil {
		return []Step{{Kind: KindTest, Name: "test namespace " + TestNamespace, Failure: err.Error()}}
	}
	steps := make([]Step, len(tests))
	var wg sync.WaitGroup
	for i, t := range tests {
		wg.Go(func() { steps[i] = runTest(ctx, kube, t, timeout) })
	}
	wg.Wait()
	return steps
}

// readTests parses tests/*.yaml; a file that holds anything but Jobs and
// Pods is a failed step naming it.
func readTests(files fs.FS) ([]testObject, []Step) {
	entries, err := fs.ReadDir(files, TestsDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, []Step{{Kind: KindTest, Name: "read " + TestsDir, Failure: err.Error()}}
	}
	var tests []testObject
	var failed []Step
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yaml" && path.Ext(e.Name()) != ".yml") {
			continue
		}
		file := path.Join(TestsDir, e.Name())
		objs, err := readTestFile(files, file)
		if err != nil {
			failed = append(failed, Step{Kind: KindTest, Name: "test " + file, Failure: err.Error()})
			continue
		}
		for _, o := range objs {
			tests = append(tests, testObject{file: file, obj: o})
		}
	}
	return tests, failed
}

func readTestFile(files fs.FS, file string) ([]*unstructured.Unstructured, error) {
	raw, err := fs.ReadFile(files, file)
	if err != nil {
		return nil, err
	}
	dec := k8syaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var objs []*unstructured.Unstructured
	for {
		o := &unstructured.Unstructured{}
		err := dec.Decode(&o.Object)
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parsing: %w", err)
		}
		if len(o.Object) == 0 {
			continue
		}
		if err := checkTest(o); err != nil {
			return nil, err
		}
		if o.GetNamespace() == "" {
			o.SetNamespace(TestNamespace)
		}
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[testLabel] = "true"
		o.SetLabels(labels)
		objs = append(objs, o)
	}
}

func checkTest(o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	switch {
	case o.GetName() == "":
		return fmt.Errorf("a %s without metadata.name", gvk.Kind)
	case gvk.Group == "batch" && gvk.Version == "v1" && gvk.Kind == "Job",
		gvk.Group == "" && gvk.Version == "v1" && gvk.Kind == "Pod":
		return nil
	}
	return fmt.Errorf("%s %s: tests are Jobs (batch/v1) and Pods (v1) that must succeed", o.GetAPIVersion()+"/"+gvk.Kind, o.GetName())
}

func ensureTestNamespace(ctx context.Context, kube client.Client) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: TestNamespace}}
	if err := kube.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", TestNamespace, err)
	}
	return nil
}

// runTest starts one test afresh, a previous rehearsal's run of it
// deleted first, and waits for its end.
func runTest(ctx context.Context, kube client.Client, t testObject, timeout time.Duration) Step {
	start := time.Now()
	step := Step{Kind: KindTest, Name: t.name()}
	err := startTest(ctx, kube, t.obj)
	if err == nil {
		err = waitTest(ctx, kube, t.obj, timeout)
	}
	step.Duration = time.Since(start)
	if err != nil {
		step.Failure = err.Error()
	}
	return step
}

func startTest(ctx context.Context, kube client.Client, obj *unstructured.Unstructured) error {
	old := obj.DeepCopy()
	background := metav1.DeletePropagationBackground
	if err := kube.Delete(ctx, old, &client.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the previous run: %w", err)
	}
	err := wait.PollUntilContextTimeout(ctx, testPoll, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := kube.Get(ctx, client.ObjectKeyFromObject(old), old.DeepCopy())
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		return fmt.Errorf("waiting for the previous run to be deleted: %w", err)
	}
	if err := kube.Create(ctx, obj.DeepCopy()); err != nil {
		return fmt.Errorf("creating: %w", err)
	}
	return nil
}

// errTestFailed is a test that ended without success.
var errTestFailed = errors.New("failed")

// waitTest waits until the Job or Pod succeeds (nil), fails (why), or
// timeout passes.
func waitTest(ctx context.Context, kube client.Client, obj *unstructured.Unstructured, timeout time.Duration) error {
	key := client.ObjectKeyFromObject(obj)
	var done func(context.Context) (bool, error)
	if obj.GetKind() == "Job" {
		done = func(ctx context.Context) (bool, error) { return jobDone(ctx, kube, key) }
	} else {
		done = func(ctx context.Context) (bool, error) { return podDone(ctx, kube, key) }
	}
	err := wait.PollUntilContextTimeout(ctx, testPoll, timeout, true, done)
	if wait.Interrupted(err) && ctx.Err() == nil {
		return fmt.Errorf("did not finish within %s", timeout)
	}
	return err
}

func jobDone(ctx context.Context, kube client.Client, key client.ObjectKey) (bool, error) {
	job := &batchv1.Job{}
	if err := kube.Get(ctx, key, job); err != nil {
		return false, err
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, nil
		case batchv1.JobFailed:
			pods := &corev1.PodList{}
			if err := kube.List(ctx, pods, client.InNamespace(key.Namespace), client.MatchingLabels{batchv1.JobNameLabel: key.Name}); err != nil {
				return false, err
			}
			why := strings.TrimSuffix(c.Reason+": "+c.Message, ": ")
			if exits := exitCodes(pods.Items); exits != "" {
				why += "; " + exits
			}
			return false, fmt.Errorf("%w: %s", errTestFailed, why)
		}
	}
	return false, nil
}

func podDone(ctx context.Context, kube client.Client, key client.ObjectKey) (bool, error) {
	pod := &corev1.Pod{}
	if err := kube.Get(ctx, key, pod); err != nil {
		return false, err
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded:
		return true, nil
	case corev1.PodFailed:
		why := strings.TrimSuffix(pod.Status.Reason+": "+pod.Status.Message, ": ")
		if exits := exitCodes([]corev1.Pod{*pod}); exits != "" {
			why = strings.TrimPrefix(why+"; "+exits, "; ")
		}
		return false, fmt.Errorf("%w: %s", errTestFailed, why)
	}
	return false, nil
}

// exitCodes describes the containers of pods that ended with an error.
func exitCodes(pods []corev1.Pod) string {
	var out []string
	for _, p := range pods {
		for _, c := range p.Status.ContainerStatuses {
			if t := c.State.Terminated; t != nil && t.ExitCode != 0 {
				line := fmt.Sprintf("pod %s container %s exited with code %d", p.Name, c.Name, t.ExitCode)
				if t.Reason != "" {
					line += " (" + t.Reason + ")"
				}
				out = append(out, line)
			}
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

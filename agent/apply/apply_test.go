package apply

import (
	"context"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/fluxcd/pkg/ssa"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// referenceRepo copies manifests/ into memory so tests can change it.
func referenceRepo(t *testing.T) fstest.MapFS {
	t.Helper()
	repo := fstest.MapFS{}
	root := os.DirFS("../../manifests")
	require.NoError(t, fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(root, p)
		repo[p] = &fstest.MapFile{Data: b}
		return err
	}))
	return repo
}

func testAssignment() api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: "aws:123456789012:eu-central-1:kube-1", LocalID: "kube-1", Alias: "kube-1", Region: "eu-central-1", Environment: "test", Provider: "aws", CriticalityLevel: 1},
		Channel: api.AssignedChannel{Name: "dev", Branch: "dev"},
	}
}

func setup(t *testing.T) (*controlplane.ControlPlane, *Applier, context.Context) {
	cp := controlplane.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		_, err := cp.AddNode(ctx, controlplane.Node{Name: n})
		require.NoError(t, err)
	}
	a, err := New(cp.Config)
	require.NoError(t, err)
	return cp, a, ctx
}

func renderRepo(t *testing.T, repo fs.FS) *render.Result {
	t.Helper()
	r, err := render.Render(repo, testAssignment())
	require.NoError(t, err)
	return r
}

func TestApplyPruneAndDeletionsOfTheReferenceRepo(t *testing.T) {
	cp, a, ctx := setup(t)
	repo := referenceRepo(t)

	first, err := a.Apply(ctx, renderRepo(t, repo), nil)
	require.NoError(t, err)
	require.NotEmpty(t, first.Applied.Entries)
	for _, e := range first.Applied.Entries {
		if e.Subject != "Namespace/kube-system" && e.Subject != "Namespace/default" {
			assert.Equal(t, ssa.CreatedAction, e.Action, e.Subject)
		}
	}
	require.NoError(t, a.Wait(ctx, first.Inventory, 2*time.Minute), "the reference config becomes healthy on kwok nodes")
	dns, err := cp.Client.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, ManagedValue, dns.Labels[ManagedLabel])
	assert.EqualValues(t, 2, *dns.Spec.Replicas)

	// What the cluster has besides Caravan's objects is never touched.
	_, err = cp.Client.CoreV1().ConfigMaps("monitoring").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "made-by-hand"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = cp.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "obsolete"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	// The next commit drops kube-state-metrics except its Service, which is
	// marked prune: disabled, and asks to delete a ConfigMap before applying.
	svc := "kubernetes/base/kube-state-metrics.yaml"
	repo[svc] = &fstest.MapFile{Data: []byte(strings.Replace(keepOnly(string(repo[svc].Data), "kind: Service"),
		"  name: kube-state-metrics\n", "  name: kube-state-metrics\n  annotations:\n    caravan.io/prune: disabled\n", 1))}
	second := renderRepo(t, repo)
	second.Deletions.PreApply = append(second.Deletions.PreApply, render.ObjectRef{Kind: "ConfigMap", Name: "obsolete", Namespace: "default"})
	res, err := a.Apply(ctx, second, first.Inventory)
	require.NoError(t, err)
	assert.Contains(t, res.Deleted, "ConfigMap default/obsolete")
	_, err = cp.Client.AppsV1().Deployments("monitoring").Get(ctx, "kube-state-metrics", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "the Deployment that left the config is pruned")
	_, err = cp.Client.CoreV1().ConfigMaps("monitoring").Get(ctx, "made-by-hand", metav1.GetOptions{})
	assert.NoError(t, err, "an object Caravan did not create is untouched")
	_, err = cp.Client.CoreV1().ConfigMaps("default").Get(ctx, "obsolete", metav1.GetOptions{})
	assert.True(t, apierrors.IsNotFound(err), "deletions.yaml deleted it")

	// Then the Service leaves the config too, but it is kept: prune disabled.
	repo[svc] = &fstest.MapFile{Data: []byte(keepOnly(string(repo[svc].Data), "kind: ServiceAccount"))}
	third, err := a.Apply(ctx, renderRepo(t, repo), res.Inventory)
	require.NoError(t, err)
	_, err = cp.Client.CoreV1().Services("monitoring").Get(ctx, "kube-state-metrics", metav1.GetOptions{})
	assert.NoError(t, err, "an object annotated caravan.io/prune: disabled is never pruned")
	assert.NotEmpty(t, third.Inventory)
}

// keepOnly keeps the documents of a multi-document YAML that contain marker.
func keepOnly(docs, marker string) string {
	var kept []string
	for _, d := range strings.Split(docs, "\n---\n") {
		if strings.Contains(d, marker+"\n") {
			kept = append(kept, d)
		}
	}
	return strings.Join(kept, "\n---\n") + "\n"
}

func TestImmutableChangeNeedsTheForceAnnotation(t *testing.T) {
	cp, a, ctx := setup(t)
	job := func(image, annotations string) fstest.MapFS {
		return fstest.MapFS{
			"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - job.yaml\n")},
			"kubernetes/overlays/test/job.yaml": {Data: []byte(`apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: default` + annotations + `
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: ` + image + "\n")},
		}
	}
	first, err := a.Apply(ctx, renderRepo(t, job("migrate:v1", "")), nil)
	require.NoError(t, err)
	_, err = a.Apply(ctx, renderRepo(t, job("migrate:v2", "")), first.Inventory)
	var objErr *ObjectError
	require.ErrorAs(t, err, &objErr, "a Job's template is immutable")
	assert.Contains(t, err.Error(), ForceAnnotation)
	got, err := cp.Client.BatchV1().Jobs("default").Get(ctx, "migrate", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "migrate:v1", got.Spec.Template.Spec.Containers[0].Image, "nothing changed")

	// Without an inventory (a lost status), the change is refused all the same.
	_, err = a.Apply(ctx, renderRepo(t, job("migrate:v2", "")), nil)
	require.ErrorAs(t, err, &objErr)
	assert.Contains(t, err.Error(), ForceAnnotation)

	_, err = a.Apply(ctx, renderRepo(t, job("migrate:v2", "\n  annotations:\n    caravan.io/force: enabled")), first.Inventory)
	require.NoError(t, err, "with the annotation the Job is recreated")
	got, err = cp.Client.BatchV1().Jobs("default").Get(ctx, "migrate", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "migrate:v2", got.Spec.Template.Spec.Containers[0].Image)
}

func TestWaitNamesTheUnhealthyObjectAndStopsWhenCancelled(t *testing.T) {
	_, a, ctx := setup(t)
	repo := fstest.MapFS{
		"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - stuck.yaml\n")},
		"kubernetes/overlays/test/stuck.yaml": {Data: []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
  namespace: default
spec:
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {pool: does-not-exist}
      containers: [{name: app, image: app}]
`)},
	}
	res, err := a.Apply(ctx, renderRepo(t, repo), nil)
	require.NoError(t, err)
	err = a.Wait(ctx, res.Inventory, 3*time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "stuck", "the timeout names the object")

	cancelled, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(500 * time.Millisecond); cancel() }()
	start := time.Now()
	err = a.Wait(cancelled, res.Inventory, time.Minute)
	require.Error(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "a newer revision cancels the wait")
}

func TestAnObjectMadeByHandIsAdoptedAndReportedAsConfigured(t *testing.T) {
	cp, a, ctx := setup(t)
	_, err := cp.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"mode": "by-hand"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	repo := fstest.MapFS{
		"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - settings.yaml\n  - fresh.yaml\n")},
		"kubernetes/overlays/test/settings.yaml":      {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: default}\ndata: {mode: git}\n")},
		"kubernetes/overlays/test/fresh.yaml":         {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fresh, namespace: default}\n")},
	}
	res, err := a.Apply(ctx, renderRepo(t, repo), nil)
	require.NoError(t, err)
	actions := map[string]ssa.Action{}
	for _, e := range res.Applied.Entries {
		actions[e.Subject] = e.Action
	}
	assert.Equal(t, map[string]ssa.Action{"ConfigMap/default/settings": ssa.ConfiguredAction, "ConfigMap/default/fresh": ssa.CreatedAction}, actions)
	got, err := cp.Client.CoreV1().ConfigMaps("default").Get(ctx, "settings", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "git", got.Data["mode"], "git wins over the hand-made value")
	assert.Equal(t, ManagedValue, got.Labels[ManagedLabel])
}

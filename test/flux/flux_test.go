package flux_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/controlplane"
	"github.com/caravan-gitops/caravan/test/flux"
)

// manifests writes a Namespace and the ConfigMaps named in values, each
// with the data value given.
func manifests(t *testing.T, dir string, values map[string]string) {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n")
	for name, value := range values {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: demo\ndata:\n  value: %q\n", name, value)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "objects.yaml"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The harness through the real parts: kustomize-controller, built by make
// tools, applies a published artifact to a real API server through a
// counting proxy, then applies and prunes for a new revision.
func TestKustomizeControllerAppliesPublishedRevisions(t *testing.T) {
	if _, _, err := flux.Tools(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp := controlplane.Start(t)
	proxy, err := apicount.Start(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proxy.Close(); err != nil {
			t.Error(err)
		}
	})
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := proxy.WriteKubeconfig(kubeconfig); err != nil {
		t.Fatal(err)
	}
	f, err := flux.Start(ctx, flux.Options{Kubeconfig: kubeconfig, Admin: cp.Config, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the proxy's cleanup, so run before it.
	t.Cleanup(func() {
		if err := f.Stop(); err != nil {
			t.Error(err)
		}
	})

	src := filepath.Join(dir, "src")
	manifests(t, src, map[string]string{"settings": "one", "extra": "x"})
	first := "main@sha1:" + strings.Repeat("1", 40)
	if _, err := f.Publish(ctx, "demo", src, first); err != nil {
		t.Fatal(err)
	}
	if err := f.CreateKustomization(ctx, flux.Kustomization{Name: "demo", Source: "demo", Interval: time.Minute,
		Timeout: time.Minute, Prune: true, Wait: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WaitApplied(ctx, "demo", first); err != nil {
		t.Fatalf("%v\n%s", err, tailLog(f.Log))
	}
	cm, err := cp.Client.CoreV1().ConfigMaps("demo").Get(ctx, "settings", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["value"] != "one" {
		t.Fatalf("the ConfigMap's value is %q, want one", cm.Data["value"])
	}
	st, err := f.Status(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if st.Inventory != 3 {
		t.Errorf("the inventory has %d objects, want 3 (%+v)", st.Inventory, st)
	}

	manifests(t, src, map[string]string{"settings": "two"})
	second := "main@sha1:" + strings.Repeat("2", 40)
	published := time.Now()
	if _, err := f.Publish(ctx, "demo", src, second); err != nil {
		t.Fatal(err)
	}
	applied, err := f.WaitApplied(ctx, "demo", second)
	if err != nil {
		t.Fatalf("%v\n%s", err, tailLog(f.Log))
	}
	if cm, err = cp.Client.CoreV1().ConfigMaps("demo").Get(ctx, "settings", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if cm.Data["value"] != "two" {
		t.Fatalf("after the second revision the ConfigMap's value is %q, want two", cm.Data["value"])
	}
	if _, err := cp.Client.CoreV1().ConfigMaps("demo").Get(ctx, "extra", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the ConfigMap the second revision left out was not pruned: %v", err)
	}

	all := apicount.Count(proxy.Requests(time.Time{}, time.Time{}))
	t.Logf("kustomize-controller's requests: %s", all)
	for _, label := range []string{"watch", "apply", "dry-run apply"} {
		if all.Counts[label] == 0 {
			t.Errorf("the proxy counted no %s request: %s", label, all)
		}
	}
	var applies int
	for _, r := range proxy.Requests(published, applied) {
		if !strings.HasPrefix(r.UserAgent, "kustomize-controller") {
			t.Errorf("a request of another client reached the controller's proxy: %+v", r)
		}
		if r.Label() == "apply" && r.Resource == "configmaps" && r.Name == "settings" {
			applies++
		}
	}
	if applies != 1 {
		t.Errorf("the second revision applied the changed ConfigMap %d times, want 1", applies)
	}
}

func tailLog(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

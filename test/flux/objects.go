package flux

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

var (
	gitRepositories = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	kustomizations  = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// fieldManager names this package's writes.
const fieldManager = "caravan-flux-harness"

// Publish makes dir the artifact of the GitRepository source at revision
// ("<branch>@sha1:<commit>"): it serves a tarball of dir and writes the
// source's status as source-controller does once it has stored an
// artifact, creating the GitRepository first if need be. The controller
// sees the new revision through its watch of GitRepositories.
func (f *Flux) Publish(ctx context.Context, source, dir, revision string) (Artifact, error) {
	branch, _, ok := strings.Cut(revision, "@sha1:")
	if !ok {
		return Artifact{}, fmt.Errorf("revision %q is not <branch>@sha1:<commit>", revision)
	}
	a, err := f.artifacts.add(fmt.Sprintf("/gitrepository/%s/%s", f.Namespace, source), dir, revision)
	if err != nil {
		return Artifact{}, err
	}
	repos := f.dyn.Resource(gitRepositories).Namespace(f.Namespace)
	repo, err := repos.Get(ctx, source, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		repo, err = repos.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gitRepositories.GroupVersion().String(),
			"kind":       "GitRepository",
			"metadata":   map[string]any{"name": source, "namespace": f.Namespace},
			// No source-controller reads the spec; it says where the
			// artifacts come from.
			"spec": map[string]any{"url": f.artifacts.base + "/" + source, "interval": "1m0s", "ref": map[string]any{"branch": branch}},
		}}, metav1.CreateOptions{FieldManager: fieldManager})
	}
	if err != nil {
		return Artifact{}, err
	}
	now := a.LastUpdateTime.Format(time.RFC3339)
	status := map[string]any{"status": map[string]any{
		"observedGeneration": repo.GetGeneration(),
		"artifact": map[string]any{"path": a.Path, "url": a.URL, "revision": a.Revision, "digest": a.Digest,
			"size": a.Size, "lastUpdateTime": now},
		"conditions": []any{map[string]any{"type": "Ready", "status": "True", "reason": "Succeeded",
			"message": "stored artifact for revision '" + revision + "'", "lastTransitionTime": now, "observedGeneration": repo.GetGeneration()}},
	}}
	patch, err := json.Marshal(status)
	if err != nil {
		return Artifact{}, err
	}
	if _, err := repos.Patch(ctx, source, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}, "status"); err != nil {
		return Artifact{}, fmt.Errorf("writing the artifact into the status of GitRepository %s: %w", source, err)
	}
	return a, nil
}

// Kustomization is what CreateKustomization asks the controller to apply.
type Kustomization struct {
	Name string
	// Source is the GitRepository's name, in the same namespace.
	Source string
	// Path is the folder of the artifact to build; its root when empty.
	Path string
	// Interval is how often the controller applies the artifact again,
	// correcting drift; Timeout bounds one apply and its health checks.
	Interval, Timeout time.Duration
	Prune             bool
	// Wait makes the controller wait for every applied object to be
	// healthy before it reports Ready.
	Wait bool
	// TargetNamespace, when set, puts every namespaced object there.
	TargetNamespace string
}

// CreateKustomization creates the Kustomization k.
func (f *Flux) CreateKustomization(ctx context.Context, k Kustomization) error {
	if k.Path == "" {
		k.Path = "./"
	}
	spec := map[string]any{
		"interval":  k.Interval.String(),
		"path":      k.Path,
		"prune":     k.Prune,
		"wait":      k.Wait,
		"sourceRef": map[string]any{"kind": "GitRepository", "name": k.Source},
	}
	if k.Timeout > 0 {
		spec["timeout"] = k.Timeout.String()
	}
	if k.TargetNamespace != "" {
		spec["targetNamespace"] = k.TargetNamespace
	}
	_, err := f.dyn.Resource(kustomizations).Namespace(f.Namespace).Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kustomizations.GroupVersion().String(),
		"kind":       "Kustomization",
		"metadata":   map[string]any{"name": k.Name, "namespace": f.Namespace},
		"spec":       spec,
	}}, metav1.CreateOptions{FieldManager: fieldManager})
	return err
}

// Status is what a Kustomization's status says.
type Status struct {
	LastAppliedRevision   string
	LastAttemptedRevision string
	// Ready is the Ready condition's status ("" when it has none), with
	// its reason and message.
	Ready, Reason, Message string
	// Reconciling is set while the controller works on the Kustomization.
	Reconciling bool
	// Current is set when the status is of the latest spec.
	Current bool
	// Inventory counts the objects the controller applied.
	Inventory int
}

func statusOf(u *unstructured.Unstructured) Status {
	var s Status
	s.LastAppliedRevision, _, _ = unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	s.LastAttemptedRevision, _, _ = unstructured.NestedString(u.Object, "status", "lastAttemptedRevision")
	observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	s.Current = observed == u.GetGeneration()
	entries, _, _ := unstructured.NestedSlice(u.Object, "status", "inventory", "entries")
	s.Inventory = len(entries)
	conditions, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conditions {
		m, _ := c.(map[string]any)
		switch m["type"] {
		case "Ready":
			s.Ready, _ = m["status"].(string)
			s.Reason, _ = m["reason"].(string)
			s.Message, _ = m["message"].(string)
		case "Reconciling":
			s.Reconciling = m["status"] == "True"
		}
	}
	return s
}

// Status reads the Kustomization name's status.
func (f *Flux) Status(ctx context.Context, name string) (Status, error) {
	u, err := f.dyn.Resource(kustomizations).Namespace(f.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return Status{}, err
	}
	return statusOf(u), nil
}

// WaitApplied waits until the Kustomization name has applied revision and
// is Ready, which with Wait means its objects are healthy, and returns
// when its watch showed that. A failed attempt at revision is an error.
func (f *Flux) WaitApplied(ctx context.Context, name, revision string) (time.Time, error) {
	var failed error
	err := f.until(ctx, name, func(s Status) bool {
		if s.LastAppliedRevision == revision && s.Ready == "True" && s.Current && !s.Reconciling {
			return true
		}
		if s.LastAttemptedRevision == revision && s.Ready == "False" && !s.Reconciling {
			failed = fmt.Errorf("the Kustomization %s failed at %s: %s: %s", name, revision, s.Reason, s.Message)
			return true
		}
		return false
	})
	seen := time.Now()
	if err == nil {
		err = failed
	}
	return seen, err
}

// WaitIdle waits until the Kustomization name is Ready and not at work,
// so that what follows does not wait for a reconcile under way.
func (f *Flux) WaitIdle(ctx context.Context, name string) error {
	return f.until(ctx, name, func(s Status) bool { return s.Ready == "True" && s.Current && !s.Reconciling })
}

// until watches the Kustomization name until done says so of its status.
func (f *Flux) until(ctx context.Context, name string, done func(Status) bool) error {
	client := f.dyn.Resource(kustomizations).Namespace(f.Namespace)
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = selector
			return client.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return client.Watch(ctx, o)
		},
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &unstructured.Unstructured{}, nil, func(e watch.Event) (bool, error) {
		u, ok := e.Object.(*unstructured.Unstructured)
		if !ok || e.Type == watch.Deleted {
			return false, nil
		}
		return done(statusOf(u)), nil
	})
	if err != nil {
		return fmt.Errorf("watching the Kustomization %s: %w", name, err)
	}
	return nil
}

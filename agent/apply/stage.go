package apply

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	"github.com/fluxcd/pkg/ssa/utils"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// customStageKinds go after the definitions and before everything else, so
// that bindings exist before the workloads that rely on them.
var customStageKinds = map[schema.GroupKind]struct{}{{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}: {}}

// stage is one step of a staged apply; definitions and classes are waited
// for before the next stage starts, so that objects of a new CRD or in a new
// Namespace find them.
type stage struct {
	objects []*unstructured.Unstructured
	wait    bool
}

// stages orders objects as fluxcd/pkg/ssa's ApplyAllStaged does: CRDs,
// Namespaces and ClusterRoles; classes; ClusterRoleBindings; the rest.
func stages(objects []*unstructured.Unstructured) []stage {
	out := []stage{{wait: true}, {wait: true}, {}, {}}
	for _, o := range objects {
		i := 3
		switch {
		case utils.IsClusterDefinition(o):
			i = 0
		case utils.IsClassDefinition(o):
			i = 1
		case utils.IsCustomStage(o, customStageKinds):
			i = 2
		}
		out[i].objects = append(out[i].objects, o)
	}
	return out
}

// applyStaged applies stage by stage, each object with one apply request.
// It records in inv what each apply left: the object's digest, as plan
// computed it, and the fields Caravan owns in it.
func (a *Applier) applyStaged(ctx context.Context, objects []*unstructured.Unstructured, digests map[string]string, inv Inventory) (*ssa.ChangeSet, error) {
	opts := ssa.ApplyOptions{
		ForceSelector: map[string]string{ForceAnnotation: "enabled"},
		WaitInterval:  500 * time.Millisecond,
		WaitTimeout:   2 * time.Minute,
	}
	index := make(map[string]int, len(inv))
	for i, e := range inv {
		index[e.ID] = i
	}
	all := ssa.NewChangeSet()
	for _, st := range stages(objects) {
		if len(st.objects) == 0 {
			continue
		}
		cs, err := a.applyEach(ctx, st.objects, opts, func(id, fields string) {
			if i, ok := index[id]; ok {
				inv[i].Digest, inv[i].Fields = digests[id], fields
			}
		})
		all.Append(cs.Entries)
		if err != nil {
			return all, err
		}
		if st.wait {
			if err := a.manager.WaitForSetWithContext(ctx, cs.ToObjMetadataSet(), ssa.WaitOptions{Interval: opts.WaitInterval, Timeout: opts.WaitTimeout}); err != nil {
				return all, err
			}
		}
	}
	return all, nil
}

// applyConcurrency bounds the apply requests in flight, as ssa's own
// concurrency does for dry-runs.
const applyConcurrency = 8

// applyEach applies objects concurrently and hands each one's owned
// fields (OwnedFields) to done, which is called from one goroutine at a time.
func (a *Applier) applyEach(ctx context.Context, objects []*unstructured.Unstructured, opts ssa.ApplyOptions, done func(id, fields string)) (*ssa.ChangeSet, error) {
	entries := make([]ssa.ChangeSetEntry, len(objects))
	owned := make([]string, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(applyConcurrency)
	for i, o := range objects {
		g.Go(func() error {
			action, live, err := a.applyWithRecreate(gctx, o, opts)
			if err != nil {
				return err
			}
			owned[i] = OwnedFields(live)
			entries[i] = ssa.ChangeSetEntry{ObjMetadata: object.UnstructuredToObjMetadata(o), GroupVersion: o.GroupVersionKind().Version, Subject: utils.FmtUnstructured(o), Action: action}
			return nil
		})
	}
	err := g.Wait()
	cs := ssa.NewChangeSet()
	for i, e := range entries {
		if e.Subject != "" {
			cs.Add(e)
			done(e.ObjMetadata.String(), owned[i])
		}
	}
	return cs, err
}

// applyWithRecreate applies one object and returns it as the API server
// holds it then; an immutable field change goes through ssa, which names
// the field best and recreates the object when the force annotation
// allows it.
func (a *Applier) applyWithRecreate(ctx context.Context, o *unstructured.Unstructured, opts ssa.ApplyOptions) (ssa.Action, *unstructured.Unstructured, error) {
	action, live, err := a.applyOne(ctx, o, false)
	if err != nil && ssaerrors.IsImmutableError(err) {
		entry, err := a.manager.Apply(ctx, o, opts)
		if err != nil {
			return ssa.UnknownAction, nil, err
		}
		// ssa keeps the object it applied to itself; a second apply, which
		// changes nothing, reads back what Caravan owns in it.
		if _, live, err = a.applyOne(ctx, o, false); err != nil {
			return ssa.UnknownAction, nil, fmt.Errorf("%s apply failed: %w", utils.FmtUnstructured(o), err)
		}
		action = entry.Action
	} else if err != nil {
		return ssa.UnknownAction, nil, fmt.Errorf("%s apply failed: %w", utils.FmtUnstructured(o), err)
	}
	return action, live, nil
}

// Reapply applies one object as a version apply does and returns the
// object as the API server holds it after the apply.
func (a *Applier) Reapply(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	opts := ssa.ApplyOptions{ForceSelector: map[string]string{ForceAnnotation: "enabled"}}
	_, live, err := a.applyWithRecreate(ctx, o, opts)
	if err != nil {
		return nil, applyError(err)
	}
	return live, nil
}

// DryRun is the object as an apply of it would leave it, changing nothing.
func (a *Applier) DryRun(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	_, live, err := a.applyOne(ctx, o, true)
	return live, err
}

// applyOne sends one server-side apply request, taking ownership of every
// field Caravan sets, and returns the object the API server answers with.
// The status code tells a created object from one that existed before.
func (a *Applier) applyOne(ctx context.Context, o *unstructured.Unstructured, dryRun bool) (ssa.Action, *unstructured.Unstructured, error) {
	gvk := o.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return ssa.UnknownAction, nil, err
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return ssa.UnknownAction, nil, err
	}
	prefix := "/apis/" + gvk.Group + "/" + gvk.Version
	if gvk.Group == "" {
		prefix = "/api/" + gvk.Version
	}
	req := a.rest.Patch(types.ApplyPatchType).AbsPath(prefix).
		NamespaceIfScoped(o.GetNamespace(), mapping.Scope.Name() == meta.RESTScopeNameNamespace).
		Resource(mapping.Resource.Resource).Name(o.GetName()).
		Param("fieldManager", FieldManager).Param("force", "true")
	if dryRun {
		req = req.Param("dryRun", metav1.DryRunAll)
	}
	var code int
	raw, err := req.Body(body).Do(ctx).StatusCode(&code).Raw()
	if err != nil {
		return ssa.UnknownAction, nil, err
	}
	live := &unstructured.Unstructured{}
	if err := live.UnmarshalJSON(raw); err != nil {
		return ssa.UnknownAction, nil, fmt.Errorf("reading the answer to the apply of %s: %w", utils.FmtUnstructured(o), err)
	}
	if code == http.StatusCreated {
		return ssa.CreatedAction, live, nil
	}
	return ssa.ConfiguredAction, live, nil
}

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

// partition splits a stage into objects the previous revision applied and
// objects new to the inventory. Only the former can differ from what is
// in the cluster in ways a diff must show (and an immutable field must
// guard); the latter are created, and a dry-run first would only double
// the requests of a first apply.
func partition(objects []*unstructured.Unstructured, previous Inventory) (known, fresh []*unstructured.Unstructured) {
	ids := make(map[string]bool, len(previous))
	for _, e := range previous {
		ids[e.ID] = true
	}
	for _, o := range objects {
		if ids[object.UnstructuredToObjMetadata(o).String()] {
			known = append(known, o)
		} else {
			fresh = append(fresh, o)
		}
	}
	return known, fresh
}

// applyStaged applies stage by stage: what the previous revision applied
// through ssa (dry-run diff, force-recreate of immutable changes), what is
// new with one apply request each.
func (a *Applier) applyStaged(ctx context.Context, objects []*unstructured.Unstructured, previous Inventory) (*ssa.ChangeSet, error) {
	opts := ssa.ApplyOptions{
		ForceSelector: map[string]string{ForceAnnotation: "enabled"},
		WaitInterval:  500 * time.Millisecond,
		WaitTimeout:   2 * time.Minute,
	}
	all := ssa.NewChangeSet()
	for _, st := range stages(objects) {
		if len(st.objects) == 0 {
			continue
		}
		known, fresh := partition(st.objects, previous)
		cs := ssa.NewChangeSet()
		if len(known) > 0 {
			applied, err := a.manager.ApplyAll(ctx, known, opts)
			if err != nil {
				return all, err
			}
			cs.Append(applied.Entries)
		}
		created, err := a.applyFresh(ctx, fresh, opts)
		cs.Append(created.Entries)
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

// freshConcurrency bounds the apply requests in flight, as ssa's own
// concurrency does for dry-runs.
const freshConcurrency = 8

// applyFresh applies objects new to the inventory concurrently. An object
// the API server refuses as invalid or conflicting goes through ssa.
func (a *Applier) applyFresh(ctx context.Context, objects []*unstructured.Unstructured, opts ssa.ApplyOptions) (*ssa.ChangeSet, error) {
	entries := make([]ssa.ChangeSetEntry, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(freshConcurrency)
	for i, o := range objects {
		g.Go(func() error {
			action, err := a.applyOne(gctx, o)
			// ssa's dry-run names an invalid object's fields best, and it
			// recreates an immutable one when the annotation allows it.
			if err != nil && ssaerrors.IsImmutableError(err) {
				entry, err := a.manager.Apply(gctx, o, opts)
				if err != nil {
					return err
				}
				entries[i] = *entry
				return nil
			}
			if err != nil {
				return fmt.Errorf("%s apply failed: %w", utils.FmtUnstructured(o), err)
			}
			entries[i] = ssa.ChangeSetEntry{ObjMetadata: object.UnstructuredToObjMetadata(o), GroupVersion: o.GroupVersionKind().Version, Subject: utils.FmtUnstructured(o), Action: action}
			return nil
		})
	}
	err := g.Wait()
	cs := ssa.NewChangeSet()
	for _, e := range entries {
		if e.Subject != "" {
			cs.Add(e)
		}
	}
	return cs, err
}

// applyOne sends one server-side apply request, taking ownership of every
// field Caravan sets. The status code tells a created object from one that
// existed before Caravan applied it.
func (a *Applier) applyOne(ctx context.Context, o *unstructured.Unstructured) (ssa.Action, error) {
	gvk := o.GroupVersionKind()
	mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return ssa.UnknownAction, err
	}
	body, err := o.MarshalJSON()
	if err != nil {
		return ssa.UnknownAction, err
	}
	prefix := "/apis/" + gvk.Group + "/" + gvk.Version
	if gvk.Group == "" {
		prefix = "/api/" + gvk.Version
	}
	var code int
	err = a.rest.Patch(types.ApplyPatchType).AbsPath(prefix).
		NamespaceIfScoped(o.GetNamespace(), mapping.Scope.Name() == meta.RESTScopeNameNamespace).
		Resource(mapping.Resource.Resource).Name(o.GetName()).
		Param("fieldManager", FieldManager).Param("force", "true").
		Body(body).Do(ctx).StatusCode(&code).Error()
	if err != nil {
		return ssa.UnknownAction, err
	}
	if code == http.StatusCreated {
		return ssa.CreatedAction, nil
	}
	return ssa.ConfiguredAction, nil
}

package preview

import (
	"context"
	"fmt"
	"strings"

	"github.com/fluxcd/pkg/ssa"
	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// diffConcurrency bounds the dry runs in flight, as the apply's own.
const diffConcurrency = 8

// manifests previews the apply of the rendered objects: a server-side dry
// run of each (in stages, as the apply goes), the prune of what left the
// inventory, and the deletions of deletions.yaml.
func (p *Previewer) manifests(ctx context.Context, rendered *render.Result, inventory apply.Inventory) ([]api.ObjectPlan, error) {
	for _, o := range rendered.Objects {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[apply.ManagedLabel] = apply.ManagedValue
		o.SetLabels(labels)
	}
	definitions, rest := definitionsFirst(rendered.Objects)
	first, err := p.diffAll(ctx, definitions, newDefinitions{})
	if err != nil {
		return nil, err
	}
	var created []*unstructured.Unstructured
	for i, plan := range first {
		if plan.Action == api.ObjectCreate {
			created = append(created, definitions[i])
		}
	}
	second, err := p.diffAll(ctx, rest, definitionsOf(created))
	if err != nil {
		return nil, err
	}
	plans := changedOnly(append(first, second...))
	pruned, err := p.prunes(ctx, inventory, rendered.Objects)
	if err != nil {
		return nil, err
	}
	deleted, err := p.deletions(ctx, rendered, inventory)
	if err != nil {
		return nil, err
	}
	return append(append(plans, pruned...), deleted...), nil
}

// diffAll dry-runs the objects concurrently; an unchanged object's plan
// has no action.
func (p *Previewer) diffAll(ctx context.Context, objects []*unstructured.Unstructured, fresh newDefinitions) ([]api.ObjectPlan, error) {
	plans := make([]api.ObjectPlan, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(diffConcurrency)
	for i, o := range objects {
		g.Go(func() error {
			plan, err := p.diff(gctx, o, fresh)
			plans[i] = plan
			return err
		})
	}
	return plans, g.Wait()
}

// diff dry-runs one object. The API server's refusal of the object is the
// answer for it, not an error of the preview; so is a refusal because its
// Namespace or CRD is not there yet, when the apply creates it first.
func (p *Previewer) diff(ctx context.Context, o *unstructured.Unstructured, fresh newDefinitions) (api.ObjectPlan, error) {
	entry, live, dryRun, err := p.dryRun.Diff(ctx, o, ssa.DiffOptions{})
	switch {
	case err != nil && ctx.Err() != nil:
		return api.ObjectPlan{}, ctx.Err()
	case err != nil && fresh.needs(o):
		return objectPlan(api.ObjectCreate, o), nil
	case err != nil && ssaerrors.IsImmutableError(err) && o.GetAnnotations()[apply.ForceAnnotation] == "enabled":
		plan := objectPlan(api.ObjectChange, o)
		plan.Reason = "an immutable field changes: the object would be deleted and created again (" + apply.ForceAnnotation + ")"
		return plan, nil
	case err != nil:
		plan := objectPlan(api.ObjectRefused, o)
		plan.Reason = err.Error()
		return plan, nil
	}
	switch entry.Action {
	case ssa.CreatedAction:
		return objectPlan(api.ObjectCreate, o), nil
	case ssa.ConfiguredAction:
		plan := objectPlan(api.ObjectChange, o)
		plan.Fields = ChangedFields(live.Object, dryRun.Object)
		return plan, nil
	}
	return api.ObjectPlan{}, nil
}

func changedOnly(plans []api.ObjectPlan) []api.ObjectPlan {
	out := []api.ObjectPlan{}
	for _, plan := range plans {
		if plan.Action != "" {
			out = append(out, plan)
		}
	}
	return out
}

// prunes lists what the apply would prune: objects of the inventory the
// commit no longer renders that are still there, carry Caravan's label and
// not the annotation that keeps them.
func (p *Previewer) prunes(ctx context.Context, inventory apply.Inventory, rendered []*unstructured.Unstructured) ([]api.ObjectPlan, error) {
	stale, err := staleObjects(inventory, rendered)
	if err != nil {
		return nil, err
	}
	var out []api.ObjectPlan
	for _, o := range stale {
		live, err := p.live(ctx, o.GroupVersionKind(), o.GetNamespace(), o.GetName())
		if err != nil {
			return nil, err
		}
		if live == nil || live.GetLabels()[apply.ManagedLabel] != apply.ManagedValue || live.GetAnnotations()[apply.PruneAnnotation] == "disabled" {
			continue
		}
		out = append(out, objectPlan(api.ObjectPrune, o))
	}
	return out, nil
}

// deletions lists the objects of deletions.yaml that are there to delete.
func (p *Previewer) deletions(ctx context.Context, rendered *render.Result, inventory apply.Inventory) ([]api.ObjectPlan, error) {
	var out []api.ObjectPlan
	for _, when := range []struct {
		name string
		refs []render.ObjectRef
	}{{"pre_apply", rendered.Deletions.PreApply}, {"post_apply", rendered.Deletions.PostApply}} {
		for _, ref := range when.refs {
			plan := api.ObjectPlan{Action: api.ObjectDelete, Kind: ref.Kind, Namespace: ref.Namespace, Name: ref.Name,
				Reason: render.DeletionsFile + " " + when.name}
			gvk, ok := p.kindOf(ref.Kind, rendered.Objects, inventory)
			if !ok {
				plan.Action, plan.Reason = api.ObjectRefused, fmt.Sprintf("%s: the cluster serves no kind %q, or several API groups do", render.DeletionsFile, ref.Kind)
				out = append(out, plan)
				continue
			}
			live, err := p.live(ctx, gvk, ref.Namespace, ref.Name)
			if err != nil {
				return nil, err
			}
			if live != nil {
				out = append(out, plan)
			}
		}
	}
	return out, nil
}

// kindOf resolves a kind named without its group: from the kinds of the
// commit and the inventory, else from the cluster's discovery.
func (p *Previewer) kindOf(kind string, rendered []*unstructured.Unstructured, inventory apply.Inventory) (schema.GroupVersionKind, bool) {
	if gvk, ok := knownKind(kind, rendered, inventory); ok {
		return gvk, true
	}
	kinds, err := p.kube.RESTMapper().KindsFor(schema.GroupVersionResource{Resource: strings.ToLower(kind)})
	if err != nil || len(kinds) == 0 {
		return schema.GroupVersionKind{}, false
	}
	for _, k := range kinds[1:] {
		if k.Group != kinds[0].Group {
			return schema.GroupVersionKind{}, false
		}
	}
	return kinds[0], true
}

// live reads an object from the cluster; nil when it is not there, also
// when its kind is no longer served.
func (p *Previewer) live(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	err := p.kube.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, u)
	switch {
	case apierrors.IsNotFound(err), meta.IsNoMatchError(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading %s %s: %w", gvk.Kind, strings.TrimPrefix(namespace+"/"+name, "/"), err)
	}
	return u, nil
}

package preview

import (
	"maps"
	"slices"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func objectPlan(action string, o *unstructured.Unstructured) api.ObjectPlan {
	return api.ObjectPlan{Action: action, Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// definitionsFirst splits the objects as the staged apply orders them: the
// definitions (CRDs, Namespaces, ClusterRoles), which the apply waits for,
// and everything else.
func definitionsFirst(objects []*unstructured.Unstructured) (definitions, rest []*unstructured.Unstructured) {
	for _, o := range objects {
		if utils.IsClusterDefinition(o) {
			definitions = append(definitions, o)
		} else {
			rest = append(rest, o)
		}
	}
	return definitions, rest
}

// newDefinitions are what the apply would create before the rest: the
// names of new Namespaces and the kinds of new CRDs. A dry run of an
// object in one of them fails, since it does not exist yet.
type newDefinitions struct {
	namespaces map[string]bool
	kinds      map[schema.GroupKind]bool
}

func definitionsOf(created []*unstructured.Unstructured) newDefinitions {
	d := newDefinitions{namespaces: map[string]bool{}, kinds: map[schema.GroupKind]bool{}}
	for _, o := range created {
		switch {
		case utils.IsNamespace(o):
			d.namespaces[o.GetName()] = true
		case utils.IsCRD(o):
			group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
			kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
			d.kinds[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
	return d
}

// needs says whether the object lives in a new Namespace or is of a new kind.
func (d newDefinitions) needs(o *unstructured.Unstructured) bool {
	return d.namespaces[o.GetNamespace()] || d.kinds[o.GroupVersionKind().GroupKind()]
}

// staleObjects are the objects of the inventory that the commit no longer
// renders: the apply prunes those that still carry Caravan's label.
func staleObjects(inventory apply.Inventory, rendered []*unstructured.Unstructured) ([]*unstructured.Unstructured, error) {
	return inventory.Stale(apply.InventoryOf(rendered)).Objects()
}

// knownKind finds the group and version of a kind that deletions.yaml
// names without its group, among the kinds the commit and the inventory
// hold; it fails when several groups have the kind.
func knownKind(kind string, known []*unstructured.Unstructured, inventory apply.Inventory) (schema.GroupVersionKind, bool) {
	found := map[string]schema.GroupVersionKind{}
	for _, o := range known {
		if gvk := o.GroupVersionKind(); gvk.Kind == kind {
			found[gvk.Group] = gvk
		}
	}
	for _, e := range inventory {
		if meta, err := object.ParseObjMetadata(e.ID); err == nil && meta.GroupKind.Kind == kind {
			found[meta.GroupKind.Group] = meta.GroupKind.WithVersion(e.Version)
		}
	}
	if len(found) != 1 {
		return schema.GroupVersionKind{}, false
	}
	return slices.Collect(maps.Values(found))[0], true
}

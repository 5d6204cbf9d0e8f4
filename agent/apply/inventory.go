package apply

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/object"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Entry is one object a revision applied: its ID (namespace_name_group_kind)
// and the API version it was applied with, needed to delete it later.
// Digest and Fields, once the object was applied, are what lets the next
// version skip it and the drift watch tell Caravan's writes from others'.
type Entry struct {
	ID      string `json:"id"`
	Version string `json:"v"`
	// Digest is the object as Caravan applied it (ObjectDigest); empty
	// until its version became healthy, so that a version that failed
	// its health wait applies and waits for the object again.
	Digest string `json:"d,omitempty"`
	// Fields is the digest of the fields Caravan owned in the object right
	// after its own apply (OwnedFields).
	Fields string `json:"f,omitempty"`
}

// Inventory is every object one revision applied, sorted by ID. Pruning is
// a pure difference of two inventories, so it never touches an object
// Caravan did not apply.
type Inventory []Entry

// InventoryOf lists the objects of a revision.
func InventoryOf(objects []*unstructured.Unstructured) Inventory {
	inv := make(Inventory, 0, len(objects))
	for _, o := range objects {
		inv = append(inv, Entry{ID: object.UnstructuredToObjMetadata(o).String(), Version: o.GroupVersionKind().Version})
	}
	slices.SortFunc(inv, func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	return slices.CompactFunc(inv, func(a, b Entry) bool { return a.ID == b.ID })
}

// Stale lists what old has and next no longer has.
func (old Inventory) Stale(next Inventory) Inventory {
	keep := make(map[string]bool, len(next))
	for _, e := range next {
		keep[e.ID] = true
	}
	var stale Inventory
	for _, e := range old {
		if !keep[e.ID] {
			stale = append(stale, e)
		}
	}
	return stale
}

// Index maps the entries by ID.
func (inv Inventory) Index() map[string]Entry {
	out := make(map[string]Entry, len(inv))
	for _, e := range inv {
		out[e.ID] = e
	}
	return out
}

// WithoutDigests forgets the digests of the entries that of has, so the
// next version applies those objects again.
func (inv Inventory) WithoutDigests(of Inventory) Inventory {
	forget := of.Index()
	out := slices.Clone(inv)
	for i := range out {
		if _, ok := forget[out[i].ID]; ok {
			out[i].Digest = ""
		}
	}
	return out
}

// Objects turns entries back into objects that name what to delete.
func (inv Inventory) Objects() ([]*unstructured.Unstructured, error) {
	out := make([]*unstructured.Unstructured, 0, len(inv))
	for _, e := range inv {
		meta, err := object.ParseObjMetadata(e.ID)
		if err != nil {
			return nil, fmt.Errorf("inventory entry %q: %w", e.ID, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(meta.GroupKind.WithVersion(e.Version))
		u.SetName(meta.Name)
		u.SetNamespace(meta.Namespace)
		out = append(out, u)
	}
	return out, nil
}

// ObjMetadataSet is the inventory in the form kstatus waits take.
func (inv Inventory) ObjMetadataSet() (object.ObjMetadataSet, error) {
	set := make(object.ObjMetadataSet, 0, len(inv))
	for _, e := range inv {
		meta, err := object.ParseObjMetadata(e.ID)
		if err != nil {
			return nil, fmt.Errorf("inventory entry %q: %w", e.ID, err)
		}
		set = append(set, meta)
	}
	return set, nil
}

// healthyOnceApplied are kinds with no status that kstatus reads: an object
// of one is Current as soon as it exists, and the apply has just made it
// exist. Waiting on them would only poll every object of them each second.
var healthyOnceApplied = map[schema.GroupKind]bool{}

func init() {
	for group, kinds := range map[string][]string{
		"":                             {"ConfigMap", "Secret", "ServiceAccount", "LimitRange", "ResourceQuota", "Endpoints"},
		"rbac.authorization.k8s.io":    {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"},
		"scheduling.k8s.io":            {"PriorityClass"},
		"networking.k8s.io":            {"NetworkPolicy", "IngressClass"},
		"storage.k8s.io":               {"StorageClass"},
		"node.k8s.io":                  {"RuntimeClass"},
		"discovery.k8s.io":             {"EndpointSlice"},
		"admissionregistration.k8s.io": {"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"},
	} {
		for _, kind := range kinds {
			healthyOnceApplied[schema.GroupKind{Group: group, Kind: kind}] = true
		}
	}
}

// WithHealth lists the entries whose health is more than their existence.
func (inv Inventory) WithHealth() Inventory {
	var out Inventory
	for _, e := range inv {
		meta, err := object.ParseObjMetadata(e.ID)
		if err != nil || !healthyOnceApplied[meta.GroupKind] {
			out = append(out, e)
		}
	}
	return out
}

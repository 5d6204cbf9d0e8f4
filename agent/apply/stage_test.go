package apply

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func names(objects []*unstructured.Unstructured) []string {
	out := []string{}
	for _, o := range objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	return out
}

func TestStagesPutDefinitionsFirstAndWaitForThem(t *testing.T) {
	got := stages([]*unstructured.Unstructured{
		obj("apps/v1", "Deployment", "app", "web"),
		obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "web"),
		obj("storage.k8s.io/v1", "StorageClass", "", "fast"),
		obj("v1", "Namespace", "", "app"),
		obj("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", "widgets.example.com"),
		obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "web"),
		obj("example.com/v1", "Widget", "app", "w"),
	})
	assert.Len(t, got, 4)
	assert.Equal(t, []string{"Namespace/app", "CustomResourceDefinition/widgets.example.com", "ClusterRole/web"}, names(got[0].objects))
	assert.True(t, got[0].wait)
	assert.Equal(t, []string{"StorageClass/fast"}, names(got[1].objects))
	assert.True(t, got[1].wait)
	assert.Equal(t, []string{"ClusterRoleBinding/web"}, names(got[2].objects))
	assert.False(t, got[2].wait)
	assert.Equal(t, []string{"Deployment/web", "Widget/w"}, names(got[3].objects))
	assert.False(t, got[3].wait)
}

// liveFake answers InSync from a set of IDs.
type liveFake map[string]bool

func (l liveFake) InSync(e Entry) bool { return l[e.ID] }

func TestPlanSkipsOnlyObjectsAsLastAppliedAndInSync(t *testing.T) {
	kept, edited, drifted, fresh := obj("v1", "ConfigMap", "default", "kept"), obj("v1", "ConfigMap", "default", "edited"),
		obj("apps/v1", "Deployment", "default", "web"), obj("v1", "ConfigMap", "default", "new")
	previous := InventoryOf([]*unstructured.Unstructured{kept, edited, drifted})
	for i, o := range []*unstructured.Unstructured{kept, edited, drifted} {
		d, err := ObjectDigest(o)
		assert.NoError(t, err)
		previous[slicesIndex(previous, o)].Digest, previous[slicesIndex(previous, o)].Fields = d, "fields-"+string(rune('a'+i))
	}
	next := []*unstructured.Unstructured{kept.DeepCopy(), edited.DeepCopy(), drifted.DeepCopy(), fresh}
	next[1].SetAnnotations(map[string]string{"changed": "in git"})
	live := liveFake{previous[slicesIndex(previous, kept)].ID: true, previous[slicesIndex(previous, edited)].ID: true}

	a := &Applier{live: live}
	res := &Result{}
	changed, digests, err := a.plan(next, previous, res)
	assert.NoError(t, err)
	assert.Equal(t, []string{"ConfigMap/edited", "Deployment/web", "ConfigMap/new"}, names(changed),
		"what git changed, what drifted and what is new are applied; the rest costs nothing")
	assert.Equal(t, 1, res.Unchanged)
	assert.Len(t, digests, 3, "each object to apply has the digest its record gets")
	assert.Equal(t, previous[slicesIndex(previous, kept)], res.Inventory[slicesIndex(res.Inventory, kept)], "a skipped object keeps its record")
	assert.Empty(t, res.Inventory[slicesIndex(res.Inventory, edited)].Digest, "an object to apply gets its record from the apply")

	changed, _, err = (&Applier{}).plan(next, previous, &Result{})
	assert.NoError(t, err)
	assert.Len(t, changed, 4, "without a live state every object is applied")

	previous[slicesIndex(previous, kept)].Digest = ""
	changed, _, err = a.plan(next, previous, &Result{})
	assert.NoError(t, err)
	assert.Equal(t, "ConfigMap/kept", names(changed)[0], "an object whose version did not become healthy is applied again")
}

func slicesIndex(inv Inventory, o *unstructured.Unstructured) int {
	id := InventoryOf([]*unstructured.Unstructured{o})[0].ID
	for i, e := range inv {
		if e.ID == id {
			return i
		}
	}
	return -1
}

package preview

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/caravan-gitops/caravan/agent/apply"
)

func unstructuredOf(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	return &unstructured.Unstructured{Object: parse(t, doc)}
}

func TestObjectsOfNewDefinitionsWaitForThem(t *testing.T) {
	ns := unstructuredOf(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n")
	crd := unstructuredOf(t, `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.org}
spec: {group: example.org, names: {kind: Widget, plural: widgets}}
`)
	role := unstructuredOf(t, "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: reader}\n")
	cm := unstructuredOf(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: shop}\n")
	widget := unstructuredOf(t, "apiVersion: example.org/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\n")
	other := unstructuredOf(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: default}\n")

	definitions, rest := definitionsFirst([]*unstructured.Unstructured{cm, ns, widget, crd, role, other})
	assert.Equal(t, []*unstructured.Unstructured{ns, crd, role}, definitions)
	assert.Equal(t, []*unstructured.Unstructured{cm, widget, other}, rest)

	fresh := definitionsOf([]*unstructured.Unstructured{ns, crd})
	assert.True(t, fresh.needs(cm), "in a new Namespace")
	assert.True(t, fresh.needs(widget), "of a new kind")
	assert.False(t, fresh.needs(other))
	assert.False(t, newDefinitions{}.needs(cm))
}

func TestStaleObjectsAreInTheInventoryOnly(t *testing.T) {
	kept := unstructuredOf(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\n")
	inventory := apply.InventoryOf([]*unstructured.Unstructured{kept,
		unstructuredOf(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: gone, namespace: default}\n")})
	stale, err := staleObjects(inventory, []*unstructured.Unstructured{kept})
	require.NoError(t, err)
	require.Len(t, stale, 1)
	assert.Equal(t, schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}, stale[0].GroupVersionKind())
	assert.Equal(t, "default/gone", stale[0].GetNamespace()+"/"+stale[0].GetName())
}

func TestKindsOfDeletionsComeFromTheCommitAndTheInventory(t *testing.T) {
	rendered := []*unstructured.Unstructured{unstructuredOf(t, "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: high}\n")}
	inventory := apply.InventoryOf([]*unstructured.Unstructured{
		unstructuredOf(t, "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web, namespace: default}\n"),
		unstructuredOf(t, "apiVersion: example.org/v1\nkind: Ingress\nmetadata: {name: web2, namespace: default}\n"),
	})
	gvk, ok := knownKind("PriorityClass", rendered, inventory)
	assert.True(t, ok)
	assert.Equal(t, schema.GroupVersionKind{Group: "scheduling.k8s.io", Version: "v1", Kind: "PriorityClass"}, gvk)
	_, ok = knownKind("Ingress", rendered, inventory)
	assert.False(t, ok, "two groups have the kind")
	_, ok = knownKind("Secret", rendered, inventory)
	assert.False(t, ok)
}

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

func TestPartitionSendsOnlyObjectsTheLastRevisionAppliedThroughTheDiff(t *testing.T) {
	previous := InventoryOf([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "default", "kept"),
		obj("apps/v1", "Deployment", "default", "web"),
	})
	known, fresh := partition([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "default", "kept"),
		obj("v1", "ConfigMap", "default", "new"),
		obj("apps/v1", "Deployment", "other", "web"),
		obj("apps/v1beta1", "Deployment", "default", "web"),
	}, previous)
	assert.Equal(t, []string{"ConfigMap/kept", "Deployment/web"}, names(known), "the API version does not make an object new")
	assert.Equal(t, []string{"ConfigMap/new", "Deployment/web"}, names(fresh))
	assert.Equal(t, "other", fresh[1].GetNamespace())

	known, fresh = partition([]*unstructured.Unstructured{obj("v1", "ConfigMap", "default", "a")}, nil)
	assert.Empty(t, known)
	assert.Len(t, fresh, 1, "a first apply has no diff to make")
}

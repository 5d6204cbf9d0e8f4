package apply

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func obj(apiVersion, kind, namespace, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	u.SetNamespace(namespace)
	u.SetName(name)
	return u
}

func TestInventoryDiffPrunesOnlyWhatLeft(t *testing.T) {
	old := InventoryOf([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "default", "a"),
		obj("apps/v1", "Deployment", "kube-system", "dns"),
		obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader"),
		obj("v1", "ConfigMap", "default", "a"),
	})
	require.Len(t, old, 3, "duplicates are listed once")
	next := InventoryOf([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "default", "a"),
		obj("apps/v1", "Deployment", "kube-system", "dns-v2"),
	})
	stale := old.Stale(next)
	require.Len(t, stale, 2)
	objs, err := stale.Objects()
	require.NoError(t, err)
	var names []string
	for _, o := range objs {
		names = append(names, o.GetAPIVersion()+" "+o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	assert.ElementsMatch(t, []string{"apps/v1 Deployment kube-system/dns", "rbac.authorization.k8s.io/v1 ClusterRole /reader"}, names)

	assert.Empty(t, next.Stale(next), "an unchanged revision prunes nothing")
	assert.Len(t, Inventory(nil).Stale(next), 0, "the first revision prunes nothing")
	assert.Len(t, old.Stale(nil), 3, "an empty revision would prune everything it applied")

	set, err := next.ObjMetadataSet()
	require.NoError(t, err)
	assert.Len(t, set, 2)
	_, err = Inventory{{ID: "garbage", Version: "v1"}}.Objects()
	assert.Error(t, err)
}

func TestHealthWaitSkipsKindsThatAreHealthyOnceTheyExist(t *testing.T) {
	inv := InventoryOf([]*unstructured.Unstructured{
		obj("v1", "ConfigMap", "default", "settings"),
		obj("v1", "Secret", "default", "token"),
		obj("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "", "reader"),
		obj("apps/v1", "Deployment", "default", "web"),
		obj("v1", "Service", "default", "web"),
		obj("v1", "Namespace", "", "default"),
		obj("example.com/v1", "ConfigMap", "default", "lookalike"),
		obj("policy/v1", "PodDisruptionBudget", "default", "web"),
	})
	var kinds []string
	for _, e := range inv.WithHealth() {
		kinds = append(kinds, e.ID)
	}
	assert.ElementsMatch(t, []string{
		"default_web_apps_Deployment", "default_web__Service", "_default__Namespace",
		"default_lookalike_example.com_ConfigMap", "default_web_policy_PodDisruptionBudget",
	}, kinds)
}

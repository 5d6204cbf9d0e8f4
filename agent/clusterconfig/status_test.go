package clusterconfig_test

import (
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/controlplane"
)

// The CRD types every field the agent keeps in its status, with no
// x-kubernetes-preserve-unknown-fields: the API server would prune a
// field the schema lacks, and a restarted agent would lose it.
func TestTheCRDSchemaTypesEveryStatusField(t *testing.T) {
	crd, err := clusterconfig.CRD()
	require.NoError(t, err)
	status := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["status"]
	assert.Nil(t, status.XPreserveUnknownFields)
	checkSchema(t, "status", reflect.TypeFor[clusterconfig.Status](), status)
}

var timeType = reflect.TypeFor[time.Time]()

// checkSchema walks a Go type as encoding/json writes it beside its schema.
func checkSchema(t *testing.T, path string, typ reflect.Type, schema apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	switch {
	case typ == timeType || typ == reflect.TypeFor[metav1.Time]():
		assert.Equal(t, "date-time", schema.Format, "%s is a time", path)
	case typ.Kind() == reflect.Struct:
		assert.Equal(t, "object", schema.Type, path)
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			prop, ok := schema.Properties[name]
			if assert.True(t, ok, "the schema has %s.%s", path, name) {
				checkSchema(t, path+"."+name, f.Type, prop)
			}
		}
	case typ.Kind() == reflect.Slice:
		assert.Equal(t, "array", schema.Type, path)
		if assert.NotNil(t, schema.Items, path) {
			checkSchema(t, path+"[]", typ.Elem(), *schema.Items.Schema)
		}
	case typ.Kind() == reflect.Map:
		assert.Equal(t, "object", schema.Type, path)
		if assert.NotNil(t, schema.AdditionalProperties, path) {
			checkSchema(t, path+"{}", typ.Elem(), *schema.AdditionalProperties.Schema)
		}
	case typ.Kind() == reflect.String:
		assert.Equal(t, "string", schema.Type, path)
	case typ.Kind() == reflect.Bool:
		assert.Equal(t, "boolean", schema.Type, path)
	case typ.Kind() >= reflect.Int && typ.Kind() <= reflect.Uint64:
		assert.Equal(t, "integer", schema.Type, path)
	default:
		t.Errorf("%s: no schema check for %s", path, typ)
	}
}

// A status written by an agent of format 1 (before formatVersion, its
// rolls without their desired capacity) is accepted by the typed schema,
// read back whole, and its roll goes on: the agent of this format neither
// starts it again nor moves its target.
func TestAStatusOfFormat1IsKeptAndItsRollResumes(t *testing.T) {
	cp := controlplane.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, clusterconfig.AddToScheme(scheme))
	require.NoError(t, apiextensionsv1.AddToScheme(scheme))
	kube, err := client.New(cp.Config, client.Options{Scheme: scheme})
	require.NoError(t, err)
	require.NoError(t, clusterconfig.Install(ctx, kube, "caravan-test"))

	fixture, err := os.ReadFile("testdata/status-format-1.json")
	require.NoError(t, err)
	var written map[string]any
	require.NoError(t, json.Unmarshal(fixture, &written))
	cc := &clusterconfig.ClusterConfig{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc))
	patch, err := json.Marshal(map[string]any{"status": written})
	require.NoError(t, err)
	require.NoError(t, kube.Status().Patch(ctx, cc, client.RawPatch("application/merge-patch+json", patch)))

	got := &clusterconfig.ClusterConfig{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, got))
	encoded, err := json.Marshal(got.Status)
	require.NoError(t, err)
	assert.JSONEq(t, string(fixture), string(encoded), "the status of format 1 is kept whole, field for field")
	assert.Zero(t, got.Status.FormatVersion)
	require.Equal(t, []nodes.RollState{{Pool: "workers", Target: 3}}, got.Status.Rolls)

	// The roll goes on from its state: the group at 4 (3 and the surge).
	snap := nodes.Snapshot{Now: time.Date(2026, 12, 5, 11, 0, 0, 0, time.UTC), Rolls: got.Status.Rolls,
		Groups: []nodes.Group{{Name: "workers-asg", Pool: "workers", Desired: 4, Min: 1, Max: 5}}}
	for i, revision := range []string{"r1", "r1", "r2", "r2"} {
		id := "i-" + string(rune('a'+i))
		snap.Groups[0].Instances = append(snap.Groups[0].Instances, nodes.Instance{ID: id, Revision: revision, Lifecycle: "InService"})
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-" + id, Labels: map[string]string{nodes.PoolLabel: "workers"}},
			Spec:   corev1.NodeSpec{ProviderID: "aws:///eu-central-1a/" + id},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
		if i < 2 {
			n.Labels[nodes.LifecycleLabel] = nodes.DecommissionValue
		}
		snap.Nodes = append(snap.Nodes, n)
	}
	cmds, out := nodes.Plan(snap, nodes.RollConfig{Pools: []nodes.PoolSpec{{Name: "workers", Revision: "r2"}}, Surge: 1})
	for _, c := range cmds {
		assert.NotEqual(t, nodes.SuspendRebalance, c.Kind, "the roll is not started again")
	}
	assert.Equal(t, []nodes.RollState{{Pool: "workers", Target: 3, Desired: 4}}, out.Rolls, "its target kept, the group's desired capacity taken as the roll's")

	// The agent of this format writes its format, and what it adds.
	got.Status.FormatVersion, got.Status.Rolls = clusterconfig.StatusFormat, out.Rolls
	require.NoError(t, kube.Status().Update(ctx, got))
	again := &clusterconfig.ClusterConfig{}
	require.NoError(t, kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, again))
	assert.Equal(t, clusterconfig.StatusFormat, again.Status.FormatVersion)
	assert.Equal(t, out.Rolls, again.Status.Rolls)
}

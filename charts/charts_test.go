package charts_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/caravan-gitops/caravan/charts"
)

const (
	testClusterID   = "aws:123456789012:eu-central-1:kube-1"
	testRegistryURL = "https://caravan.example.org"
)

var (
	agentRelease   = charts.Release{Name: "caravan-agent", Namespace: charts.AgentNamespace}
	centralRelease = charts.Release{Name: "caravan", Namespace: "caravan"}
)

// agentValues are the values every install of the agent needs, with more
// merged over them.
func agentValues(more map[string]any) map[string]any {
	v := map[string]any{"clusterID": testClusterID, "registry": map[string]any{"url": testRegistryURL}}
	for k, val := range more {
		v[k] = val
	}
	return v
}

// rendered is a chart's render, decoded.
type rendered struct {
	t       *testing.T
	objects []*unstructured.Unstructured
}

func render(t *testing.T, chartName string, rel charts.Release, values map[string]any) *rendered {
	t.Helper()
	out, err := charts.Render(chartName, rel, values)
	require.NoError(t, err)
	return &rendered{t: t, objects: decodeYAML(t, out)}
}

func decodeYAML(t *testing.T, stream string) []*unstructured.Unstructured {
	t.Helper()
	var objects []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(stream), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objects
		}
		require.NoError(t, err)
		if len(u.Object) > 0 {
			objects = append(objects, u)
		}
	}
}

// find returns the object of that kind and name, failing the test when
// there is none.
func (r *rendered) find(kind, name string) *unstructured.Unstructured {
	r.t.Helper()
	if u := r.lookup(kind, name); u != nil {
		return u
	}
	r.t.Fatalf("no %s %s rendered; got %v", kind, name, r.names())
	return nil
}

func (r *rendered) lookup(kind, name string) *unstructured.Unstructured {
	for _, u := range r.objects {
		if u.GetKind() == kind && u.GetName() == name {
			return u
		}
	}
	return nil
}

func (r *rendered) names() []string {
	var names []string
	for _, u := range r.objects {
		names = append(names, u.GetKind()+"/"+u.GetName())
	}
	return names
}

// decode converts the object of that kind and name to its Go type; a field
// the type does not know fails the test, so a misspelt template is caught.
func decode[T any](r *rendered, kind, name string) *T {
	r.t.Helper()
	typed := new(T)
	require.NoError(r.t, runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(r.find(kind, name).Object, typed, true), "%s %s", kind, name)
	return typed
}

func TestChartsPassLint(t *testing.T) {
	for name, values := range map[string]map[string]any{
		charts.Agent:   agentValues(nil),
		charts.Central: {},
	} {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			result := lint.Run([]string{name}, values)
			assert.Equal(t, 1, result.TotalChartsLinted)
			assert.Empty(t, result.Errors)
			// INFO messages, such as the advice to set an icon, are not faults.
			assert.False(t, action.HasWarningsOrErrors(result), "%v", result.Messages)
		})
	}
}

func TestLoadRefusesAnUnknownChart(t *testing.T) {
	_, err := charts.Load("caravan-other")
	assert.ErrorContains(t, err, `no chart "caravan-other"`)
}

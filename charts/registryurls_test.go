package charts_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"

	"github.com/caravan-gitops/caravan/charts"
)

// registry.url names the registry's replicas as a list or as one string of
// URLs separated by commas; the agent gets them as its --registry-url.
func TestAgentTakesSeveralRegistryURLs(t *testing.T) {
	const both = "https://a.example.org,https://b.example.org/caravan"
	for name, url := range map[string]any{
		"a list":                       []any{"https://a.example.org", "https://b.example.org/caravan"},
		"a string separated by commas": both,
	} {
		r := render(t, charts.Agent, agentRelease, agentValues(map[string]any{"registry": map[string]any{"url": url}}))
		settings := decode[corev1.ConfigMap](r, "ConfigMap", "caravan-agent")
		assert.Equal(t, both, settings.Data["CARAVAN_REGISTRY_URL"], name)
	}
}

func TestSchemaRejectsABadURLAmongSeveral(t *testing.T) {
	for name, url := range map[string]any{
		"in a string":      "https://a.example.org,ftp://b.example.org",
		"an empty one":     "https://a.example.org,",
		"in a list":        []any{"https://a.example.org", "b.example.org"},
		"an empty list":    []any{},
		"not a URL at all": 8080,
	} {
		_, err := charts.Render(charts.Agent, agentRelease, agentValues(map[string]any{"registry": map[string]any{"url": url}}))
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "/registry/url", name)
	}
}

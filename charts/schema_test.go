package charts_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"helm.sh/helm/v4/pkg/action"

	"github.com/caravan-gitops/caravan/charts"
)

func TestSchemaRejectsBadValues(t *testing.T) {
	cases := map[string]struct {
		chart  string
		values map[string]any
		says   []string
	}{
		"agent: unknown key": {
			chart: charts.Agent, values: agentValues(map[string]any{"replicaCount": 3}),
			says: []string{"replicaCount"},
		},
		"agent: unknown nested key": {
			chart: charts.Agent, values: agentValues(map[string]any{"rbac": map[string]any{"clusterAdmn": false}}),
			says: []string{"clusterAdmn"},
		},
		"agent: replicas not a number": {
			chart: charts.Agent, values: agentValues(map[string]any{"replicas": "two"}),
			says: []string{"/replicas", "string"},
		},
		"agent: clusterAdmin not a boolean": {
			chart: charts.Agent, values: agentValues(map[string]any{"rbac": map[string]any{"clusterAdmin": "no"}}),
			says: []string{"/rbac/clusterAdmin"},
		},
		"agent: no cluster id": {
			chart: charts.Agent, values: map[string]any{"registry": map[string]any{"url": testRegistryURL}},
			says: []string{"/clusterID"},
		},
		"agent: malformed cluster id": {
			chart: charts.Agent, values: agentValues(map[string]any{"clusterID": "kube-1"}),
			says: []string{"/clusterID"},
		},
		"agent: no registry url": {
			chart: charts.Agent, values: map[string]any{"clusterID": testClusterID},
			says: []string{"/registry/url"},
		},
		"agent: unknown log level": {
			chart: charts.Agent, values: agentValues(map[string]any{"logLevel": "verbose"}),
			says: []string{"/logLevel"},
		},
		"agent: network policy without CIDRs": {
			chart: charts.Agent, values: agentValues(map[string]any{"networkPolicy": map[string]any{"enabled": true}}),
			says: []string{"/networkPolicy/registry/cidrs", "/networkPolicy/apiServer/cidrs"},
		},
		"agent: rule without verbs": {
			chart: charts.Agent, values: agentValues(map[string]any{"rbac": map[string]any{"rules": []any{map[string]any{"resources": []any{"configmaps"}}}}}),
			says: []string{"/rbac/rules/0", "verbs"},
		},
		"central: admin token Secret not a Kubernetes name": {
			chart: charts.Central, values: map[string]any{"adminToken": map[string]any{"existingSecret": "My Token"}},
			says: []string{"/adminToken/existingSecret"},
		},
		"central: unknown key": {
			chart: charts.Central, values: map[string]any{"databaseURL": "postgres://x"},
			says: []string{"databaseURL"},
		},
		"central: sqlite with two replicas": {
			chart: charts.Central, values: map[string]any{"replicas": 2},
			says: []string{"/replicas"},
		},
		"central: replicas not a number": {
			chart: charts.Central, values: map[string]any{"replicas": "3"},
			says: []string{"/replicas"},
		},
		"central: postgres without its Secret": {
			chart: charts.Central, values: map[string]any{"storage": map[string]any{"type": "postgres"}, "replicas": 2},
			says: []string{"/storage/postgres/urlSecret"},
		},
		"central: unknown storage": {
			chart: charts.Central, values: map[string]any{"storage": map[string]any{"type": "mysql"}},
			says: []string{"/storage/type"},
		},
		"central: ingress without a host": {
			chart: charts.Central, values: map[string]any{"ingress": map[string]any{"enabled": true}},
			says: []string{"/ingress"},
		},
		"central: git auth without its Secret": {
			chart: charts.Central, values: map[string]any{"git": map[string]any{"auth": "ssh"}},
			says: []string{"/git"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := charts.Render(tc.chart, agentRelease, tc.values)
			require.Error(t, err)
			for _, s := range tc.says {
				assert.Contains(t, err.Error(), s)
			}
		})
	}
}

// Values given with the schema skipped still cannot run SQLite twice.
func TestTemplateRefusesSQLiteReplicasWithoutTheSchema(t *testing.T) {
	c, err := charts.Load(charts.Central)
	require.NoError(t, err)
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy, install.ReleaseName, install.Namespace = action.DryRunClient, "caravan", "caravan"
	install.SkipSchemaValidation = true
	_, err = install.Run(c, map[string]any{"replicas": 2})
	assert.ErrorContains(t, err, "replicas: SQLite allows one replica, got 2")
	_, err = install.Run(c, map[string]any{"storage": map[string]any{"type": "postgres"}, "replicas": 2})
	assert.ErrorContains(t, err, "storage.postgres.urlSecret.name")
}

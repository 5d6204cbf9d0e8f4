package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
	"github.com/caravan-gitops/caravan/test/gitserver"
)

const (
	renderDev1  = "aws:123456789012:eu-central-1:dev-1"
	renderDev2  = "aws:123456789012:eu-central-1:dev-2"
	renderStage = "aws:123456789012:eu-west-1:alpha-1"
)

// renderFleet is a registry of three clusters following a copy of the
// reference config repo on a real git server.
type renderFleet struct {
	*e2e
	git   *gitserver.Server
	first string
}

func startRenderFleet(t *testing.T) *renderFleet {
	t.Helper()
	isolate(t)
	git := gitserver.Start(t)
	first, err := git.CreateRepo("config", "../manifests", "dev", "alpha")
	require.NoError(t, err)
	f := &renderFleet{e2e: &e2e{t: t, dir: t.TempDir()}, git: git, first: first}
	f.server = centraltest.Start(t, func(c *central.Config) {
		c.RepositoryURL = git.RepoURL("config")
		c.Git = gitauth.Credentials{Username: git.User, Password: git.Password}
		c.GitRefresh = time.Hour
	})
	t.Setenv(envGitUsername, git.User)
	t.Setenv(envGitPassword, git.Password)
	f.run("accounts", "create", "-f", f.file("account.yaml", "id: aws:123456789012\nname: team-a\nowner: team-a\nenvironment: test\n"))
	for id, ch := range map[string]string{renderDev1: "dev", renderDev2: "dev", renderStage: "alpha"} {
		local := id[strings.LastIndex(id, ":")+1:]
		f.run("clusters", "create", "-f", f.file("cluster.yaml", `id: `+id+`
infrastructure_account: aws:123456789012
region: `+strings.Split(id, ":")[2]+`
api_server_url: https://`+local+`.example.org
environment: test
channel: `+ch+`
lifecycle_status: ready
`))
		f.run("nodepools", "create", id, "-f", f.file("pool.yaml", `name: workers
profile: worker-default
instance_types: [m6i.large]
min_size: 1
max_size: 3
`))
	}
	return f
}

// objects parses a YAML stream of objects.
func objects(t *testing.T, stream string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, doc := range strings.Split(stream, "\n---\n") {
		var o map[string]any
		require.NoError(t, yaml.Unmarshal([]byte(doc), &o))
		out = append(out, o)
	}
	return out
}

func limitRange(t *testing.T, objs []map[string]any) string {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == "LimitRange" {
			raw, err := json.Marshal(o)
			require.NoError(t, err)
			return string(raw)
		}
	}
	t.Fatal("no LimitRange rendered")
	return ""
}

func TestRenderOneClusterWithItsOwnConfigItems(t *testing.T) {
	f := startRenderFleet(t)
	f.run("clusters", "config", "set", renderDev1, "default_container_memory_limit", "3Gi")

	dev1 := objects(t, f.run("render", "--cluster", renderDev1))
	dev2 := objects(t, f.run("render", "--cluster", renderDev2))
	require.Len(t, dev2, len(dev1))
	assert.Contains(t, limitRange(t, dev1), `"memory":"3Gi"`, "the cluster's own config item is in its render")
	assert.NotContains(t, limitRange(t, dev2), `"memory":"3Gi"`, "and only in its")
	for _, o := range dev1 {
		raw, err := json.Marshal(o)
		require.NoError(t, err)
		assert.NotContains(t, string(raw), "${", "every variable is substituted")
	}

	out := filepath.Join(t.TempDir(), "dev-1")
	assert.Contains(t, f.run("render", "--cluster", renderDev1, "--out", out), "rendered "+renderDev1+" at ")
	manifests, err := os.ReadFile(filepath.Join(out, "manifests.yaml"))
	require.NoError(t, err)
	assert.Len(t, objects(t, string(manifests)), len(dev1), "the file holds what stdout shows")
	for _, stack := range []string{"dev-1", "nodepool-workers-dev-1"} {
		body, err := os.ReadFile(filepath.Join(out, "stacks", stack+".yaml"))
		require.NoError(t, err, "stack %s is written", stack)
		assert.Contains(t, string(body), "AWSTemplateFormatVersion")
	}
	items, err := os.ReadFile(filepath.Join(out, "config-items.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(items), "default_container_memory_limit: 3Gi")
}

func TestRenderKeepsCiphertextAndNeedsOnlyAReaderToken(t *testing.T) {
	f := startRenderFleet(t)
	f.run("clusters", "config", "set", renderDev1, "db_password", "aws:kms:AQICAHh0ZXN0Y2lwaGVydGV4dA==")
	reader := strings.TrimSpace(f.run("tokens", "create", "--name", "ci", "--role", "reader"))

	out := filepath.Join(t.TempDir(), "dev-1")
	code, stdout, stderr := run(t, "", "render", "--cluster", renderDev1, "--out", out, "--server", f.server.URL, "--token", reader)
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, "rendered "+renderDev1)
	items, err := os.ReadFile(filepath.Join(out, "config-items.yaml"))
	require.NoError(t, err)
	assert.Contains(t, string(items), "db_password: aws:kms:AQICAHh0ZXN0Y2lwaGVydGV4dA==", "the ciphertext stays; only the agent decrypts")
}

func TestRenderACommitOrABranch(t *testing.T) {
	f := startRenderFleet(t)
	changed, err := f.git.Commit("config", "dev", "bigger limit", map[string][]byte{
		"config-defaults.yaml": append(must(os.ReadFile("../manifests/config-defaults.yaml")), []byte("\n")...),
		"kubernetes/base/limit-ranges.yaml": []byte(strings.ReplaceAll(string(must(os.ReadFile("../manifests/kubernetes/base/limit-ranges.yaml"))),
			"memory: ${default_container_memory_limit}", "memory: 5Gi")),
	})
	require.NoError(t, err)

	assert.Contains(t, limitRange(t, objects(t, f.run("render", "--cluster", renderDev1))), `"memory":"5Gi"`, "the channel's head by default")
	assert.Contains(t, limitRange(t, objects(t, f.run("render", "--cluster", renderDev1, "--commit", changed))), `"memory":"5Gi"`)
	assert.NotContains(t, limitRange(t, objects(t, f.run("render", "--cluster", renderDev1, "--commit", f.first))), `"memory":"5Gi"`, "an older commit")
	assert.NotContains(t, limitRange(t, objects(t, f.run("render", "--cluster", renderDev1, "--branch", "alpha"))), `"memory":"5Gi"`, "another branch")
}

func TestRenderAllNamesTheClusterFileAndLineThatFail(t *testing.T) {
	f := startRenderFleet(t)
	out := f.run("render", "--all", "--commit", f.first)
	assert.Regexp(t, `(?m)^CLUSTER\s+CHANNEL\s+COMMIT\s+OBJECTS\s+STACKS\s+RESULT$`, out)
	for _, id := range []string{renderDev1, renderDev2, renderStage} {
		assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(id)+`\s+\w+\s+`+f.first[:7]+`\s+[1-9]\d*\s+2\s+ok$`, out)
	}

	f.run("clusters", "config", "set", renderDev2, "default_container_memory_limit", "{evil: 1}")
	code, stdout, stderr := f.try("", "render", "--all", "--channel", "dev", "--commit", f.first)
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "1 of 2 clusters failed to render")
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(renderDev1)+`\s+dev\s+.*\sok$`, stdout)
	assert.Regexp(t, `(?m)^`+regexp.QuoteMeta(renderDev2)+`\s+dev\s+.*FAILED: render: kubernetes/base/limit-ranges\.yaml:\d+: .*default_container_memory_limit is not a single YAML scalar`, stdout)
	assert.NotContains(t, stdout, renderStage, "--channel selects")

	code, stdout, _ = f.try("", "render", "--all", "--commit", f.first, "-o", "json", "--out", filepath.Join(t.TempDir(), "all"))
	assert.Equal(t, ExitError, code)
	var rows []renderedCluster
	require.NoError(t, json.Unmarshal([]byte(stdout), &rows))
	require.Len(t, rows, 3)
	for _, r := range rows {
		assert.Equal(t, r.Cluster == renderDev2, r.Error != "", "%+v", r)
	}
}

func TestRenderUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"render"},
		{"render", "--cluster", "x", "--all"},
		{"render", "--cluster", "x", "--channel", "dev"},
		{"render", "--cluster", "x", "--commit", "abc", "--branch", "dev"},
	} {
		code, _, stderr := run(t, "", args...)
		assert.Equal(t, ExitUsage, code, "%v: %s", args, stderr)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

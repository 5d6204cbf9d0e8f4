package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	sha  = "0123456789abcdef0123456789abcdef01234567"
	hash = "fedcba9876543210"
)

var now = time.Date(2030, 1, 6, 12, 0, 0, 0, time.UTC)

func TestShortVersion(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"", "-"},
		{sha + "#" + hash, "0123456#fedcba9"},
		{sha, "0123456"},
		{sha + "#", "0123456"},
		{sha + "#abc", "0123456#abc"},
		{"abc#" + hash, "abc#fedcba9"},
		{"#" + hash, "#fedcba9"},
		{"0123456#fedcba9", "0123456#fedcba9"},
		{sha + "#" + hash + "#extra", "0123456#fedcba9"},
	} {
		assert.Equal(t, tc.want, shortVersion(tc.version), "version %q", tc.version)
	}
}

func TestClusterStatusText(t *testing.T) {
	problem := api.StatusProblem{Type: "https://caravan.io/problems/render", Title: "Render failed"}
	second := api.StatusProblem{Type: "https://caravan.io/problems/stack", Title: "Stack rolled back"}
	for _, tc := range []struct {
		name   string
		status *api.ClusterStatus
		want   string
	}{
		{"never reported", nil, "unknown"},
		{"idle", &api.ClusterStatus{Phase: api.PhaseIdle}, "idle"},
		{"rolling", &api.ClusterStatus{Phase: api.PhaseRollingNodes}, "rolling-nodes"},
		{"blocked wins over problems", &api.ClusterStatus{Phase: api.PhaseBlocked, Problems: []api.StatusProblem{problem}}, "blocked"},
		{"first problem wins over phase", &api.ClusterStatus{Phase: api.PhaseFailed, Problems: []api.StatusProblem{problem, second}}, "Render failed"},
		{"problem while applying", &api.ClusterStatus{Phase: api.PhaseApplying, Problems: []api.StatusProblem{second}}, "Stack rolled back"},
		{"no phase", &api.ClusterStatus{}, "unknown"},
	} {
		assert.Equal(t, tc.want, clusterStatusText(tc.status), tc.name)
	}
}

func TestAge(t *testing.T) {
	for _, tc := range []struct {
		ago  time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Minute, "0s"},
		{59 * time.Second, "59s"},
		{time.Minute, "1m"},
		{59*time.Minute + 59*time.Second, "59m"},
		{time.Hour, "1h"},
		{47 * time.Hour, "47h"},
		{48 * time.Hour, "2d"},
		{400 * 24 * time.Hour, "400d"},
	} {
		assert.Equal(t, tc.want, age(now.Add(-tc.ago), now), "%s ago", tc.ago)
	}
	assert.Empty(t, age(time.Time{}, now))
}

// fixtureClusters covers every kind of row: converged, failing, blocked,
// never reported, and unusual versions; their drift corrected, fought
// over, only reported, and not reported.
func fixtureClusters() []api.Cluster {
	created := time.Date(2029, 12, 1, 8, 0, 0, 0, time.UTC)
	base := func(local, env, channel string) api.Cluster {
		return api.Cluster{
			ID: "aws:123456789012:eu-central-1:" + local, Alias: local, InfrastructureAccount: "aws:123456789012",
			Region: "eu-central-1", APIServerURL: "https://" + local + ".example.org", Environment: env, Channel: channel,
			Provider: api.ProviderAWS, CriticalityLevel: 1, LifecycleStatus: api.LifecycleReady,
			ConfigItems: map[string]string{}, NodePools: []api.NodePool{}, CreatedAt: created, UpdatedAt: created,
		}
	}
	converged := base("kube-1", "production", "stable")
	converged.NodePools = []api.NodePool{{Name: "default"}, {Name: "workers"}}
	converged.Status = &api.ClusterStatus{
		CurrentVersion: sha + "#" + hash, NextVersion: sha + "#" + hash, LastVersion: sha + "#" + hash,
		Phase: api.PhaseIdle, Heartbeat: now.Add(-42 * time.Second), ReceivedAt: now.Add(-41 * time.Second),
		Drift: &api.DriftStatus{Mode: api.DriftEnabled, Detected: 3, Corrected: 3},
	}
	failing := base("kube-2", "test", "dev")
	failing.NodePools = []api.NodePool{{Name: "default"}}
	failing.Status = &api.ClusterStatus{
		NextVersion: "89abcdef89abcdef89abcdef89abcdef89abcdef#0011223344556677", Phase: api.PhaseFailed,
		Problems:  []api.StatusProblem{{Type: api.ProblemTypeBase + "render", Title: "Render failed", Detail: "missing key", Since: now.Add(-time.Hour)}},
		Heartbeat: now.Add(-3 * time.Hour),
		Drift: &api.DriftStatus{Mode: api.DriftEnabled, Detected: 4, Corrected: 2, Fights: []api.DriftFight{
			{Object: "Deployment default/web", Since: now.Add(-time.Hour), Until: now.Add(time.Hour)},
		}},
	}
	blocked := base("kube-3", "test", "dev")
	blocked.LifecycleStatus = api.LifecycleDecommissionRequested
	blocked.Status = &api.ClusterStatus{CurrentVersion: "abc", Phase: api.PhaseBlocked, Heartbeat: now.Add(-50 * time.Hour),
		Drift: &api.DriftStatus{Mode: api.DriftReport, Detected: 2}}
	never := base("kube-4", "test", "alpha")
	never.Alias = "edge"
	never.LifecycleStatus = api.LifecycleRequested
	opening := now.Add(20 * time.Hour)
	converged.Schedule = &api.ClusterSchedule{Open: true, Freezes: []api.Freeze{}}
	failing.Schedule = &api.ClusterSchedule{UpdateWindows: "Mon-Fri 08:00-17:00 UTC", NextOpening: &opening, Freezes: []api.Freeze{}}
	blocked.Schedule = &api.ClusterSchedule{NextOpening: &opening, Freezes: []api.Freeze{
		{ID: "1a249cd4ec953e13", Reason: "Cyber Week", By: "alice", Environment: "test", Since: now.Add(-time.Hour), Until: now.Add(20 * time.Hour),
			CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Hour)},
	}}
	return []api.Cluster{converged, failing, blocked, never}
}

func TestClusterTable(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatTable, fixtureClusters(), now))

	want := `ID                                     ALIAS    ENVIRONMENT   CHANNEL   VERSION           STATUS
aws:123456789012:eu-central-1:kube-1   kube-1   production    stable    0123456#fedcba9   idle
aws:123456789012:eu-central-1:kube-2   kube-2   test          dev       -                 Render failed
aws:123456789012:eu-central-1:kube-3   kube-3   test          dev       abc               blocked
aws:123456789012:eu-central-1:kube-4   edge     test          alpha     -                 unknown
`
	assert.Equal(t, want, out.String())
}

func TestClusterTableWide(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatWide, fixtureClusters(), now))

	want := `ID                                     ALIAS    ENVIRONMENT   CHANNEL   VERSION           STATUS          REGION         ACCOUNT            LIFECYCLE                PHASE     HEARTBEAT   DRIFT                  NODEPOOLS         NEXT WINDOW
aws:123456789012:eu-central-1:kube-1   kube-1   production    stable    0123456#fedcba9   idle            eu-central-1   aws:123456789012   ready                    idle      42s         3 corrected            default,workers   open
aws:123456789012:eu-central-1:kube-2   kube-2   test          dev       -                 Render failed   eu-central-1   aws:123456789012   ready                    failed    3h          1 fight, 2 corrected   default           2030-01-07 08:00 UTC (in 20h)
aws:123456789012:eu-central-1:kube-3   kube-3   test          dev       abc               blocked         eu-central-1   aws:123456789012   decommission-requested   blocked   2d          report: 2              -                 frozen until 2030-01-07 08:00 UTC
aws:123456789012:eu-central-1:kube-4   edge     test          alpha     -                 unknown         eu-central-1   aws:123456789012   requested                -         -           -                      -                 -
`
	assert.Equal(t, want, out.String())
}

func TestClusterTableEmpty(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatTable, []api.Cluster{}, now))
	assert.Equal(t, "ID   ALIAS   ENVIRONMENT   CHANNEL   VERSION   STATUS\n", out.String())
}

func TestClusterTableKeepsRowsOnOneLine(t *testing.T) {
	c := fixtureClusters()[1]
	c.Status.Problems[0].Title = "Render\tfailed:\n  missing key"
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatTable, []api.Cluster{c}, now))

	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 2)
	assert.True(t, strings.HasSuffix(lines[1], "   Render failed: missing key"), lines[1])
}

func TestClusterJSON(t *testing.T) {
	clusters := fixtureClusters()
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatJSON, clusters, now))

	var got []api.Cluster
	require.NoError(t, json.Unmarshal(out.Bytes(), &got))
	assert.Equal(t, clusters, got, "the full objects round-trip")
	want, err := json.MarshalIndent(clusters, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", out.String())
	assert.True(t, strings.HasPrefix(out.String(), "[\n  {\n    \"id\": \"aws:123456789012:eu-central-1:kube-1\","), out.String())
}

func TestClusterJSONEmptyIsAnArray(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatJSON, []api.Cluster{}, now))
	assert.Equal(t, "[]\n", out.String())
}

func TestClusterYAML(t *testing.T) {
	clusters := fixtureClusters()
	var out bytes.Buffer
	require.NoError(t, writeClusters(&out, formatYAML, clusters, now))

	var got []api.Cluster
	require.NoError(t, yaml.UnmarshalStrict(out.Bytes(), &got))
	assert.Equal(t, clusters, got)
	assert.True(t, strings.HasPrefix(out.String(), "- alias: kube-1\n"), out.String())
}

func TestDecodeObject(t *testing.T) {
	yamlDoc := "id: aws:123456789012\nname: team\nconfig_items:\n  cost_center: \"4711\"\n"
	a, err := decodeObject[api.InfrastructureAccount]([]byte(yamlDoc), "account.yaml")
	require.NoError(t, err)
	assert.Equal(t, api.InfrastructureAccount{ID: "aws:123456789012", Name: "team", ConfigItems: map[string]string{"cost_center": "4711"}}, *a)

	j, err := decodeObject[api.InfrastructureAccount]([]byte(`{"id":"aws:123456789012","name":"team"}`), "account.json")
	require.NoError(t, err)
	assert.Equal(t, "team", j.Name)

	_, err = decodeObject[api.InfrastructureAccount]([]byte("id: x\nnmae: typo\n"), "account.yaml")
	assert.ErrorContains(t, err, `account.yaml: json: unknown field "nmae"`)

	_, err = decodeObject[api.InfrastructureAccount]([]byte(" \n"), "stdin")
	assert.ErrorContains(t, err, "stdin is empty")
}

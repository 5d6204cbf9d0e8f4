package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

const (
	e2eAccount = "aws:123456789012"
	e2eCluster = "aws:123456789012:eu-central-1:kube-1"
)

// e2e runs the command line against a real caravan-central.
type e2e struct {
	t      *testing.T
	server *centraltest.Server
	dir    string
}

func startE2E(t *testing.T) *e2e {
	t.Helper()
	isolate(t)
	return &e2e{t: t, server: centraltest.Start(t), dir: t.TempDir()}
}

// run runs caravan as the admin and fails the test unless it succeeds.
func (e *e2e) run(args ...string) string {
	e.t.Helper()
	code, stdout, stderr := e.try("", args...)
	require.Equal(e.t, ExitOK, code, "caravan %s: %s", strings.Join(args, " "), stderr)
	return stdout
}

func (e *e2e) try(stdin string, args ...string) (int, string, string) {
	e.t.Helper()
	return run(e.t, stdin, append(args, "--server", e.server.URL, "--token", e.server.AdminToken)...)
}

func (e *e2e) file(name, content string) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	require.NoError(e.t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

// seed registers the account and the cluster every scenario starts from.
func (e *e2e) seed() {
	e.t.Helper()
	e.run("accounts", "create", "-f", e.file("account.yaml", `id: aws:123456789012
name: team-checkout-test
owner: team-checkout
environment: test
`))
	e.run("clusters", "create", "-f", e.file("cluster.json", `{
  "id": "aws:123456789012:eu-central-1:kube-1",
  "infrastructure_account": "aws:123456789012",
  "region": "eu-central-1",
  "api_server_url": "https://kube-1.example.org",
  "environment": "test",
  "channel": "dev"
}`))
}

func TestE2EClustersList(t *testing.T) {
	e := startE2E(t)
	e.seed()

	assert.Equal(t, `ID                                     ALIAS    ENVIRONMENT   CHANNEL   VERSION   STATUS
aws:123456789012:eu-central-1:kube-1   kube-1   test          dev       -         unknown
`, e.run("clusters", "list"))

	out := e.run("clusters", "list", "-o", "json")
	require.True(t, strings.HasPrefix(out, "[\n"), out)
	var clusters []api.Cluster
	require.NoError(t, json.Unmarshal([]byte(out), &clusters))
	require.Len(t, clusters, 1)
	c := clusters[0]
	assert.Equal(t, e2eCluster, c.ID)
	assert.Equal(t, "kube-1", c.Alias)
	assert.Equal(t, e2eAccount, c.InfrastructureAccount)
	assert.Equal(t, "eu-central-1", c.Region)
	assert.Equal(t, "https://kube-1.example.org", c.APIServerURL)
	assert.Equal(t, "test", c.Environment)
	assert.Equal(t, "dev", c.Channel)
	assert.Equal(t, api.ProviderAWS, c.Provider)
	assert.Equal(t, api.LifecycleRequested, c.LifecycleStatus)
	assert.Nil(t, c.Status)
	assert.False(t, c.CreatedAt.IsZero())

	assert.Equal(t, "ID   ALIAS   ENVIRONMENT   CHANNEL   VERSION   STATUS\n", e.run("clusters", "list", "--channel", "stable"))
	assert.Contains(t, e.run("clusters", "list", "--alias", "kube-1", "--environment", "test"), e2eCluster)
}

func TestE2EStatusReportedByTheAgent(t *testing.T) {
	e := startE2E(t)
	e.seed()
	agent, err := registry.New(e.server.URL, e.server.Token(t, api.RoleAgent, e2eCluster))
	require.NoError(t, err)
	version := "0123456789abcdef0123456789abcdef01234567#fedcba9876543210"
	require.NoError(t, agent.PutClusterStatus(context.Background(), e2eCluster, &api.ClusterStatus{
		CurrentVersion: version, NextVersion: version, LastVersion: version,
		Phase: api.PhaseIdle, AgentVersion: "v0.1.0", Heartbeat: time.Now().UTC(),
	}))

	assert.Equal(t, `ID                                     ALIAS    ENVIRONMENT   CHANNEL   VERSION           STATUS
aws:123456789012:eu-central-1:kube-1   kube-1   test          dev       0123456#fedcba9   idle
`, e.run("clusters", "list"))
	status := e.run("clusters", "status", e2eCluster)
	assert.Contains(t, status, "Current version:  "+version)
	assert.Contains(t, status, "Agent:            v0.1.0")
	assert.Contains(t, e.run("clusters", "history", e2eCluster), "idle    0123456#fedcba9   0123456#fedcba9")
}

func TestE2EConfigItemsAndBlocks(t *testing.T) {
	e := startE2E(t)
	e.seed()

	e.run("clusters", "config", "set", e2eCluster, "drain_grace_period", "4h")
	var c api.Cluster
	require.NoError(t, json.Unmarshal([]byte(e.run("clusters", "get", e2eCluster, "-o", "json")), &c))
	assert.Equal(t, map[string]string{"drain_grace_period": "4h"}, c.ConfigItems)
	e.run("clusters", "config", "unset", e2eCluster, "drain_grace_period")
	assert.NotContains(t, e.run("clusters", "get", e2eCluster), "drain_grace_period")

	assert.Contains(t, e.run("clusters", "block", e2eCluster, "--reason", "incident 4711", "--for", "1h"), "on cluster \""+e2eCluster+"\" created, until ")
	assert.Contains(t, e.run("clusters", "unblock", e2eCluster), "lifted")
	assert.Equal(t, "no active block to lift\n", e.run("clusters", "unblock", e2eCluster))

	audit := e.run("audit", "--resource-type", "cluster", "--resource-id", e2eCluster)
	assert.Contains(t, audit, "cluster/"+e2eCluster)
}

func TestE2ENodePoolsAndChannels(t *testing.T) {
	e := startE2E(t)
	e.seed()

	channels := e.run("channels", "list")
	lines := strings.Split(strings.TrimSpace(channels), "\n")
	require.GreaterOrEqual(t, len(lines), 2, channels)
	assert.Regexp(t, `^NAME\s+BRANCH\s+GATE\s+HEAD\s+PUBLISHED\s+SUBJECT\s+AUTHOR\s+AGE\s+CURRENT\s+OLDER\s+PROBLEM$`, lines[0])
	assert.Regexp(t, `^dev\s+dev\s+advisory\s+`, lines[1])

	e.run("nodepools", "create", e2eCluster, "-f", e.file("pool.yaml", `name: workers
profile: worker-default
instance_types: [m6i.large]
min_size: 1
max_size: 3
`))
	assert.Regexp(t, `workers\s+worker-default\s+m6i.large\s+1\s+3\s+none`, e.run("nodepools", "list", e2eCluster))
	e.run("nodepools", "patch", e2eCluster, "workers", "--patch", `{"max_size":5}`)
	assert.Contains(t, e.run("nodepools", "get", e2eCluster, "workers"), "max_size: 5")
	e.run("nodepools", "delete", e2eCluster, "workers")
	assert.Equal(t, "NAME   PROFILE   INSTANCE-TYPES   MIN   MAX   DISCOUNT\n", e.run("nodepools", "list", e2eCluster))
}

func TestE2EProblemsFromTheRegistry(t *testing.T) {
	e := startE2E(t)
	e.seed()

	code, _, stderr := e.try(`id: aws:123456789012:eu-central-1:kube-2
infrastructure_account: aws:123456789012
region: eu-central-1
api_server_url: https://kube-2.example.org
environment: test
channel: nope
`, "clusters", "create", "-f", "-")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "(HTTP 422)")
	assert.Contains(t, stderr, "\n  channel: ")

	code, _, stderr = e.try("", "clusters", "get", "aws:123456789012:eu-central-1:nope")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "(HTTP 404)")

	code, _, stderr = run(t, "", "clusters", "list", "--server", e.server.URL, "--token", "wrong")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "(HTTP 401)")
}

func TestE2EDecommission(t *testing.T) {
	e := startE2E(t)
	e.seed()
	ctx := context.Background()
	agent, err := registry.New(e.server.URL, e.server.Token(t, api.RoleAgent, e2eCluster))
	require.NoError(t, err)
	cluster := func() api.Cluster {
		t.Helper()
		var c api.Cluster
		require.NoError(t, json.Unmarshal([]byte(e.run("clusters", "get", e2eCluster, "-o", "json")), &c))
		return c
	}

	code, _, stderr := e.try("", "clusters", "decommission", e2eCluster, "--confirm")
	assert.Equal(t, ExitError, code, "confirming before requesting")
	assert.Contains(t, stderr, "Error: Decommission not requested (HTTP 409)")
	assert.Contains(t, stderr, "must be in decommission-requested first")

	out := e.run("clusters", "decommission", e2eCluster)
	assert.Equal(t, `cluster "`+e2eCluster+`": decommission requested (lifecycle_status decommission-requested, was requested)
Next: the agent deletes the node pool stacks; follow it with
  caravan clusters status `+e2eCluster+`
Once they are gone, let it delete the cluster stack with
  caravan clusters decommission `+e2eCluster+` --confirm
`, out)
	c := cluster()
	assert.Equal(t, api.LifecycleDecommissionRequested, c.LifecycleStatus)
	assert.Nil(t, c.DecommissionConfirmedAt)
	assert.Contains(t, e.run("clusters", "decommission", e2eCluster), "decommission requested already\n", "running it again changes nothing")

	require.NoError(t, agent.PutClusterStatus(ctx, e2eCluster, &api.ClusterStatus{Phase: api.PhaseDecommissioning, Heartbeat: time.Now().UTC()}))
	assert.Contains(t, e.run("clusters", "status", e2eCluster), "Phase:            decommissioning")

	out = e.run("clusters", "decommission", e2eCluster, "--confirm")
	assert.Regexp(t, `^cluster "`+e2eCluster+`": decommission confirmed at 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\nNext: the agent lifts the termination protection`, out)
	c = cluster()
	require.NotNil(t, c.DecommissionConfirmedAt)
	assert.Contains(t, e.run("clusters", "decommission", e2eCluster, "--confirm"), formatTime(*c.DecommissionConfirmedAt), "confirming again keeps the first time")
	assert.Contains(t, e.run("clusters", "decommission", e2eCluster), "decommission requested and confirmed at "+formatTime(*c.DecommissionConfirmedAt)+" already")

	require.NoError(t, agent.PutClusterStatus(ctx, e2eCluster, &api.ClusterStatus{Phase: api.PhaseDecommissioned, Heartbeat: time.Now().UTC()}))
	assert.Equal(t, api.LifecycleDecommissioned, cluster().LifecycleStatus)
	assert.Contains(t, e.run("clusters", "decommission", e2eCluster), "is decommissioned already")
	e.run("clusters", "delete", e2eCluster)
}

//go:build linux

package registry_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/postgres"
)

// replica is one caravan-central process of a registry on PostgreSQL.
func replica(ctx context.Context, t *testing.T, bin, name, database, adminTokenFile string) *host.Process {
	t.Helper()
	addr, err := host.FreeAddr()
	require.NoError(t, err)
	p, err := host.StartProcess(ctx, host.ProcessSpec{
		Name: name, Addr: addr, ReadyPath: "/readyz", LogPath: filepath.Join(t.TempDir(), name+".log"),
		Argv: []string{bin, "serve", "--listen", addr, "--database", database, "--admin-token-file", adminTokenFile, "--log-level", "warn"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// waitingPolls is how many long-polls wait at a replica now; -1 when it
// cannot be read.
func waitingPolls(ctx context.Context, p *host.Process) float64 {
	m, err := host.ReadMetrics(ctx, http.DefaultClient, p, "caravan_central_long_polls_waiting")
	if err != nil {
		return -1
	}
	return m["caravan_central_long_polls_waiting"]
}

// An agent's client given two replicas of the registry: when the one it
// long-polls is killed, its poll goes on at the other with its ETag (it
// waits there instead of being answered at once), a change made through
// the survivor answers it, and the client stays there.
func TestE2ELongPollMovesToTheOtherReplicaWhenOneIsKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	database := postgres.Start(t).NewDatabase(t)
	bin, err := host.BuildCentral(ctx, t.TempDir())
	require.NoError(t, err)
	const adminToken = "failover-test-admin-token-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(adminToken), 0o600))
	// One after the other: the first applies the migrations.
	replicas := map[string]*host.Process{}
	for _, name := range []string{"replica-a", "replica-b"} {
		p := replica(ctx, t, bin, name, database, tokenFile)
		replicas[p.URL] = p
	}

	var urls []string
	for u := range replicas {
		urls = append(urls, u)
	}
	admin, err := registry.New(urls[0]+","+urls[1], adminToken)
	require.NoError(t, err)
	_, _, err = admin.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{ID: "aws:123456789012", Name: "team-test", Owner: "team", Environment: "test"})
	require.NoError(t, err)
	_, _, err = admin.CreateCluster(ctx, &api.Cluster{ID: clusterID, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1",
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev"})
	require.NoError(t, err)
	token, err := admin.CreateToken(ctx, registry.TokenRequest{Name: "kube-1-agent", Role: api.RoleAgent, ClusterID: clusterID})
	require.NoError(t, err)

	// As the agent makes its client.
	agent, err := registry.New(urls[0]+","+urls[1], token.Secret, registry.WithRetryMax(1), registry.WithRetryWait(500*time.Millisecond, 2*time.Second))
	require.NoError(t, err)
	first, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{})
	require.NoError(t, err)
	victim := replicas[agent.Endpoint()]
	var survivor *host.Process
	for u, p := range replicas {
		if u != agent.Endpoint() {
			survivor = p
		}
	}

	type answer struct {
		res *registry.AssignmentResult
		err error
	}
	polled := make(chan answer, 1)
	start := time.Now()
	go func() {
		res, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{IfNoneMatch: first.ETag, Wait: time.Minute})
		polled <- answer{res, err}
	}()
	require.Eventually(t, func() bool { return waitingPolls(ctx, victim) == 1 }, 30*time.Second, 50*time.Millisecond, "the poll waits at its replica")
	require.NoError(t, victim.Kill())
	require.Eventually(t, func() bool { return waitingPolls(ctx, survivor) == 1 }, 30*time.Second, 50*time.Millisecond,
		"the poll waits at the other replica: it came with its ETag")
	assert.Equal(t, survivor.URL, agent.Endpoint())

	// With If-Match, so that a PATCH the dead replica swallowed is retried.
	_, etag, err := admin.GetCluster(ctx, clusterID)
	require.NoError(t, err)
	_, _, err = admin.PatchCluster(ctx, clusterID, map[string]any{"config_items": map[string]string{"coredns_replicas": "3"}}, etag)
	require.NoError(t, err)
	var got answer
	select {
	case got = <-polled:
	case <-time.After(30 * time.Second):
		t.Fatal("the change at the surviving replica did not answer the poll")
	}
	require.NoError(t, got.err)
	require.False(t, got.res.NotModified)
	assert.Equal(t, "3", got.res.Assignment.ConfigItems["coredns_replicas"])
	assert.NotEqual(t, first.ETag, got.res.ETag)
	assert.Less(t, time.Since(start), time.Minute, "answered by the change, not by the end of the wait")
	assert.Equal(t, survivor.URL, agent.Endpoint(), "the client stays at the replica that answers")
	assert.Equal(t, survivor.URL, admin.Endpoint(), "so does the admin's, once it met the dead replica or was there already")
}

package registry_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

const clusterID = "aws:123456789012:eu-central-1:kube-1"

// seed starts a real registry with one account and one cluster and returns
// an admin client.
func seed(t *testing.T) (*centraltest.Server, *registry.Client) {
	t.Helper()
	srv := centraltest.Start(t)
	admin, err := registry.New(srv.URL, srv.AdminToken)
	require.NoError(t, err)
	ctx := context.Background()
	_, _, err = admin.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{
		ID: "aws:123456789012", Name: "team-test", Owner: "team", Environment: "test",
	})
	require.NoError(t, err)
	_, _, err = admin.CreateCluster(ctx, &api.Cluster{
		ID: clusterID, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1",
		APIServerURL: "https://kube-1.example.org", Environment: "test", Channel: "dev",
	})
	require.NoError(t, err)
	return srv, admin
}

func TestE2EIfMatch(t *testing.T) {
	_, admin := seed(t)
	ctx := context.Background()

	_, etag, err := admin.GetCluster(ctx, clusterID)
	require.NoError(t, err)
	require.NotEmpty(t, etag)
	patched, newETag, err := admin.PatchCluster(ctx, clusterID, map[string]any{"config_items": map[string]string{"a": "1"}}, etag)
	require.NoError(t, err)
	assert.Equal(t, "1", patched.ConfigItems["a"])
	assert.NotEqual(t, etag, newETag)

	_, _, err = admin.PatchCluster(ctx, clusterID, map[string]any{"config_items": map[string]string{"a": "2"}}, etag)
	assert.True(t, registry.IsPreconditionFailed(err), "a stale ETag: %v", err)
	assert.True(t, registry.IsNotFound(admin.DeleteChannel(ctx, "nope", "")))
	_, _, err = admin.CreateInfrastructureAccount(ctx, &api.InfrastructureAccount{
		ID: "aws:123456789012", Name: "team-test", Owner: "team", Environment: "test",
	})
	assert.True(t, registry.IsConflict(err), "a second account with the same id: %v", err)
}

func TestE2EAssignmentLongPoll(t *testing.T) {
	srv, admin := seed(t)
	agent, err := registry.New(srv.URL, srv.Token(t, api.RoleAgent, clusterID))
	require.NoError(t, err)
	ctx := context.Background()

	first, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, first.ETag)
	assert.Equal(t, "dev", first.Assignment.Channel.Branch)

	unchanged, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{IfNoneMatch: first.ETag})
	require.NoError(t, err)
	assert.True(t, unchanged.NotModified)

	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _, _ = admin.PatchCluster(ctx, clusterID, map[string]any{"config_items": map[string]string{"log_level": "debug"}}, "")
	}()
	start := time.Now()
	changed, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{IfNoneMatch: first.ETag, Wait: 30 * time.Second})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 10*time.Second, "the change ends the long poll")
	assert.False(t, changed.NotModified)
	assert.NotEqual(t, first.ETag, changed.ETag)
	assert.Equal(t, "debug", changed.Assignment.ConfigItems["log_level"])
}

func TestE2EDecommission(t *testing.T) {
	srv, admin := seed(t)
	agent, err := registry.New(srv.URL, srv.Token(t, api.RoleAgent, clusterID))
	require.NoError(t, err)
	ctx := context.Background()

	_, err = admin.DecommissionCluster(ctx, clusterID)
	assert.True(t, registry.IsConflict(err), "not requested yet: %v", err)

	_, etag, err := admin.GetCluster(ctx, clusterID)
	require.NoError(t, err)
	_, _, err = admin.PatchCluster(ctx, clusterID, map[string]any{"lifecycle_status": api.LifecycleDecommissionRequested}, etag)
	require.NoError(t, err)
	_, err = agent.DecommissionCluster(ctx, clusterID)
	assert.Equal(t, 403, registry.StatusCode(err), "an agent cannot confirm: %v", err)

	c, err := admin.DecommissionCluster(ctx, clusterID)
	require.NoError(t, err)
	require.NotNil(t, c.DecommissionConfirmedAt)
	a, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{})
	require.NoError(t, err)
	assert.True(t, a.Assignment.Cluster.DecommissionConfirmed)

	require.NoError(t, agent.PutClusterStatus(ctx, clusterID, &api.ClusterStatus{Phase: api.PhaseDecommissioned}))
	c, _, err = admin.GetCluster(ctx, clusterID)
	require.NoError(t, err)
	assert.Equal(t, api.LifecycleDecommissioned, c.LifecycleStatus)
}

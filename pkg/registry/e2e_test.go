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

func TestE2EFreezes(t *testing.T) {
	srv, admin := seed(t)
	agent, err := registry.New(srv.URL, srv.Token(t, api.RoleAgent, clusterID))
	require.NoError(t, err)
	reader, err := registry.New(srv.URL, srv.Token(t, api.RoleReader, ""))
	require.NoError(t, err)
	ctx := context.Background()

	before := time.Now()
	first, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{})
	require.NoError(t, err)
	assert.False(t, first.RegistryTime.Before(before.Add(-time.Millisecond)), "the registry's time: %s", first.RegistryTime)
	assert.False(t, first.RegistryTime.After(time.Now()))
	assert.Empty(t, first.Assignment.Freezes)

	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	_, _, err = reader.CreateFreeze(ctx, &api.Freeze{Reason: "r", All: true, Until: until})
	assert.Equal(t, 403, registry.StatusCode(err), "readers do not freeze: %v", err)
	_, _, err = admin.CreateFreeze(ctx, &api.Freeze{Reason: "r", Channel: "nope", Until: until})
	assert.Equal(t, 422, registry.StatusCode(err), "an unknown channel: %v", err)

	f, etag, err := admin.CreateFreeze(ctx, &api.Freeze{Reason: "cyber week", Channel: "dev", Until: until})
	require.NoError(t, err)
	require.NotEmpty(t, etag)
	assert.True(t, until.Equal(f.Until))
	assert.NotEmpty(t, f.By)

	changed, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{IfNoneMatch: first.ETag, Wait: 10 * time.Second})
	require.NoError(t, err)
	require.False(t, changed.NotModified)
	require.Len(t, changed.Assignment.Freezes, 1)
	assert.Equal(t, f.ID, changed.Assignment.Freezes[0].ID)
	same, err := agent.GetAssignment(ctx, clusterID, registry.AssignmentOptions{IfNoneMatch: changed.ETag})
	require.NoError(t, err)
	assert.True(t, same.NotModified)
	assert.False(t, same.RegistryTime.IsZero(), "a 304 carries the registry's time too")

	l, err := reader.ListFreezes(ctx, registry.FreezeFilter{Active: true}, registry.Page{})
	require.NoError(t, err)
	require.Len(t, l.Items, 1)
	got, getETag, err := reader.GetFreeze(ctx, f.ID)
	require.NoError(t, err)
	assert.Equal(t, f.Reason, got.Reason)
	assert.Equal(t, etag, getETag)

	c, _, err := reader.GetCluster(ctx, clusterID)
	require.NoError(t, err)
	require.NotNil(t, c.Schedule)
	assert.False(t, c.Schedule.Open)
	require.Len(t, c.Schedule.Freezes, 1)

	require.NoError(t, admin.DeleteFreeze(ctx, f.ID, getETag))
	_, _, err = admin.GetFreeze(ctx, f.ID)
	assert.True(t, registry.IsNotFound(err), "%v", err)
}

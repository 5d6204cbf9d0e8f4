package store

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// A plan its agent does not answer within api.PlanTimeout leaves the
// assignment by itself, exactly then, and counts as failed from then on.
func TestUnansweredPlanFailsAfterItsTimeout(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "caravan.db"), WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	defer s.Close()
	id := "aws:123456789012:eu-central-1:kube-1"
	_, err = Create(ctx, s, Accounts, Ref{Key: "aws:123456789012"}, api.InfrastructureAccount{ID: "aws:123456789012", Environment: "test"}, "test")
	require.NoError(t, err)
	_, err = Create(ctx, s, Channels, Ref{Key: "dev"}, api.Channel{Name: "dev", Branch: "dev"}, "test")
	require.NoError(t, err)
	_, err = CreateCluster(ctx, s, api.Cluster{ID: id, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", Environment: "test", Channel: "dev"}, "test")
	require.NoError(t, err)

	planID, err := NewPlanID(now)
	require.NoError(t, err)
	plan := api.Plan{ID: planID, ClusterID: id, Commit: "4b825dc642cb6eb9a060e54bf8d69288fbee4904", State: api.PlanPending, CreatedAt: now, UpdatedAt: now}
	_, err = s.CreatePlan(ctx, plan, "ops")
	require.NoError(t, err)
	a, err := s.Assignment(ctx, id)
	require.NoError(t, err)
	assert.Equal(t, now.Add(api.PlanTimeout), a.ChangesAt, "the assignment changes by itself when the plan expires")
	var decoded api.Assignment
	require.NoError(t, json.Unmarshal(a.Body, &decoded))
	assert.Equal(t, []api.AssignedPlan{{ID: planID, Commit: plan.Commit}}, decoded.Plans)

	now = now.Add(api.PlanTimeout)
	a, err = s.Assignment(ctx, id)
	require.NoError(t, err)
	var expired api.Assignment
	require.NoError(t, json.Unmarshal(a.Body, &expired))
	assert.Empty(t, expired.Plans)
	assert.True(t, a.ChangesAt.IsZero())

	got, err := s.Plan(ctx, id, planID)
	require.NoError(t, err)
	assert.Equal(t, api.PlanFailed, got.State)
	require.NotNil(t, got.Result)
	assert.Equal(t, api.ProblemPlanUnanswered, got.Result.Problem.Type)
	assert.Contains(t, got.Result.Problem.Detail, "did not answer within 1h0m0s")

	_, err = s.ReportPlan(ctx, id, planID, api.PlanReport{State: api.PlanRunning}, now)
	var p *api.Problem
	require.True(t, errors.As(err, &p), "a late answer is refused: %v", err)
	assert.Equal(t, http.StatusConflict, p.Status)
}

func TestTimeIDsSortByAgeWithinAMillisecond(t *testing.T) {
	now := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	var ids []string
	for range 1000 {
		id, err := newTimeID(now)
		require.NoError(t, err)
		ids = append(ids, id)
	}
	id, err := newTimeID(now.Add(-time.Second))
	require.NoError(t, err)
	ids = append(ids, id)
	assert.True(t, slices.IsSorted(ids), "ids made one after another sort in that order, a clock step back too")
	assert.Len(t, slices.Compact(slices.Clone(ids)), len(ids), "and are distinct")
}

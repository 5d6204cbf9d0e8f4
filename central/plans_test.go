package central_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

const (
	commitA = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
	commitB = "0123456789abcdef0123456789abcdef01234567"
)

func plansPath(clusterID string) string { return "/api/v1/clusters/" + clusterID + "/plans" }

func readAssignment(t *testing.T, c *client, clusterID string) (api.Assignment, string) {
	t.Helper()
	r := c.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterID+"/assignment", nil)
	var a api.Assignment
	r.json(t, &a)
	return a, r.Header.Get("ETag")
}

// A plan rides in the assignment, wakes the agent's long-poll, takes the
// agent's answers and leaves the assignment with the final one, which
// then is byte for byte what it was before the plan.
func TestPlanTravelsThroughTheAssignment(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		reader := newClient(t, srv, srv.Token(t, api.RoleReader, ""))
		before, etag := readAssignment(t, agent, clusterA)
		assert.Empty(t, before.Plans)

		waiting := poll(agent, clusterA, etag, "30s")
		time.Sleep(300 * time.Millisecond)
		created := admin.must(http.StatusCreated, "POST", plansPath(clusterA), map[string]any{"commit": commitA})
		var plan api.Plan
		created.json(t, &plan)
		assert.Regexp(t, `^[0-9a-f]{16}$`, plan.ID)
		assert.Equal(t, plansPath(clusterA)+"/"+plan.ID, created.Header.Get("Location"))
		assert.Equal(t, api.PlanPending, plan.State)
		assert.Equal(t, clusterA, plan.ClusterID)
		assert.Equal(t, commitA, plan.Commit)
		assert.NotEmpty(t, plan.RequestedBy)
		assert.Nil(t, plan.Result)
		select {
		case r := <-waiting:
			require.Equal(t, http.StatusOK, r.res.Status, "the waiting long-poll answers the new plan")
			var a api.Assignment
			r.res.json(t, &a)
			assert.Equal(t, []api.AssignedPlan{{ID: plan.ID, Commit: commitA}}, a.Plans)
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not answer the new plan")
		}

		var running api.Plan
		agent.must(http.StatusOK, "PUT", plansPath(clusterA)+"/"+plan.ID, map[string]any{"state": "running"}).json(t, &running)
		assert.Equal(t, api.PlanRunning, running.State)
		during, _ := readAssignment(t, agent, clusterA)
		assert.Len(t, during.Plans, 1, "a running plan stays in the assignment, for an agent that restarts")

		result := api.PlanResult{
			Stacks:    []api.StackPlan{{Name: "kube-a", Action: api.StackUnchanged}},
			Objects:   []api.ObjectPlan{{Action: api.ObjectChange, Kind: "ConfigMap", Namespace: "default", Name: "settings", Fields: []string{"data.zone"}}},
			NodePools: []api.NodePoolPlan{{Name: "default", CurrentRevision: "r1", NextRevision: "r2", NodesTotal: 2, Replaced: []string{"node-1", "node-2"}}},
		}
		agent.must(http.StatusOK, "PUT", plansPath(clusterA)+"/"+plan.ID, api.PlanReport{State: api.PlanDone, Result: &result})
		after, afterETag := readAssignment(t, agent, clusterA)
		assert.Empty(t, after.Plans, "an answered plan leaves the assignment")
		assert.Equal(t, etag, afterETag, "without plans the assignment is what it was")

		var done api.Plan
		reader.must(http.StatusOK, "GET", plansPath(clusterA)+"/"+plan.ID, nil).json(t, &done)
		assert.Equal(t, api.PlanDone, done.State)
		require.NotNil(t, done.Result)
		assert.Equal(t, []string{"data.zone"}, done.Result.Objects[0].Fields)
		assert.Equal(t, []api.ResourceChange{}, done.Result.Stacks[0].Resources, "lists are answered empty, not null")
		assert.Equal(t, []string{"node-1", "node-2"}, done.Result.NodePools[0].Replaced)

		p := agent.must(http.StatusConflict, "PUT", plansPath(clusterA)+"/"+plan.ID, map[string]any{"state": "running"}).problem(t)
		assert.Contains(t, p["detail"], "is done")

		second := admin.must(http.StatusCreated, "POST", plansPath(clusterA), map[string]any{"commit": commitB})
		var newer api.Plan
		second.json(t, &newer)
		var list api.List[api.Plan]
		reader.must(http.StatusOK, "GET", plansPath(clusterA)+"?limit=1", nil).json(t, &list)
		require.Len(t, list.Items, 1)
		assert.Equal(t, newer.ID, list.Items[0].ID, "newest first")
		require.NotEmpty(t, list.Next)
		var last api.List[api.Plan]
		reader.must(http.StatusOK, "GET", plansPath(clusterA)+"?limit=1&continue="+list.Next, nil).json(t, &last)
		require.Len(t, last.Items, 1)
		assert.Equal(t, plan.ID, last.Items[0].ID)
		assert.Empty(t, last.Next)

		var audit api.List[api.AuditEntry]
		admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=plan", nil).json(t, &audit)
		require.Len(t, audit.Items, 2, "creations are audited, the agent's answers are not")
	})
}

func TestPlanRequestsAndAnswersAreChecked(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	agentA := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
	agentB := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterB))
	reader := newClient(t, srv, srv.Token(t, api.RoleReader, ""))

	for _, commit := range []string{"abc1234", strings.ToUpper(commitA), commitA + "0", ""} {
		p := admin.must(http.StatusUnprocessableEntity, "POST", plansPath(clusterA), map[string]any{"commit": commit}).problem(t)
		assert.Equal(t, "commit", p["field"], "commit %q", commit)
		assert.Contains(t, p["detail"], "full commit id")
	}
	p := admin.must(http.StatusBadRequest, "POST", plansPath(clusterA), map[string]any{"commit": commitA, "branch": "dev"}).problem(t)
	assert.Equal(t, "branch", p["field"])
	admin.must(http.StatusNotFound, "POST", plansPath("aws:123456789012:eu-central-1:nowhere"), map[string]any{"commit": commitA})
	admin.must(http.StatusNotFound, "GET", plansPath("aws:123456789012:eu-central-1:nowhere"), nil)
	admin.must(http.StatusNotFound, "GET", plansPath(clusterA)+"/0123456789abcdef", nil)
	reader.must(http.StatusForbidden, "POST", plansPath(clusterA), map[string]any{"commit": commitA})
	agentA.must(http.StatusForbidden, "POST", plansPath(clusterA), map[string]any{"commit": commitA})

	var plan api.Plan
	admin.must(http.StatusCreated, "POST", plansPath(clusterA), map[string]any{"commit": commitA}).json(t, &plan)
	u := plansPath(clusterA) + "/" + plan.ID
	agentB.must(http.StatusForbidden, "PUT", u, map[string]any{"state": "running"})
	agentA.must(http.StatusForbidden, "GET", u, nil)
	reader.must(http.StatusForbidden, "PUT", u, map[string]any{"state": "running"})

	for _, tc := range []struct {
		name  string
		body  any
		field string
	}{
		{"unknown state", map[string]any{"state": "finished"}, "state"},
		{"done without result", map[string]any{"state": "done"}, "result"},
		{"failed without problem", map[string]any{"state": "failed", "result": map[string]any{}}, "result.problem"},
		{"stack without name", map[string]any{"state": "done", "result": map[string]any{"stacks": []any{map[string]any{"action": "update"}}}}, "result.stacks[0].name"},
		{"unknown object action", map[string]any{"state": "done", "result": map[string]any{"objects": []any{map[string]any{"action": "replace", "kind": "ConfigMap", "name": "a"}}}}, "result.objects[0].action"},
		{"blank field", map[string]any{"state": "done", "result": map[string]any{"objects": []any{map[string]any{"action": "change", "kind": "ConfigMap", "name": "a", "fields": []string{" "}}}}}, "result.objects[0].fields[0]"},
	} {
		p := agentA.must(http.StatusUnprocessableEntity, "PUT", u, tc.body).problem(t)
		assert.Equal(t, tc.field, p["field"], tc.name)
	}
	agentA.must(http.StatusNotFound, "PUT", plansPath(clusterA)+"/0123456789abcdef", map[string]any{"state": "running"})

	problem := map[string]any{"type": api.ProblemTypeBase + "render", "title": "The commit cannot be rendered", "detail": "kubernetes/base/kustomization.yaml: no such file"}
	var failed api.Plan
	agentA.must(http.StatusOK, "PUT", u, map[string]any{"state": "failed", "result": map[string]any{"problem": problem}}).json(t, &failed)
	assert.Equal(t, api.PlanFailed, failed.State)
	assert.Equal(t, "kubernetes/base/kustomization.yaml: no such file", failed.Result.Problem.Detail)
	assert.Equal(t, []api.StackPlan{}, failed.Result.Stacks)

	for range 10 {
		admin.must(http.StatusCreated, "POST", plansPath(clusterB), map[string]any{"commit": commitB})
	}
	p = admin.must(http.StatusConflict, "POST", plansPath(clusterB), map[string]any{"commit": commitB}).problem(t)
	assert.Equal(t, "Too many open plans", p["title"])

	admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterB, `{"lifecycle_status":"decommissioned"}`)
	admin.must(http.StatusNoContent, "DELETE", "/api/v1/clusters/"+clusterB, nil)
	admin.must(http.StatusNotFound, "GET", plansPath(clusterB), nil)
}

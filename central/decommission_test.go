package central_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// agentTokenName finds the name of the agent token of a cluster, the actor
// of the audit entries its reports write.
func agentTokenName(t *testing.T, admin *client, clusterID string) string {
	t.Helper()
	var tokens api.List[api.Token]
	admin.must(http.StatusOK, "GET", "/api/v1/tokens?role=agent", nil).json(t, &tokens)
	for _, tok := range tokens.Items {
		if tok.ClusterID == clusterID {
			return tok.Name
		}
	}
	t.Fatalf("no agent token for %s", clusterID)
	return ""
}

func clusterAudit(t *testing.T, admin *client, clusterID string) []api.AuditEntry {
	t.Helper()
	var audit api.List[api.AuditEntry]
	admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=cluster&resource_id="+clusterID, nil).json(t, &audit)
	return audit.Items
}

func getCluster(t *testing.T, c *client, clusterID string) api.Cluster {
	t.Helper()
	var out api.Cluster
	c.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterID, nil).json(t, &out)
	return out
}

// TestDecommissionEndToEnd walks the protocol: an admin requests the
// decommission, the agent reports its progress, the admin confirms (which
// wakes the agent's long-poll with decommission_confirmed), the agent
// reports decommissioned and the registry records the cluster as
// decommissioned, every step audited.
func TestDecommissionEndToEnd(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		reader := newClient(t, srv, srv.Token(t, api.RoleReader, ""))
		u := "/api/v1/clusters/" + clusterA
		confirm := map[string]any{"confirm": true}

		p := admin.must(http.StatusConflict, "POST", u+"/decommission", confirm).problem(t)
		assert.Equal(t, api.ProblemDecommissionNotRequested, p["type"])
		assert.Equal(t, "lifecycle_status", p["field"])
		assert.Contains(t, p["detail"], "must be in decommission-requested first")
		assert.Contains(t, p["detail"], `"ready"`)

		p = agent.must(http.StatusConflict, "PUT", u+"/status", map[string]any{"phase": "decommissioned"}).problem(t)
		assert.Equal(t, api.ProblemDecommissionNotConfirmed, p["type"], "the agent must not claim decommissioned unconfirmed")
		assert.Equal(t, "phase", p["field"])
		admin.must(http.StatusNotFound, "GET", u+"/status", nil) // the refused report is not stored

		// decommission_confirmed_at is read-only: what a write sends is ignored.
		patched := admin.must(http.StatusOK, "PATCH", u, `{"lifecycle_status":"decommission-requested","decommission_confirmed_at":"2001-01-01T00:00:00Z"}`)
		var c api.Cluster
		patched.json(t, &c)
		assert.Equal(t, api.LifecycleDecommissionRequested, c.LifecycleStatus)
		assert.Nil(t, c.DecommissionConfirmedAt)
		assert.NotContains(t, string(patched.Body), "decommission_confirmed_at")

		agent.must(http.StatusOK, "PUT", u+"/status", map[string]any{"phase": "decommissioning", "node_pools": []map[string]any{{"name": "default", "nodes_total": 1}}})
		agent.must(http.StatusConflict, "PUT", u+"/status", map[string]any{"phase": "decommissioned"})
		var st api.ClusterStatus
		admin.must(http.StatusOK, "GET", u+"/status", nil).json(t, &st)
		assert.Equal(t, api.PhaseDecommissioning, st.Phase, "the refused report left the last one")

		for name, tc := range map[string]struct {
			body   any
			status int
			field  string
		}{
			"confirm false":     {`{"confirm":false}`, http.StatusUnprocessableEntity, "confirm"},
			"confirm null":      {`{"confirm":null}`, http.StatusUnprocessableEntity, "confirm"},
			"confirm left out":  {`{}`, http.StatusUnprocessableEntity, "confirm"},
			"confirm a string":  {`{"confirm":"yes"}`, http.StatusBadRequest, "confirm"},
			"an unknown field":  {`{"confirm":true,"force":true}`, http.StatusBadRequest, "force"},
			"no body":           {nil, http.StatusBadRequest, "(body)"},
			"a JSON array body": {`[true]`, http.StatusBadRequest, "(body)"},
		} {
			p := admin.must(tc.status, "POST", u+"/decommission", tc.body).problem(t)
			assert.Equal(t, tc.field, p["field"], name)
		}
		agent.must(http.StatusForbidden, "POST", u+"/decommission", confirm)
		reader.must(http.StatusForbidden, "POST", u+"/decommission", confirm)
		admin.must(http.StatusNotFound, "POST", "/api/v1/clusters/aws:123456789012:eu-central-1:nope/decommission", confirm)

		assignment := agent.must(http.StatusOK, "GET", u+"/assignment", nil)
		var a api.Assignment
		assignment.json(t, &a)
		assert.False(t, a.Cluster.DecommissionConfirmed)
		assert.NotContains(t, string(assignment.Body), "decommission_confirmed")
		waiting := poll(agent, clusterA, assignment.Header.Get("ETag"), "30s")
		time.Sleep(300 * time.Millisecond)
		auditBefore := len(clusterAudit(t, admin, clusterA))

		confirmedAt := time.Now()
		res := admin.must(http.StatusOK, "POST", u+"/decommission", confirm)
		select {
		case r := <-waiting:
			assert.Equal(t, http.StatusOK, r.res.Status)
			assert.Less(t, time.Since(confirmedAt), time.Second, "the agent's waiting poll answers the confirmation at once")
			a = api.Assignment{}
			r.res.json(t, &a)
			assert.True(t, a.Cluster.DecommissionConfirmed)
			assert.Equal(t, api.LifecycleDecommissionRequested, a.Cluster.LifecycleStatus)
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not answer the confirmation")
		}
		c = api.Cluster{}
		res.json(t, &c)
		require.NotNil(t, c.DecommissionConfirmedAt)
		first := *c.DecommissionConfirmedAt
		assert.WithinDuration(t, time.Now(), first, time.Minute)
		assert.Equal(t, first, c.UpdatedAt)
		require.Len(t, c.NodePools, 1, "the answer is the cluster as GET answers it")
		require.NotNil(t, c.Status)
		assert.NotEmpty(t, res.Header.Get("ETag"))
		assert.Equal(t, res.Header.Get("ETag"), admin.must(http.StatusOK, "GET", u, nil).Header.Get("ETag"))

		time.Sleep(5 * time.Millisecond)
		again := admin.must(http.StatusOK, "POST", u+"/decommission", confirm)
		c = api.Cluster{}
		again.json(t, &c)
		require.NotNil(t, c.DecommissionConfirmedAt)
		assert.Equal(t, first, *c.DecommissionConfirmedAt, "confirming again keeps the first time")
		assert.Equal(t, res.Header.Get("ETag"), again.Header.Get("ETag"), "and changes nothing")
		entries := clusterAudit(t, admin, clusterA)
		require.Len(t, entries, auditBefore+1, "the confirmation is audited once")
		assert.Equal(t, "update", entries[0].Action)
		after, _ := json.Marshal(entries[0].After)
		assert.Contains(t, string(after), `"decommission_confirmed_at":"`)
		before, _ := json.Marshal(entries[0].Before)
		assert.NotContains(t, string(before), "decommission_confirmed_at")

		// A PUT that keeps decommission-requested keeps the confirmation,
		// whatever it sends for it.
		replaced := withField(cluster(clusterA, "dev"), "lifecycle_status", "decommission-requested")
		replaced["decommission_confirmed_at"] = "2001-01-01T00:00:00Z"
		delete(replaced, "node_pools")
		c = api.Cluster{}
		admin.must(http.StatusOK, "PUT", u, replaced).json(t, &c)
		require.NotNil(t, c.DecommissionConfirmedAt)
		assert.Equal(t, first, *c.DecommissionConfirmedAt)

		assignment = admin.must(http.StatusOK, "GET", u+"/assignment", nil)
		waiting = poll(admin, clusterA, assignment.Header.Get("ETag"), "30s")
		time.Sleep(300 * time.Millisecond)
		reported := time.Now()
		agent.must(http.StatusOK, "PUT", u+"/status", map[string]any{"phase": "decommissioned", "current_version": "abc#1"})
		select {
		case r := <-waiting:
			assert.Equal(t, http.StatusOK, r.res.Status)
			assert.Less(t, time.Since(reported), time.Second)
			a = api.Assignment{}
			r.res.json(t, &a)
			assert.Equal(t, api.LifecycleDecommissioned, a.Cluster.LifecycleStatus, "the registry records decommissioned with the report")
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not answer the lifecycle change")
		}
		c = getCluster(t, admin, clusterA)
		assert.Equal(t, api.LifecycleDecommissioned, c.LifecycleStatus)
		require.NotNil(t, c.DecommissionConfirmedAt, "a decommissioned cluster keeps when it was confirmed")
		assert.Equal(t, first, *c.DecommissionConfirmedAt)
		require.NotNil(t, c.Status)
		assert.Equal(t, api.PhaseDecommissioned, c.Status.Phase)

		entries = clusterAudit(t, admin, clusterA)
		agentName := agentTokenName(t, admin, clusterA)
		assert.Equal(t, agentName, entries[0].Actor, "the lifecycle change is the agent's")
		assert.Equal(t, "update", entries[0].Action)
		before, _ = json.Marshal(entries[0].Before)
		after, _ = json.Marshal(entries[0].After)
		assert.Contains(t, string(before), `"lifecycle_status":"decommission-requested"`)
		assert.Contains(t, string(after), `"lifecycle_status":"decommissioned"`)
		var actions []string
		for _, e := range entries {
			actions = append(actions, e.Action)
		}
		assert.Equal(t, []string{"update", "update", "update", "update", "create"}, actions,
			"decommissioned, the PUT, the confirmation, the request, the creation")

		n := len(entries)
		agent.must(http.StatusOK, "PUT", u+"/status", map[string]any{"phase": "decommissioned", "current_version": "abc#1"})
		assert.Len(t, clusterAudit(t, admin, clusterA), n, "reporting decommissioned again changes nothing")
		p = admin.must(http.StatusConflict, "POST", u+"/decommission", confirm).problem(t)
		assert.Contains(t, p["detail"], `"decommissioned"`)

		var history api.List[api.StatusHistoryEntry]
		admin.must(http.StatusOK, "GET", u+"/status/history", nil).json(t, &history)
		require.NotEmpty(t, history.Items)
		assert.Equal(t, api.PhaseDecommissioned, history.Items[0].Phase)

		admin.must(http.StatusNoContent, "DELETE", u, nil)
	})
}

// TestDecommissionCalledOff checks that setting lifecycle_status back to
// ready drops the confirmation: the assignment no longer carries it, and the
// agent may not report decommissioned.
func TestDecommissionCalledOff(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterB))
		u := "/api/v1/clusters/" + clusterB

		admin.must(http.StatusOK, "PATCH", u, `{"lifecycle_status":"decommission-requested"}`)
		admin.must(http.StatusOK, "POST", u+"/decommission", map[string]any{"confirm": true})
		var a api.Assignment
		agent.must(http.StatusOK, "GET", u+"/assignment", nil).json(t, &a)
		require.True(t, a.Cluster.DecommissionConfirmed)

		var c api.Cluster
		admin.must(http.StatusOK, "PATCH", u, `{"lifecycle_status":"ready"}`).json(t, &c)
		assert.Nil(t, c.DecommissionConfirmedAt, "back to ready drops the confirmation")
		a = api.Assignment{}
		agent.must(http.StatusOK, "GET", u+"/assignment", nil).json(t, &a)
		assert.False(t, a.Cluster.DecommissionConfirmed)
		assert.Equal(t, api.LifecycleReady, a.Cluster.LifecycleStatus)
		agent.must(http.StatusConflict, "PUT", u+"/status", map[string]any{"phase": "decommissioned"})

		admin.must(http.StatusOK, "PATCH", u, `{"lifecycle_status":"decommission-requested"}`)
		assert.Nil(t, getCluster(t, admin, clusterB).DecommissionConfirmedAt, "a new request must be confirmed anew")
		agent.must(http.StatusConflict, "PUT", u+"/status", map[string]any{"phase": "decommissioned"})
		assert.Equal(t, api.LifecycleDecommissionRequested, getCluster(t, admin, clusterB).LifecycleStatus)
	})
}

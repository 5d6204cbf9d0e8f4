package central_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// driftReport is a status report with every drift field set: corrections
// of each action and a fight.
func driftReport(seen time.Time) api.ClusterStatus {
	return api.ClusterStatus{Phase: api.PhaseIdle, CurrentVersion: "abc#1", Problems: []api.StatusProblem{
		{Type: api.ProblemDriftFight, Title: "Another manager keeps changing an object back", Detail: "Deployment default/web: spec.replicas by hpa-controller", Since: seen},
	}, Drift: &api.DriftStatus{
		Mode: api.DriftEnabled, Detected: 7, Corrected: 5,
		Recent: []api.DriftCorrection{
			{Object: "Deployment default/web", Action: api.DriftCorrected, Fields: []string{"spec.replicas"}, Manager: "hpa-controller", At: seen},
			{Object: "ConfigMap default/settings", Action: api.DriftRecreated, At: seen.Add(-time.Minute)},
			{Object: "ClusterRole view-all", Action: api.DriftReported, Fields: []string{"rules"}, Manager: "kubectl-edit", At: seen.Add(-time.Hour)},
		},
		Fights: []api.DriftFight{{Object: "Deployment default/web", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Corrections: 3,
			Since: seen.Add(-10 * time.Minute), Until: seen.Add(time.Hour)}},
	}}
}

// The drift an agent reports is stored with its status and answered by
// every read of the cluster: its status, the cluster, the list.
func TestDriftIsStoredWithTheStatus(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		seen := time.Date(2030, 1, 6, 12, 0, 0, 0, time.UTC)
		want := driftReport(seen).Drift

		var put api.ClusterStatus
		agent.must(http.StatusOK, "PUT", "/api/v1/clusters/"+clusterA+"/status", driftReport(seen)).json(t, &put)
		assert.Equal(t, want, put.Drift, "the answer is the report as stored")

		var st api.ClusterStatus
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/status", nil).json(t, &st)
		assert.Equal(t, want, st.Drift)
		var c api.Cluster
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA, nil).json(t, &c)
		require.NotNil(t, c.Status)
		assert.Equal(t, want, c.Status.Drift)
		var list api.List[api.Cluster]
		admin.must(http.StatusOK, "GET", "/api/v1/clusters", nil).json(t, &list)
		require.Len(t, list.Items, 2)
		require.NotNil(t, list.Items[0].Status, "the list answers %s's status", list.Items[0].ID)
		assert.Equal(t, want, list.Items[0].Status.Drift)
		assert.Nil(t, list.Items[1].Status, "the cluster that never reported")

		// An agent without drift correction leaves it out; the next report
		// replaces the whole status, drift included.
		agent.must(http.StatusOK, "PUT", "/api/v1/clusters/"+clusterA+"/status", map[string]any{"phase": "idle", "current_version": "abc#1"})
		var after api.ClusterStatus
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/status", nil).json(t, &after)
		assert.Nil(t, after.Drift)
	})
}

func TestDriftReportsAreChecked(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
	u := "/api/v1/clusters/" + clusterA + "/status"
	seen := time.Date(2030, 1, 6, 12, 0, 0, 0, time.UTC)

	full := make([]api.DriftCorrection, api.DriftKeep)
	for i := range full {
		full[i] = api.DriftCorrection{Object: "ConfigMap default/c", Action: api.DriftCorrected, At: seen.Add(-time.Duration(i) * time.Minute)}
	}
	report := driftReport(seen)
	report.Drift.Recent = full
	agent.must(http.StatusOK, "PUT", u, report)

	for _, tc := range []struct {
		name   string
		change func(d *api.DriftStatus)
		field  string
	}{
		{"unknown mode", func(d *api.DriftStatus) { d.Mode = "fix" }, "drift.mode"},
		{"no mode", func(d *api.DriftStatus) { d.Mode = "" }, "drift.mode"},
		{"negative detected", func(d *api.DriftStatus) { d.Detected = -1 }, "drift.detected"},
		{"negative corrected", func(d *api.DriftStatus) { d.Corrected = -3 }, "drift.corrected"},
		{"more than 20 recent", func(d *api.DriftStatus) { d.Recent = append(full, full[0]) }, "drift.recent"},
		{"recent without object", func(d *api.DriftStatus) { d.Recent[1].Object = " " }, "drift.recent[1].object"},
		{"unknown action", func(d *api.DriftStatus) { d.Recent[0].Action = "reverted" }, "drift.recent[0].action"},
		{"blank field path", func(d *api.DriftStatus) { d.Recent[2].Fields = []string{"rules", ""} }, "drift.recent[2].fields[1]"},
		{"recent without time", func(d *api.DriftStatus) { d.Recent[0].At = time.Time{} }, "drift.recent[0].at"},
		{"fight without object", func(d *api.DriftStatus) { d.Fights[0].Object = "" }, "drift.fights[0].object"},
		{"blank fight field", func(d *api.DriftStatus) { d.Fights[0].Fields = []string{"\t"} }, "drift.fights[0].fields[0]"},
		{"negative corrections", func(d *api.DriftStatus) { d.Fights[0].Corrections = -1 }, "drift.fights[0].corrections"},
		{"fight without since", func(d *api.DriftStatus) { d.Fights[0].Since = time.Time{} }, "drift.fights[0].since"},
		{"fight without until", func(d *api.DriftStatus) { d.Fights[0].Until = time.Time{} }, "drift.fights[0].until"},
	} {
		bad := driftReport(seen.Add(time.Hour))
		tc.change(bad.Drift)
		p := agent.must(http.StatusUnprocessableEntity, "PUT", u, bad).problem(t)
		assert.Equal(t, tc.field, p["field"], tc.name)
		assert.Equal(t, api.ProblemTypeBase+"invalid-field", p["type"], tc.name)
	}
	p := agent.must(http.StatusBadRequest, "PUT", u, `{"phase":"idle","drift":{"mode":"enabled","detected":"many"}}`).problem(t)
	assert.Equal(t, "drift.detected", p["field"])
	p = agent.must(http.StatusBadRequest, "PUT", u, `{"phase":"idle","drift":{"mode":"enabled","fixed":1}}`).problem(t)
	assert.Equal(t, "fixed", p["field"], "an unknown field of the drift")

	var st api.ClusterStatus
	admin.must(http.StatusOK, "GET", u, nil).json(t, &st)
	require.NotNil(t, st.Drift)
	assert.Equal(t, full, st.Drift.Recent, "no refused report was stored")
}

// A plan's result lists the objects that drifted from the version now.
func TestPlanAnswersCarryDriftedObjects(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
	var plan api.Plan
	admin.must(http.StatusCreated, "POST", plansPath(clusterA), map[string]any{"commit": commitA}).json(t, &plan)
	u := plansPath(clusterA) + "/" + plan.ID

	for _, tc := range []struct {
		name    string
		drifted []api.DriftedObject
		field   string
	}{
		{"no object", []api.DriftedObject{{Object: "ConfigMap default/a"}, {Fields: []string{"data.key"}}}, "result.drifted[1].object"},
		{"blank field path", []api.DriftedObject{{Object: "ConfigMap default/a", Fields: []string{" "}}}, "result.drifted[0].fields[0]"},
	} {
		p := agent.must(http.StatusUnprocessableEntity, "PUT", u, api.PlanReport{State: api.PlanDone, Result: &api.PlanResult{Drifted: tc.drifted}}).problem(t)
		assert.Equal(t, tc.field, p["field"], tc.name)
	}

	drifted := []api.DriftedObject{
		{Object: "Deployment default/web", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Held: "fight"},
		{Object: "ConfigMap default/settings", Deleted: true, Held: api.DriftReport},
	}
	agent.must(http.StatusOK, "PUT", u, api.PlanReport{State: api.PlanDone, Result: &api.PlanResult{Drifted: drifted}})
	var done api.Plan
	admin.must(http.StatusOK, "GET", u, nil).json(t, &done)
	require.NotNil(t, done.Result)
	assert.Equal(t, drifted, done.Result.Drifted)
}

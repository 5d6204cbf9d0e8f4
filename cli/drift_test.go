package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

func TestDriftText(t *testing.T) {
	fight := api.DriftFight{Object: "Deployment default/web", Since: now, Until: now.Add(time.Hour)}
	for _, tc := range []struct {
		name   string
		status *api.ClusterStatus
		want   string
	}{
		{"never reported", nil, ""},
		{"an agent without drift correction", &api.ClusterStatus{Phase: api.PhaseIdle}, ""},
		{"nothing drifted", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftEnabled}}, "0 corrected"},
		{"corrected", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftEnabled, Detected: 4, Corrected: 3}}, "3 corrected"},
		{"only reported", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftReport, Detected: 2}}, "report: 2"},
		{"not watched", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftDisabled}}, "disabled"},
		{"a fight comes first", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftEnabled, Detected: 9, Corrected: 8, Fights: []api.DriftFight{fight}}}, "1 fight, 8 corrected"},
		{"fights", &api.ClusterStatus{Drift: &api.DriftStatus{Mode: api.DriftEnabled, Corrected: 8, Fights: []api.DriftFight{fight, fight}}}, "2 fights, 8 corrected"},
	} {
		assert.Equal(t, tc.want, driftText(tc.status), tc.name)
	}
}

// fullDrift has a fight and a detection of each action.
func fullDrift() *api.DriftStatus {
	return &api.DriftStatus{
		Mode: api.DriftEnabled, Detected: 6, Corrected: 5,
		Recent: []api.DriftCorrection{
			{Object: "Deployment default/web", Action: api.DriftCorrected, Fields: []string{"spec.replicas", "spec.template.spec.containers[name=web].image"}, Manager: "hpa-controller", At: now.Add(-time.Minute)},
			{Object: "ConfigMap default/settings", Action: api.DriftRecreated, At: now.Add(-time.Hour)},
			{Object: "ClusterRole view-all", Action: api.DriftReported, Fields: []string{"rules"}, Manager: "kubectl-edit", At: now.Add(-2 * time.Hour)},
		},
		Fights: []api.DriftFight{{Object: "Deployment default/web", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Corrections: 3,
			Since: now.Add(-10 * time.Minute), Until: now.Add(50 * time.Minute)}},
	}
}

func TestStatusShowsDrift(t *testing.T) {
	c := fixtureClusters()[1]
	c.Schedule = nil
	c.Status.Drift = fullDrift()
	var out bytes.Buffer
	require.NoError(t, writeStatus(&out, &c, now))
	assert.Equal(t, `Cluster:          aws:123456789012:eu-central-1:kube-2 (kube-2)
Status:           Render failed
Phase:            failed
Current version:  -
Next version:     89abcdef89abcdef89abcdef89abcdef89abcdef#0011223344556677
Last version:     -
Agent:            -
Heartbeat:        2030-01-06T09:00:00Z (3h ago)

Drift:
  Mode:       enabled (drift is corrected)
  Detected:   6
  Corrected:  5

Drift fights (another manager keeps changing these back; left alone until UNTIL):
OBJECT                   FIELDS          MANAGER          CORRECTIONS   SINCE                  UNTIL
Deployment default/web   spec.replicas   hpa-controller   3             2030-01-06T11:50:00Z   2030-01-06 12:50 UTC (in 50m)

Recent drift:
TIME                   OBJECT                       ACTION      FIELDS                                                         MANAGER
2030-01-06T11:59:00Z   Deployment default/web       corrected   spec.replicas, spec.template.spec.containers[name=web].image   hpa-controller
2030-01-06T11:00:00Z   ConfigMap default/settings   recreated   -                                                              -
2030-01-06T10:00:00Z   ClusterRole view-all         reported    rules                                                          kubectl-edit

Problems:
SINCE                  TITLE           DETAIL
2030-01-06T11:00:00Z   Render failed   missing key
`, out.String())

	c.Status.Drift = &api.DriftStatus{Mode: api.DriftReport, Detected: 2}
	out.Reset()
	require.NoError(t, writeStatus(&out, &c, now))
	assert.Contains(t, out.String(), "\nDrift:\n  Mode:       report (drift is reported, not corrected)\n  Detected:   2\n  Corrected:  0\n\nProblems:\n",
		"no tables without fights and detections")

	c.Status.Drift = nil
	out.Reset()
	require.NoError(t, writeStatus(&out, &c, now))
	assert.NotContains(t, out.String(), "Drift", "an agent that reports no drift")
}

// The drift an agent reports reaches the list, the status and the plan
// through the real registry.
func TestE2EDriftInListStatusAndPlan(t *testing.T) {
	e := startE2E(t)
	e.seed()
	agent, err := registry.New(e.server.URL, e.server.Token(t, api.RoleAgent, e2eCluster))
	require.NoError(t, err)
	seen := time.Now().UTC().Truncate(time.Second)
	drift := &api.DriftStatus{
		Mode: api.DriftEnabled, Detected: 6, Corrected: 5,
		Recent: []api.DriftCorrection{{Object: "Deployment default/web", Action: api.DriftCorrected, Fields: []string{"spec.replicas"}, Manager: "hpa-controller", At: seen}},
		Fights: []api.DriftFight{{Object: "Deployment default/web", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Corrections: 3,
			Since: seen.Add(-10 * time.Minute), Until: seen.Add(time.Hour)}},
	}
	require.NoError(t, agent.PutClusterStatus(context.Background(), e2eCluster, &api.ClusterStatus{
		Phase: api.PhaseIdle, AgentVersion: "v0.1.0", Heartbeat: seen, Drift: drift,
		Problems: []api.StatusProblem{{Type: api.ProblemDriftFight, Title: "Another manager keeps changing an object back", Since: seen}},
	}))

	assert.Regexp(t, `(?m)^`+e2eCluster+`\s.*\s1 fight, 5 corrected\s+-\s+open$`, e.run("clusters", "list", "-o", "wide"))
	status := e.run("clusters", "status", e2eCluster)
	assert.Contains(t, status, "\nDrift:\n  Mode:       enabled (drift is corrected)\n  Detected:   6\n  Corrected:  5\n")
	assert.Regexp(t, `\nDrift fights \(another manager keeps changing these back; left alone until UNTIL\):\nOBJECT\s+FIELDS\s+MANAGER\s+CORRECTIONS\s+SINCE\s+UNTIL\n`+
		`Deployment default/web\s+spec.replicas\s+hpa-controller\s+3\s+`+regexp.QuoteMeta(formatTime(seen.Add(-10*time.Minute)))+`\s+`+regexp.QuoteMeta(clock(seen.Add(time.Hour)))+` \(in (59m|1h)\)\n`, status)
	assert.Regexp(t, `\nRecent drift:\nTIME\s+OBJECT\s+ACTION\s+FIELDS\s+MANAGER\n`+regexp.QuoteMeta(formatTime(seen))+`\s+Deployment default/web\s+corrected\s+spec.replicas\s+hpa-controller\n`, status)
	var st api.ClusterStatus
	require.NoError(t, json.Unmarshal([]byte(e.run("clusters", "status", e2eCluster, "-o", "json")), &st))
	require.NotNil(t, st.Drift)
	assert.Equal(t, drift.Fights, st.Drift.Fights)

	answerPlans(t, e, api.PlanResult{Drifted: []api.DriftedObject{
		{Object: "ClusterRole view-all", Fields: []string{"rules"}, Manager: "kubectl-edit", Held: api.DriftReport},
		{Object: "ConfigMap default/settings", Deleted: true, Held: "blocked"},
		{Object: "Deployment default/web", Fields: []string{"spec.replicas"}, Manager: "hpa-controller", Held: "fight"},
		{Object: "Service default/web"},
	}}, api.PlanDone)
	code, stdout, stderr := e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit)
	require.Equal(t, ExitOK, code, stderr)
	assert.Contains(t, stdout, `
Manifests: 0 to create, 0 to change, 0 to prune, 0 to delete

Drift: 4 objects whose live state differs from the cluster's current version
  ~ ClusterRole view-all (rules) by kubectl-edit; held: report
  - ConfigMap default/settings (deleted); held: blocked
  ~ Deployment default/web (spec.replicas) by hpa-controller; held: fight
  ~ Service default/web; not corrected yet

Nodes:
`)
}

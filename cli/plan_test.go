package cli

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

const planCommit = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

// answerPlans plays the cluster's agent at the real registry: it waits for
// each plan in the assignment, reports it running, then answers it with
// result (or the failure's problem).
func answerPlans(t *testing.T, e *e2e, result api.PlanResult, state string) {
	t.Helper()
	agent, err := registry.New(e.server.URL, e.server.Token(t, api.RoleAgent, e2eCluster), registry.WithRetryMax(0))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		etag := ""
		for ctx.Err() == nil {
			res, err := agent.GetAssignment(ctx, e2eCluster, registry.AssignmentOptions{IfNoneMatch: etag, Wait: 10 * time.Second})
			if err != nil || res.NotModified {
				continue
			}
			etag = res.ETag
			for _, p := range res.Assignment.Plans {
				_ = agent.PutPlan(ctx, e2eCluster, p.ID, &api.PlanReport{State: api.PlanRunning})
				time.Sleep(1500 * time.Millisecond)
				_ = agent.PutPlan(ctx, e2eCluster, p.ID, &api.PlanReport{State: state, Result: &result})
			}
		}
	}()
}

var planID = regexp.MustCompile(`[0-9a-f]{16}`)

func TestPlanPrintsTheAgentsPreviewAsADiff(t *testing.T) {
	e := startE2E(t)
	e.seed()
	answerPlans(t, e, api.PlanResult{
		Stacks: []api.StackPlan{
			{Name: "kube-1", Action: api.StackUnchanged},
			{Name: "nodepool-workers-kube-1", NodePool: "workers", Action: api.StackUpdate, Resources: []api.ResourceChange{
				{Action: "Modify", LogicalID: "LaunchTemplate", Type: "AWS::EC2::LaunchTemplate", Replacement: "False"},
				{Action: "Modify", LogicalID: "Role", Type: "AWS::IAM::Role", Replacement: "True"},
				{Action: "Add", LogicalID: "Queue", Type: "AWS::SQS::Queue"},
			}},
			{Name: "nodepool-old-kube-1", NodePool: "old", Action: api.StackDelete, Reason: "node pool old left the registry"},
		},
		Objects: []api.ObjectPlan{
			{Action: api.ObjectCreate, Kind: "Deployment", Namespace: "default", Name: "web"},
			{Action: api.ObjectChange, Kind: "ConfigMap", Namespace: "default", Name: "settings", Fields: []string{"data.zone", "data.key"}},
			{Action: api.ObjectPrune, Kind: "ConfigMap", Namespace: "default", Name: "legacy"},
			{Action: api.ObjectDelete, Kind: "PriorityClass", Name: "caravan-critical", Reason: "deletions.yaml post_apply"},
		},
		NodePools: []api.NodePoolPlan{{Name: "workers", CurrentRevision: "r1", NextRevision: "r2", NodesTotal: 3, Replaced: []string{"node-a", "node-b", "node-c"}}},
	}, api.PlanDone)

	code, stdout, stderr := e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit)
	require.Equal(t, ExitOK, code, stderr)
	id := planID.FindString(stdout)
	require.NotEmpty(t, id, stdout)
	assert.Equal(t, `plan `+id+` of commit `+planCommit+` on `+e2eCluster+`: done
would start now: the cluster has no update window (always open) and no freeze holds it

Stacks:
  = kube-1: unchanged
  ~ nodepool-workers-kube-1: 1 to add, 2 to change (1 replacement), 0 to remove
      ~ LaunchTemplate (AWS::EC2::LaunchTemplate)
      ~ Role (AWS::IAM::Role), replaced
      + Queue (AWS::SQS::Queue)
  - nodepool-old-kube-1: to delete (node pool old left the registry)

Manifests: 1 to create, 1 to change, 1 to prune, 1 to delete
  + Deployment default/web
  ~ ConfigMap default/settings (data.zone, data.key)
  - ConfigMap default/legacy (prune)
  - PriorityClass caravan-critical (deletions.yaml post_apply)

Nodes:
  pool workers: 3 of 3 nodes would be replaced (revision r1 -> r2): node-a, node-b, node-c
`, stdout)
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	require.GreaterOrEqual(t, len(lines), 2, stderr)
	assert.Regexp(t, `^plan `+id+` of commit 4b825dc on `+e2eCluster+`: pending, 0s$`, lines[0], "progress: a line per state off a terminal")
	assert.Regexp(t, `: done, [0-9]+s$`, lines[len(lines)-1])

	code, stdout, stderr = e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit, "-o", "json")
	require.Equal(t, ExitOK, code, stderr)
	var plan api.Plan
	require.NoError(t, json.Unmarshal([]byte(stdout), &plan))
	assert.Equal(t, api.PlanDone, plan.State)
	assert.Equal(t, []string{"data.zone", "data.key"}, plan.Result.Objects[1].Fields)
}

func TestPlanThatFailedExitsWith1(t *testing.T) {
	e := startE2E(t)
	e.seed()
	answerPlans(t, e, api.PlanResult{Problem: &api.StatusProblem{Type: api.ProblemTypeBase + "render", Title: "The commit cannot be rendered",
		Detail: "kubernetes/base/kustomization.yaml: missing.yaml: no such file"}}, api.PlanFailed)

	code, stdout, stderr := e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit)
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stdout, ": failed\n\nThe commit cannot be rendered\n  kubernetes/base/kustomization.yaml: missing.yaml: no such file\n")
	assert.Contains(t, stderr, "failed: The commit cannot be rendered")
}

func TestPlanGivesUpAfterItsTimeout(t *testing.T) {
	e := startE2E(t)
	e.seed()
	code, _, stderr := e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit, "--timeout", "1s")
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "did not answer plan")
	assert.Contains(t, stderr, "fails by itself after 1h0m0s")

	code, _, stderr = e.try("", "plan", "--cluster", "aws:123456789012:eu-central-1:nowhere", "--commit", planCommit)
	assert.Equal(t, ExitError, code)
	assert.Contains(t, stderr, "Not found (HTTP 404)")
}

func TestPlanUsageErrorsExitWith2(t *testing.T) {
	isolate(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"plan", "--commit", planCommit}, `required flag(s) "cluster" not set`},
		{[]string{"plan", "--cluster", e2eCluster, "--commit", "4b825dc"}, "--commit must be a full commit id"},
		{[]string{"plan", "--cluster", e2eCluster, "--commit", planCommit, "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"plan", "--cluster", e2eCluster, "--commit", planCommit, "-o", "yaml"}, "must be one of text, json"},
	} {
		code, stdout, stderr := run(t, "", tc.args...)
		assert.Equal(t, ExitUsage, code, tc.args)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, tc.want)
	}
}

func TestPlanSaysWhenTheCommitWouldStart(t *testing.T) {
	e := startE2E(t)
	e.seed()
	answerPlans(t, e, api.PlanResult{}, api.PlanDone)
	plan := func() string {
		t.Helper()
		code, stdout, stderr := e.try("", "plan", "--cluster", e2eCluster, "--commit", planCommit)
		require.Equal(t, ExitOK, code, stderr)
		lines := strings.Split(stdout, "\n")
		require.Greater(t, len(lines), 2, stdout)
		assert.Regexp(t, `^plan [0-9a-f]{16} of commit `+planCommit+` on `+e2eCluster+`: done$`, lines[0])
		return lines[1]
	}

	window, opens := closedWindow(time.Now())
	e.run("clusters", "config", "set", e2eCluster, "update_windows", window)
	assert.Regexp(t, `^would start at `+regexp.QuoteMeta(clock(opens))+` \(in [23]h\), when the update window `+window+` opens$`, plan())

	e.run("clusters", "config", "set", e2eCluster, "update_windows", "daily 00:00-24:00 UTC")
	assert.Equal(t, "would start now: the update window daily 00:00-24:00 UTC is open and no freeze holds the cluster", plan())

	e.createFreeze("--reason", "Cyber Week", "--channel", "dev", "--until", "2h")
	var c api.Cluster
	require.NoError(t, json.Unmarshal([]byte(e.run("clusters", "get", e2eCluster, "-o", "json")), &c))
	require.NotNil(t, c.Schedule)
	require.Len(t, c.Schedule.Freezes, 1)
	until := c.Schedule.Freezes[0].Until
	assert.Regexp(t, `^would start at `+regexp.QuoteMeta(clock(until))+` \(in 1h\): frozen until `+regexp.QuoteMeta(clock(until))+
		` \(channel dev by admin-\S+: Cyber Week\)$`, plan())

	e.run("clusters", "block", e2eCluster, "--reason", "incident 4711")
	assert.Regexp(t, `^would not start while the cluster is blocked \(by admin-\S+: incident 4711\); 'caravan clusters unblock `+e2eCluster+`' lifts the block$`, plan())
}

func TestStartText(t *testing.T) {
	c := &api.Cluster{ID: e2eCluster, Schedule: &api.ClusterSchedule{UpdateWindows: "Mon 25:00-26:00 UTC", Error: "update_windows: position 5: hour 25 out of range"}}
	assert.Equal(t, "would not start: the cluster's update window does not parse (update_windows: position 5: hour 25 out of range); fix the config item first",
		startText(c, nil, now))
	c.Schedule = &api.ClusterSchedule{UpdateWindows: "Sun 00:00-01:00 UTC"}
	assert.Equal(t, "would not start: no opening of the update window Sun 00:00-01:00 UTC was found ahead", startText(c, nil, now))
	assert.Empty(t, startText(&api.Cluster{ID: e2eCluster}, nil, now), "a registry without schedules")
	until := now.Add(time.Hour)
	lifted := now.Add(-time.Minute)
	assert.Empty(t, startText(&api.Cluster{ID: e2eCluster}, []api.Block{{Reason: "lifted", Until: &lifted}, {Reason: "one pool", NodePool: "workers", Until: &until}}, now),
		"an expired block and a node pool's block do not hold a new version")
}

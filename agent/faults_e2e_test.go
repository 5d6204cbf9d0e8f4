package agent_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/fluxcd/pkg/runtime/conditions"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/caravan-gitops/caravan/agent/reconciler"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// settingsFiles add the ConfigMap settings to the config.
func settingsFiles(t *testing.T) map[string][]byte {
	return map[string][]byte{
		"kubernetes/base/settings.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: default\n"),
		base:                            addResource(t, "settings.yaml"),
	}
}

// failedWith says whether the registry's status reports a failure whose
// problem is of the kind (source, infrastructure, ...).
func (f *fleet) failedWith(kind string) func() bool {
	return func() bool {
		st := f.status()
		return st.Phase == api.PhaseFailed && len(st.Problems) > 0 && st.Problems[0].Type == api.ProblemTypeBase+kind
	}
}

// The git server goes down while the agent is to take a new commit: the
// last good version stays applied, the agent reports that it cannot fetch
// the commit, and applies it once the server is back.
func TestFaultsGitServerDownDuringAVersion(t *testing.T) {
	f := startFleet(t)
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	good := f.status().CurrentVersion

	// A block holds the agent back while the registry reads the new head,
	// so that the agent reaches for the commit only once the server is down.
	block, _, err := f.reg.CreateBlock(f.ctx, clusterID, registry.BlockRequest{Reason: "until the git server is down"})
	require.NoError(t, err)
	f.eventually("the agent is blocked", func() bool { return f.status().Phase == api.PhaseBlocked })
	sha := f.commit("add settings", settingsFiles(t))
	f.eventually("the registry publishes the new head", func() bool { return f.publishedHead() == sha })
	require.NoError(t, f.git.Down())
	require.NoError(t, f.reg.DeleteBlock(f.ctx, clusterID, block.ID, ""))

	f.eventually("the agent reports that it cannot fetch the commit", f.failedWith("source"))
	st := f.status()
	assert.Equal(t, good, st.CurrentVersion, "the last good version stays current")
	assert.Contains(t, st.Problems[0].Detail, "connection refused")
	cc := f.clusterConfig()
	assert.Equal(t, good, cc.Status.CurrentVersion)
	assert.False(t, conditions.IsReady(cc))
	assert.Equal(t, string(reconciler.ReasonFailed), conditions.GetReason(cc, reconciler.ReadyCondition))
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "nothing of the commit is applied: %v", err)

	require.NoError(t, f.git.Up())
	f.eventually("with the server back the agent applies the commit", f.atCommit(sha))
	_, err = f.configMap("settings")
	assert.NoError(t, err)
	assert.True(t, conditions.IsReady(f.clusterConfig()))
}

// AWS's endpoint goes down while a stack update is under way: the agent
// reports the problem, and once the endpoint is back, the update still
// running, it waits for it and goes on, never starting it again.
func TestFaultsMotoDownDuringAStackUpdate(t *testing.T) {
	f := startFleet(t)
	ops := f.aws.StartOperations(t, 0)
	f.awsEndpoint = ops.Endpoint
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	good := f.status().CurrentVersion
	updatesBefore := f.stackUpdates("kube-1")
	// The update runs until the test ends it, however long the agent
	// takes to report the outage.
	ops.SetHold(time.Hour)

	template, err := os.ReadFile("../manifests/cloudformation/cluster.yaml")
	require.NoError(t, err)
	changed := strings.Replace(string(template), "managed by caravan", "managed by caravan, second version", 1)
	require.NotEqual(t, string(template), changed)
	files := settingsFiles(t)
	files["cloudformation/cluster.yaml"] = []byte(changed)
	sha := f.commit("a new cluster stack and a ConfigMap", files)
	f.eventually("the agent starts the stack update", func() bool { return len(stackOperations(ops, "UpdateStack", "kube-1", sha)) == 1 })
	require.NoError(t, f.aws.Down())

	down := time.Now()
	f.eventually("the agent reports that AWS cannot be reached", f.failedWith("infrastructure"))
	t.Logf("reported %s after the endpoint went down: %s", time.Since(down).Round(time.Second), f.status().Problems[0].Detail)
	assert.Equal(t, good, f.status().CurrentVersion, "the last good version stays current")
	_, err = f.configMap("settings")
	assert.True(t, apierrors.IsNotFound(err), "nothing after the stack is applied: %v", err)

	require.NoError(t, f.aws.Up())
	require.Equal(t, []string{"kube-1"}, ops.Running(), "the update is still under way when AWS is back")
	f.eventually("with AWS back the agent reaches it again", func() bool {
		st := f.status()
		return st.Phase != "" && st.Phase != api.PhaseFailed
	})
	assert.NotEqual(t, sha, strings.Split(f.status().CurrentVersion, "#")[0], "the version waits for the update it started")
	ended := time.Now()
	ops.Finish("kube-1")
	f.eventually("once the update ended the agent completes the version", f.atCommit(sha))
	assert.True(t, f.clusterConfig().Status.LastAppliedTime.After(ended.Add(-time.Second)), "applied after the update ended")
	assert.Len(t, stackOperations(ops, "UpdateStack", "kube-1", sha), 1, "the agent sent the update once")
	assert.Empty(t, ops.Refused(), "no operation is started while the update is under way")
	assert.Equal(t, updatesBefore+1, f.stackUpdates("kube-1"), "moto updated the stack once")
	_, err = f.configMap("settings")
	assert.NoError(t, err)
}

// stackUpdates counts the updates moto made to a stack, from its events.
func (f *fleet) stackUpdates(name string) int {
	cfn := cloudformation.NewFromConfig(f.aws.AWSConfig("eu-central-1"))
	pages := cloudformation.NewDescribeStackEventsPaginator(cfn, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	n := 0
	for pages.HasMorePages() {
		page, err := pages.NextPage(f.ctx)
		require.NoError(f.t, err)
		for _, e := range page.StackEvents {
			if aws.ToString(e.LogicalResourceId) == name && e.ResourceStatus == "UPDATE_IN_PROGRESS" {
				n++
			}
		}
	}
	return n
}

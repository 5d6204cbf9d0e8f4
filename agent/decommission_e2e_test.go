package agent_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// minimalClusterStack is a cluster stack that moto can delete: moto cannot
// delete the reference template's VPC through CloudFormation (it reports a
// DependencyViolation on resources real CloudFormation removes first).
const minimalClusterStack = `AWSTemplateFormatVersion: "2010-09-09"
Description: {{ .Cluster.ID }}
Resources:
  NodeSecurityGroup:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: nodes of {{ .Cluster.LocalID }}
`

// Decommissioning, end to end: the registry asks, the agent deletes the
// node pool stacks; an operator confirms, the agent lifts the cluster
// stack's termination protection, deletes it, and the registry records the
// cluster as decommissioned. moto implements no termination protection,
// so test/moto's Protection plays it with CloudFormation's recorded answers.
func TestDecommissionEndToEnd(t *testing.T) {
	f := startFleet(t)
	protection := f.aws.StartProtection(t)
	f.awsEndpoint = protection.Endpoint
	f.commit("a cluster stack moto can delete", map[string][]byte{"cloudformation/cluster.yaml": []byte(minimalClusterStack)})
	f.startAgent("test", false)
	f.eventually("the first version is applied", func() bool { return f.status().Phase == api.PhaseIdle && f.status().CurrentVersion != "" })
	require.NotNil(t, f.stack("kube-1"))
	assert.True(t, protection.Protected("kube-1"), "the cluster stack is created with termination protection")

	_, _, err := f.reg.PatchCluster(f.ctx, clusterID, map[string]any{"lifecycle_status": api.LifecycleDecommissionRequested}, "")
	require.NoError(t, err)
	f.eventually("the agent reports the decommission under way", func() bool { return f.status().Phase == api.PhaseDecommissioning })
	assert.NotNil(t, f.stack("kube-1"), "the cluster stack waits for the confirmation")
	assert.Empty(t, protection.Calls(), "nothing is deleted before the confirmation")

	_, err = f.reg.DecommissionCluster(f.ctx, clusterID)
	require.NoError(t, err)
	f.eventually("the registry records the cluster as decommissioned", func() bool {
		c, _, err := f.reg.GetCluster(f.ctx, clusterID)
		return err == nil && c.LifecycleStatus == api.LifecycleDecommissioned
	})
	assert.Nil(t, f.stack("kube-1"), "the cluster stack is deleted")
	assert.Equal(t, []string{"UpdateTerminationProtection kube-1", "DeleteStack kube-1"}, protection.Calls(),
		"the protection is lifted before the stack is deleted")
	assert.Equal(t, api.PhaseDecommissioned, f.status().Phase)
}

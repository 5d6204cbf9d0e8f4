package preview

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestResourceChangesReadTheChangeSet(t *testing.T) {
	changes := []cftypes.Change{
		{Type: cftypes.ChangeTypeResource, ResourceChange: &cftypes.ResourceChange{Action: cftypes.ChangeActionModify,
			LogicalResourceId: aws.String("LaunchTemplate"), ResourceType: aws.String("AWS::EC2::LaunchTemplate"), Replacement: cftypes.ReplacementFalse}},
		{Type: cftypes.ChangeTypeResource, ResourceChange: &cftypes.ResourceChange{Action: cftypes.ChangeActionAdd,
			LogicalResourceId: aws.String("Queue"), ResourceType: aws.String("AWS::SQS::Queue")}},
		{Type: "Hook"},
	}
	assert.Equal(t, []api.ResourceChange{
		{Action: "Modify", LogicalID: "LaunchTemplate", Type: "AWS::EC2::LaunchTemplate", Replacement: "False"},
		{Action: "Add", LogicalID: "Queue", Type: "AWS::SQS::Queue"},
	}, resourceChanges(changes))
	assert.Equal(t, []api.ResourceChange{}, resourceChanges(nil))
}

func TestAChangeSetWithoutChangesIsAnAnswer(t *testing.T) {
	assert.True(t, withoutChanges("The submitted information didn't contain changes. Submit different information to create a change set."))
	assert.True(t, withoutChanges("No updates are to be performed."))
	assert.False(t, withoutChanges("Template format error: Unresolved resource dependencies [Vpc] in the Resources block of the template"))
}

func TestStackActionsInAPreviewsWords(t *testing.T) {
	for action, want := range map[cloud.Action]string{
		cloud.Nothing: api.StackUnchanged, cloud.Create: api.StackCreate, cloud.Update: api.StackUpdate,
		cloud.Wait: api.StackWait, cloud.Stuck: api.StackStuck,
	} {
		assert.Equal(t, want, stackAction(action), action.String())
	}
}

const clusterTemplate = `Resources:
  Vpc: {Type: AWS::EC2::VPC}
Outputs:
  VpcId: {Value: {Ref: Vpc}}
  SubnetIds: {Value: a}
`

func TestPoolOutputsAreTheStacksWithPlaceholdersForNewOnes(t *testing.T) {
	cluster := &render.Stack{Name: "kube-1", Body: []byte(clusterTemplate)}
	outputs, err := poolOutputs(cluster, &cloud.Observed{Outputs: map[string]string{"VpcId": "vpc-1"}})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"VpcId": "vpc-1", "SubnetIds": "placeholder-SubnetIds"}, outputs)

	outputs, err = poolOutputs(cluster, nil)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"VpcId": "placeholder-VpcId", "SubnetIds": "placeholder-SubnetIds"}, outputs, "before the cluster stack exists")
}

func TestStacksOfPoolsThatLeftTheRegistryAreDeleted(t *testing.T) {
	id := "aws:123456789012:eu-central-1:kube-1"
	observed := []cloud.Observed{
		{Name: "kube-1", Tags: map[string]string{cloud.TagClusterID: id}},
		{Name: "nodepool-workers-kube-1", Tags: map[string]string{cloud.TagClusterID: id, cloud.TagNodePool: "workers"}},
		{Name: "nodepool-old-kube-1", Tags: map[string]string{cloud.TagClusterID: id, cloud.TagNodePool: "old"}},
		{Name: "nodepool-x-other", Tags: map[string]string{cloud.TagClusterID: "other", cloud.TagNodePool: "x"}},
	}
	a := api.Assignment{Cluster: api.AssignedCluster{ID: id}, NodePools: []api.AssignedNodePool{{Name: "workers"}}}
	plans := orphanStacks(observed, a)
	require.Len(t, plans, 1)
	assert.Equal(t, "nodepool-old-kube-1", plans[0].Name)
	assert.Equal(t, api.StackDelete, plans[0].Action)
	assert.Contains(t, plans[0].Reason, "node pool old left the registry")
}

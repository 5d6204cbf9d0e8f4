package preview

import (
	"maps"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// resourceChanges reads the resource changes of a change set, in the
// order CloudFormation lists them.
func resourceChanges(changes []cftypes.Change) []api.ResourceChange {
	out := []api.ResourceChange{}
	for _, c := range changes {
		rc := c.ResourceChange
		if rc == nil {
			continue
		}
		out = append(out, api.ResourceChange{
			Action: string(rc.Action), LogicalID: aws.ToString(rc.LogicalResourceId),
			Type: aws.ToString(rc.ResourceType), Replacement: string(rc.Replacement),
		})
	}
	return out
}

// withoutChanges is how CloudFormation fails a change set that would
// change nothing (a template that differs in layout only, say): for a
// preview that is an answer, not an error.
func withoutChanges(statusReason string) bool {
	return strings.Contains(statusReason, "didn't contain changes") || strings.Contains(statusReason, "No updates are to be performed")
}

// stackAction is what a stack's plan says in a preview's words.
func stackAction(a cloud.Action) string {
	switch a {
	case cloud.Nothing:
		return api.StackUnchanged
	case cloud.Create:
		return api.StackCreate
	case cloud.Update:
		return api.StackUpdate
	case cloud.Wait:
		return api.StackWait
	}
	return api.StackStuck
}

// poolOutputs are the outputs node pool templates are rendered with: the
// cluster stack's as they are, and a placeholder for each output the
// rendered cluster template declares that the stack does not have yet
// (all of them before the stack exists). A changed output's new value is
// known only once the cluster stack is updated.
func poolOutputs(cluster *render.Stack, observed *cloud.Observed) (map[string]string, error) {
	names, err := render.OutputNames(cluster)
	if err != nil {
		return nil, err
	}
	outputs := map[string]string{}
	for _, name := range names {
		outputs[name] = "placeholder-" + name
	}
	if observed != nil {
		maps.Copy(outputs, observed.Outputs)
	}
	return outputs, nil
}

// orphanStacks are the stacks of node pools that left the registry, which
// the reconcile deletes once the pools' nodes are drained.
func orphanStacks(observed []cloud.Observed, a api.Assignment) []api.StackPlan {
	pools := make([]string, 0, len(a.NodePools))
	for _, p := range a.NodePools {
		pools = append(pools, p.Name)
	}
	orphans := cloud.Orphans(observed, a.Cluster.ID, pools)
	var out []api.StackPlan
	for _, pool := range slices.Sorted(maps.Keys(orphans)) {
		out = append(out, api.StackPlan{Name: orphans[pool].Name, NodePool: pool, Action: api.StackDelete,
			Reason: "node pool " + pool + " left the registry: its nodes are drained, then the stack is deleted", Resources: []api.ResourceChange{}})
	}
	return out
}

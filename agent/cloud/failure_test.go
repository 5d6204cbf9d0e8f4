package cloud

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The event lists of these tests are recorded shapes of DescribeStackEvents
// answers from CloudFormation: moto emits no per-resource events, no
// rollbacks and no *_FAILED states, so none of this can be shown against it.
// They are written oldest first, as they happened, and given to FirstFailure
// newest first, as DescribeStackEvents lists them.

const eventStack = "nodepool-default-kube-1"

// ev is one event; at counts seconds from the start of the recording.
type ev struct {
	at           int
	id, typ      string
	status       cftypes.ResourceStatus
	reason       string
	physicalName string
}

var recordingStart = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

// stackEvent is an event of the stack itself.
func stackEvent(at int, status cftypes.ResourceStatus, reason string) ev {
	return ev{at: at, id: eventStack, typ: "AWS::CloudFormation::Stack", status: status, reason: reason}
}

// newestFirst turns a recording, oldest first, into DescribeStackEvents' order.
func newestFirst(recorded ...ev) []cftypes.StackEvent {
	stackID := "arn:aws:cloudformation:eu-central-1:123456789012:stack/" + eventStack + "/5e4f1a20-0095-11f0-a1b6-06b2cfd3b7a1"
	out := make([]cftypes.StackEvent, 0, len(recorded))
	for i, e := range recorded {
		se := cftypes.StackEvent{
			EventId:           aws.String(fmt.Sprintf("%s-%s-%d", e.id, e.status, i)),
			StackId:           aws.String(stackID),
			StackName:         aws.String(eventStack),
			LogicalResourceId: aws.String(e.id),
			ResourceType:      aws.String(e.typ),
			ResourceStatus:    e.status,
			Timestamp:         aws.Time(recordingStart.Add(time.Duration(e.at) * time.Second)),
		}
		if e.reason != "" {
			se.ResourceStatusReason = aws.String(e.reason)
		}
		if e.id == eventStack {
			se.PhysicalResourceId = aws.String(stackID)
		} else if e.physicalName != "" {
			se.PhysicalResourceId = aws.String(e.physicalName)
		}
		out = append(out, se)
	}
	slices.Reverse(out)
	return out
}

const (
	amiMissing = `Resource handler returned message: "The image id '[ami-0bd39c806c2335b95]' does not exist (Service: Ec2, Status Code: 400, Request ID: 8f3a5f0c-2e6b-4c7a-9d8e-1b2c3d4e5f60)" (RequestToken: 0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5, HandlerErrorCode: InvalidRequest)`
	maxSize    = `Resource handler returned message: "Max bound, 1, must be greater than or equal to min bound, 3 (Service: AutoScaling, Status Code: 400, Request ID: 2b7c5c34-8f0e-4f7e-9a39-0d1e2f3a4b5c)" (RequestToken: 7a8b9c0d-1e2f-3a4b-5c6d-7e8f9a0b1c2d, HandlerErrorCode: InvalidRequest)`
	roleLimit  = `Resource handler returned message: "Cannot exceed quota for PoliciesPerRole: 10 (Service: Iam, Status Code: 409, Request ID: 6d5e4f3a-2b1c-0d9e-8f7a-6b5c4d3e2f1a)" (RequestToken: 3c4d5e6f-7a8b-9c0d-1e2f-3a4b5c6d7e8f, HandlerErrorCode: ServiceLimitExceeded)`
)

// createFailed: the launch template failed, the role was cancelled, and
// the stack rolled back to ROLLBACK_COMPLETE.
var createFailed = newestFirst(
	stackEvent(0, cftypes.ResourceStatusCreateInProgress, "User Initiated"),
	ev{at: 3, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateInProgress},
	ev{at: 3, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusCreateInProgress},
	ev{at: 4, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateInProgress, reason: "Resource creation Initiated", physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 5, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusCreateFailed, reason: amiMissing},
	ev{at: 5, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateFailed, reason: "Resource creation cancelled", physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	stackEvent(6, cftypes.ResourceStatusRollbackInProgress, "The following resource(s) failed to create: [NodeRole, LaunchTemplate]. Rollback requested by user."),
	ev{at: 7, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusDeleteComplete},
	ev{at: 7, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteInProgress, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 9, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteComplete, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	stackEvent(10, cftypes.ResourceStatusRollbackComplete, ""),
)

// created is a stack that was created without trouble; the update
// recordings below begin with it.
var created = []ev{
	stackEvent(0, cftypes.ResourceStatusCreateInProgress, "User Initiated"),
	ev{at: 2, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateInProgress},
	ev{at: 3, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateInProgress, reason: "Resource creation Initiated", physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 20, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateComplete, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 21, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusCreateInProgress},
	ev{at: 23, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusCreateComplete, physicalName: "lt-0a1b2c3d4e5f67890"},
	ev{at: 24, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusCreateInProgress},
	ev{at: 70, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusCreateComplete, physicalName: "nodepool-default-kube-1-Group-1H2J3K4L5M6N"},
	stackEvent(71, cftypes.ResourceStatusCreateComplete, ""),
}

// olderUpdateFailed is an earlier update whose role failed, rolled back.
var olderUpdateFailed = []ev{
	stackEvent(600, cftypes.ResourceStatusUpdateInProgress, "User Initiated"),
	ev{at: 603, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 604, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateFailed, reason: roleLimit, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	stackEvent(605, cftypes.ResourceStatusUpdateRollbackInProgress, "The following resource(s) failed to update: [NodeRole]."),
	ev{at: 606, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 608, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateComplete, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	stackEvent(609, cftypes.ResourceStatus("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"), ""),
	stackEvent(610, cftypes.ResourceStatusUpdateRollbackComplete, ""),
}

// latestUpdateFailed: the launch template and a nested stack were updated,
// the group failed, the role was cancelled; the rollback updated the nested
// stack and the launch template back (with plain UPDATE_IN_PROGRESS events
// of resources, a nested stack among them) and cleaned up.
var latestUpdateFailed = []ev{
	stackEvent(1200, cftypes.ResourceStatusUpdateInProgress, "User Initiated"),
	ev{at: 1202, id: "Network", typ: "AWS::CloudFormation::Stack", status: cftypes.ResourceStatusUpdateInProgress},
	ev{at: 1230, id: "Network", typ: "AWS::CloudFormation::Stack", status: cftypes.ResourceStatusUpdateComplete},
	ev{at: 1231, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "lt-0a1b2c3d4e5f67890"},
	ev{at: 1232, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateComplete, physicalName: "lt-0a1b2c3d4e5f67890"},
	ev{at: 1233, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "nodepool-default-kube-1-Group-1H2J3K4L5M6N"},
	ev{at: 1233, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	ev{at: 1234, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusUpdateFailed, reason: maxSize, physicalName: "nodepool-default-kube-1-Group-1H2J3K4L5M6N"},
	ev{at: 1234, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateFailed, reason: "Resource update cancelled", physicalName: "nodepool-default-kube-1-NodeRole-Xq3LkT9bWm2R"},
	stackEvent(1235, cftypes.ResourceStatusUpdateRollbackInProgress, "The following resource(s) failed to update: [Group, NodeRole]."),
	ev{at: 1237, id: "Network", typ: "AWS::CloudFormation::Stack", status: cftypes.ResourceStatusUpdateInProgress},
	ev{at: 1260, id: "Network", typ: "AWS::CloudFormation::Stack", status: cftypes.ResourceStatusUpdateComplete},
	ev{at: 1261, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateInProgress, physicalName: "lt-0a1b2c3d4e5f67890"},
	ev{at: 1262, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateComplete, physicalName: "lt-0a1b2c3d4e5f67890"},
	stackEvent(1263, cftypes.ResourceStatus("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS"), ""),
	stackEvent(1265, cftypes.ResourceStatusUpdateRollbackComplete, ""),
}

func concat(parts ...[]ev) []ev { return slices.Concat(parts...) }

func TestFirstFailureCreate(t *testing.T) {
	first := FirstFailure(eventStack, createFailed)
	require.NotNil(t, first)
	assert.Equal(t, "LaunchTemplate", aws.ToString(first.LogicalResourceId))
	assert.Equal(t, "AWS::EC2::LaunchTemplate", aws.ToString(first.ResourceType))
	assert.Equal(t, cftypes.ResourceStatusCreateFailed, first.ResourceStatus)
	assert.Equal(t, amiMissing, aws.ToString(first.ResourceStatusReason))
	// A pointer into the events, not a copy.
	assert.Same(t, &createFailed[slices.IndexFunc(createFailed, func(e cftypes.StackEvent) bool {
		return aws.ToString(e.LogicalResourceId) == "LaunchTemplate" && e.ResourceStatus == cftypes.ResourceStatusCreateFailed
	})], first)
}

func TestFirstFailureLatestUpdate(t *testing.T) {
	events := newestFirst(concat(created, olderUpdateFailed, latestUpdateFailed)...)
	first := FirstFailure(eventStack, events)
	require.NotNil(t, first)
	// The group of the latest update, not the role of the earlier one,
	// nor the role cancelled in the latest.
	assert.Equal(t, "Group", aws.ToString(first.LogicalResourceId))
	assert.Equal(t, "AWS::AutoScaling::AutoScalingGroup", aws.ToString(first.ResourceType))
	assert.Equal(t, maxSize, aws.ToString(first.ResourceStatusReason))

	// The earlier update, when it was the latest.
	first = FirstFailure(eventStack, newestFirst(concat(created, olderUpdateFailed)...))
	require.NotNil(t, first)
	assert.Equal(t, "NodeRole", aws.ToString(first.LogicalResourceId))
	assert.Equal(t, roleLimit, aws.ToString(first.ResourceStatusReason))
}

func TestFirstFailureEarliestOfSeveral(t *testing.T) {
	// Two resources failed of their own in one update (neither was
	// cancelled): the earlier is the cause.
	events := newestFirst(concat(created, []ev{
		stackEvent(600, cftypes.ResourceStatusUpdateInProgress, "User Initiated"),
		ev{at: 601, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateInProgress},
		ev{at: 602, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateFailed, reason: roleLimit},
		ev{at: 602, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateInProgress},
		ev{at: 603, id: "LaunchTemplate", typ: "AWS::EC2::LaunchTemplate", status: cftypes.ResourceStatusUpdateFailed, reason: amiMissing},
		stackEvent(604, cftypes.ResourceStatusUpdateRollbackInProgress, "The following resource(s) failed to update: [NodeRole, LaunchTemplate]."),
		// The rollback failed too: an echo, later than the cause.
		ev{at: 606, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateFailed, reason: "Resource handler returned message: \"Access denied\""},
		stackEvent(607, cftypes.ResourceStatusUpdateRollbackFailed, "The following resource(s) failed to update: [NodeRole]."),
	})...)
	first := FirstFailure(eventStack, events)
	require.NotNil(t, first)
	assert.Equal(t, "NodeRole", aws.ToString(first.LogicalResourceId))
	assert.Equal(t, roleLimit, aws.ToString(first.ResourceStatusReason))
}

func TestFirstFailureDelete(t *testing.T) {
	events := newestFirst(concat(created, []ev{
		stackEvent(900, cftypes.ResourceStatusDeleteInProgress, "User Initiated"),
		ev{at: 901, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusDeleteInProgress},
		ev{at: 960, id: "Group", typ: "AWS::AutoScaling::AutoScalingGroup", status: cftypes.ResourceStatusDeleteComplete},
		ev{at: 961, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteInProgress},
		ev{at: 962, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteFailed,
			reason: "Resource handler returned message: \"Cannot delete entity, must detach all policies first. (Service: Iam, Status Code: 409)\""},
		stackEvent(963, cftypes.ResourceStatusDeleteFailed, "The following resource(s) failed to delete: [NodeRole]. "),
	})...)
	first := FirstFailure(eventStack, events)
	require.NotNil(t, first)
	assert.Equal(t, "NodeRole", aws.ToString(first.LogicalResourceId))
	assert.Equal(t, cftypes.ResourceStatusDeleteFailed, first.ResourceStatus)
}

func TestFirstFailureNone(t *testing.T) {
	// A successful update after a failed one: the failure is history.
	succeeded := newestFirst(concat(created, olderUpdateFailed, []ev{
		stackEvent(1200, cftypes.ResourceStatusUpdateInProgress, "User Initiated"),
		ev{at: 1202, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateInProgress},
		ev{at: 1204, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusUpdateComplete},
		stackEvent(1205, cftypes.ResourceStatus("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"), ""),
		stackEvent(1206, cftypes.ResourceStatusUpdateComplete, ""),
	})...)
	assert.Nil(t, FirstFailure(eventStack, succeeded))

	assert.Nil(t, FirstFailure(eventStack, newestFirst(created...)))
	assert.Nil(t, FirstFailure(eventStack, nil))

	// Only cancellations: they never name the cause.
	cancelledOnly := newestFirst(
		stackEvent(0, cftypes.ResourceStatusCreateInProgress, "User Initiated"),
		ev{at: 3, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusCreateFailed, reason: "Resource creation cancelled"},
		stackEvent(4, cftypes.ResourceStatusRollbackInProgress, "The following resource(s) failed to create: [NodeRole]. Rollback requested by user."),
	)
	assert.Nil(t, FirstFailure(eventStack, cancelledOnly))

	// The stack's own failure names no resource: a create without
	// rollback ends in the stack's CREATE_FAILED.
	stackOnly := newestFirst(
		stackEvent(0, cftypes.ResourceStatusCreateInProgress, "User Initiated"),
		stackEvent(1, cftypes.ResourceStatusCreateFailed, "Template error: instance of Fn::GetAtt references undefined resource Groupp"),
	)
	assert.Nil(t, FirstFailure(eventStack, stackOnly))
}

func TestStackErrorMessage(t *testing.T) {
	e := &StackError{Stack: "kube-1", Status: "UPDATE_ROLLBACK_COMPLETE", Resource: "Group", ResourceType: "AWS::AutoScaling::AutoScalingGroup", Reason: "Max bound"}
	assert.Equal(t, "stack kube-1 is UPDATE_ROLLBACK_COMPLETE; first failed resource Group (AWS::AutoScaling::AutoScalingGroup): Max bound", e.Error())
	assert.Equal(t, "stack kube-1: too large", (&StackError{Stack: "kube-1", Reason: "too large"}).Error())
}

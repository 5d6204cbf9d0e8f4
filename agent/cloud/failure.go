package cloud

import (
	"context"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
)

// StackError is a stack that failed or cannot be changed, with the first
// resource that failed when the stack events name one.
type StackError struct {
	Stack        string
	Status       string
	Resource     string
	ResourceType string
	Reason       string
}

func (e *StackError) Error() string {
	var b strings.Builder
	b.WriteString("stack " + e.Stack)
	if e.Status != "" {
		b.WriteString(" is " + e.Status)
	}
	if e.Resource != "" {
		fmt.Fprintf(&b, "; first failed resource %s (%s)", e.Resource, e.ResourceType)
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

// failure describes a stack whose operation failed.
func (s *Stacks) failure(ctx context.Context, o Observed, waitErr error) error {
	e := &StackError{Stack: o.Name, Status: o.Status, Reason: o.StatusReason}
	events, err := s.cfn.DescribeStackEvents(ctx, &cloudformation.DescribeStackEventsInput{StackName: aws.String(o.Name)})
	if err == nil {
		if first := FirstFailure(o.Name, events.StackEvents); first != nil {
			e.Resource, e.ResourceType = aws.ToString(first.LogicalResourceId), aws.ToString(first.ResourceType)
			e.Reason = aws.ToString(first.ResourceStatusReason)
		}
	}
	if e.Reason == "" && waitErr != nil {
		e.Reason = waitErr.Error()
	}
	return e
}

// FirstFailure finds, in a stack's events (newest first, as
// DescribeStackEvents lists them), the earliest resource failure of the
// latest operation: the cause, where the later failures are its echoes.
func FirstFailure(stack string, events []cftypes.StackEvent) *cftypes.StackEvent {
	var first *cftypes.StackEvent
	for i := range events {
		e := &events[i]
		if operationStart(stack, e) {
			break
		}
		if aws.ToString(e.LogicalResourceId) != stack && strings.HasSuffix(string(e.ResourceStatus), "_FAILED") && !cancelled(e) {
			first = e
		}
	}
	return first
}

// operationStart is the stack's own event that begins an operation;
// rollbacks have statuses of their own, so they never match.
func operationStart(stack string, e *cftypes.StackEvent) bool {
	if aws.ToString(e.LogicalResourceId) != stack || aws.ToString(e.ResourceType) != "AWS::CloudFormation::Stack" {
		return false
	}
	switch e.ResourceStatus {
	case cftypes.ResourceStatusCreateInProgress, cftypes.ResourceStatusUpdateInProgress, cftypes.ResourceStatusDeleteInProgress:
		return true
	}
	return false
}

// cancelled failures are the resources CloudFormation stopped because
// another one failed; they never name the cause.
func cancelled(e *cftypes.StackEvent) bool {
	reason := aws.ToString(e.ResourceStatusReason)
	return strings.Contains(reason, "Resource creation cancelled") || strings.Contains(reason, "Resource update cancelled")
}

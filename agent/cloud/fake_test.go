package cloud

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/smithy-go"
)

// recorder wraps a CloudFormation client (moto's): it records the
// operations in order and the inputs of those that change stacks, and
// answers UpdateTerminationProtection itself when protection is set,
// since moto 5.2.5 does not implement it (it answers 500).
type recorder struct {
	CloudFormation

	mu         sync.Mutex
	calls      []string
	creates    []*cloudformation.CreateStackInput
	updates    []*cloudformation.UpdateStackInput
	protection []*cloudformation.UpdateTerminationProtectionInput
	// protect answers UpdateTerminationProtection in moto's stead.
	protect func(*cloudformation.UpdateTerminationProtectionInput) (*cloudformation.UpdateTerminationProtectionOutput, error)
}

func (r *recorder) record(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, op)
}

func (r *recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// Changes are the calls other than the reads.
func (r *recorder) Changes() []string {
	return slices.DeleteFunc(r.Calls(), func(op string) bool { return op == "DescribeStacks" || op == "DescribeStackEvents" })
}

func (r *recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls, r.creates, r.updates, r.protection = nil, nil, nil, nil
}

func (r *recorder) DescribeStacks(ctx context.Context, in *cloudformation.DescribeStacksInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	r.record("DescribeStacks")
	return r.CloudFormation.DescribeStacks(ctx, in, opts...)
}

func (r *recorder) DescribeStackEvents(ctx context.Context, in *cloudformation.DescribeStackEventsInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	r.record("DescribeStackEvents")
	return r.CloudFormation.DescribeStackEvents(ctx, in, opts...)
}

func (r *recorder) CreateStack(ctx context.Context, in *cloudformation.CreateStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error) {
	r.record("CreateStack")
	r.mu.Lock()
	r.creates = append(r.creates, in)
	r.mu.Unlock()
	return r.CloudFormation.CreateStack(ctx, in, opts...)
}

func (r *recorder) UpdateStack(ctx context.Context, in *cloudformation.UpdateStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error) {
	r.record("UpdateStack")
	r.mu.Lock()
	r.updates = append(r.updates, in)
	r.mu.Unlock()
	return r.CloudFormation.UpdateStack(ctx, in, opts...)
}

func (r *recorder) DeleteStack(ctx context.Context, in *cloudformation.DeleteStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.DeleteStackOutput, error) {
	r.record("DeleteStack")
	return r.CloudFormation.DeleteStack(ctx, in, opts...)
}

func (r *recorder) UpdateTerminationProtection(ctx context.Context, in *cloudformation.UpdateTerminationProtectionInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateTerminationProtectionOutput, error) {
	r.record("UpdateTerminationProtection")
	r.mu.Lock()
	r.protection = append(r.protection, in)
	protect := r.protect
	r.mu.Unlock()
	if protect != nil {
		return protect(in)
	}
	return r.CloudFormation.UpdateTerminationProtection(ctx, in, opts...)
}

// apiError is an error as the SDK returns it for an API's error answer.
func apiError(op, code, message string) error {
	return &smithy.OperationError{ServiceID: "CloudFormation", OperationName: op,
		Err: &smithy.GenericAPIError{Code: code, Message: message, Fault: smithy.FaultClient}}
}

const fakeAccount = "123456789012"

func stackID(name string) string {
	return "arn:aws:cloudformation:eu-central-1:" + fakeAccount + ":stack/" + name + "/8f1c7e70-0f3d-11f0-9a5e-0a8b7c6d5e4f"
}

// answer is one recorded DescribeStacks answer about a stack: its status
// and tags, or an error.
type answer struct {
	status cftypes.StackStatus
	reason string
	tags   map[string]string
	err    error
}

// fake is a CloudFormation whose answers are recorded responses, for what
// moto cannot show: operations that take time, rollbacks, failed
// resources. DescribeStacks gives the answers in turn, the last one again
// and again; the other operations succeed unless given an error.
type fake struct {
	t       *testing.T
	name    string
	outputs map[string]string

	mu        sync.Mutex
	calls     []string
	answers   []answer
	events    []cftypes.StackEvent
	eventsErr error
	createErr error
	updateErr error
	creates   []*cloudformation.CreateStackInput
	updates   []*cloudformation.UpdateStackInput
}

func (f *fake) record(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, op)
}

func (f *fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fake) count(op string) int {
	n := 0
	for _, c := range f.Calls() {
		if c == op {
			n++
		}
	}
	return n
}

func (f *fake) DescribeStacks(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	f.record("DescribeStacks")
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.StackName) != f.name {
		f.t.Errorf("DescribeStacks of %q, the fake knows only %q", aws.ToString(in.StackName), f.name)
		return nil, apiError("DescribeStacks", "ValidationError", "Stack with id "+aws.ToString(in.StackName)+" does not exist")
	}
	if len(f.answers) == 0 {
		f.t.Fatalf("DescribeStacks without an answer")
	}
	a := f.answers[0]
	if len(f.answers) > 1 {
		f.answers = f.answers[1:]
	}
	if a.err != nil {
		return nil, a.err
	}
	st := cftypes.Stack{
		StackId:                     aws.String(stackID(f.name)),
		StackName:                   aws.String(f.name),
		StackStatus:                 a.status,
		CreationTime:                aws.Time(time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)),
		LastUpdatedTime:             aws.Time(time.Date(2025, 3, 14, 9, 47, 18, 0, time.UTC)),
		Capabilities:                capabilities,
		EnableTerminationProtection: aws.Bool(true),
		DisableRollback:             aws.Bool(false),
	}
	if a.reason != "" {
		st.StackStatusReason = aws.String(a.reason)
	}
	for k, v := range a.tags {
		st.Tags = append(st.Tags, cftypes.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	for k, v := range f.outputs {
		st.Outputs = append(st.Outputs, cftypes.Output{OutputKey: aws.String(k), OutputValue: aws.String(v)})
	}
	return &cloudformation.DescribeStacksOutput{Stacks: []cftypes.Stack{st}}, nil
}

func (f *fake) DescribeStackEvents(_ context.Context, in *cloudformation.DescribeStackEventsInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error) {
	f.record("DescribeStackEvents")
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.StackName) != f.name {
		f.t.Errorf("DescribeStackEvents of %q", aws.ToString(in.StackName))
	}
	if f.eventsErr != nil {
		return nil, f.eventsErr
	}
	return &cloudformation.DescribeStackEventsOutput{StackEvents: f.events}, nil
}

func (f *fake) CreateStack(_ context.Context, in *cloudformation.CreateStackInput, _ ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error) {
	f.record("CreateStack")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, in)
	if f.createErr != nil {
		return nil, f.createErr
	}
	return &cloudformation.CreateStackOutput{StackId: aws.String(stackID(f.name))}, nil
}

func (f *fake) UpdateStack(_ context.Context, in *cloudformation.UpdateStackInput, _ ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error) {
	f.record("UpdateStack")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, in)
	if f.updateErr != nil {
		return nil, f.updateErr
	}
	return &cloudformation.UpdateStackOutput{StackId: aws.String(stackID(f.name))}, nil
}

func (f *fake) DeleteStack(context.Context, *cloudformation.DeleteStackInput, ...func(*cloudformation.Options)) (*cloudformation.DeleteStackOutput, error) {
	f.record("DeleteStack")
	return &cloudformation.DeleteStackOutput{}, nil
}

func (f *fake) UpdateTerminationProtection(context.Context, *cloudformation.UpdateTerminationProtectionInput, ...func(*cloudformation.Options)) (*cloudformation.UpdateTerminationProtectionOutput, error) {
	f.record("UpdateTerminationProtection")
	return &cloudformation.UpdateTerminationProtectionOutput{StackId: aws.String(stackID(f.name))}, nil
}

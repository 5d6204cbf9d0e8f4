package cloud

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/caravan-gitops/caravan/agent/render"
)

// MaxTemplateBody is the largest template CloudFormation takes inline;
// a larger one goes through S3.
const MaxTemplateBody = 51200

// CloudFormation is the part of the CloudFormation API the agent calls;
// *cloudformation.Client has it.
type CloudFormation interface {
	cloudformation.DescribeStacksAPIClient
	CreateStack(ctx context.Context, in *cloudformation.CreateStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error)
	UpdateStack(ctx context.Context, in *cloudformation.UpdateStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error)
	DeleteStack(ctx context.Context, in *cloudformation.DeleteStackInput, opts ...func(*cloudformation.Options)) (*cloudformation.DeleteStackOutput, error)
	UpdateTerminationProtection(ctx context.Context, in *cloudformation.UpdateTerminationProtectionInput, opts ...func(*cloudformation.Options)) (*cloudformation.UpdateTerminationProtectionOutput, error)
	DescribeStackEvents(ctx context.Context, in *cloudformation.DescribeStackEventsInput, opts ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error)
}

// Uploader puts large templates into S3; *s3.Client has it.
type Uploader interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Stacks manages the stacks of one cluster in its account and region.
type Stacks struct {
	cfn       CloudFormation
	s3        Uploader
	clusterID string
	region    string
	// endpoint, when set, is the S3 endpoint template URLs point at (an
	// emulator's); otherwise they name the bucket's regional AWS host.
	endpoint string
	// PollMin and PollMax bound the waiters' polling; CloudFormation's own
	// defaults (30s to 120s) suit real stacks, tests shorten them.
	PollMin, PollMax time.Duration
}

// NewStacks returns the stack manager of a cluster.
func NewStacks(cfn CloudFormation, uploader Uploader, clusterID, region, endpoint string) *Stacks {
	return &Stacks{cfn: cfn, s3: uploader, clusterID: clusterID, region: region, endpoint: endpoint, PollMin: 5 * time.Second, PollMax: 30 * time.Second}
}

// Describe lists the stacks of the cluster with one DescribeStacks (more
// only when the account has more stacks than a page holds).
func (s *Stacks) Describe(ctx context.Context) ([]Observed, error) {
	var out []Observed
	pages := cloudformation.NewDescribeStacksPaginator(s.cfn, &cloudformation.DescribeStacksInput{})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing the stacks: %w", err)
		}
		for _, st := range page.Stacks {
			o := observed(st)
			if o.Tags[TagClusterID] == s.clusterID {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

func observed(st cftypes.Stack) Observed {
	o := Observed{Name: aws.ToString(st.StackName), Status: string(st.StackStatus), StatusReason: aws.ToString(st.StackStatusReason),
		Tags: map[string]string{}, Outputs: map[string]string{}}
	for _, t := range st.Tags {
		o.Tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	for _, out := range st.Outputs {
		o.Outputs[aws.ToString(out.OutputKey)] = aws.ToString(out.OutputValue)
	}
	return o
}

// Find returns the observed stack of that name, or nil.
func Find(stacks []Observed, name string) *Observed {
	for i := range stacks {
		if stacks[i].Name == name {
			return &stacks[i]
		}
	}
	return nil
}

// Options of one stack operation.
type Options struct {
	Version string
	// Bucket takes templates over MaxTemplateBody; empty refuses them.
	Bucket  string
	Timeout time.Duration
}

// Converge creates or updates one stack as Plan says and waits for it; it
// returns the stack's outputs and whether it called anything that changes.
// A new cluster stack is created with termination protection; node pool
// stacks are not, since the agent deletes them whenever a pool leaves.
func (s *Stacks) Converge(ctx context.Context, desired *render.Stack, current *Observed, opts Options) (map[string]string, bool, error) {
	step := Plan(desired.Digest, current)
	if step.Action == Wait {
		waited, err := s.waitSettled(ctx, desired.Name, opts.Timeout)
		if err != nil {
			return nil, false, err
		}
		current = waited
		step = Plan(desired.Digest, current)
	}
	switch step.Action {
	case Nothing:
		return current.Outputs, false, nil
	case Stuck:
		return nil, false, &StackError{Stack: desired.Name, Status: current.Status, Reason: step.Reason}
	case Create:
		out, err := s.create(ctx, desired, opts)
		return out, true, err
	}
	out, err := s.update(ctx, desired, current, opts)
	return out, true, err
}

func (s *Stacks) tags(desired *render.Stack, version string) []cftypes.Tag {
	tags := map[string]string{TagClusterID: s.clusterID, TagVersion: version, TagDigest: desired.Digest}
	if desired.NodePool != "" {
		tags[TagNodePool] = desired.NodePool
	}
	var out []cftypes.Tag
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		out = append(out, cftypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	return out
}

var capabilities = []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam}

func (s *Stacks) create(ctx context.Context, desired *render.Stack, opts Options) (map[string]string, error) {
	body, url, err := s.template(ctx, desired, opts)
	if err != nil {
		return nil, err
	}
	_, err = s.cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: aws.String(desired.Name), TemplateBody: body, TemplateURL: url, Capabilities: capabilities,
		Tags: s.tags(desired, opts.Version), EnableTerminationProtection: aws.Bool(desired.NodePool == ""),
	})
	if err != nil {
		return nil, fmt.Errorf("creating stack %s: %w", desired.Name, err)
	}
	waiter := cloudformation.NewStackCreateCompleteWaiter(s.cfn, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = s.PollMin, s.PollMax
	})
	return s.outcome(ctx, desired.Name)(waiter.WaitForOutput(ctx, stackInput(desired.Name), opts.Timeout))
}

func (s *Stacks) update(ctx context.Context, desired *render.Stack, current *Observed, opts Options) (map[string]string, error) {
	body, url, err := s.template(ctx, desired, opts)
	if err != nil {
		return nil, err
	}
	_, err = s.cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{
		StackName: aws.String(desired.Name), TemplateBody: body, TemplateURL: url, Capabilities: capabilities,
		Tags: s.tags(desired, opts.Version),
	})
	if noUpdates(err) {
		return current.Outputs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("updating stack %s: %w", desired.Name, err)
	}
	waiter := cloudformation.NewStackUpdateCompleteWaiter(s.cfn, func(o *cloudformation.StackUpdateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = s.PollMin, s.PollMax
	})
	return s.outcome(ctx, desired.Name)(waiter.WaitForOutput(ctx, stackInput(desired.Name), opts.Timeout))
}

// noUpdates is CloudFormation's answer to an update that changes nothing.
func noUpdates(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && strings.Contains(api.ErrorMessage(), "No updates are to be performed")
}

// notExist is CloudFormation's answer about a stack that does not exist
// (any more): ValidationError "Stack with id NAME does not exist".
func notExist(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == "ValidationError" && strings.HasSuffix(api.ErrorMessage(), "does not exist")
}

func stackInput(name string) *cloudformation.DescribeStacksInput {
	return &cloudformation.DescribeStacksInput{StackName: aws.String(name)}
}

// outcome takes a waiter's result: the outputs of the stack it saw
// complete, or else what settled finds.
func (s *Stacks) outcome(ctx context.Context, name string) func(*cloudformation.DescribeStacksOutput, error) (map[string]string, error) {
	return func(out *cloudformation.DescribeStacksOutput, err error) (map[string]string, error) {
		if err == nil && out != nil && len(out.Stacks) == 1 {
			if o := observed(out.Stacks[0]); !Failed(o.Status) && !strings.HasSuffix(o.Status, "_IN_PROGRESS") {
				return o.Outputs, nil
			}
		}
		return s.settled(ctx, name, err)
	}
}

// settled reads the stack after a waiter ended: its outputs when the
// operation succeeded, else a StackError naming the first failed resource.
func (s *Stacks) settled(ctx context.Context, name string, waitErr error) (map[string]string, error) {
	out, err := s.cfn.DescribeStacks(ctx, stackInput(name))
	if err == nil && len(out.Stacks) == 0 {
		err = errors.New("DescribeStacks lists no such stack")
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("describing stack %s after the operation: %w", name, err), waitErr)
	}
	o := observed(out.Stacks[0])
	if Failed(o.Status) || (waitErr != nil && strings.HasSuffix(o.Status, "_IN_PROGRESS")) {
		return nil, s.failure(ctx, o, waitErr)
	}
	if waitErr != nil {
		return nil, fmt.Errorf("stack %s (%s): %w", name, o.Status, waitErr)
	}
	return o.Outputs, nil
}

// waitSettled waits for an operation under way, whichever it is.
func (s *Stacks) waitSettled(ctx context.Context, name string, timeout time.Duration) (*Observed, error) {
	deadline := time.Now().Add(timeout)
	delay := s.PollMin
	for {
		out, err := s.cfn.DescribeStacks(ctx, stackInput(name))
		if notExist(err) {
			// Deleted while waiting: DescribeStacks does not find a
			// deleted stack by name, it answers ValidationError.
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("describing stack %s: %w", name, err)
		}
		if len(out.Stacks) == 0 {
			return nil, nil
		}
		o := observed(out.Stacks[0])
		if !strings.HasSuffix(o.Status, "_IN_PROGRESS") {
			return &o, nil
		}
		if time.Now().After(deadline) {
			return nil, &StackError{Stack: name, Status: o.Status, Reason: "still in progress after " + timeout.String()}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, s.PollMax)
	}
}

// template returns the template inline, or its S3 URL when too large.
func (s *Stacks) template(ctx context.Context, desired *render.Stack, opts Options) (*string, *string, error) {
	if len(desired.Body) <= MaxTemplateBody {
		return aws.String(string(desired.Body)), nil, nil
	}
	if opts.Bucket == "" {
		return nil, nil, &StackError{Stack: desired.Name, Reason: fmt.Sprintf(
			"the template has %d bytes, more than CloudFormation takes inline (%d); set the config item %s to an S3 bucket for templates",
			len(desired.Body), MaxTemplateBody, ConfigTemplateBucket)}
	}
	key := fmt.Sprintf("caravan/%s/%s-%s.yaml", s.clusterID, desired.Name, desired.Digest)
	key = strings.ReplaceAll(key, ":", "/")
	_, err := s.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(opts.Bucket), Key: aws.String(key), Body: bytes.NewReader(desired.Body)})
	if err != nil {
		return nil, nil, fmt.Errorf("uploading the template of %s to s3://%s/%s: %w", desired.Name, opts.Bucket, key, err)
	}
	url := fmt.Sprintf("https://%s.s3.%s.amazonaws.com/%s", opts.Bucket, s.region, key)
	if s.endpoint != "" {
		url = strings.TrimSuffix(s.endpoint, "/") + "/" + opts.Bucket + "/" + key
	}
	return nil, aws.String(url), nil
}

// ConfigTemplateBucket names the S3 bucket for templates over MaxTemplateBody.
const ConfigTemplateBucket = "cloudformation_bucket"

// Delete deletes a stack and waits; a protected one (the cluster stack)
// has its termination protection lifted first.
func (s *Stacks) Delete(ctx context.Context, name string, protected bool, timeout time.Duration) error {
	if protected {
		_, err := s.cfn.UpdateTerminationProtection(ctx, &cloudformation.UpdateTerminationProtectionInput{
			StackName: aws.String(name), EnableTerminationProtection: aws.Bool(false),
		})
		if err != nil {
			return fmt.Errorf("lifting the termination protection of stack %s: %w", name, err)
		}
	}
	if _, err := s.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(name)}); err != nil {
		return fmt.Errorf("deleting stack %s: %w", name, err)
	}
	waiter := cloudformation.NewStackDeleteCompleteWaiter(s.cfn, func(o *cloudformation.StackDeleteCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = s.PollMin, s.PollMax
	})
	if err := waiter.Wait(ctx, stackInput(name), timeout); err != nil {
		out, derr := s.cfn.DescribeStacks(ctx, stackInput(name))
		if derr == nil && len(out.Stacks) > 0 {
			return s.failure(ctx, observed(out.Stacks[0]), err)
		}
		return fmt.Errorf("deleting stack %s: %w", name, err)
	}
	return nil
}

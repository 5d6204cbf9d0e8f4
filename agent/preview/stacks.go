package preview

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caravan-gitops/caravan/agent/cloud"
	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// cleanupTimeout bounds the deletion of a preview's change set, which runs
// even when the plan's own time ran out: a change set left behind would be
// the one thing a preview changed.
const cleanupTimeout = time.Minute

// changeSetTimeout bounds the wait for one change set; CloudFormation
// takes seconds to make one.
const changeSetTimeout = 5 * time.Minute

// changeSets makes, reads and deletes the change sets of one plan.
type changeSets struct {
	cfn       *cloudformation.Client
	s3        *s3.Client
	clusterID string
	region    string
	endpoint  string
	// name is the change sets' name, one per stack: caravan-plan-<plan id>.
	name   string
	bucket string
	// pollMin and pollMax bound the waiter's polling; a change set takes
	// seconds, not the minutes of a stack update.
	pollMin, pollMax time.Duration
}

func newChangeSets(a *cloud.AWS, clusterID, region, planID string, items map[string]string) *changeSets {
	return &changeSets{
		cfn: cloudformation.NewFromConfig(a.Config, func(o *cloudformation.Options) { o.Region = region }),
		s3: s3.NewFromConfig(a.Config, func(o *s3.Options) {
			o.Region = region
			o.UsePathStyle = a.Endpoint != ""
		}),
		clusterID: clusterID, region: region, endpoint: a.Endpoint, name: "caravan-plan-" + planID,
		bucket: items[cloud.ConfigTemplateBucket], pollMin: time.Second, pollMax: 10 * time.Second,
	}
}

// stacks previews every stack of the cluster: the cluster stack, then each
// node pool's (rendered with the cluster stack's outputs), then the stacks
// of pools that left the registry. It also returns each pool's revision.
func (p *Previewer) stacks(ctx context.Context, files fs.FS, a api.Assignment, items map[string]string, cluster *render.Stack, planID string) ([]api.StackPlan, map[string]string, error) {
	if p.aws == nil {
		return nil, nil, &Failure{Kind: "infrastructure", Title: "The stacks cannot be previewed",
			Err: errors.New("the commit has CloudFormation templates and the agent has no AWS access")}
	}
	observed, err := p.aws.Stacks(a.Cluster.ID, a.Cluster.Region).Describe(ctx)
	if err != nil {
		return nil, nil, err
	}
	cs := newChangeSets(p.aws, a.Cluster.ID, a.Cluster.Region, planID, items)
	clusterPlan, err := cs.preview(ctx, cluster, cloud.Find(observed, cluster.Name))
	if err != nil {
		return nil, nil, err
	}
	plans := []api.StackPlan{clusterPlan}
	outputs, err := poolOutputs(cluster, cloud.Find(observed, cluster.Name))
	if err != nil {
		return nil, nil, err
	}
	revisions := map[string]string{}
	for _, pool := range a.NodePools {
		stack, err := render.NodePoolStack(files, a, items, pool, outputs)
		if err != nil {
			return nil, nil, &Failure{Kind: "render", Title: "The commit cannot be rendered", Err: err}
		}
		if stack == nil {
			continue
		}
		revisions[pool.Name] = stack.Revision
		plan, err := cs.preview(ctx, stack, cloud.Find(observed, stack.Name))
		if err != nil {
			return nil, nil, err
		}
		plans = append(plans, plan)
	}
	return append(plans, orphanStacks(observed, a)...), revisions, nil
}

// preview says what the stack needs, as a reconcile would decide it, and
// for a create or an update the resources of a change set made for it.
func (c *changeSets) preview(ctx context.Context, stack *render.Stack, current *cloud.Observed) (api.StackPlan, error) {
	step := cloud.Plan(stack.Digest, current)
	plan := api.StackPlan{Name: stack.Name, NodePool: stack.NodePool, Action: stackAction(step.Action), Resources: []api.ResourceChange{}}
	if step.Action != cloud.Create && step.Action != cloud.Update {
		if step.Action != cloud.Nothing {
			plan.Reason = step.Reason
		}
		return plan, nil
	}
	changes, reason, err := c.changes(ctx, stack, step.Action == cloud.Create)
	if err != nil {
		return plan, fmt.Errorf("previewing stack %s: %w", stack.Name, err)
	}
	plan.Resources, plan.Reason = changes, reason
	return plan, nil
}

// changes makes a change set for the stack, reads its resource changes and
// deletes it again, never executing it; for a stack that does not exist
// also the stack in REVIEW_IN_PROGRESS that the change set made. The
// reason is set when the change set holds no change.
func (c *changeSets) changes(ctx context.Context, stack *render.Stack, create bool) (changes []api.ResourceChange, reason string, err error) {
	in, err := c.input(ctx, stack, create)
	if err != nil {
		return nil, "", err
	}
	made, err := c.cfn.CreateChangeSet(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("creating change set %s: %w", c.name, err)
	}
	defer func() {
		err = errors.Join(err, c.delete(ctx, made, create))
	}()
	first, err := c.wait(ctx, aws.ToString(made.Id))
	if err != nil {
		return nil, "", err
	}
	if first == nil {
		return []api.ResourceChange{}, "the change set holds no resource changes", nil
	}
	changes = resourceChanges(first.Changes)
	for token := first.NextToken; token != nil; {
		page, err := c.cfn.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: made.Id, NextToken: token})
		if err != nil {
			return nil, "", fmt.Errorf("reading change set %s: %w", c.name, err)
		}
		changes, token = append(changes, resourceChanges(page.Changes)...), page.NextToken
	}
	return changes, "", nil
}

func (c *changeSets) input(ctx context.Context, stack *render.Stack, create bool) (*cloudformation.CreateChangeSetInput, error) {
	in := &cloudformation.CreateChangeSetInput{
		StackName: aws.String(stack.Name), ChangeSetName: aws.String(c.name), ChangeSetType: cftypes.ChangeSetTypeUpdate,
		Capabilities: []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam},
		Description:  aws.String("A preview of caravan; never executed"),
	}
	if create {
		// The stack the change set makes carries the cluster's tag: should it
		// outlive the preview, the next reconcile names it (REVIEW_IN_PROGRESS).
		in.ChangeSetType = cftypes.ChangeSetTypeCreate
		in.Tags = []cftypes.Tag{{Key: aws.String(cloud.TagClusterID), Value: aws.String(c.clusterID)}}
		if stack.NodePool != "" {
			in.Tags = append(in.Tags, cftypes.Tag{Key: aws.String(cloud.TagNodePool), Value: aws.String(stack.NodePool)})
		}
	}
	if len(stack.Body) <= cloud.MaxTemplateBody {
		in.TemplateBody = aws.String(string(stack.Body))
		return in, nil
	}
	url, err := c.upload(ctx, stack)
	in.TemplateURL = url
	return in, err
}

// upload puts a template too large to send inline where the stack's update
// would put it: the key holds the template's digest, so the update finds
// the same object.
func (c *changeSets) upload(ctx context.Context, stack *render.Stack) (*string, error) {
	if c.bucket == "" {
		return nil, fmt.Errorf("the template of %s has %d bytes, more than CloudFormation takes inline (%d); set the config item %s to an S3 bucket for templates",
			stack.Name, len(stack.Body), cloud.MaxTemplateBody, cloud.ConfigTemplateBucket)
	}
	key := strings.ReplaceAll(fmt.Sprintf("caravan/%s/%s-%s.yaml", c.clusterID, stack.Name, stack.Digest), ":", "/")
	_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(c.bucket), Key: aws.String(key), Body: bytes.NewReader(stack.Body)})
	if err != nil {
		return nil, fmt.Errorf("uploading the template of %s to s3://%s/%s: %w", stack.Name, c.bucket, key, err)
	}
	if c.endpoint != "" {
		return aws.String(strings.TrimSuffix(c.endpoint, "/") + "/" + c.bucket + "/" + key), nil
	}
	return aws.String(fmt.Sprintf("https://%s.s3.%s.amazonaws.com/%s", c.bucket, c.region, key)), nil
}

// wait waits for the change set and returns its first page; nil when
// CloudFormation failed it for holding no change.
func (c *changeSets) wait(ctx context.Context, id string) (*cloudformation.DescribeChangeSetOutput, error) {
	in := &cloudformation.DescribeChangeSetInput{ChangeSetName: aws.String(id)}
	waiter := cloudformation.NewChangeSetCreateCompleteWaiter(c.cfn, func(o *cloudformation.ChangeSetCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = c.pollMin, c.pollMax
	})
	out, waitErr := waiter.WaitForOutput(ctx, in, changeSetTimeout)
	if waitErr == nil {
		return out, nil
	}
	failed, err := c.cfn.DescribeChangeSet(ctx, in)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("waiting for change set %s: %w", c.name, waitErr), err)
	}
	if failed.Status == cftypes.ChangeSetStatusFailed && withoutChanges(aws.ToString(failed.StatusReason)) {
		return nil, nil
	}
	return nil, fmt.Errorf("change set %s is %s: %s", c.name, failed.Status, aws.ToString(failed.StatusReason))
}

// delete removes the change set, and the stack a create change set made.
func (c *changeSets) delete(ctx context.Context, made *cloudformation.CreateChangeSetOutput, create bool) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if _, err := c.cfn.DeleteChangeSet(ctx, &cloudformation.DeleteChangeSetInput{ChangeSetName: made.Id}); err != nil {
		return fmt.Errorf("deleting change set %s (%s) of the preview: %w", c.name, aws.ToString(made.Id), err)
	}
	if !create {
		return nil
	}
	if _, err := c.cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: made.StackId}); err != nil {
		return fmt.Errorf("deleting the stack %s the preview's change set made: %w", aws.ToString(made.StackId), err)
	}
	return nil
}

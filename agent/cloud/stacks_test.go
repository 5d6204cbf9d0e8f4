package cloud

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/render"
	"github.com/caravan-gitops/caravan/test/moto"
)

const (
	region       = "eu-central-1"
	clusterID    = "aws:123456789012:eu-central-1:kube-1"
	otherCluster = "aws:123456789012:eu-central-1:kube-2"
	stackTimeout = 20 * time.Second
)

// groupTemplate is a small stack: a security group, its id and a
// generation as outputs. Another generation is another template.
func groupTemplate(generation string) string {
	return fmt.Sprintf(`AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Group:
    Type: AWS::EC2::SecurityGroup
    Properties:
      GroupDescription: caravan test generation %[1]s
Outputs:
  GroupId:
    Value: !Ref Group
  Generation:
    Value: "%[1]s"
`, generation)
}

// padded is a template of exactly size bytes: comment lines after it.
func padded(body string, size int) string {
	var b strings.Builder
	b.WriteString(body)
	for b.Len() < size {
		line := "# " + strings.Repeat("x", min(78, size-b.Len()-3)) + "\n"
		if size-b.Len() < 4 {
			line = strings.Repeat("\n", size-b.Len())
		}
		b.WriteString(line)
	}
	return b.String()
}

// desired is a rendered stack as render makes it: the digest is the
// sha256 of the body.
func desired(name, pool, body string) *render.Stack {
	sum := sha256.Sum256([]byte(body))
	return &render.Stack{Name: name, NodePool: pool, Body: []byte(body), Digest: hex.EncodeToString(sum[:])}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func quick(s *Stacks) *Stacks {
	s.PollMin, s.PollMax = 50*time.Millisecond, 200*time.Millisecond
	return s
}

// onMoto is the stack manager of a cluster against a moto server, its
// CloudFormation client wrapped in a recorder and its calls counted.
type onMoto struct {
	srv    *moto.Server
	calls  *moto.Calls
	rec    *recorder
	s3     *s3.Client
	stacks *Stacks
	other  *Stacks // another cluster's, in the same account and region
}

func startMoto(t *testing.T) *onMoto {
	srv := moto.Start(t)
	cfg := srv.AWSConfig(region)
	calls := moto.CountCalls(&cfg)
	cfn := cloudformation.NewFromConfig(cfg)
	s3c := s3.NewFromConfig(cfg, moto.S3PathStyle)
	rec := &recorder{CloudFormation: cfn}
	return &onMoto{
		srv: srv, calls: calls, rec: rec, s3: s3c,
		stacks: quick(NewStacks(rec, s3c, clusterID, region, srv.Endpoint)),
		other:  quick(NewStacks(cfn, s3c, otherCluster, region, srv.Endpoint)),
	}
}

// reconcile is what the agent does each time: one Describe, then Converge
// of each stack with what Describe saw of it.
func reconcile(ctx context.Context, t *testing.T, s *Stacks, opts Options, stacks ...*render.Stack) (outputs map[string]map[string]string, changed []string) {
	t.Helper()
	observed, err := s.Describe(ctx)
	require.NoError(t, err)
	outputs = map[string]map[string]string{}
	for _, st := range stacks {
		out, ch, err := s.Converge(ctx, st, Find(observed, st.Name), opts)
		require.NoError(t, err, st.Name)
		outputs[st.Name] = out
		if ch {
			changed = append(changed, st.Name)
		}
	}
	return outputs, changed
}

func tagsOf(st cftypes.Stack) map[string]string {
	return observed(st).Tags
}

func describeOne(ctx context.Context, t *testing.T, m *onMoto, name string) cftypes.Stack {
	t.Helper()
	out, err := m.rec.CloudFormation.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
	require.NoError(t, err)
	require.Len(t, out.Stacks, 1)
	return out.Stacks[0]
}

// TestStacksOnMoto takes a cluster's stacks through their life on moto:
// created, left alone, updated, deleted.
func TestStacksOnMoto(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	m := startMoto(t)
	v1 := Options{Version: "v1", Timeout: stackTimeout}

	cluster := desired("kube-1", "", groupTemplate("1"))
	pool := desired("nodepool-default-kube-1", "default", groupTemplate("pool-1"))
	gpu := desired("nodepool-gpu-kube-1", "gpu", groupTemplate("gpu-1"))
	otherStack := desired("kube-2", "", groupTemplate("other"))
	otherPool := desired("nodepool-gpu-kube-2", "gpu", groupTemplate("other-gpu"))

	t.Run("create", func(t *testing.T) {
		// Another cluster's stacks in the same account and region.
		_, changed := reconcile(ctx, t, m.other, v1, otherStack, otherPool)
		require.Equal(t, []string{"kube-2", "nodepool-gpu-kube-2"}, changed)

		m.calls.Reset()
		outputs, changed := reconcile(ctx, t, m.stacks, v1, cluster, pool, gpu)
		assert.Equal(t, []string{"kube-1", "nodepool-default-kube-1", "nodepool-gpu-kube-1"}, changed)
		assert.Equal(t, "1", outputs["kube-1"]["Generation"])
		assert.True(t, strings.HasPrefix(outputs["kube-1"]["GroupId"], "sg-"), outputs["kube-1"])
		assert.Equal(t, "pool-1", outputs["nodepool-default-kube-1"]["Generation"])
		assert.NotEqual(t, outputs["kube-1"]["GroupId"], outputs["nodepool-default-kube-1"]["GroupId"])
		got := m.calls.Snapshot()
		t.Logf("creating 3 stacks: %v", got)
		assert.Equal(t, 3, got["CloudFormation.CreateStack"], got)
		// Describe, then for each stack the waiter's polls (one on moto),
		// whose last answer holds the outputs.
		assert.Equal(t, 1+3, got["CloudFormation.DescribeStacks"], got)
		assert.Zero(t, got["CloudFormation.UpdateStack"], got)

		st := describeOne(ctx, t, m, "kube-1")
		assert.Equal(t, cftypes.StackStatusCreateComplete, st.StackStatus)
		assert.Equal(t, map[string]string{TagClusterID: clusterID, TagVersion: "v1", TagDigest: cluster.Digest}, tagsOf(st))
		assert.ElementsMatch(t, []cftypes.Capability{cftypes.CapabilityCapabilityIam, cftypes.CapabilityCapabilityNamedIam}, m.rec.creates[0].Capabilities)
		st = describeOne(ctx, t, m, "nodepool-gpu-kube-1")
		assert.Equal(t, map[string]string{TagClusterID: clusterID, TagVersion: "v1", TagDigest: gpu.Digest, TagNodePool: "gpu"}, tagsOf(st))
	})

	t.Run("termination protection on create", func(t *testing.T) {
		// What the agent asked for: the cluster stack is protected, the
		// pool stacks, which the agent deletes whenever a pool leaves, not...
		require.Len(t, m.rec.creates, 3)
		want := map[string]bool{"kube-1": true, "nodepool-default-kube-1": false, "nodepool-gpu-kube-1": false}
		for _, in := range m.rec.creates {
			require.NotNil(t, in.EnableTerminationProtection, aws.ToString(in.StackName))
			assert.Equal(t, want[aws.ToString(in.StackName)], *in.EnableTerminationProtection, aws.ToString(in.StackName))
		}
		// ...and what moto reports of it.
		for name, protected := range want {
			assert.Equal(t, protected, aws.ToBool(describeOne(ctx, t, m, name).EnableTerminationProtection), name)
		}
	})

	t.Run("describe sees only the cluster's stacks", func(t *testing.T) {
		observed, err := m.stacks.Describe(ctx)
		require.NoError(t, err)
		var names []string
		for _, o := range observed {
			names = append(names, o.Name)
			assert.Equal(t, clusterID, o.Tags[TagClusterID])
			assert.Equal(t, "CREATE_COMPLETE", o.Status)
		}
		assert.ElementsMatch(t, []string{"kube-1", "nodepool-default-kube-1", "nodepool-gpu-kube-1"}, names)
		if o := Find(observed, "nodepool-default-kube-1"); assert.NotNil(t, o) {
			assert.Equal(t, "pool-1", o.Outputs["Generation"])
			assert.Equal(t, pool.Digest, o.Tags[TagDigest])
		}
		other, err := m.other.Describe(ctx)
		require.NoError(t, err)
		assert.Len(t, other, 2)
		// The pool stack of the other cluster is no orphan of this one.
		assert.Empty(t, Orphans(observed, clusterID, []string{"default", "gpu"}))
		assert.Equal(t, []string{"gpu"}, keys(Orphans(observed, clusterID, []string{"default"})))
	})

	t.Run("no-op", func(t *testing.T) {
		m.calls.Reset()
		m.rec.Reset()
		// Another version with the same templates changes nothing.
		outputs, changed := reconcile(ctx, t, m.stacks, Options{Version: "v2", Timeout: stackTimeout}, cluster, pool, gpu)
		assert.Empty(t, changed)
		assert.Equal(t, map[string]int{"CloudFormation.DescribeStacks": 1}, m.calls.Snapshot())
		assert.Equal(t, "1", outputs["kube-1"]["Generation"])
		assert.Equal(t, "gpu-1", outputs["nodepool-gpu-kube-1"]["Generation"])
		assert.True(t, strings.HasPrefix(outputs["nodepool-gpu-kube-1"]["GroupId"], "sg-"))
	})

	cluster2 := desired("kube-1", "", groupTemplate("2"))
	t.Run("update", func(t *testing.T) {
		before := describeOne(ctx, t, m, "kube-1")
		m.calls.Reset()
		m.rec.Reset()
		outputs, changed := reconcile(ctx, t, m.stacks, Options{Version: "v3", Timeout: stackTimeout}, cluster2, pool, gpu)
		assert.Equal(t, []string{"kube-1"}, changed)
		assert.Equal(t, "2", outputs["kube-1"]["Generation"], "the outputs are read after the update")
		assert.Equal(t, "pool-1", outputs["nodepool-default-kube-1"]["Generation"])
		got := m.calls.Snapshot()
		t.Logf("updating 1 of 3 stacks: %v", got)
		assert.Equal(t, map[string]int{"CloudFormation.UpdateStack": 1, "CloudFormation.DescribeStacks": 2}, got,
			"Describe and one poll of the waiter (moto completes at once), whose answer holds the outputs")
		assert.Equal(t, []string{"UpdateStack"}, m.rec.Changes())
		require.Len(t, m.rec.updates, 1)
		assert.Equal(t, groupTemplate("2"), aws.ToString(m.rec.updates[0].TemplateBody))

		after := describeOne(ctx, t, m, "kube-1")
		assert.Equal(t, cftypes.StackStatusUpdateComplete, after.StackStatus)
		assert.Equal(t, map[string]string{TagClusterID: clusterID, TagVersion: "v3", TagDigest: cluster2.Digest}, tagsOf(after))
		assert.Equal(t, aws.ToString(before.StackId), aws.ToString(after.StackId))
		// The pool stacks kept the version they were last changed with.
		assert.Equal(t, "v1", tagsOf(describeOne(ctx, t, m, "nodepool-default-kube-1"))[TagVersion])
	})

	t.Run("no-op after the update", func(t *testing.T) {
		m.calls.Reset()
		outputs, changed := reconcile(ctx, t, m.stacks, Options{Version: "v3", Timeout: stackTimeout}, cluster2, pool, gpu)
		assert.Empty(t, changed)
		assert.Equal(t, map[string]int{"CloudFormation.DescribeStacks": 1}, m.calls.Snapshot())
		assert.Equal(t, "2", outputs["kube-1"]["Generation"])
	})

	t.Run("delete a pool stack", func(t *testing.T) {
		m.rec.Reset()
		require.NoError(t, m.stacks.Delete(ctx, "nodepool-gpu-kube-1", false, stackTimeout))
		calls := m.rec.Calls()
		require.GreaterOrEqual(t, len(calls), 2, calls)
		assert.Equal(t, "DeleteStack", calls[0])
		assert.Equal(t, []string{"DeleteStack"}, m.rec.Changes(), "an unprotected stack is deleted at once")

		observed, err := m.stacks.Describe(ctx)
		require.NoError(t, err)
		assert.Nil(t, Find(observed, "nodepool-gpu-kube-1"))
		assert.NotNil(t, Find(observed, "nodepool-default-kube-1"))
		assert.Empty(t, Orphans(observed, clusterID, []string{"default"}))
		// The other cluster's pool stack of the same pool is still there.
		other, err := m.other.Describe(ctx)
		require.NoError(t, err)
		assert.NotNil(t, Find(other, "nodepool-gpu-kube-2"))
	})

	// moto 5.2.5 answers UpdateTerminationProtection with 500 (not
	// implemented) and its DeleteStack ignores the protection, so it shows
	// neither the need for the call nor its effect: the recorder answers it
	// with recorded responses, and forwards the rest to moto.

	t.Run("a protection that stays stops the delete", func(t *testing.T) {
		m.rec.Reset()
		m.rec.protect = func(*cloudformation.UpdateTerminationProtectionInput) (*cloudformation.UpdateTerminationProtectionOutput, error) {
			// A recorded answer to a role without the permission.
			return nil, apiError("UpdateTerminationProtection", "AccessDenied",
				"User: arn:aws:sts::123456789012:assumed-role/caravan-agent/i-0abc is not authorized to perform: cloudformation:UpdateTerminationProtection on resource: "+stackID("kube-1"))
		}
		t.Cleanup(func() { m.rec.protect = nil })

		err := m.stacks.Delete(ctx, "kube-1", true, stackTimeout)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "termination protection")
		assert.Contains(t, err.Error(), "kube-1")
		var api smithy.APIError
		require.ErrorAs(t, err, &api)
		assert.Equal(t, "AccessDenied", api.ErrorCode())
		assert.Equal(t, []string{"UpdateTerminationProtection"}, m.rec.Calls(), "DeleteStack is never called")
		assert.Equal(t, cftypes.StackStatusUpdateComplete, describeOne(ctx, t, m, "kube-1").StackStatus)
	})

	t.Run("delete the cluster stack lifts the protection first", func(t *testing.T) {
		m.rec.Reset()
		var lifted *cloudformation.UpdateTerminationProtectionInput
		m.rec.protect = func(in *cloudformation.UpdateTerminationProtectionInput) (*cloudformation.UpdateTerminationProtectionOutput, error) {
			lifted = in
			return &cloudformation.UpdateTerminationProtectionOutput{StackId: describeOne(ctx, t, m, aws.ToString(in.StackName)).StackId}, nil
		}
		t.Cleanup(func() { m.rec.protect = nil })

		require.NoError(t, m.stacks.Delete(ctx, "kube-1", true, stackTimeout))
		calls := m.rec.Calls()
		require.GreaterOrEqual(t, len(calls), 3, calls)
		assert.Equal(t, []string{"UpdateTerminationProtection", "DeleteStack"}, calls[:2])
		assert.Equal(t, []string{"UpdateTerminationProtection", "DeleteStack"}, m.rec.Changes(), "then only the waiter's polls")
		require.NotNil(t, lifted)
		assert.Equal(t, "kube-1", aws.ToString(lifted.StackName))
		require.NotNil(t, lifted.EnableTerminationProtection)
		assert.False(t, *lifted.EnableTerminationProtection)

		observed, err := m.stacks.Describe(ctx)
		require.NoError(t, err)
		assert.Nil(t, Find(observed, "kube-1"))
		assert.NotNil(t, Find(observed, "nodepool-default-kube-1"))
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestLargeTemplate: a template over 51,200 bytes goes through S3. moto
// has no size limit of its own; the agent's is what is tested.
func TestLargeTemplate(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	m := startMoto(t)
	const bucket = "caravan-templates-123456789012"
	_, err := m.s3.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String(bucket),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)},
	})
	require.NoError(t, err)
	opts := Options{Version: "v1", Bucket: bucket, Timeout: stackTimeout}

	t.Run("at the limit, inline", func(t *testing.T) {
		m.calls.Reset()
		m.rec.Reset()
		st := desired("kube-1", "", padded(groupTemplate("limit"), MaxTemplateBody))
		require.Len(t, st.Body, MaxTemplateBody)
		outputs, changed, err := m.stacks.Converge(ctx, st, nil, opts)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, "limit", outputs["Generation"])
		require.Len(t, m.rec.creates, 1)
		assert.Equal(t, string(st.Body), aws.ToString(m.rec.creates[0].TemplateBody))
		assert.Nil(t, m.rec.creates[0].TemplateURL)
		assert.Zero(t, m.calls.Snapshot()["S3.PutObject"])
	})

	big := desired("nodepool-default-kube-1", "default", padded(groupTemplate("big"), MaxTemplateBody+1))
	wantKey := "caravan/aws/123456789012/eu-central-1/kube-1/nodepool-default-kube-1-" + big.Digest + ".yaml"
	t.Run("over the limit, through the bucket", func(t *testing.T) {
		m.calls.Reset()
		m.rec.Reset()
		outputs, changed, err := m.stacks.Converge(ctx, big, nil, opts)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, "big", outputs["Generation"])
		assert.Equal(t, 1, m.calls.Snapshot()["S3.PutObject"])
		require.Len(t, m.rec.creates, 1)
		assert.Nil(t, m.rec.creates[0].TemplateBody)
		assert.Equal(t, m.srv.ObjectURL(bucket, wantKey), aws.ToString(m.rec.creates[0].TemplateURL))

		obj, err := m.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(wantKey)})
		require.NoError(t, err)
		defer obj.Body.Close()
		stored, err := io.ReadAll(obj.Body)
		require.NoError(t, err)
		assert.Equal(t, big.Body, stored)
		assert.Equal(t, big.Digest, tagsOf(describeOne(ctx, t, m, big.Name))[TagDigest])
	})

	t.Run("update over the limit, through the bucket", func(t *testing.T) {
		m.calls.Reset()
		m.rec.Reset()
		bigger := desired(big.Name, "default", padded(groupTemplate("bigger"), MaxTemplateBody+1000))
		observed, err := m.stacks.Describe(ctx)
		require.NoError(t, err)
		outputs, changed, err := m.stacks.Converge(ctx, bigger, Find(observed, bigger.Name), opts)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, "bigger", outputs["Generation"])
		require.Len(t, m.rec.updates, 1)
		assert.Nil(t, m.rec.updates[0].TemplateBody)
		assert.Equal(t, m.srv.ObjectURL(bucket, "caravan/aws/123456789012/eu-central-1/kube-1/nodepool-default-kube-1-"+bigger.Digest+".yaml"),
			aws.ToString(m.rec.updates[0].TemplateURL))
		assert.Equal(t, 1, m.calls.Snapshot()["S3.PutObject"])
	})

	t.Run("over the limit without a bucket", func(t *testing.T) {
		m.calls.Reset()
		m.rec.Reset()
		st := desired("nodepool-gpu-kube-1", "gpu", padded(groupTemplate("nobucket"), MaxTemplateBody+1))
		_, _, err := m.stacks.Converge(ctx, st, nil, Options{Version: "v1", Timeout: stackTimeout})
		var se *StackError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "nodepool-gpu-kube-1", se.Stack)
		assert.Contains(t, err.Error(), ConfigTemplateBucket)
		assert.Contains(t, err.Error(), "cloudformation_bucket")
		assert.Contains(t, err.Error(), "51201")
		assert.Zero(t, m.calls.Total(), m.calls.Snapshot())
	})

	t.Run("a missing bucket fails the upload", func(t *testing.T) {
		m.rec.Reset()
		st := desired("nodepool-gpu-kube-1", "gpu", padded(groupTemplate("nobucket"), MaxTemplateBody+1))
		_, _, err := m.stacks.Converge(ctx, st, nil, Options{Version: "v1", Bucket: "no-such-bucket", Timeout: stackTimeout})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "s3://no-such-bucket/")
		var api smithy.APIError
		require.ErrorAs(t, err, &api)
		assert.Equal(t, "NoSuchBucket", api.ErrorCode())
		assert.Empty(t, m.rec.Calls())
	})
}

// The tests below run against recorded CloudFormation responses: moto
// completes every operation at once, never rolls back and has no failed
// states or per-resource events.

var staleTags = map[string]string{TagClusterID: clusterID, TagVersion: "v1", TagDigest: oldDigest}

func withDigest(d *render.Stack) map[string]string {
	return map[string]string{TagClusterID: clusterID, TagVersion: "v2", TagDigest: d.Digest}
}

func newFake(t *testing.T, name string, answers ...answer) (*fake, *Stacks) {
	f := &fake{t: t, name: name, answers: answers, outputs: map[string]string{"GroupName": name + "-Group-1H2J3K4L5M6N"}}
	return f, quick(NewStacks(f, nil, clusterID, region, ""))
}

func TestConvergeUpdateRolledBack(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	f, stacks := newFake(t, eventStack,
		answer{status: cftypes.StackStatusUpdateInProgress, tags: withDigest(st)},
		answer{status: cftypes.StackStatusUpdateRollbackInProgress, tags: withDigest(st),
			reason: "The following resource(s) failed to update: [Group, NodeRole]."},
		answer{status: "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", tags: staleTags},
		answer{status: cftypes.StackStatusUpdateRollbackComplete, tags: staleTags},
	)
	f.events = newestFirst(concat(created, olderUpdateFailed, latestUpdateFailed)...)

	current := &Observed{Name: eventStack, Status: "UPDATE_COMPLETE", Tags: staleTags}
	outputs, changed, err := stacks.Converge(ctx, st, current, Options{Version: "v2", Timeout: stackTimeout})
	assert.Nil(t, outputs)
	assert.True(t, changed)
	var se *StackError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, eventStack, se.Stack)
	assert.Equal(t, "UPDATE_ROLLBACK_COMPLETE", se.Status)
	assert.Equal(t, "Group", se.Resource)
	assert.Equal(t, "AWS::AutoScaling::AutoScalingGroup", se.ResourceType)
	assert.Equal(t, maxSize, se.Reason)
	assert.Contains(t, err.Error(), "first failed resource Group")

	assert.Equal(t, 1, f.count("UpdateStack"))
	assert.Equal(t, 1, f.count("DescribeStackEvents"))
	assert.Zero(t, f.count("CreateStack")+f.count("DeleteStack"))
	require.Len(t, f.updates, 1)
	in := f.updates[0]
	assert.Equal(t, eventStack, aws.ToString(in.StackName))
	assert.Equal(t, string(st.Body), aws.ToString(in.TemplateBody))
	assert.Equal(t, []cftypes.Tag{
		{Key: aws.String(TagClusterID), Value: aws.String(clusterID)},
		{Key: aws.String(TagNodePool), Value: aws.String("default")},
		{Key: aws.String(TagDigest), Value: aws.String(st.Digest)},
		{Key: aws.String(TagVersion), Value: aws.String("v2")},
	}, in.Tags)

	// The next reconcile sees the rolled back stack, with its old digest:
	// it updates again.
	assert.Equal(t, Update, Plan(st.Digest, &Observed{Name: eventStack, Status: "UPDATE_ROLLBACK_COMPLETE", Tags: staleTags}).Action)
}

func TestConvergeCreateRolledBack(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("1"))
	f, stacks := newFake(t, eventStack,
		answer{status: cftypes.StackStatusCreateInProgress, tags: withDigest(st)},
		answer{status: cftypes.StackStatusRollbackInProgress, tags: withDigest(st),
			reason: "The following resource(s) failed to create: [NodeRole, LaunchTemplate]. Rollback requested by user."},
		answer{status: cftypes.StackStatusRollbackComplete, tags: withDigest(st),
			reason: "The following resource(s) failed to create: [NodeRole, LaunchTemplate]. Rollback requested by user."},
	)
	f.events = createFailed

	_, changed, err := stacks.Converge(ctx, st, nil, Options{Version: "v2", Timeout: stackTimeout})
	assert.True(t, changed)
	var se *StackError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "ROLLBACK_COMPLETE", se.Status)
	assert.Equal(t, "LaunchTemplate", se.Resource)
	assert.Equal(t, amiMissing, se.Reason)
	require.Len(t, f.creates, 1)
	assert.False(t, aws.ToBool(f.creates[0].EnableTerminationProtection), "a pool stack is not protected")
	assert.Equal(t, 1, f.count("CreateStack"))
}

func TestConvergeFailureWithoutEvents(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	f, stacks := newFake(t, eventStack,
		answer{status: cftypes.StackStatusUpdateRollbackComplete, tags: staleTags, reason: "The following resource(s) failed to update: [Group]."})
	f.eventsErr = apiError("DescribeStackEvents", "AccessDenied", "not authorized to perform: cloudformation:DescribeStackEvents")

	_, _, err := stacks.Converge(ctx, st, &Observed{Name: eventStack, Status: "UPDATE_COMPLETE", Tags: staleTags}, Options{Version: "v2", Timeout: stackTimeout})
	var se *StackError
	require.ErrorAs(t, err, &se)
	assert.Empty(t, se.Resource)
	assert.Equal(t, "The following resource(s) failed to update: [Group].", se.Reason, "the stack's own reason")
}

func TestConvergeStuck(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	for _, status := range []string{"ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"} {
		t.Run(status, func(t *testing.T) {
			f, stacks := newFake(t, eventStack)
			current := &Observed{Name: eventStack, Status: status, StatusReason: "The following resource(s) failed to create: [LaunchTemplate].", Tags: staleTags}
			outputs, changed, err := stacks.Converge(ctx, st, current, Options{Version: "v2", Timeout: stackTimeout})
			assert.Nil(t, outputs)
			assert.False(t, changed)
			var se *StackError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, status, se.Status)
			assert.Contains(t, err.Error(), status)
			assert.Contains(t, se.Reason, "by hand")
			assert.Empty(t, f.Calls(), "a stuck stack is neither read again nor changed")
		})
	}
}

func TestConvergeNoUpdates(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	f, stacks := newFake(t, eventStack)
	// The answer of CloudFormation to an update that changes nothing.
	f.updateErr = apiError("UpdateStack", "ValidationError", "No updates are to be performed.")
	current := &Observed{Name: eventStack, Status: "UPDATE_COMPLETE", Tags: map[string]string{TagClusterID: clusterID},
		Outputs: map[string]string{"GroupName": "kept"}}

	outputs, changed, err := stacks.Converge(ctx, st, current, Options{Version: "v2", Timeout: stackTimeout})
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, map[string]string{"GroupName": "kept"}, outputs)
	assert.Equal(t, []string{"UpdateStack"}, f.Calls(), "no wait")
}

func TestConvergeUpdateRefused(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	f, stacks := newFake(t, eventStack)
	f.updateErr = apiError("UpdateStack", "ValidationError", "Template format error: Unresolved resource dependencies [Groupp] in the Resources block of the template")

	_, _, err := stacks.Converge(ctx, st, &Observed{Name: eventStack, Status: "UPDATE_COMPLETE", Tags: staleTags}, Options{Version: "v2", Timeout: stackTimeout})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "updating stack "+eventStack)
	assert.Contains(t, err.Error(), "Unresolved resource dependencies")
	assert.Equal(t, []string{"UpdateStack"}, f.Calls())
}

func TestConvergeWaits(t *testing.T) {
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	opts := Options{Version: "v2", Timeout: stackTimeout}

	t.Run("for an update to the template", func(t *testing.T) {
		// Another agent (or this one, before a restart) updates the stack
		// to the same template.
		f, stacks := newFake(t, eventStack,
			answer{status: cftypes.StackStatusUpdateInProgress, tags: withDigest(st)},
			answer{status: cftypes.StackStatusUpdateCompleteCleanupInProgress, tags: withDigest(st)},
			answer{status: cftypes.StackStatusUpdateComplete, tags: withDigest(st)},
		)
		current := &Observed{Name: eventStack, Status: "UPDATE_IN_PROGRESS", Tags: withDigest(st)}
		outputs, changed, err := stacks.Converge(ctx, st, current, opts)
		require.NoError(t, err)
		assert.False(t, changed)
		assert.Equal(t, f.outputs, outputs)
		assert.Equal(t, []string{"DescribeStacks", "DescribeStacks", "DescribeStacks"}, f.Calls())
	})

	t.Run("for an update to another template", func(t *testing.T) {
		f, stacks := newFake(t, eventStack,
			answer{status: cftypes.StackStatusUpdateInProgress, tags: staleTags},
			answer{status: cftypes.StackStatusUpdateComplete, tags: staleTags},
			// The waiter of this agent's update, and its read.
			answer{status: cftypes.StackStatusUpdateComplete, tags: withDigest(st)},
		)
		current := &Observed{Name: eventStack, Status: "UPDATE_IN_PROGRESS", Tags: staleTags}
		outputs, changed, err := stacks.Converge(ctx, st, current, opts)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, f.outputs, outputs)
		calls := f.Calls()
		require.GreaterOrEqual(t, len(calls), 4, calls)
		assert.Equal(t, []string{"DescribeStacks", "DescribeStacks", "UpdateStack"}, calls[:3])
		assert.Equal(t, 1, f.count("UpdateStack"))
	})

	t.Run("for a delete", func(t *testing.T) {
		// Once deleted, DescribeStacks does not find the stack by name.
		f, stacks := newFake(t, eventStack,
			answer{status: cftypes.StackStatusDeleteInProgress, tags: staleTags},
			answer{err: apiError("DescribeStacks", "ValidationError", "Stack with id "+eventStack+" does not exist")},
			answer{status: cftypes.StackStatusCreateComplete, tags: withDigest(st)},
		)
		current := &Observed{Name: eventStack, Status: "DELETE_IN_PROGRESS", Tags: staleTags}
		outputs, changed, err := stacks.Converge(ctx, st, current, opts)
		require.NoError(t, err)
		assert.True(t, changed)
		assert.Equal(t, f.outputs, outputs)
		assert.Equal(t, 1, f.count("CreateStack"))
		assert.Equal(t, []string{"DescribeStacks", "DescribeStacks", "CreateStack"}, f.Calls()[:3])
	})

	t.Run("for a rollback that leaves the stack stuck", func(t *testing.T) {
		f, stacks := newFake(t, eventStack,
			answer{status: cftypes.StackStatusRollbackInProgress, tags: withDigest(st)},
			answer{status: cftypes.StackStatusRollbackComplete, tags: withDigest(st)},
		)
		current := &Observed{Name: eventStack, Status: "ROLLBACK_IN_PROGRESS", Tags: withDigest(st)}
		_, changed, err := stacks.Converge(ctx, st, current, opts)
		assert.False(t, changed)
		var se *StackError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "ROLLBACK_COMPLETE", se.Status)
		assert.Equal(t, []string{"DescribeStacks", "DescribeStacks"}, f.Calls())
	})

	t.Run("not longer than the timeout", func(t *testing.T) {
		f, stacks := newFake(t, eventStack, answer{status: cftypes.StackStatusUpdateInProgress, tags: staleTags})
		current := &Observed{Name: eventStack, Status: "UPDATE_IN_PROGRESS", Tags: staleTags}
		start := time.Now()
		_, changed, err := stacks.Converge(ctx, st, current, Options{Version: "v2", Timeout: 300 * time.Millisecond})
		assert.Less(t, time.Since(start), 5*time.Second)
		assert.False(t, changed)
		var se *StackError
		require.ErrorAs(t, err, &se)
		assert.Equal(t, "UPDATE_IN_PROGRESS", se.Status)
		assert.Contains(t, se.Reason, "still in progress")
		assert.Empty(t, slicesWithout(f.Calls(), "DescribeStacks"))
	})
}

func slicesWithout(calls []string, op string) []string {
	var out []string
	for _, c := range calls {
		if c != op {
			out = append(out, c)
		}
	}
	return out
}

func TestConvergeTimeoutDuringRollback(t *testing.T) {
	// The update failed and its rollback outlasts the timeout: the error
	// still names the resource that failed.
	ctx := testContext(t)
	st := desired(eventStack, "default", groupTemplate("2"))
	f, stacks := newFake(t, eventStack, answer{status: cftypes.StackStatusUpdateRollbackInProgress, tags: withDigest(st),
		reason: "The following resource(s) failed to update: [Group, NodeRole]."})
	inRollback := latestUpdateFailed[:10] // up to the stack's UPDATE_ROLLBACK_IN_PROGRESS
	require.Equal(t, cftypes.ResourceStatusUpdateRollbackInProgress, inRollback[len(inRollback)-1].status)
	f.events = newestFirst(concat(created, inRollback)...)

	_, _, err := stacks.Converge(ctx, st, &Observed{Name: eventStack, Status: "UPDATE_COMPLETE", Tags: staleTags},
		Options{Version: "v2", Timeout: 300 * time.Millisecond})
	var se *StackError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "UPDATE_ROLLBACK_IN_PROGRESS", se.Status)
	assert.Equal(t, "Group", se.Resource)
	assert.Equal(t, maxSize, se.Reason)
}

func TestDeleteFailed(t *testing.T) {
	// DeleteStack accepted, the stack ends in DELETE_FAILED: the error
	// names the resource that would not go.
	ctx := testContext(t)
	f, stacks := newFake(t, eventStack,
		answer{status: cftypes.StackStatusDeleteInProgress, tags: staleTags},
		answer{status: cftypes.StackStatusDeleteFailed, tags: staleTags, reason: "The following resource(s) failed to delete: [NodeRole]. "},
	)
	f.events = newestFirst(concat(created, []ev{
		stackEvent(900, cftypes.ResourceStatusDeleteInProgress, "User Initiated"),
		ev{at: 961, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteInProgress},
		ev{at: 962, id: "NodeRole", typ: "AWS::IAM::Role", status: cftypes.ResourceStatusDeleteFailed,
			reason: "Cannot delete entity, must detach all policies first."},
		stackEvent(963, cftypes.ResourceStatusDeleteFailed, "The following resource(s) failed to delete: [NodeRole]. "),
	})...)
	err := stacks.Delete(ctx, eventStack, false, stackTimeout)
	var se *StackError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, "DELETE_FAILED", se.Status)
	assert.Equal(t, "NodeRole", se.Resource)
	assert.Equal(t, "Cannot delete entity, must detach all policies first.", se.Reason)
	assert.Equal(t, "DeleteStack", f.Calls()[0])
	assert.Zero(t, f.count("UpdateTerminationProtection"))
}

// pages is a DescribeStacks over several pages, as an account with more
// stacks than a page holds answers.
type pages struct {
	CloudFormation
	pages [][]cftypes.Stack
	err   error
	calls int
}

func (p *pages) DescribeStacks(_ context.Context, in *cloudformation.DescribeStacksInput, _ ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error) {
	p.calls++
	if p.err != nil {
		return nil, p.err
	}
	i := 0
	if in.NextToken != nil {
		_, _ = fmt.Sscan(aws.ToString(in.NextToken), &i)
	}
	out := &cloudformation.DescribeStacksOutput{Stacks: p.pages[i]}
	if i+1 < len(p.pages) {
		out.NextToken = aws.String(fmt.Sprint(i + 1))
	}
	return out, nil
}

func TestDescribePages(t *testing.T) {
	stack := func(name, cluster string) cftypes.Stack {
		return cftypes.Stack{StackName: aws.String(name), StackStatus: cftypes.StackStatusCreateComplete,
			Tags: []cftypes.Tag{{Key: aws.String(TagClusterID), Value: aws.String(cluster)}}}
	}
	p := &pages{pages: [][]cftypes.Stack{
		{stack("kube-1", clusterID), stack("kube-2", otherCluster), {StackName: aws.String("untagged"), StackStatus: cftypes.StackStatusCreateComplete}},
		{stack("nodepool-default-kube-1", clusterID)},
	}}
	observed, err := NewStacks(p, nil, clusterID, region, "").Describe(testContext(t))
	require.NoError(t, err)
	assert.Equal(t, 2, p.calls)
	require.Len(t, observed, 2)
	assert.Equal(t, "kube-1", observed[0].Name)
	assert.Equal(t, "nodepool-default-kube-1", observed[1].Name)

	failing := &pages{err: apiError("DescribeStacks", "AccessDenied", "not authorized to perform: cloudformation:DescribeStacks")}
	observed, err = NewStacks(failing, nil, clusterID, region, "").Describe(testContext(t))
	assert.Nil(t, observed)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "describing the stacks")
	var api smithy.APIError
	require.ErrorAs(t, err, &api)
	assert.Equal(t, "AccessDenied", api.ErrorCode())
}

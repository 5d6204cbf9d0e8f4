package moto

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const region = "eu-west-1"

// nodeGroupTemplate is a node group as CloudFormation makes it: a launch
// template and an Auto Scaling group on its latest version, in a subnet.
const nodeGroupTemplate = `
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  InstanceType:
    Type: String
    Default: m5.large
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.0.0.0/16
  Subnet:
    Type: AWS::EC2::Subnet
    Properties:
      VpcId: !Ref Vpc
      CidrBlock: 10.0.1.0/24
      AvailabilityZone: eu-west-1a
  LaunchTemplate:
    Type: AWS::EC2::LaunchTemplate
    Properties:
      LaunchTemplateData:
        ImageId: ami-0123456789abcdef0
        InstanceType: !Ref InstanceType
  Group:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MinSize: "1"
      MaxSize: "3"
      DesiredCapacity: "2"
      VPCZoneIdentifier:
        - !Ref Subnet
      LaunchTemplate:
        LaunchTemplateId: !Ref LaunchTemplate
        Version: !GetAtt LaunchTemplate.LatestVersionNumber
Outputs:
  GroupName:
    Value: !Ref Group
  LaunchTemplateId:
    Value: !Ref LaunchTemplate
  LaunchTemplateVersion:
    Value: !GetAtt LaunchTemplate.LatestVersionNumber
  SubnetId:
    Value: !Ref Subnet
`

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// createStack creates a stack and waits until it is complete.
func createStack(ctx context.Context, t *testing.T, cf *cloudformation.Client, in *cloudformation.CreateStackInput) *cftypes.Stack {
	t.Helper()
	_, err := cf.CreateStack(ctx, in)
	require.NoError(t, err)
	out, err := cloudformation.NewStackCreateCompleteWaiter(cf, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, time.Second
	}).WaitForOutput(ctx, &cloudformation.DescribeStacksInput{StackName: in.StackName}, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, out.Stacks, 1)
	return &out.Stacks[0]
}

func outputs(stack *cftypes.Stack) map[string]string {
	m := map[string]string{}
	for _, o := range stack.Outputs {
		m[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	return m
}

func TestCreateStack(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	cfg := srv.AWSConfig(region)
	cf := cloudformation.NewFromConfig(cfg)

	createStack(ctx, t, cf, &cloudformation.CreateStackInput{
		StackName:    aws.String("nodes"),
		TemplateBody: aws.String(nodeGroupTemplate),
		Parameters:   []cftypes.Parameter{{ParameterKey: aws.String("InstanceType"), ParameterValue: aws.String("c5.xlarge")}},
	})
	described, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("nodes")})
	require.NoError(t, err)
	require.Len(t, described.Stacks, 1)
	stack := described.Stacks[0]
	assert.Equal(t, cftypes.StackStatusCreateComplete, stack.StackStatus)
	assert.Contains(t, aws.ToString(stack.StackId), "arn:aws:cloudformation:"+region+":"+AccountID+":stack/nodes/")
	out := outputs(&stack)
	assert.Equal(t, "1", out["LaunchTemplateVersion"])
	assert.True(t, strings.HasPrefix(out["LaunchTemplateId"], "lt-"), out["LaunchTemplateId"])
	assert.True(t, strings.HasPrefix(out["SubnetId"], "subnet-"), out["SubnetId"])
	require.NotEmpty(t, out["GroupName"])

	// The resources are there, through their own services.
	groups, err := autoscaling.NewFromConfig(cfg).DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{out["GroupName"]}})
	require.NoError(t, err)
	require.Len(t, groups.AutoScalingGroups, 1)
	group := groups.AutoScalingGroups[0]
	require.NotNil(t, group.LaunchTemplate)
	assert.Equal(t, out["LaunchTemplateId"], aws.ToString(group.LaunchTemplate.LaunchTemplateId))
	assert.Equal(t, "1", aws.ToString(group.LaunchTemplate.Version), "the GetAtt, resolved")
	assert.Equal(t, out["SubnetId"], aws.ToString(group.VPCZoneIdentifier))
	assert.Equal(t, int32(2), aws.ToInt32(group.DesiredCapacity))
	assert.Len(t, group.Instances, 2)

	templates, err := ec2.NewFromConfig(cfg).DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateId: aws.String(out["LaunchTemplateId"])})
	require.NoError(t, err)
	require.Len(t, templates.LaunchTemplateVersions, 1)
	assert.Equal(t, "c5.xlarge", string(templates.LaunchTemplateVersions[0].LaunchTemplateData.InstanceType))
}

func TestCreateStackFromTemplateURL(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	cfg := srv.AWSConfig(region)
	s3c := s3.NewFromConfig(cfg, S3PathStyle)
	cf := cloudformation.NewFromConfig(cfg)

	_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String("templates"),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)},
	})
	require.NoError(t, err)
	_, err = s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("templates"), Key: aws.String("clusters/a/nodes.yaml"), Body: strings.NewReader(nodeGroupTemplate)})
	require.NoError(t, err)

	url := srv.ObjectURL("templates", "clusters/a/nodes.yaml")
	assert.Equal(t, "http://localhost:"+strconv.Itoa(srv.Port)+"/templates/clusters/a/nodes.yaml", url)
	stack := createStack(ctx, t, cf, &cloudformation.CreateStackInput{StackName: aws.String("nodes"), TemplateURL: aws.String(url)})
	assert.Equal(t, cftypes.StackStatusCreateComplete, stack.StackStatus)
	require.Len(t, stack.Parameters, 1)
	assert.Equal(t, "m5.large", aws.ToString(stack.Parameters[0].ParameterValue)) // the template's default
	assert.Equal(t, "1", outputs(stack)["LaunchTemplateVersion"])

	// With the IP address in the URL, moto takes its first label, "127",
	// for the bucket: hence Endpoint's localhost.
	ipURL := strings.Replace(url, "localhost", "127.0.0.1", 1)
	_, err = cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("by-ip"), TemplateURL: aws.String(ipURL)})
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "NoSuchBucket", apiErr.ErrorCode())
}

func TestKMSRoundTrip(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	client := kms.NewFromConfig(srv.AWSConfig(region))

	key, err := client.CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("caravan secrets")})
	require.NoError(t, err)
	keyID := aws.ToString(key.KeyMetadata.KeyId)
	assert.Equal(t, "arn:aws:kms:"+region+":"+AccountID+":key/"+keyID, aws.ToString(key.KeyMetadata.Arn))

	plaintext := []byte("token: s3cret\n")
	encryptionContext := map[string]string{"cluster": "a"}
	enc, err := client.Encrypt(ctx, &kms.EncryptInput{KeyId: aws.String(keyID), Plaintext: plaintext, EncryptionContext: encryptionContext})
	require.NoError(t, err)
	assert.NotContains(t, string(enc.CiphertextBlob), "s3cret")

	dec, err := client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: encryptionContext})
	require.NoError(t, err)
	assert.Equal(t, plaintext, dec.Plaintext)
	assert.Equal(t, aws.ToString(key.KeyMetadata.Arn), aws.ToString(dec.KeyId))

	// A wrong encryption context does not decrypt.
	_, err = client.Decrypt(ctx, &kms.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: map[string]string{"cluster": "b"}})
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	t.Logf("Decrypt with another context: %s", apiErr.ErrorCode())
}

func TestReset(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	cfg := srv.AWSConfig(region)
	s3c := s3.NewFromConfig(cfg, S3PathStyle)
	cf := cloudformation.NewFromConfig(cfg)
	kmsc := kms.NewFromConfig(cfg)
	asg := autoscaling.NewFromConfig(cfg)

	_, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String("templates"),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(region)},
	})
	require.NoError(t, err)
	createStack(ctx, t, cf, &cloudformation.CreateStackInput{StackName: aws.String("nodes"), TemplateBody: aws.String(nodeGroupTemplate)})
	_, err = kmsc.CreateKey(ctx, &kms.CreateKeyInput{})
	require.NoError(t, err)

	require.NoError(t, srv.Reset(ctx))

	buckets, err := s3c.ListBuckets(ctx, &s3.ListBucketsInput{})
	require.NoError(t, err)
	assert.Empty(t, buckets.Buckets)
	stacks, err := cf.ListStacks(ctx, &cloudformation.ListStacksInput{})
	require.NoError(t, err)
	assert.Empty(t, stacks.StackSummaries)
	_, err = cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("nodes")})
	require.Error(t, err)
	groups, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	require.NoError(t, err)
	assert.Empty(t, groups.AutoScalingGroups)
	keys, err := kmsc.ListKeys(ctx, &kms.ListKeysInput{})
	require.NoError(t, err)
	assert.Empty(t, keys.Keys)
}

func TestCountCalls(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	cfg := srv.AWSConfig(region)
	uncounted := cloudformation.NewFromConfig(cfg)
	calls := CountCalls(&cfg)
	cf := cloudformation.NewFromConfig(cfg)
	asg := autoscaling.NewFromConfig(cfg)

	createStack(ctx, t, cf, &cloudformation.CreateStackInput{StackName: aws.String("nodes"), TemplateBody: aws.String(nodeGroupTemplate)})
	// A client made before CountCalls is not counted.
	_, err := uncounted.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{})
	require.NoError(t, err)
	_, err = asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{})
	require.NoError(t, err)
	// A failed call counts, once: it is not retried.
	_, err = cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("missing")})
	require.Error(t, err)

	got := calls.Snapshot()
	assert.Equal(t, 1, got["CloudFormation.CreateStack"])
	// The waiter polled at least once, and the failed call.
	assert.GreaterOrEqual(t, got["CloudFormation.DescribeStacks"], 2)
	assert.Equal(t, 1, got["Auto Scaling.DescribeAutoScalingGroups"])
	assert.Len(t, got, 3, got)
	assert.Equal(t, 2+got["CloudFormation.DescribeStacks"], calls.Total())

	// The snapshot is a copy.
	got["CloudFormation.CreateStack"] = 100
	assert.Equal(t, 1, calls.Snapshot()["CloudFormation.CreateStack"])

	calls.Reset()
	assert.Zero(t, calls.Total())
	assert.Empty(t, calls.Snapshot())
	_, err = cf.ListStacks(ctx, &cloudformation.ListStacksInput{})
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"CloudFormation.ListStacks": 1}, calls.Snapshot())
}

func TestStop(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv, err := Launch(ctx)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(srv.Endpoint, "http://localhost:"), srv.Endpoint)
	resp, err := http.Get(srv.Endpoint + "/moto-api/")
	require.NoError(t, err)
	resp.Body.Close()

	srv.Stop()
	_, err = http.Get(srv.Endpoint + "/moto-api/")
	require.Error(t, err)
	srv.Stop() // again: nothing happens
}

func TestMissingBinary(t *testing.T) {
	t.Setenv("CARAVAN_VENV", t.TempDir())
	_, err := Launch(context.Background())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "make test-deps")
	assert.True(t, errors.Is(err, fs.ErrNotExist), err)
}

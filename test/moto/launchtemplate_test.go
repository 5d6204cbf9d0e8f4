package moto

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// After an UpdateStack that makes a new launch template version, the group
// that names LatestVersionNumber launches it, and keeps its instances: the
// front does what CloudFormation on AWS does, and moto does not.
func TestFrontMovesTheGroupToTheLatestVersionInPlace(t *testing.T) {
	t.Parallel()
	srv := Start(t)
	ctx := testContext(t)
	cfg := srv.AWSConfig(region)
	cf := cloudformation.NewFromConfig(cfg)
	asg := autoscaling.NewFromConfig(cfg)

	stack := createStack(ctx, t, cf, &cloudformation.CreateStackInput{StackName: aws.String("nodes"), TemplateBody: aws.String(nodeGroupTemplate)})
	name := outputs(stack)["GroupName"]
	group := func() (string, []string) {
		t.Helper()
		out, err := asg.DescribeAutoScalingGroups(ctx, &autoscaling.DescribeAutoScalingGroupsInput{AutoScalingGroupNames: []string{name}})
		require.NoError(t, err)
		require.Len(t, out.AutoScalingGroups, 1)
		var ids []string
		for _, i := range out.AutoScalingGroups[0].Instances {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
		return aws.ToString(out.AutoScalingGroups[0].LaunchTemplate.Version), ids
	}
	version, instances := group()
	assert.Equal(t, "1", version)
	require.Len(t, instances, 2)

	// Another instance type: the launch template changes, the group's
	// properties do not.
	_, err := cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("nodes"), TemplateBody: aws.String(nodeGroupTemplate),
		Parameters: []cftypes.Parameter{{ParameterKey: aws.String("InstanceType"), ParameterValue: aws.String("c5.xlarge")}}})
	require.NoError(t, err)
	described, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("nodes")})
	require.NoError(t, err)
	assert.Equal(t, cftypes.StackStatusUpdateComplete, described.Stacks[0].StackStatus)
	assert.Equal(t, "2", outputs(&described.Stacks[0])["LaunchTemplateVersion"])
	assert.Equal(t, name, outputs(&described.Stacks[0])["GroupName"], "the same group")

	version, after := group()
	assert.Equal(t, "2", version, "the group follows the launch template's latest version")
	assert.Equal(t, instances, after, "in place: its instances stay")
}

func TestGroupsOnLatestVersionReadsEveryFormOfTheGetAtt(t *testing.T) {
	groups, err := groupsOnLatestVersion(`Resources:
  Long:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: A}, Version: {"Fn::GetAtt": [A, LatestVersionNumber]}}
  Dotted:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: B}, Version: {"Fn::GetAtt": B.LatestVersionNumber}}
  Tagged:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: !Ref C, Version: !GetAtt C.LatestVersionNumber}
  Mixed:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      MixedInstancesPolicy:
        LaunchTemplate:
          LaunchTemplateSpecification: {LaunchTemplateId: {Ref: D}, Version: !GetAtt [D, LatestVersionNumber]}
  Pinned:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: A}, Version: "1"}
  Latest:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: A}, Version: $Latest}
  Default:
    Type: AWS::AutoScaling::AutoScalingGroup
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: A}, Version: {"Fn::GetAtt": [A, DefaultVersionNumber]}}
  NotAGroup:
    Type: AWS::EC2::Instance
    Properties:
      LaunchTemplate: {LaunchTemplateId: {Ref: A}, Version: {"Fn::GetAtt": [A, LatestVersionNumber]}}
`)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"Long": "A", "Dotted": "B", "Tagged": "C", "Mixed": "D"}, groups)
}

package moto

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProtectionRefusesToDeleteAProtectedStack(t *testing.T) {
	srv := Start(t)
	p := srv.StartProtection(t)
	cfg := srv.AWSConfig("eu-central-1")
	cfg.BaseEndpoint = aws.String(p.Endpoint)
	cfn := cloudformation.NewFromConfig(cfg)
	ctx := context.Background()
	template := aws.String("Resources:\n  G:\n    Type: AWS::EC2::SecurityGroup\n    Properties: {GroupDescription: g}\n")
	_, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("guarded"), TemplateBody: template, EnableTerminationProtection: aws.Bool(true)})
	require.NoError(t, err)
	_, err = cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("open"), TemplateBody: template})
	require.NoError(t, err)
	assert.True(t, p.Protected("guarded"))
	assert.False(t, p.Protected("open"))

	_, err = cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("guarded")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot be deleted while TerminationProtection is enabled")
	_, err = cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("guarded")})
	require.NoError(t, err, "the refused stack is still there")

	out, err := cfn.UpdateTerminationProtection(ctx, &cloudformation.UpdateTerminationProtectionInput{StackName: aws.String("guarded"), EnableTerminationProtection: aws.Bool(false)})
	require.NoError(t, err)
	assert.Contains(t, aws.ToString(out.StackId), "stack/guarded/")
	_, err = cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("guarded")})
	require.NoError(t, err)
	_, err = cfn.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("open")})
	require.NoError(t, err)
	assert.Equal(t, []string{"DeleteStack refused guarded", "UpdateTerminationProtection guarded", "DeleteStack guarded", "DeleteStack open"}, p.Calls())
}

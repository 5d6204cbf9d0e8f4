package moto

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cftypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const groupTemplate = "Resources:\n  G:\n    Type: AWS::EC2::SecurityGroup\n    Properties: {GroupDescription: %s}\n"

func stackStatus(ctx context.Context, t *testing.T, cfn *cloudformation.Client, name string) cftypes.StackStatus {
	out, err := cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{})
	require.NoError(t, err)
	for _, st := range out.Stacks {
		if aws.ToString(st.StackName) == name {
			return st.StackStatus
		}
	}
	t.Fatalf("no stack %s", name)
	return ""
}

func TestOperationsRunForTheirHoldAndRefuseASecondMeanwhile(t *testing.T) {
	srv := Start(t)
	hold := 2 * time.Second
	ops := srv.StartOperations(t, hold)
	cfg := srv.AWSConfig("eu-central-1")
	cfg.BaseEndpoint = aws.String(ops.Endpoint)
	cfn := cloudformation.NewFromConfig(cfg)
	ctx := testContext(t)
	template := func(description string) *string { return aws.String(fmt.Sprintf(groupTemplate, description)) }

	_, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("other"), TemplateBody: template("o")})
	require.NoError(t, err)
	created := time.Now()
	_, err = cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("s"), TemplateBody: template("a"),
		Tags: []cftypes.Tag{{Key: aws.String("version"), Value: aws.String("1")}}})
	require.NoError(t, err)
	assert.Equal(t, cftypes.StackStatusCreateInProgress, stackStatus(ctx, t, cfn, "s"))
	_, err = cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("s"), TemplateBody: template("b")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is in CREATE_IN_PROGRESS state and can not be updated")

	waiter := cloudformation.NewStackCreateCompleteWaiter(cfn, func(o *cloudformation.StackCreateCompleteWaiterOptions) {
		o.MinDelay, o.MaxDelay = 100*time.Millisecond, 200*time.Millisecond
	})
	require.NoError(t, waiter.Wait(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("s")}, time.Minute))
	assert.GreaterOrEqual(t, time.Since(created), hold, "in progress for the hold")
	_, err = cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("s"), TemplateBody: template("b"),
		Tags: []cftypes.Tag{{Key: aws.String("version"), Value: aws.String("2")}}})
	require.NoError(t, err)
	assert.Equal(t, cftypes.StackStatusUpdateInProgress, stackStatus(ctx, t, cfn, "s"))
	assert.Equal(t, cftypes.StackStatusCreateComplete, stackStatus(ctx, t, cfn, "other"), "other stacks show as they are")
	assert.Equal(t, []string{"s"}, ops.Running())

	ops.SetHold(0)
	require.Eventually(t, func() bool { return len(ops.Running()) == 0 }, hold+time.Second, 50*time.Millisecond)
	_, err = cfn.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("other"), TemplateBody: template("p")})
	require.NoError(t, err)
	assert.Equal(t, cftypes.StackStatusUpdateComplete, stackStatus(ctx, t, cfn, "other"), "without a hold an update completes as moto answers")

	var taken []string
	for _, op := range ops.Taken() {
		taken = append(taken, op.Action+" "+op.Stack)
	}
	assert.Equal(t, []string{"CreateStack other", "CreateStack s", "UpdateStack s", "UpdateStack other"}, taken)
	assert.Equal(t, map[string]string{"version": "2"}, ops.Taken()[2].Tags)
	refused := ops.Refused()
	require.Len(t, refused, 1)
	assert.Equal(t, "UpdateStack", refused[0].Action)
}

func TestAServerDownRefusesConnectionsAndKeepsItsResources(t *testing.T) {
	srv := Start(t)
	cfg := srv.AWSConfig("eu-central-1")
	cfn := cloudformation.NewFromConfig(cfg)
	ctx := testContext(t)
	_, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("s"), TemplateBody: aws.String(fmt.Sprintf(groupTemplate, "a"))})
	require.NoError(t, err)

	require.NoError(t, srv.Down())
	_, err = cfn.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{})
	require.ErrorIs(t, err, syscall.ECONNREFUSED)

	require.NoError(t, srv.Up())
	assert.Equal(t, cftypes.StackStatusCreateComplete, stackStatus(ctx, t, cfn, "s"), "moto kept the stack")
}

func TestAnOperationWhoseCallerWentAwayIsCarriedOut(t *testing.T) {
	srv := Start(t)
	ops := srv.StartOperations(t, 0)
	cfg := srv.AWSConfig("eu-central-1")
	cfg.BaseEndpoint = aws.String(ops.Endpoint)
	cfn := cloudformation.NewFromConfig(cfg)
	ctx := testContext(t)
	_, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("s"), TemplateBody: aws.String(fmt.Sprintf(groupTemplate, "a"))})
	require.NoError(t, err)

	// The caller sends the update and goes away before the answer.
	body := url.Values{"Action": {"UpdateStack"}, "Version": {"2010-05-15"}, "StackName": {"s"}, "TemplateBody": {fmt.Sprintf(groupTemplate, "b")}}.Encode()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ops.Endpoint, "http://"))
	require.NoError(t, err)
	_, err = fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Authorization: AWS4-HMAC-SHA256 Credential=testing/20240101/eu-central-1/cloudformation/aws4_request, SignedHeaders=host, Signature=0\r\n"+
		"Content-Length: %d\r\n\r\n%s", len(body), body)
	require.NoError(t, err)
	require.NoError(t, conn.Close())
	require.Eventually(t, func() bool { return len(ops.Taken()) == 2 }, 10*time.Second, 50*time.Millisecond, "the operation is taken")
	assert.Equal(t, "UpdateStack", ops.Taken()[1].Action)
}

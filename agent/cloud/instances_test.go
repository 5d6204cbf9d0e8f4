package cloud

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The hand-made DescribeInstances reads what the SDK's EC2 client reads,
// from moto.
func TestInstancesReadTheRevisionTypeAndLifecycle(t *testing.T) {
	srv := moto.Start(t)
	cfg := srv.AWSConfig(region)
	ctx := context.Background()
	sdk := ec2.NewFromConfig(cfg)
	run := func(typ ec2types.InstanceType, revision string, count int32) []string {
		tags := []ec2types.Tag{{Key: aws.String("team"), Value: aws.String("a")}}
		if revision != "" {
			tags = append(tags, ec2types.Tag{Key: aws.String(nodes.TagRevision), Value: aws.String(revision)})
		}
		out, err := sdk.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-04681a1dbd79675a5"), InstanceType: typ,
			MinCount: aws.Int32(count), MaxCount: aws.Int32(count),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance, Tags: tags}}})
		require.NoError(t, err)
		var ids []string
		for _, i := range out.Instances {
			ids = append(ids, aws.ToString(i.InstanceId))
		}
		return ids
	}
	current := run(ec2types.InstanceTypeM6iLarge, "r2", 2)
	untagged := run(ec2types.InstanceTypeM5Large, "", 1)

	reader := NewInstances(cfg, region, srv.Endpoint)
	facts, err := reader.Describe(ctx, append(append([]string{}, current...), untagged...))
	require.NoError(t, err)
	require.Len(t, facts, 3)
	byID := map[string]nodes.InstanceFacts{}
	for _, f := range facts {
		byID[f.ID] = f
	}
	for _, id := range current {
		assert.Equal(t, nodes.InstanceFacts{ID: id, Type: "m6i.large", Revision: "r2"}, byID[id])
	}
	assert.Equal(t, nodes.InstanceFacts{ID: untagged[0], Type: "m5.large"}, byID[untagged[0]])

	_, err = reader.Describe(ctx, []string{"i-00000000000000000"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "InvalidInstanceID", "EC2's error code is in the error")
}

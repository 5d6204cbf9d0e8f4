package cloud

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/agent/nodes"
	"github.com/caravan-gitops/caravan/test/moto"
)

// The instance reader tells a spot instance from an on-demand one as EC2
// says it (instanceLifecycle), which the roll compares with the pool's
// discount strategy (node_update_check_spot).
func TestInstancesTellSpotFromOnDemand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	srv := moto.Start(t)
	ec2c := ec2.NewFromConfig(srv.AWSConfig(region))
	image, err := ec2c.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, image.Images, "moto serves images")
	run := func(market *ec2types.InstanceMarketOptionsRequest) string {
		t.Helper()
		out, err := ec2c.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: image.Images[0].ImageId, InstanceType: ec2types.InstanceTypeM6iLarge,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceMarketOptions: market})
		require.NoError(t, err)
		return aws.ToString(out.Instances[0].InstanceId)
	}
	spot := run(&ec2types.InstanceMarketOptionsRequest{MarketType: ec2types.MarketTypeSpot})
	onDemand := run(nil)

	facts, err := NewInstances(srv.AWSConfig(region), region, srv.Endpoint).Describe(ctx, []string{spot, onDemand})
	require.NoError(t, err)
	byID := map[string]nodes.InstanceFacts{}
	for _, f := range facts {
		byID[f.ID] = f
	}
	require.Contains(t, byID, spot)
	require.Contains(t, byID, onDemand)
	assert.True(t, byID[spot].Spot, "the spot instance")
	assert.False(t, byID[onDemand].Spot, "the on-demand instance")
	assert.Equal(t, "m6i.large", byID[spot].Type)

	outdated, why := nodes.Outdated(nodes.PoolSpec{CheckSpot: true, Spot: false}, nodes.Instance{ID: spot, Spot: byID[spot].Spot})
	assert.True(t, outdated, "a spot instance in an on-demand pool is replaced")
	assert.Contains(t, why, "spot yes")
}

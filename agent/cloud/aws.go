package cloud

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// AWS is how the agent reaches its account: the SDK's default credential
// chain (IRSA or pod identity in a cluster) and, for emulators, an endpoint.
type AWS struct {
	Config   aws.Config
	Endpoint string
}

// LoadAWS loads the default configuration. Throttling and transient
// errors are retried by the SDK's standard retryer, with more attempts
// than its default: a reconcile that gives up early only starts again.
func LoadAWS(ctx context.Context, endpoint string) (*AWS, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRetryMaxAttempts(8))
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	if endpoint != "" {
		cfg.BaseEndpoint = aws.String(endpoint)
	}
	return &AWS{Config: cfg, Endpoint: endpoint}, nil
}

// Stacks returns the stack manager of a cluster in its region.
func (a *AWS) Stacks(clusterID, region string) *Stacks {
	inRegion := func(o *cloudformation.Options) { o.Region = region }
	s3Options := func(o *s3.Options) {
		o.Region = region
		// An emulator on localhost has no per-bucket host names.
		o.UsePathStyle = a.Endpoint != ""
	}
	return NewStacks(cloudformation.NewFromConfig(a.Config, inRegion), s3.NewFromConfig(a.Config, s3Options), clusterID, region, a.Endpoint)
}

// Fleet returns the auto scaling groups of a cluster in its region.
func (a *AWS) Fleet(clusterID, region string) *nodes.Fleet {
	return nodes.NewFleet(autoscaling.NewFromConfig(a.Config, func(o *autoscaling.Options) { o.Region = region }),
		NewInstances(a.Config, region, a.Endpoint), clusterID)
}

// KMS returns a KMS client in the region.
func (a *AWS) KMS(region string) *kms.Client {
	return kms.NewFromConfig(a.Config, func(o *kms.Options) { o.Region = region })
}

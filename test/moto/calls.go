package moto

import (
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
)

// Calls counts the operations that clients made from a configuration call,
// by "SERVICE.OPERATION" with the SDK's service ID, such as
// "CloudFormation.DescribeStacks" or "Auto Scaling.UpdateAutoScalingGroup".
// An operation counts once however often it is retried; each of a waiter's
// polls counts.
type Calls struct {
	mu     sync.Mutex
	counts map[string]int
}

// CountCalls makes the clients created from cfg afterwards count their
// operations in the returned Calls; clients created before are not counted.
func CountCalls(cfg *aws.Config) *Calls {
	c := &Calls{counts: map[string]int{}}
	// Clip, so that a copy of cfg sharing the slice is not changed.
	cfg.APIOptions = append(slices.Clip(cfg.APIOptions), func(stack *middleware.Stack) error {
		// Last in the initialize step, after the service's metadata, which
		// names the service and operation, is in the context.
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("moto.CountCalls",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				c.add(awsmiddleware.GetServiceID(ctx) + "." + awsmiddleware.GetOperationName(ctx))
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
	return c
}

func (c *Calls) add(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[op]++
}

// Snapshot is a copy of the counts so far.
func (c *Calls) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.counts)
}

// Total is the number of operations so far.
func (c *Calls) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// Reset sets every count to zero.
func (c *Calls) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.counts)
}

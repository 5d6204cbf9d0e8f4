package registry

import (
	"context"
	"net/http"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// CreatePlan asks the cluster's agent what commit (a full id) would change
// in the cluster; the plan answers pending, and GetPlan follows it. Each
// call makes a new plan, so it is not retried once it may have arrived.
func (c *Client) CreatePlan(ctx context.Context, clusterID, commit string) (*api.Plan, error) {
	p, _, err := send[api.Plan](ctx, c, http.MethodPost, resourcePath("clusters", clusterID, "plans"), api.PlanRequest{Commit: commit}, "")
	return p, err
}

// GetPlan returns a plan of the cluster, with the agent's result once it answered.
func (c *Client) GetPlan(ctx context.Context, clusterID, planID string) (*api.Plan, error) {
	p, _, err := get[api.Plan](ctx, c, resourcePath("clusters", clusterID, "plans", planID))
	return p, err
}

// ListPlans returns one page of the cluster's plans, newest first.
func (c *Client) ListPlans(ctx context.Context, clusterID string, p Page) (*api.List[api.Plan], error) {
	return list[api.Plan](ctx, c, resourcePath("clusters", clusterID, "plans"), nil, p)
}

// PutPlan sends the agent's answer to a plan of its cluster, retried like
// any PUT: a final answer that arrived before is then refused as a conflict
// (IsConflict), since the plan has ended.
func (c *Client) PutPlan(ctx context.Context, clusterID, planID string, report *api.PlanReport) error {
	r, err := jsonRequest(http.MethodPut, resourcePath("clusters", clusterID, "plans", planID), report)
	if err != nil {
		return err
	}
	return c.callNoContent(ctx, r)
}

package registry

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// AssignmentOptions makes GetAssignment conditional and, with Wait, a long poll.
type AssignmentOptions struct {
	// IfNoneMatch is the ETag of the assignment the caller holds.
	IfNoneMatch string
	// Wait lets the server hold the request up to this long (whole seconds)
	// until the assignment differs from IfNoneMatch.
	Wait time.Duration
}

// AssignmentResult is either a new assignment with its ETag, or NotModified
// when the caller's assignment (IfNoneMatch) is still current.
type AssignmentResult struct {
	Assignment  *api.Assignment
	ETag        string
	NotModified bool
	// RegistryTime is the registry's clock when it answered (the
	// api.RegistryTimeHeader); zero when the answer carried none.
	RegistryTime time.Time
}

// GetAssignment returns what the cluster with the id must converge to.
func (c *Client) GetAssignment(ctx context.Context, clusterID string, o AssignmentOptions) (*AssignmentResult, error) {
	r := request{
		method:      http.MethodGet,
		path:        resourcePath("clusters", clusterID, "assignment"),
		ifNoneMatch: o.IfNoneMatch,
	}
	if wait := o.Wait.Round(time.Second); wait > 0 {
		r.query = url.Values{"wait": {strconv.Itoa(int(wait/time.Second)) + "s"}}
		r.longPoll = wait
	}
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	registryTime := parseRegistryTime(resp.Header.Get(api.RegistryTimeHeader))
	if resp.StatusCode == http.StatusNotModified {
		return &AssignmentResult{ETag: o.IfNoneMatch, NotModified: true, RegistryTime: registryTime}, nil
	}
	a, err := decode[api.Assignment](resp)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", r.path, err)
	}
	return &AssignmentResult{Assignment: a, ETag: resp.Header.Get("ETag"), RegistryTime: registryTime}, nil
}

// parseRegistryTime reads the registry's clock from its header; the zero
// time when it is missing or malformed (an older registry sends none).
func parseRegistryTime(raw string) time.Time {
	if raw == "" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, raw)
	if err != nil {
		return time.Time{}
	}
	return t
}

// PutClusterStatus reports the status of the cluster with the id. A PUT
// replaces the whole status, so a retried report is harmless.
func (c *Client) PutClusterStatus(ctx context.Context, clusterID string, s *api.ClusterStatus) error {
	r, err := jsonRequest(http.MethodPut, resourcePath("clusters", clusterID, "status"), s)
	if err != nil {
		return err
	}
	return c.callNoContent(ctx, r)
}

// GetClusterStatus returns the last status the agent of the cluster reported.
func (c *Client) GetClusterStatus(ctx context.Context, clusterID string) (*api.ClusterStatus, string, error) {
	return get[api.ClusterStatus](ctx, c, resourcePath("clusters", clusterID, "status"))
}

// ListClusterStatusHistory returns one page of the versions and phases the cluster went through.
func (c *Client) ListClusterStatusHistory(ctx context.Context, clusterID string, p Page) (*api.List[api.StatusHistoryEntry], error) {
	return list[api.StatusHistoryEntry](ctx, c, resourcePath("clusters", clusterID, "status", "history"), nil, p)
}

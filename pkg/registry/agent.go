package registry

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	// Wait lets the server hold the request until the assignment differs
	// from IfNoneMatch, up to this long less a random part of up to a
	// tenth (waitJitter): agents a change answered together (or a replica's
	// failure moved together) would otherwise come back together for ever,
	// each time their waits ran out.
	Wait time.Duration
}

// waitJitter is the largest part of a long-poll's wait taken off at random.
const waitJitter = 0.1

// jitteredWait is wait less jitter (in [0, 1)) times waitJitter of it, to
// the millisecond.
func jitteredWait(wait time.Duration, jitter float64) time.Duration {
	return (wait - time.Duration(jitter*waitJitter*float64(wait))).Truncate(time.Millisecond)
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
	if wait := jitteredWait(o.Wait, rand.Float64()); wait > 0 {
		r.query = url.Values{"wait": {strconv.FormatFloat(wait.Seconds(), 'f', -1, 64) + "s"}}
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

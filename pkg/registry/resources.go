package registry

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// ListInfrastructureAccounts returns one page of the accounts that match f.
func (c *Client) ListInfrastructureAccounts(ctx context.Context, f AccountFilter, p Page) (*api.List[api.InfrastructureAccount], error) {
	return list[api.InfrastructureAccount](ctx, c, resourcePath("infrastructure-accounts"), f.query(), p)
}

// GetInfrastructureAccount returns the account with the id.
func (c *Client) GetInfrastructureAccount(ctx context.Context, id string) (*api.InfrastructureAccount, string, error) {
	return get[api.InfrastructureAccount](ctx, c, resourcePath("infrastructure-accounts", id))
}

// CreateInfrastructureAccount registers a new account.
func (c *Client) CreateInfrastructureAccount(ctx context.Context, a *api.InfrastructureAccount) (*api.InfrastructureAccount, string, error) {
	return send[api.InfrastructureAccount](ctx, c, http.MethodPost, resourcePath("infrastructure-accounts"), a, "")
}

// UpdateInfrastructureAccount replaces the account with the id by a.
func (c *Client) UpdateInfrastructureAccount(ctx context.Context, id string, a *api.InfrastructureAccount, ifMatch string) (*api.InfrastructureAccount, string, error) {
	return send[api.InfrastructureAccount](ctx, c, http.MethodPut, resourcePath("infrastructure-accounts", id), a, ifMatch)
}

// PatchInfrastructureAccount applies a JSON merge patch to the account with the id.
func (c *Client) PatchInfrastructureAccount(ctx context.Context, id string, patch any, ifMatch string) (*api.InfrastructureAccount, string, error) {
	return mergePatch[api.InfrastructureAccount](ctx, c, resourcePath("infrastructure-accounts", id), patch, ifMatch)
}

// DeleteInfrastructureAccount removes the account with the id.
func (c *Client) DeleteInfrastructureAccount(ctx context.Context, id, ifMatch string) error {
	return c.remove(ctx, resourcePath("infrastructure-accounts", id), ifMatch)
}

// ListClusters returns one page of the clusters that match f.
func (c *Client) ListClusters(ctx context.Context, f ClusterFilter, p Page) (*api.List[api.Cluster], error) {
	return list[api.Cluster](ctx, c, resourcePath("clusters"), f.query(), p)
}

// GetCluster returns the cluster with the id, with its node pools and status.
func (c *Client) GetCluster(ctx context.Context, id string) (*api.Cluster, string, error) {
	return get[api.Cluster](ctx, c, resourcePath("clusters", id))
}

// CreateCluster registers a new cluster.
func (c *Client) CreateCluster(ctx context.Context, cl *api.Cluster) (*api.Cluster, string, error) {
	return send[api.Cluster](ctx, c, http.MethodPost, resourcePath("clusters"), cl, "")
}

// UpdateCluster replaces the cluster with the id by cl.
func (c *Client) UpdateCluster(ctx context.Context, id string, cl *api.Cluster, ifMatch string) (*api.Cluster, string, error) {
	return send[api.Cluster](ctx, c, http.MethodPut, resourcePath("clusters", id), cl, ifMatch)
}

// PatchCluster applies a JSON merge patch to the cluster with the id.
func (c *Client) PatchCluster(ctx context.Context, id string, patch any, ifMatch string) (*api.Cluster, string, error) {
	return mergePatch[api.Cluster](ctx, c, resourcePath("clusters", id), patch, ifMatch)
}

// DeleteCluster removes the cluster with the id.
func (c *Client) DeleteCluster(ctx context.Context, id, ifMatch string) error {
	return c.remove(ctx, resourcePath("clusters", id), ifMatch)
}

// DecommissionCluster confirms the decommission of the cluster with the id,
// whose lifecycle_status must be decommission-requested (409, see
// IsConflict, otherwise): its agent then lifts the termination protection of
// the cluster stack and deletes it, and the registry records the cluster as
// decommissioned when the agent reports so. Confirming again keeps the first
// confirmation, so the call is retried like a PUT.
func (c *Client) DecommissionCluster(ctx context.Context, id string) (*api.Cluster, error) {
	r, err := jsonRequest(http.MethodPost, resourcePath("clusters", id, "decommission"), decommissionRequest{Confirm: true})
	if err != nil {
		return nil, err
	}
	r.idempotent = true
	cl, _, err := call[api.Cluster](ctx, c, r)
	return cl, err
}

// decommissionRequest is the body of POST /api/v1/clusters/{id}/decommission.
type decommissionRequest struct {
	Confirm bool `json:"confirm"`
}

// ListNodePools returns one page of the node pools of a cluster.
func (c *Client) ListNodePools(ctx context.Context, clusterID string, p Page) (*api.List[api.NodePool], error) {
	return list[api.NodePool](ctx, c, resourcePath("clusters", clusterID, "node-pools"), nil, p)
}

// GetNodePool returns the node pool of a cluster with the name.
func (c *Client) GetNodePool(ctx context.Context, clusterID, name string) (*api.NodePool, string, error) {
	return get[api.NodePool](ctx, c, resourcePath("clusters", clusterID, "node-pools", name))
}

// CreateNodePool adds a node pool to a cluster.
func (c *Client) CreateNodePool(ctx context.Context, clusterID string, np *api.NodePool) (*api.NodePool, string, error) {
	return send[api.NodePool](ctx, c, http.MethodPost, resourcePath("clusters", clusterID, "node-pools"), np, "")
}

// UpdateNodePool replaces the node pool of a cluster with the name by np.
func (c *Client) UpdateNodePool(ctx context.Context, clusterID, name string, np *api.NodePool, ifMatch string) (*api.NodePool, string, error) {
	return send[api.NodePool](ctx, c, http.MethodPut, resourcePath("clusters", clusterID, "node-pools", name), np, ifMatch)
}

// PatchNodePool applies a JSON merge patch to the node pool of a cluster with the name.
func (c *Client) PatchNodePool(ctx context.Context, clusterID, name string, patch any, ifMatch string) (*api.NodePool, string, error) {
	return mergePatch[api.NodePool](ctx, c, resourcePath("clusters", clusterID, "node-pools", name), patch, ifMatch)
}

// DeleteNodePool removes the node pool of a cluster with the name.
func (c *Client) DeleteNodePool(ctx context.Context, clusterID, name, ifMatch string) error {
	return c.remove(ctx, resourcePath("clusters", clusterID, "node-pools", name), ifMatch)
}

// BlockRequest asks to block updates of a cluster, or of one of its node
// pools when NodePool is set, until Until or until the block is deleted.
type BlockRequest struct {
	Reason   string     `json:"reason"`
	NodePool string     `json:"node_pool,omitempty"`
	Until    *time.Time `json:"until,omitempty"`
}

// ListBlocks returns one page of the blocks of a cluster.
func (c *Client) ListBlocks(ctx context.Context, clusterID string, p Page) (*api.List[api.Block], error) {
	return list[api.Block](ctx, c, resourcePath("clusters", clusterID, "blocks"), nil, p)
}

// GetBlock returns one block of a cluster.
func (c *Client) GetBlock(ctx context.Context, clusterID, blockID string) (*api.Block, string, error) {
	return get[api.Block](ctx, c, resourcePath("clusters", clusterID, "blocks", blockID))
}

// CreateBlock blocks updates of a cluster or of one of its node pools.
func (c *Client) CreateBlock(ctx context.Context, clusterID string, b BlockRequest) (*api.Block, string, error) {
	return send[api.Block](ctx, c, http.MethodPost, resourcePath("clusters", clusterID, "blocks"), b, "")
}

// PatchBlock applies a JSON merge patch to a block, for example to change its reason or end.
func (c *Client) PatchBlock(ctx context.Context, clusterID, blockID string, patch any, ifMatch string) (*api.Block, string, error) {
	return mergePatch[api.Block](ctx, c, resourcePath("clusters", clusterID, "blocks", blockID), patch, ifMatch)
}

// DeleteBlock lifts a block.
func (c *Client) DeleteBlock(ctx context.Context, clusterID, blockID, ifMatch string) error {
	return c.remove(ctx, resourcePath("clusters", clusterID, "blocks", blockID), ifMatch)
}

// ListChannels returns one page of the release channels.
func (c *Client) ListChannels(ctx context.Context, p Page) (*api.List[api.Channel], error) {
	return list[api.Channel](ctx, c, resourcePath("channels"), nil, p)
}

// GetChannel returns the channel with the name.
func (c *Client) GetChannel(ctx context.Context, name string) (*api.Channel, string, error) {
	return get[api.Channel](ctx, c, resourcePath("channels", name))
}

// CreateChannel adds a release channel.
func (c *Client) CreateChannel(ctx context.Context, ch *api.Channel) (*api.Channel, string, error) {
	return send[api.Channel](ctx, c, http.MethodPost, resourcePath("channels"), ch, "")
}

// UpdateChannel replaces the channel with the name by ch.
func (c *Client) UpdateChannel(ctx context.Context, name string, ch *api.Channel, ifMatch string) (*api.Channel, string, error) {
	return send[api.Channel](ctx, c, http.MethodPut, resourcePath("channels", name), ch, ifMatch)
}

// PatchChannel applies a JSON merge patch to the channel with the name.
func (c *Client) PatchChannel(ctx context.Context, name string, patch any, ifMatch string) (*api.Channel, string, error) {
	return mergePatch[api.Channel](ctx, c, resourcePath("channels", name), patch, ifMatch)
}

// DeleteChannel removes the channel with the name.
func (c *Client) DeleteChannel(ctx context.Context, name, ifMatch string) error {
	return c.remove(ctx, resourcePath("channels", name), ifMatch)
}

// ListAudit returns one page of the audit log entries that match f.
func (c *Client) ListAudit(ctx context.Context, f AuditFilter, p Page) (*api.List[api.AuditEntry], error) {
	return list[api.AuditEntry](ctx, c, resourcePath("audit"), f.query(), p)
}

// TokenRequest asks for a new API token. ClusterID binds an agent token to its cluster.
type TokenRequest struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	ClusterID string `json:"cluster_id,omitempty"`
}

// ListTokens returns one page of the API tokens, without their secrets.
func (c *Client) ListTokens(ctx context.Context, p Page) (*api.List[api.Token], error) {
	return list[api.Token](ctx, c, resourcePath("tokens"), nil, p)
}

// GetToken returns the token with the id, without its secret.
func (c *Client) GetToken(ctx context.Context, id string) (*api.Token, string, error) {
	return get[api.Token](ctx, c, resourcePath("tokens", id))
}

// CreateToken issues a token. Its Secret is in this answer and nowhere else,
// so it is never retried after it may have reached the server.
func (c *Client) CreateToken(ctx context.Context, t TokenRequest) (*api.Token, error) {
	tok, _, err := send[api.Token](ctx, c, http.MethodPost, resourcePath("tokens"), t, "")
	return tok, err
}

// RevokeToken revokes the token with the id; it stays listed with RevokedAt set.
func (c *Client) RevokeToken(ctx context.Context, id string) error {
	return c.remove(ctx, resourcePath("tokens", id), "")
}

func list[T any](ctx context.Context, c *Client, path string, q url.Values, p Page) (*api.List[T], error) {
	l, _, err := call[api.List[T]](ctx, c, request{method: http.MethodGet, path: path, query: p.addTo(q)})
	if err != nil {
		return nil, err
	}
	if l.Items == nil {
		l.Items = []T{}
	}
	return l, nil
}

func get[T any](ctx context.Context, c *Client, path string) (*T, string, error) {
	return call[T](ctx, c, request{method: http.MethodGet, path: path})
}

func send[T any](ctx context.Context, c *Client, method, path string, v any, ifMatch string) (*T, string, error) {
	r, err := jsonRequest(method, path, v)
	if err != nil {
		return nil, "", err
	}
	r.ifMatch = ifMatch
	return call[T](ctx, c, r)
}

func mergePatch[T any](ctx context.Context, c *Client, path string, patch any, ifMatch string) (*T, string, error) {
	r, err := mergePatchRequest(path, patch, ifMatch)
	if err != nil {
		return nil, "", err
	}
	return call[T](ctx, c, r)
}

func (c *Client) remove(ctx context.Context, path, ifMatch string) error {
	return c.callNoContent(ctx, request{method: http.MethodDelete, path: path, ifMatch: ifMatch})
}

// FreezeFilter narrows a list of freezes: Active lists only those in force now.
type FreezeFilter struct {
	Active bool
}

func (f FreezeFilter) query() url.Values {
	q := url.Values{}
	if f.Active {
		q.Set("active", "true")
	}
	return q
}

// ListFreezes returns one page of the freezes that match f, newest first.
func (c *Client) ListFreezes(ctx context.Context, f FreezeFilter, p Page) (*api.List[api.Freeze], error) {
	return list[api.Freeze](ctx, c, resourcePath("freezes"), f.query(), p)
}

// GetFreeze returns the freeze with the id.
func (c *Client) GetFreeze(ctx context.Context, id string) (*api.Freeze, string, error) {
	return get[api.Freeze](ctx, c, resourcePath("freezes", id))
}

// CreateFreeze freezes a channel, an environment (or both) or, with All,
// the whole fleet until f.Until; from f.Since, or from now when it is zero.
// The registry sets the id, By (the token's name) and the timestamps.
func (c *Client) CreateFreeze(ctx context.Context, f *api.Freeze) (*api.Freeze, string, error) {
	return send[api.Freeze](ctx, c, http.MethodPost, resourcePath("freezes"), freezeRequest(f), "")
}

// DeleteFreeze ends the freeze with the id and removes it.
func (c *Client) DeleteFreeze(ctx context.Context, id, ifMatch string) error {
	return c.remove(ctx, resourcePath("freezes", id), ifMatch)
}

// freezeCreate is the body of POST /api/v1/freezes: what a user sets.
type freezeCreate struct {
	Reason      string     `json:"reason"`
	All         bool       `json:"all,omitempty"`
	Channel     string     `json:"channel,omitempty"`
	Environment string     `json:"environment,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
	Until       time.Time  `json:"until"`
}

func freezeRequest(f *api.Freeze) freezeCreate {
	r := freezeCreate{Reason: f.Reason, All: f.All, Channel: f.Channel, Environment: f.Environment, Until: f.Until}
	if !f.Since.IsZero() {
		since := f.Since
		r.Since = &since
	}
	return r
}

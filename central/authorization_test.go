package central_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// route is one operation of the API with the request that exercises it and
// the access it needs.
type route struct {
	method, path string
	body         any
	ok           int
	access       string // public, read, write, assignment, status
}

// TestAuthorizationMatrix sends every route with every role, for the
// agent's own cluster and another one, and asserts the exact status code.
func TestAuthorizationMatrix(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	const spareAccount = "aws:210987654321"
	const spareCluster = "aws:123456789012:eu-central-1:spare"
	admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", withField(account(), "id", spareAccount))
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", withField(cluster(spareCluster, "dev"), "lifecycle_status", "requested"))
	const retiringCluster = "aws:123456789012:eu-central-1:retiring"
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", withField(cluster(retiringCluster, "dev"), "lifecycle_status", "decommission-requested"))
	admin.must(http.StatusCreated, "POST", "/api/v1/channels", map[string]any{"name": "extra", "branch": "extra", "position": 9})
	var block api.Block
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters/"+clusterA+"/blocks", map[string]any{"reason": "seeded"}).json(t, &block)
	var keep, spare api.Token
	admin.must(http.StatusCreated, "POST", "/api/v1/tokens", map[string]any{"name": "kept", "role": "reader"}).json(t, &keep)
	admin.must(http.StatusCreated, "POST", "/api/v1/tokens", map[string]any{"name": "spare", "role": "reader"}).json(t, &spare)

	a := "/api/v1/clusters/" + clusterA
	pool := map[string]any{"name": "default", "profile": "worker", "instance_types": []string{"m6i.large"}, "min_size": 1, "max_size": 5}
	routes := []route{
		{"GET", "/healthz", nil, 200, "public"},
		{"GET", "/readyz", nil, 200, "public"},
		{"GET", "/metrics", nil, 200, "public"},
		{"GET", "/api/v1/openapi.yaml", nil, 200, "public"},
		{"GET", "/api/v1/infrastructure-accounts", nil, 200, "read"},
		{"POST", "/api/v1/infrastructure-accounts", withField(account(), "id", "aws:333333333333"), 201, "write"},
		{"GET", "/api/v1/infrastructure-accounts/" + accountID, nil, 200, "read"},
		{"PUT", "/api/v1/infrastructure-accounts/" + accountID, account(), 200, "write"},
		{"PATCH", "/api/v1/infrastructure-accounts/" + accountID, `{"owner":"team-b"}`, 200, "write"},
		{"GET", "/api/v1/clusters", nil, 200, "read"},
		{"POST", "/api/v1/clusters", cluster("aws:123456789012:eu-central-1:new", "dev"), 201, "write"},
		{"GET", a, nil, 200, "read"},
		{"PUT", a, cluster(clusterA, "dev"), 200, "write"},
		{"PATCH", a, `{"criticality_level":2}`, 200, "write"},
		{"POST", "/api/v1/clusters/" + retiringCluster + "/decommission", map[string]any{"confirm": true}, 200, "write"},
		// Even the cluster's own agent may not confirm; the admin gets 409 as the cluster is ready.
		{"POST", a + "/decommission", map[string]any{"confirm": true}, 409, "write"},
		{"GET", a + "/assignment", nil, 200, "assignment"},
		{"PUT", a + "/status", map[string]any{"phase": "idle", "current_version": "abc#1"}, 200, "status"},
		{"GET", a + "/status", nil, 200, "read"},
		{"GET", a + "/status/history", nil, 200, "read"},
		{"GET", a + "/node-pools", nil, 200, "read"},
		{"POST", a + "/node-pools", withField(map[string]any{"profile": "worker", "instance_types": []string{"m6i.large"}, "max_size": 2}, "name", "extra"), 201, "write"},
		{"GET", a + "/node-pools/default", nil, 200, "read"},
		{"PUT", a + "/node-pools/default", pool, 200, "write"},
		{"PATCH", a + "/node-pools/default", `{"max_size":6}`, 200, "write"},
		{"GET", a + "/blocks", nil, 200, "read"},
		{"POST", a + "/blocks", map[string]any{"reason": "matrix"}, 201, "write"},
		{"GET", a + "/blocks/" + block.ID, nil, 200, "read"},
		{"PATCH", a + "/blocks/" + block.ID, `{"reason":"still seeded"}`, 200, "write"},
		{"GET", "/api/v1/channels", nil, 200, "read"},
		{"POST", "/api/v1/channels", map[string]any{"name": "canary", "branch": "canary", "position": 10}, 201, "write"},
		{"GET", "/api/v1/channels/dev", nil, 200, "read"},
		{"PUT", "/api/v1/channels/extra", map[string]any{"name": "extra", "branch": "extra-2", "position": 9}, 200, "write"},
		{"PATCH", "/api/v1/channels/extra", `{"position":11}`, 200, "write"},
		{"GET", "/api/v1/audit", nil, 200, "read"},
		{"GET", "/api/v1/tokens", nil, 200, "read"},
		{"POST", "/api/v1/tokens", map[string]any{"name": "matrix", "role": "agent", "cluster_id": clusterA}, 201, "write"},
		{"GET", "/api/v1/tokens/" + keep.ID, nil, 200, "read"},
		{"DELETE", "/api/v1/tokens/" + spare.ID, nil, 204, "write"},
		{"DELETE", a + "/blocks/" + block.ID, nil, 204, "write"},
		{"DELETE", a + "/node-pools/default", nil, 204, "write"},
		{"DELETE", "/api/v1/clusters/" + spareCluster, nil, 204, "write"},
		{"DELETE", "/api/v1/channels/extra", nil, 204, "write"},
		{"DELETE", "/api/v1/infrastructure-accounts/" + spareAccount, nil, 204, "write"},
	}
	roles := []struct {
		name   string
		client *client
		allows func(access string) bool
	}{
		{"anonymous", newClient(t, srv, ""), func(string) bool { return false }},
		{"bad token", newClient(t, srv, "cvn_not-a-token"), func(string) bool { return false }},
		{"agent of another cluster", newClient(t, srv, srv.Token(t, api.RoleAgent, clusterB)), func(string) bool { return false }},
		{"agent of the cluster", newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA)), func(a string) bool { return a == "assignment" || a == "status" }},
		{"reader", newClient(t, srv, srv.Token(t, api.RoleReader, "")), func(a string) bool { return a == "read" || a == "assignment" }},
		{"admin", admin, func(string) bool { return true }},
	}
	for _, role := range roles {
		authenticated := role.name != "anonymous" && role.name != "bad token"
		for _, r := range routes {
			want := r.ok
			switch {
			case r.access == "public":
			case !authenticated:
				want = http.StatusUnauthorized
			case !role.allows(r.access):
				want = http.StatusForbidden
			}
			got := role.client.do(r.method, r.path, r.body)
			assert.Equal(t, want, got.Status, "%s: %s %s: %s", role.name, r.method, r.path, got.Body)
			if want == http.StatusUnauthorized || want == http.StatusForbidden {
				assert.Equal(t, "application/problem+json", got.Header.Get("Content-Type"))
			}
		}
	}
}

func TestRevokedTokenStopsWorking(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	var tok api.Token
	admin.must(http.StatusCreated, "POST", "/api/v1/tokens", map[string]any{"name": "ci", "role": "reader"}).json(t, &tok)
	require.NotEmpty(t, tok.Secret)
	reader := newClient(t, srv, tok.Secret)
	reader.must(http.StatusOK, "GET", "/api/v1/clusters", nil)
	admin.must(http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tok.ID, nil)
	reader.must(http.StatusUnauthorized, "GET", "/api/v1/clusters", nil)

	var listed api.List[api.Token]
	admin.must(http.StatusOK, "GET", "/api/v1/tokens", nil).json(t, &listed)
	for _, l := range listed.Items {
		assert.Empty(t, l.Secret, "a token's secret is shown only once")
	}
	var entries api.List[api.AuditEntry]
	raw := admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=token", nil)
	raw.json(t, &entries)
	assert.NotContains(t, string(raw.Body), tok.Secret, "the audit log never holds a secret")
	require.Len(t, entries.Items, 3, "the bootstrap token, the new one and its revocation")
	assert.Equal(t, "revoke", entries.Items[0].Action)
}

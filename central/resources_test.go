package central_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestClusterLifecycleThroughTheAPI(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		u := "/api/v1/clusters/" + clusterA

		got := admin.must(http.StatusOK, "GET", u, nil)
		var c api.Cluster
		got.json(t, &c)
		assert.Equal(t, "kube-a", c.Alias)
		assert.Equal(t, "aws", c.Provider)
		require.Len(t, c.NodePools, 1, "node pools given on create are stored")
		assert.Equal(t, "none", c.NodePools[0].DiscountStrategy)
		etag := got.Header.Get("ETag")
		require.NotEmpty(t, etag)
		admin.must(http.StatusOK, "GET", u, nil, "If-None-Match", etag)
		poolRes := admin.must(http.StatusOK, "GET", u+"/node-pools/default", nil)
		admin.must(http.StatusNotModified, "GET", u+"/node-pools/default", nil, "If-None-Match", poolRes.Header.Get("ETag"))
		admin.must(http.StatusPreconditionFailed, "PATCH", u, `{"alias":"x"}`, "If-Match", "W/"+etag)

		patched := admin.must(http.StatusOK, "PATCH", u, `{"config_items":{"dns_zone":null,"team":"a"},"criticality_level":2}`, "If-Match", etag)
		c = api.Cluster{}
		patched.json(t, &c)
		assert.Equal(t, map[string]string{"team": "a"}, c.ConfigItems, "merge patch removes null keys and adds new ones")
		assert.Equal(t, 2, c.CriticalityLevel)
		assert.NotEqual(t, etag, patched.Header.Get("ETag"))

		p := admin.must(http.StatusPreconditionFailed, "PATCH", u, `{"alias":"x"}`, "If-Match", etag).problem(t)
		assert.Equal(t, "If-Match", p["field"])

		c.Alias = "renamed"
		replaced := admin.must(http.StatusOK, "PUT", u, c, "If-Match", patched.Header.Get("ETag"))
		replaced.json(t, &c)
		assert.Equal(t, "renamed", c.Alias)
		require.Len(t, c.NodePools, 1, "PUT leaves node pools alone")

		p = admin.must(http.StatusUnprocessableEntity, "PATCH", u, `{"id":"aws:123456789012:eu-central-1:other"}`).problem(t)
		assert.Equal(t, "id", p["field"])

		p = admin.must(http.StatusConflict, "DELETE", u, nil).problem(t)
		assert.Equal(t, "lifecycle_status", p["field"], "a cluster in service is not deleted")
		admin.must(http.StatusOK, "PATCH", u, `{"lifecycle_status":"decommissioned"}`)
		admin.must(http.StatusNoContent, "DELETE", u, nil)
		admin.must(http.StatusNotFound, "GET", u, nil)
		admin.must(http.StatusNotFound, "GET", u+"/node-pools/default", nil)

		var audit api.List[api.AuditEntry]
		admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=cluster&resource_id="+clusterA, nil).json(t, &audit)
		var actions []string
		for _, e := range audit.Items {
			actions = append(actions, e.Action)
			assert.NotEmpty(t, e.Actor)
		}
		assert.Equal(t, []string{"delete", "update", "update", "update", "create"}, actions, "every write is audited, newest first")
		before, _ := json.Marshal(audit.Items[0].Before)
		assert.Contains(t, string(before), `"lifecycle_status":"decommissioned"`, "a delete keeps what was deleted")
		assert.Nil(t, audit.Items[0].After)
	})
}

func TestInvalidInputGetsAProblemNamingTheField(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
	cases := []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"unknown channel", cluster(clusterA, "nightly"), http.StatusUnprocessableEntity, "channel"},
		{"unknown account", withField(cluster("aws:999999999999:eu-central-1:x", "dev"), "infrastructure_account", "aws:999999999999"), http.StatusUnprocessableEntity, "infrastructure_account"},
		{"region not the id's", withField(cluster(clusterA, "dev"), "region", "eu-west-1"), http.StatusUnprocessableEntity, "region"},
		{"bad config key", withField(cluster(clusterA, "dev"), "config_items", map[string]string{"Not-OK": "x"}), http.StatusUnprocessableEntity, "config_items"},
		{"bad lifecycle", withField(cluster(clusterA, "dev"), "lifecycle_status", "up"), http.StatusUnprocessableEntity, "lifecycle_status"},
		{"unknown field", withField(cluster(clusterA, "dev"), "colour", "blue"), http.StatusBadRequest, "colour"},
		{"wrong type", withField(cluster(clusterA, "dev"), "criticality_level", "high"), http.StatusBadRequest, "criticality_level"},
		{"malformed json", `{"id":`, http.StatusBadRequest, "(body)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := admin.must(tc.status, "POST", "/api/v1/clusters", tc.body).problem(t)
			assert.Equal(t, tc.field, p["field"])
			assert.NotEmpty(t, p["title"])
			assert.NotEmpty(t, p["detail"])
			assert.EqualValues(t, tc.status, p["status"])
		})
	}
	var list api.List[api.Cluster]
	admin.must(http.StatusOK, "GET", "/api/v1/clusters", nil).json(t, &list)
	assert.Empty(t, list.Items, "nothing of a rejected request is stored")

	admin.must(http.StatusUnsupportedMediaType, "POST", "/api/v1/clusters", cluster(clusterA, "dev"), "Content-Type", "text/plain")
	admin.must(http.StatusRequestEntityTooLarge, "POST", "/api/v1/clusters", `{"alias":"`+strings.Repeat("a", 2<<20)+`"}`)
	p := admin.must(http.StatusBadRequest, "GET", "/api/v1/clusters?limit=0", nil).problem(t)
	assert.Equal(t, "limit", p["field"])
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", cluster(clusterA, "dev"))
	admin.must(http.StatusConflict, "POST", "/api/v1/clusters", cluster(clusterA, "dev"))
	p = admin.must(http.StatusConflict, "DELETE", "/api/v1/channels/dev", nil).problem(t)
	assert.Contains(t, p["detail"], "clusters still follow the channel")
}

func withField(m map[string]any, key string, value any) map[string]any {
	m[key] = value
	return m
}

func TestListFiltersAndPaging(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", account())
		channels := []string{"dev", "alpha", "beta", "stable"}
		for i := range 10 {
			id := path("aws:123456789012:eu-central-1:k%02d", i)
			c := cluster(id, channels[i%4])
			if i%2 == 1 {
				c["environment"] = "production"
			}
			admin.must(http.StatusCreated, "POST", "/api/v1/clusters", c)
		}
		var seen []string
		next := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 5)
			var page api.List[api.Cluster]
			admin.must(http.StatusOK, "GET", "/api/v1/clusters?limit=3&continue="+next, nil).json(t, &page)
			for _, c := range page.Items {
				seen = append(seen, c.Alias)
			}
			if next = page.Next; next == "" {
				break
			}
		}
		assert.Equal(t, []string{"k00", "k01", "k02", "k03", "k04", "k05", "k06", "k07", "k08", "k09"}, seen)

		var filtered api.List[api.Cluster]
		admin.must(http.StatusOK, "GET", "/api/v1/clusters?channel=dev&environment=test", nil).json(t, &filtered)
		var aliases []string
		for _, c := range filtered.Items {
			aliases = append(aliases, c.Alias)
		}
		assert.Equal(t, []string{"k00", "k04", "k08"}, aliases)
		admin.must(http.StatusOK, "GET", "/api/v1/clusters?alias=k03", nil).json(t, &filtered)
		require.Len(t, filtered.Items, 1)
		assert.Equal(t, "stable", filtered.Items[0].Channel)

		var chans api.List[api.Channel]
		admin.must(http.StatusOK, "GET", "/api/v1/channels", nil).json(t, &chans)
		var names []string
		for _, c := range chans.Items {
			names = append(names, c.Name)
		}
		assert.Equal(t, channels, names, "channels come in promotion order")
	})
}

func TestNodePoolsAndBlocksReachTheAssignment(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		pools := "/api/v1/clusters/" + clusterA + "/node-pools"
		admin.must(http.StatusCreated, "POST", pools, map[string]any{
			"name": "spot", "profile": "worker", "instance_types": []string{"m6i.large", "m5.large"}, "min_size": 0, "max_size": 10,
			"discount_strategy": "spot", "config_items": map[string]string{"dns_zone": "pool.example.org"},
			"taints": []map[string]string{{"key": "spot", "value": "true", "effect": "NoSchedule"}},
		})
		p := admin.must(http.StatusUnprocessableEntity, "PATCH", pools+"/spot", `{"max_size":-1}`).problem(t)
		assert.Equal(t, "max_size", p["field"])
		// A profile names a node shape of the templates; it never carries
		// anything else into them.
		for _, profile := range []string{"-", "worker\nrm -rf /", "worker default", "gpu"} {
			p = admin.must(http.StatusUnprocessableEntity, "PATCH", pools+"/spot", map[string]any{"profile": profile}).problem(t)
			assert.Equal(t, "profile", p["field"], profile)
			p = admin.must(http.StatusUnprocessableEntity, "POST", pools, map[string]any{
				"name": "other", "profile": profile, "instance_types": []string{"m6i.large"}, "min_size": 0, "max_size": 1,
			}).problem(t)
			assert.Equal(t, "profile", p["field"], profile)
		}
		admin.must(http.StatusOK, "PATCH", pools+"/spot", map[string]any{"profile": "worker-gpu"})
		admin.must(http.StatusNotFound, "POST", "/api/v1/clusters/aws:123456789012:eu-central-1:nope/node-pools", map[string]any{"name": "x"})

		blocks := "/api/v1/clusters/" + clusterA + "/blocks"
		var b api.Block
		admin.must(http.StatusCreated, "POST", blocks, map[string]any{"reason": "incident 42", "node_pool": "spot"}).json(t, &b)
		assert.NotEmpty(t, b.ID)
		assert.NotEmpty(t, b.By)
		p = admin.must(http.StatusUnprocessableEntity, "POST", blocks, map[string]any{"reason": "x", "node_pool": "ghost"}).problem(t)
		assert.Equal(t, "node_pool", p["field"])

		var a api.Assignment
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil).json(t, &a)
		assert.Equal(t, "dev", a.Channel.Branch)
		assert.Equal(t, "https://git.example.org/fleet-config.git", a.Channel.RepositoryURL)
		assert.Equal(t, "10.0.0.0/16", a.ConfigItems["vpc_cidr"], "account config items reach the cluster")
		require.Len(t, a.NodePools, 2)
		assert.Equal(t, "pool.example.org", a.NodePools[1].ConfigItems["dns_zone"], "pool items override cluster items")
		assert.Equal(t, "example.org", a.NodePools[0].ConfigItems["dns_zone"])
		require.Len(t, a.Blocks, 1)
		assert.Equal(t, "incident 42", a.Blocks[0].Reason)

		admin.must(http.StatusNoContent, "DELETE", blocks+"/"+b.ID, nil)
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil).json(t, &a)
		assert.Empty(t, a.Blocks)
	})
}

func TestStatusReportsAndHistory(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		st := "/api/v1/clusters/" + clusterA + "/status"
		admin.must(http.StatusNotFound, "GET", st, nil)
		for _, phase := range []string{"rendering", "applying", "applying", "applying", "idle"} {
			agent.must(http.StatusOK, "PUT", st, map[string]any{"current_version": "abc#1", "next_version": "def#2", "phase": phase, "agent_version": "v1",
				"node_pools": []map[string]any{{"name": "default", "nodes_total": 3, "outdated": 1, "draining": 1}},
				"problems":   []map[string]any{{"type": "render", "title": "bad yaml", "detail": "kubernetes/a.yaml:3"}}})
		}
		var got api.ClusterStatus
		admin.must(http.StatusOK, "GET", st, nil).json(t, &got)
		assert.Equal(t, "idle", got.Phase)
		assert.Equal(t, "bad yaml", got.Problems[0].Title)
		assert.False(t, got.ReceivedAt.IsZero())
		var h api.List[api.StatusHistoryEntry]
		admin.must(http.StatusOK, "GET", st+"/history", nil).json(t, &h)
		var phases []string
		for _, e := range h.Items {
			phases = append(phases, e.Phase)
		}
		assert.Equal(t, []string{"idle", "applying", "rendering"}, phases, "heartbeats without a change add no history")

		p := agent.must(http.StatusUnprocessableEntity, "PUT", st, map[string]any{"phase": "sleeping"}).problem(t)
		assert.Equal(t, "phase", p["field"])

		var c api.Cluster
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA, nil).json(t, &c)
		require.NotNil(t, c.Status)
		assert.Equal(t, "abc#1", c.Status.CurrentVersion)
	})
}

// Regression: a block was found by its id alone, so another cluster's path
// could read or delete it and the wrong cluster's agents were told.
func TestBlocksAreOnlyReachedThroughTheirCluster(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	var b api.Block
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters/"+clusterB+"/blocks", map[string]any{"reason": "B only"}).json(t, &b)
	admin.must(http.StatusNotFound, "GET", "/api/v1/clusters/"+clusterA+"/blocks/"+b.ID, nil)
	admin.must(http.StatusNotFound, "DELETE", "/api/v1/clusters/"+clusterA+"/blocks/"+b.ID, nil)
	var a api.Assignment
	admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterB+"/assignment", nil).json(t, &a)
	assert.Len(t, a.Blocks, 1)
}

func TestWrongMethodGets405WithAllow(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	r := admin.must(http.StatusMethodNotAllowed, "PATCH", "/api/v1/tokens", `{}`)
	assert.Equal(t, "GET, POST", r.Header.Get("Allow"))
	r.problem(t)
	admin.must(http.StatusNotFound, "GET", "/api/v1/nothing-here", nil).problem(t)
}

// Regression: references were checked outside the write's transaction, so a
// cluster created while its account was deleted was left without one.
func TestConcurrentDeleteAndCreateLeaveNoOrphan(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		for i := range 15 {
			acc := path("aws:%012d", 500+i)
			admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", withField(account(), "id", acc))
			id := acc + ":eu-central-1:race"
			c := withField(withField(cluster(id, "dev"), "infrastructure_account", acc), "lifecycle_status", "requested")
			deleted, created := make(chan response, 1), make(chan response, 1)
			go func() { deleted <- admin.do("DELETE", "/api/v1/infrastructure-accounts/"+acc, nil) }()
			go func() { created <- admin.do("POST", "/api/v1/clusters", c) }()
			del, create := <-deleted, <-created
			accountGone := admin.do("GET", "/api/v1/infrastructure-accounts/"+acc, nil).Status == http.StatusNotFound
			clusterThere := admin.do("GET", "/api/v1/clusters/"+id, nil).Status == http.StatusOK
			assert.False(t, accountGone && clusterThere, "round %d: a cluster without its account (%d, %d)", i, del.Status, create.Status)
			if clusterThere {
				admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+id+"/assignment", nil)
			}
		}
	})
}

// Regression: JSON counts 3.0 as an integer, so the API must accept it
// wherever it takes an integer.
func TestWholeNumbersAreIntegers(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	var a api.InfrastructureAccount
	admin.must(http.StatusCreated, "POST", "/api/v1/infrastructure-accounts", withField(account(), "criticality", 3.0)).json(t, &a)
	assert.Equal(t, 3, a.Criticality)
	admin.must(http.StatusOK, "PATCH", "/api/v1/infrastructure-accounts/"+accountID, `{"criticality":2e0}`)
	p := admin.must(http.StatusBadRequest, "PATCH", "/api/v1/infrastructure-accounts/"+accountID, `{"criticality":2.5}`).problem(t)
	assert.Equal(t, "criticality", p["field"])
}

func TestBlockedNodePoolIsNotDeleted(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	pool := "/api/v1/clusters/" + clusterA + "/node-pools/default"
	var b api.Block
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters/"+clusterA+"/blocks", map[string]any{"reason": "keep", "node_pool": "default"}).json(t, &b)
	p := admin.must(http.StatusConflict, "DELETE", pool, nil).problem(t)
	assert.Contains(t, p["detail"], "lift its blocks")
	admin.must(http.StatusNoContent, "DELETE", "/api/v1/clusters/"+clusterA+"/blocks/"+b.ID, nil)
	admin.must(http.StatusNoContent, "DELETE", pool, nil)
}

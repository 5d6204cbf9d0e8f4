package central_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/caravan-gitops/caravan/central/centraltest"
)

// Regression: on PostgreSQL a NUL character or invalid UTF-8 in an id, a
// filter, a continue token or a JSON string was a 500 ("invalid byte
// sequence for encoding UTF8"); both databases now refuse it at the edge.
func TestNulAndInvalidUTF8AreRefusedNamingTheField(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		for _, tc := range []struct {
			method, path string
			body         any
			status       int
			field        string
		}{
			{"GET", "/api/v1/clusters/aws:1%00", nil, 404, "id"},
			{"GET", "/api/v1/clusters/aws:1%FF", nil, 404, "id"},
			{"PATCH", "/api/v1/channels/d%00ev", `{"branch":"x"}`, 404, "name"},
			{"DELETE", "/api/v1/tokens/%C3", nil, 404, "token_id"},
			{"GET", "/api/v1/clusters/" + clusterA + "/node-pools/%00", nil, 404, "name"},
			{"GET", "/api/v1/clusters?channel=%00", nil, 400, "channel"},
			{"GET", "/api/v1/clusters?environment=%FE%FF", nil, 400, "environment"},
			{"GET", "/api/v1/audit?actor=a%00", nil, 400, "actor"},
			{"GET", "/api/v1/clusters?continue=AA", nil, 400, "continue"}, // a NUL once decoded
			{"GET", "/api/v1/channels?continue=_w", nil, 400, "continue"}, // 0xFF once decoded
			{"GET", "/api/v1/freezes?continue=zu4", nil, 400, "continue"}, // 0xCE 0xEE once decoded
			{"POST", "/api/v1/channels", `{"name":"n\u0000","branch":"b"}`, 400, "name"},
			{"POST", "/api/v1/channels", "{\"name\":\"n\xff\",\"branch\":\"b\"}", 400, "name"},
			{"PATCH", "/api/v1/clusters/" + clusterA, `{"config_items":{"zone":"a\u0000"}}`, 400, "config_items.zone"},
			{"PATCH", "/api/v1/clusters/" + clusterA, `{"node_pools":[{"name":"default"},{"name":"x\u0000"}]}`, 400, "node_pools[1].name"},
			{"POST", "/api/v1/tokens", `{"name":"t\u0000","role":"reader"}`, 400, "name"},
			{"PUT", "/api/v1/clusters/" + clusterA + "/status", `{"phase":"idle","current_version":"v\u0000"}`, 400, "current_version"},
		} {
			r := admin.do(tc.method, tc.path, tc.body)
			if !assert.Equal(t, tc.status, r.Status, "%s %s: %s", tc.method, tc.path, r.Body) {
				continue
			}
			assert.Equal(t, tc.field, r.problem(t)["field"], "%s %s", tc.method, tc.path)
		}
		admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA, nil)
	})
}

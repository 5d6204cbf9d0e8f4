package central_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// clusterProd follows alpha in the environment production; seed's clusters
// follow dev in test.
const clusterProd = "aws:123456789012:eu-central-1:kube-prod"

func seedProd(t *testing.T, admin *client) {
	t.Helper()
	c := cluster(clusterProd, "alpha")
	c["environment"] = "production"
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters", c)
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func createFreeze(t *testing.T, admin *client, body map[string]any) api.Freeze {
	t.Helper()
	res := admin.must(http.StatusCreated, "POST", "/api/v1/freezes", body)
	var f api.Freeze
	res.json(t, &f)
	require.NotEmpty(t, f.ID)
	assert.Equal(t, "/api/v1/freezes/"+f.ID, res.Header.Get("Location"))
	require.NotEmpty(t, res.Header.Get("ETag"))
	return f
}

func TestFreezesThroughTheAPI(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		reader := newClient(t, srv, srv.Token(t, api.RoleReader, ""))
		seed(t, admin)
		before := time.Now().UTC()
		until := before.Add(24 * time.Hour).Truncate(time.Second)

		first := createFreeze(t, admin, map[string]any{"reason": "cyber week", "channel": "dev", "until": rfc3339(until)})
		assert.Equal(t, "cyber week", first.Reason)
		assert.Equal(t, "dev", first.Channel)
		assert.False(t, first.All)
		assert.True(t, until.Equal(first.Until))
		assert.False(t, first.Since.Before(before.Truncate(time.Millisecond)), "since defaults to now")
		assert.False(t, first.Since.After(time.Now()))
		assert.True(t, first.CreatedAt.Equal(first.Since))
		assert.NotEmpty(t, first.By, "the token's name")
		assert.Regexp(t, `^[0-9a-f]{16}$`, first.ID)

		start := before.Add(time.Hour).Truncate(time.Second)
		scheduled := createFreeze(t, admin, map[string]any{
			"reason": "release party", "environment": "production", "since": rfc3339(start), "until": rfc3339(start.Add(time.Hour)),
			"id": "ignored", "by": "someone else", "created_at": "2001-01-01T00:00:00Z",
		})
		assert.True(t, start.Equal(scheduled.Since), "a freeze may start later")
		assert.NotEqual(t, "ignored", scheduled.ID, "the registry sets the id")
		assert.Equal(t, first.By, scheduled.By, "and who made it")
		fleet := createFreeze(t, admin, map[string]any{"reason": "all hands", "all": true, "until": rfc3339(until)})

		var list api.List[api.Freeze]
		reader.must(http.StatusOK, "GET", "/api/v1/freezes", nil).json(t, &list)
		assert.Equal(t, []string{fleet.ID, scheduled.ID, first.ID}, freezeIDs(list.Items), "newest first; readers may read")
		reader.must(http.StatusOK, "GET", "/api/v1/freezes?active=true", nil).json(t, &list)
		assert.Equal(t, []string{fleet.ID, first.ID}, freezeIDs(list.Items), "active: those in force now")
		reader.must(http.StatusOK, "GET", "/api/v1/freezes?limit=2", nil).json(t, &list)
		assert.Equal(t, []string{fleet.ID, scheduled.ID}, freezeIDs(list.Items))
		require.NotEmpty(t, list.Next)
		next := list.Next
		list = api.List[api.Freeze]{}
		reader.must(http.StatusOK, "GET", "/api/v1/freezes?limit=2&continue="+next, nil).json(t, &list)
		assert.Equal(t, []string{first.ID}, freezeIDs(list.Items), "the next page")
		assert.Empty(t, list.Next)
		p := reader.must(http.StatusBadRequest, "GET", "/api/v1/freezes?active=yes", nil).problem(t)
		assert.Equal(t, "active", p["field"])

		var got api.Freeze
		res := reader.must(http.StatusOK, "GET", "/api/v1/freezes/"+first.ID, nil)
		res.json(t, &got)
		assert.Equal(t, first, got)
		reader.must(http.StatusNotModified, "GET", "/api/v1/freezes/"+first.ID, nil, "If-None-Match", res.Header.Get("ETag"))
		admin.must(http.StatusNotFound, "GET", "/api/v1/freezes/0123456789abcdef", nil)

		reader.must(http.StatusForbidden, "POST", "/api/v1/freezes", map[string]any{"reason": "r", "all": true, "until": rfc3339(until)})
		reader.must(http.StatusForbidden, "DELETE", "/api/v1/freezes/"+first.ID, nil)
		admin.must(http.StatusCreated, "POST", "/api/v1/channels", map[string]any{"name": "nightly", "branch": "nightly", "position": 9})
		nightly := createFreeze(t, admin, map[string]any{"reason": "r", "channel": "nightly", "until": rfc3339(until)})
		p = admin.must(http.StatusConflict, "DELETE", "/api/v1/channels/nightly", nil).problem(t)
		assert.Contains(t, p["detail"], "freezes of the channel", "a frozen channel is not deleted")
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+nightly.ID, nil)
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/channels/nightly", nil)

		admin.must(http.StatusPreconditionFailed, "DELETE", "/api/v1/freezes/"+first.ID, nil, "If-Match", `"0123"`)
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+first.ID, nil, "If-Match", res.Header.Get("ETag"))
		admin.must(http.StatusNotFound, "GET", "/api/v1/freezes/"+first.ID, nil)
		admin.must(http.StatusNotFound, "DELETE", "/api/v1/freezes/"+first.ID, nil)

		var audit api.List[api.AuditEntry]
		admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=freeze&resource_id="+first.ID, nil).json(t, &audit)
		require.Len(t, audit.Items, 2, "every write of a freeze is audited")
		assert.Equal(t, "delete", audit.Items[0].Action)
		assert.Equal(t, "create", audit.Items[1].Action)
		assert.Equal(t, first.By, audit.Items[1].Actor)
		after, err := json.Marshal(audit.Items[1].After)
		require.NoError(t, err)
		assert.Contains(t, string(after), `"reason":"cyber week"`)
		before2, err := json.Marshal(audit.Items[0].Before)
		require.NoError(t, err)
		assert.Contains(t, string(before2), `"channel":"dev"`, "a delete keeps what was deleted")
	})
}

func freezeIDs(fs []api.Freeze) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

func TestBadFreezesGetAProblemNamingTheField(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	now := time.Now().UTC()
	until := rfc3339(now.Add(time.Hour))
	cases := []struct {
		name   string
		body   any
		status int
		field  string
	}{
		{"no reason", map[string]any{"reason": " ", "all": true, "until": until}, 422, "reason"},
		{"long reason", map[string]any{"reason": strings.Repeat("x", 1025), "all": true, "until": until}, 422, "reason"},
		{"no scope", map[string]any{"reason": "r", "until": until}, 422, "all"},
		{"fleet and channel", map[string]any{"reason": "r", "all": true, "channel": "dev", "until": until}, 422, "channel"},
		{"unknown channel", map[string]any{"reason": "r", "channel": "nightly", "until": until}, 422, "channel"},
		{"bad channel", map[string]any{"reason": "r", "channel": "Dev!", "until": until}, 422, "channel"},
		{"bad environment", map[string]any{"reason": "r", "environment": "Prod", "until": until}, 422, "environment"},
		{"no end", map[string]any{"reason": "r", "all": true}, 422, "until"},
		{"ended", map[string]any{"reason": "r", "all": true, "since": rfc3339(now.Add(-2 * time.Hour)), "until": rfc3339(now.Add(-time.Hour))}, 422, "until"},
		{"end before start", map[string]any{"reason": "r", "all": true, "since": rfc3339(now.Add(2 * time.Hour)), "until": until}, 422, "until"},
		{"longer than a year", map[string]any{"reason": "r", "all": true, "until": rfc3339(now.AddDate(1, 0, 1))}, 422, "until"},
		{"not a time", map[string]any{"reason": "r", "all": true, "until": "tomorrow"}, 400, "(body)"},
		{"unknown field", map[string]any{"reason": "r", "all": true, "until": until, "cluster": "x"}, 400, "cluster"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := admin.must(tc.status, "POST", "/api/v1/freezes", tc.body).problem(t)
			assert.Equal(t, tc.field, p["field"], "%v", p)
		})
	}
	var list api.List[api.Freeze]
	admin.must(http.StatusOK, "GET", "/api/v1/freezes", nil).json(t, &list)
	assert.Empty(t, list.Items, "nothing of a refused freeze is stored")
}

func TestBadWindowsAreRefusedNamingTheItem(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		bad := "Mon-Fri 08:00-17:00 UTC; Mnn 00:00-06:00 UTC"
		acc := account()
		acc["config_items"] = map[string]string{"update_windows": bad}
		p := admin.must(http.StatusUnprocessableEntity, "POST", "/api/v1/infrastructure-accounts", acc).problem(t)
		assert.Equal(t, "config_items.update_windows", p["field"])
		assert.Contains(t, p["detail"], `position 26: unknown day "Mnn"`)

		seed(t, admin)
		p = admin.must(http.StatusUnprocessableEntity, "PATCH", "/api/v1/infrastructure-accounts/"+accountID,
			map[string]any{"config_items": map[string]string{"node_update_windows": "daily 25:00-26:00 UTC"}}).problem(t)
		assert.Equal(t, "config_items.node_update_windows", p["field"])

		p = admin.must(http.StatusUnprocessableEntity, "PATCH", "/api/v1/clusters/"+clusterA,
			map[string]any{"config_items": map[string]string{"update_windows": bad}}).problem(t)
		assert.Equal(t, "config_items.update_windows", p["field"])
		assert.Contains(t, p["detail"], "position 26")

		p = admin.must(http.StatusUnprocessableEntity, "PATCH", "/api/v1/clusters/"+clusterA+"/node-pools/default",
			map[string]any{"config_items": map[string]string{"node_update_windows": "Sat 00:00-06:00 Mars/Olympus"}}).problem(t)
		assert.Equal(t, "config_items.node_update_windows", p["field"])

		c := cluster("aws:123456789012:eu-central-1:kube-w", "dev")
		c["node_pools"].([]map[string]any)[0]["config_items"] = map[string]string{"update_windows": "Mon 8:00-17:00 UTC"}
		p = admin.must(http.StatusUnprocessableEntity, "POST", "/api/v1/clusters", c).problem(t)
		assert.Equal(t, "node_pools[0].config_items.update_windows", p["field"])

		admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA,
			map[string]any{"config_items": map[string]string{"update_windows": "Mon-Fri 08:00-17:00 Europe/Berlin; Sat 00:00-06:00 UTC"}})
		admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA+"/node-pools/default",
			map[string]any{"config_items": map[string]string{"node_update_windows": "daily 22:00-04:00 America/New_York"}})
	})
}

// waitingPolls reads the server's gauge of parked long-polls.
func waitingPolls(t *testing.T, srv *centraltest.Server) int {
	t.Helper()
	res, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "caravan_central_long_polls_waiting "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return int(n)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatal("the server reports no caravan_central_long_polls_waiting")
	return 0
}

// awaitParked waits until n long-polls wait in the server.
func awaitParked(t *testing.T, srv *centraltest.Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return waitingPolls(t, srv) == n }, 10*time.Second, 10*time.Millisecond,
		"%d long-polls never waited in the server", n)
}

func TestFreezesWakeTheLongPollsOfTheClustersTheyCover(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		seedProd(t, admin)
		agentA := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		agentProd := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterProd))
		until := rfc3339(time.Now().Add(time.Hour))

		// round starts a poll of each cluster, makes change, and reports
		// which polls it answered with a new assignment.
		round := func(name string, change func()) (woken map[string]bool) {
			t.Helper()
			etags := map[string]string{clusterA: assignmentETag(t, agentA, clusterA), clusterProd: assignmentETag(t, agentProd, clusterProd)}
			polls := map[string]<-chan pollResult{
				clusterA:    poll(agentA, clusterA, etags[clusterA], "2s"),
				clusterProd: poll(agentProd, clusterProd, etags[clusterProd], "2s"),
			}
			awaitParked(t, srv, 2)
			change()
			woken = map[string]bool{}
			for id, p := range polls {
				r := <-p
				switch r.res.Status {
				case http.StatusOK:
					woken[id] = true
					assert.Less(t, r.elapsed, 1500*time.Millisecond, "%s: the change answers the poll of %s at once", name, id)
					assert.NotEqual(t, etags[id], r.res.Header.Get("ETag"))
				case http.StatusNotModified:
					woken[id] = false
				default:
					t.Fatalf("%s: poll of %s answered %d: %s", name, id, r.res.Status, r.res.Body)
				}
			}
			awaitParked(t, srv, 0)
			return woken
		}

		var channelFreeze, envFreeze, fleetFreeze api.Freeze
		assert.Equal(t, map[string]bool{clusterA: true, clusterProd: false}, round("channel", func() {
			channelFreeze = createFreeze(t, admin, map[string]any{"reason": "dev frozen", "channel": "dev", "until": until})
		}), "a channel's freeze wakes only that channel's clusters")
		assert.Equal(t, map[string]bool{clusterA: false, clusterProd: true}, round("environment", func() {
			envFreeze = createFreeze(t, admin, map[string]any{"reason": "prod frozen", "environment": "production", "until": until})
		}), "an environment's freeze wakes only that environment's clusters")
		assert.Equal(t, map[string]bool{clusterA: false, clusterProd: false}, round("both", func() {
			createFreeze(t, admin, map[string]any{"reason": "nothing", "channel": "alpha", "environment": "test", "until": until})
		}), "a freeze of a channel and an environment that no cluster matches wakes none")
		assert.Equal(t, map[string]bool{clusterA: true, clusterProd: true}, round("fleet", func() {
			fleetFreeze = createFreeze(t, admin, map[string]any{"reason": "everything", "all": true, "until": until})
		}), "a fleet-wide freeze wakes every cluster")
		assert.Equal(t, map[string]bool{clusterA: true, clusterProd: false}, round("delete", func() {
			admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+channelFreeze.ID, nil)
		}), "deleting a freeze wakes the clusters it covered")

		var a api.Assignment
		agentProd.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterProd+"/assignment", nil).json(t, &a)
		assert.Equal(t, []string{envFreeze.ID, fleetFreeze.ID}, sortedFreezeIDs(a.Freezes), "the assignment holds the covering freezes")
		agentA.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil).json(t, &a)
		assert.Equal(t, []string{fleetFreeze.ID}, freezeIDs(a.Freezes))
		assert.Equal(t, "everything", a.Freezes[0].Reason)
	})
}

func sortedFreezeIDs(fs []api.Freeze) []string {
	ids := freezeIDs(fs)
	if len(ids) == 2 && ids[0] > ids[1] {
		ids[0], ids[1] = ids[1], ids[0]
	}
	return ids
}

func TestScheduledFreezeJoinsAndLeavesTheAssignmentOnTime(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agent := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		start := time.Now().Add(1500 * time.Millisecond)
		end := start.Add(1500 * time.Millisecond)

		etag := assignmentETag(t, agent, clusterA)
		waiting := poll(agent, clusterA, etag, "20s")
		awaitParked(t, srv, 1)
		f := createFreeze(t, admin, map[string]any{"reason": "short", "all": true, "since": rfc3339(start), "until": rfc3339(end)})
		assert.Equal(t, etag, assignmentETag(t, agent, clusterA), "a freeze still to come is not in the assignment")
		r := <-waiting
		require.Equal(t, http.StatusOK, r.res.Status)
		assert.False(t, time.Now().Before(start), "the waiting poll answers when the freeze starts")
		assert.Less(t, time.Since(start), 3*time.Second, "and not at the end of its wait")
		var a api.Assignment
		r.res.json(t, &a)
		require.Len(t, a.Freezes, 1)
		assert.Equal(t, f.ID, a.Freezes[0].ID)

		r = <-poll(agent, clusterA, r.res.Header.Get("ETag"), "20s")
		require.Equal(t, http.StatusOK, r.res.Status)
		assert.False(t, time.Now().Before(end), "the poll answers when the freeze ends")
		assert.Less(t, time.Since(end), 3*time.Second)
		a = api.Assignment{}
		r.res.json(t, &a)
		assert.NotNil(t, a.Freezes)
		assert.Empty(t, a.Freezes, "an ended freeze leaves the assignment")

		var list api.List[api.Freeze]
		admin.must(http.StatusOK, "GET", "/api/v1/freezes", nil).json(t, &list)
		assert.Equal(t, []string{f.ID}, freezeIDs(list.Items), "an ended freeze is still listed")
		admin.must(http.StatusOK, "GET", "/api/v1/freezes?active=true", nil).json(t, &list)
		assert.Empty(t, list.Items, "but not as active")
		admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+f.ID, nil)
	})
}

func TestAssignmentAnswersCarryTheRegistryTime(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	check := func(name string, res response, notBefore time.Time) {
		t.Helper()
		raw := res.Header.Get(api.RegistryTimeHeader)
		require.NotEmpty(t, raw, "%s carries %s", name, api.RegistryTimeHeader)
		at, err := time.Parse(time.RFC3339Nano, raw)
		require.NoError(t, err, "%s: %q", name, raw)
		assert.False(t, at.Before(notBefore.Add(-time.Millisecond)), "%s: %s is the time of the answer, not earlier", name, raw)
		assert.False(t, at.After(time.Now()), "%s: %s", name, raw)
		assert.True(t, strings.HasSuffix(raw, "Z"), "in UTC: %s", raw)
	}
	start := time.Now()
	res := admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil)
	check("200", res, start)
	etag := res.Header.Get("ETag")
	start = time.Now()
	check("304", admin.must(http.StatusNotModified, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil, "If-None-Match", etag), start)

	waitStart := time.Now()
	r := <-poll(admin, clusterA, etag, "1s")
	require.Equal(t, http.StatusNotModified, r.res.Status)
	check("304 after a wait", r.res, waitStart.Add(time.Second))

	waiting := poll(admin, clusterA, etag, "20s")
	awaitParked(t, srv, 1)
	changed := time.Now()
	admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"x":"y"}}`)
	r = <-waiting
	require.Equal(t, http.StatusOK, r.res.Status)
	check("200 after a wait", r.res, changed)
	assert.Empty(t, admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA, nil).Header.Get(api.RegistryTimeHeader),
		"only assignments carry it")
}

// dailyWindow is a window of an hour that opens in offset from now, to the
// minute, and its next opening.
func dailyWindow(offset time.Duration) (string, time.Time) {
	open := time.Now().UTC().Add(offset).Truncate(time.Minute)
	end := open.Add(time.Hour)
	return "daily " + open.Format("15:04") + "-" + end.Format("15:04") + " UTC", open
}

func TestClustersShowTheirSchedule(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		closed, opens := dailyWindow(2 * time.Hour)
		admin.must(http.StatusOK, "PATCH", "/api/v1/infrastructure-accounts/"+accountID,
			map[string]any{"config_items": map[string]string{"update_windows": closed, "node_update_windows": "daily 01:00-05:00 UTC"}})
		admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA,
			map[string]any{"config_items": map[string]string{"update_windows": "daily 00:00-24:00 UTC"}})

		get := func(id string) api.Cluster {
			t.Helper()
			var c api.Cluster
			admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+id, nil).json(t, &c)
			require.NotNil(t, c.Schedule, "a cluster is answered with its schedule")
			return c
		}
		a, b := get(clusterA), get(clusterB)
		assert.Equal(t, "daily 00:00-24:00 UTC", a.Schedule.UpdateWindows, "the cluster's window over its account's")
		assert.Equal(t, "daily 01:00-05:00 UTC", a.Schedule.NodeUpdateWindows, "the account's, inherited")
		assert.True(t, a.Schedule.Open)
		assert.Nil(t, a.Schedule.NextOpening)
		assert.Empty(t, a.Schedule.Freezes)
		assert.Equal(t, closed, b.Schedule.UpdateWindows, "the account's window")
		assert.False(t, b.Schedule.Open)
		require.NotNil(t, b.Schedule.NextOpening)
		assert.True(t, opens.Equal(*b.Schedule.NextOpening), "opens at %s, got %s", opens, b.Schedule.NextOpening)
		assert.Empty(t, b.Schedule.Error)

		until := time.Now().UTC().Add(30 * time.Minute).Truncate(time.Second)
		f := createFreeze(t, admin, map[string]any{"reason": "hold", "channel": "dev", "until": rfc3339(until)})
		later := createFreeze(t, admin, map[string]any{"reason": "later", "environment": "production",
			"since": rfc3339(until.Add(time.Hour)), "until": rfc3339(until.Add(2 * time.Hour))})
		a = get(clusterA)
		assert.False(t, a.Schedule.Open, "frozen")
		require.NotNil(t, a.Schedule.NextOpening)
		assert.True(t, until.Equal(*a.Schedule.NextOpening), "opens when the freeze ends")
		assert.Equal(t, []string{f.ID}, freezeIDs(a.Schedule.Freezes), "the freezes that cover it, not %s", later.ID)

		var list api.List[api.Cluster]
		admin.must(http.StatusOK, "GET", "/api/v1/clusters", nil).json(t, &list)
		require.Len(t, list.Items, 2)
		for _, c := range list.Items {
			require.NotNil(t, c.Schedule, "listed clusters carry their schedule: %s", c.ID)
			assert.False(t, c.Schedule.Open, c.ID)
			assert.Len(t, c.Schedule.Freezes, 1, c.ID)
		}
		assert.True(t, until.Equal(*list.Items[0].Schedule.NextOpening))
		assert.True(t, opens.Equal(*list.Items[1].Schedule.NextOpening), "frozen until %s, then the window opens at %s", until, opens)

		// The schedule is read-only: a GET's answer PUT back is taken, and
		// neither it nor a made-up schedule is stored.
		res := admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterB, nil)
		var c map[string]any
		res.json(t, &c)
		c["schedule"] = map[string]any{"open": true, "update_windows": "made up", "node_update_windows": "", "freezes": []any{}}
		var put api.Cluster
		admin.must(http.StatusOK, "PUT", "/api/v1/clusters/"+clusterB, c, "If-Match", res.Header.Get("ETag")).json(t, &put)
		assert.Equal(t, closed, put.Schedule.UpdateWindows, "the answer has the computed schedule")
		var audit api.List[api.AuditEntry]
		admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=cluster&resource_id="+clusterB, nil).json(t, &audit)
		after, err := json.Marshal(audit.Items[0].After)
		require.NoError(t, err)
		assert.NotContains(t, string(after), "schedule")
		assert.NotContains(t, string(after), "made up")
	})
}

func TestPromotionIntoAFrozenChannel(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testPromotionIntoAFrozenChannel(t, startChannelFleet(t)) })
	t.Run("postgres", func(t *testing.T) {
		testPromotionIntoAFrozenChannel(t, startChannelFleet(t, centraltest.WithDatabase(pg.NewDatabase(t))))
	})
}

func testPromotionIntoAFrozenChannel(t *testing.T, f *channelFleet) {
	now := time.Now().UTC()
	f.ran(clusterA, f.dns, now.Add(-time.Hour))
	f.ran(clusterB, f.dns, now.Add(-time.Hour))
	f.ran(clusterA, f.dns, now) // heartbeats: both still report
	f.ran(clusterB, f.dns, now)
	gate := func() api.PromotionGate {
		var g api.PromotionGate
		f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/promotion?to=alpha", nil).json(t, &g)
		return g
	}
	g := gate()
	require.True(t, g.Met, "%v", g.Reasons)
	assert.NotNil(t, g.Freezes)
	assert.Empty(t, g.Freezes)

	until := now.Add(2 * time.Hour).Truncate(time.Second)
	for _, body := range []map[string]any{
		{"reason": "source frozen", "channel": "dev", "until": rfc3339(until)},
		{"reason": "production only", "environment": "production", "until": rfc3339(until)},
		{"reason": "alpha production only", "channel": "alpha", "environment": "production", "until": rfc3339(until)},
		{"reason": "later", "channel": "alpha", "since": rfc3339(until.Add(-time.Hour)), "until": rfc3339(until)},
	} {
		createFreeze(t, f.admin, body)
	}
	g = gate()
	assert.True(t, g.Met, "freezes of other channels, of environments only, or still to come hold no promotion into alpha: %v", g.Reasons)
	assert.Empty(t, g.Freezes)

	frozen := createFreeze(t, f.admin, map[string]any{"reason": "cyber week", "channel": "alpha", "until": rfc3339(until)})
	g = gate()
	assert.False(t, g.Met)
	require.Len(t, g.Freezes, 1)
	assert.Equal(t, frozen.ID, g.Freezes[0].ID)
	want := "channel alpha is frozen until " + until.Format(time.RFC3339) + " by " + frozen.By + ": cyber week"
	assert.Equal(t, []string{want}, g.Reasons)

	req := map[string]any{"from": "dev", "commit": f.dns, "previous_commit": f.first}
	p := f.admin.must(http.StatusConflict, "POST", "/api/v1/channels/alpha/promotions", req).problem(t)
	assert.Equal(t, api.ProblemChannelFrozen, p["type"])
	assert.Equal(t, "override_reason", p["field"])
	assert.Contains(t, p["detail"], want)
	assert.Contains(t, p["detail"], frozen.ID, "the problem names the freeze")
	var audit api.List[api.AuditEntry]
	f.admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=channel&resource_id=alpha", nil).json(t, &audit)
	for _, e := range audit.Items {
		assert.NotEqual(t, "promote", e.Action, "a refused promotion is not recorded")
	}

	req["override_reason"] = "security fix, approved by the owners"
	var rec api.Promotion
	f.admin.must(http.StatusCreated, "POST", "/api/v1/channels/alpha/promotions", req).json(t, &rec)
	assert.False(t, rec.GateMet)
	assert.Equal(t, []string{want}, rec.GateReasons, "the freeze is recorded as the gate's reason")
	assert.Equal(t, "security fix, approved by the owners", rec.OverrideReason)
	f.admin.must(http.StatusOK, "GET", "/api/v1/audit?resource_type=channel&resource_id=alpha", nil).json(t, &audit)
	require.NotEmpty(t, audit.Items)
	assert.Equal(t, "promote", audit.Items[0].Action)

	fleet := createFreeze(t, f.admin, map[string]any{"reason": "all hands", "all": true, "until": rfc3339(until)})
	g = gate()
	assert.Len(t, g.Freezes, 2, "a fleet-wide freeze holds every channel")
	assert.Contains(t, g.Reasons, "channel alpha is frozen (the whole fleet is) until "+until.Format(time.RFC3339)+" by "+fleet.By+": all hands")
	f.admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+frozen.ID, nil)
	f.admin.must(http.StatusNoContent, "DELETE", "/api/v1/freezes/"+fleet.ID, nil)
	g = gate()
	assert.True(t, g.Met, "lifted: %v", g.Reasons)
	assert.Empty(t, g.Freezes)
}

func TestRolloutAndGateSayWhichClustersWaitForTheirWindow(t *testing.T) {
	f := startChannelFleet(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	opens := now.Add(3 * time.Hour).Truncate(time.Second)
	f.ran(clusterA, f.dns, now.Add(-time.Hour))
	waiting := api.ClusterStatus{CurrentVersion: f.first + "#h1", NextVersion: f.dns + "#h2", Phase: api.PhaseWaitingForWindow,
		NextWindow: &opens, Heartbeat: now, ReceivedAt: now, NodePools: []api.NodePoolProgress{}, Problems: []api.StatusProblem{}}
	agentB := newClient(t, f.srv, f.srv.Token(t, api.RoleAgent, clusterB))
	agentB.must(http.StatusOK, "PUT", "/api/v1/clusters/"+clusterB+"/status", waiting)

	var rollout api.ChannelRollout
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/rollout", nil).json(t, &rollout)
	require.Len(t, rollout.Clusters, 2)
	assert.Nil(t, rollout.Clusters[0].NextWindow, "kube-a does not wait")
	assert.Equal(t, api.PhaseWaitingForWindow, rollout.Clusters[1].Phase)
	require.NotNil(t, rollout.Clusters[1].NextWindow)
	assert.True(t, opens.Equal(*rollout.Clusters[1].NextWindow))

	var g api.PromotionGate
	f.admin.must(http.StatusOK, "GET", "/api/v1/channels/dev/promotion?to=alpha", nil).json(t, &g)
	assert.False(t, g.Met)
	require.Len(t, g.Evidence, 2)
	assert.Equal(t, "runs "+f.first[:7]+", not "+f.dns[:7]+"; waits for its update window, which opens at "+opens.Format(time.RFC3339), g.Evidence[1].Reason)
	assert.Contains(t, g.Reasons, clusterB+": "+g.Evidence[1].Reason)
}

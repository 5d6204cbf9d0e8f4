package central_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

type pollResult struct {
	res     response
	elapsed time.Duration
}

// poll starts a long-poll in the background.
func poll(c *client, cluster, etag, wait string) <-chan pollResult {
	out := make(chan pollResult, 1)
	go func() {
		start := time.Now()
		r := c.do("GET", "/api/v1/clusters/"+cluster+"/assignment?wait="+wait, nil, "If-None-Match", etag)
		out <- pollResult{r, time.Since(start)}
	}()
	return out
}

// answered waits for a long-poll's 200 answer; the test fails, saying
// what should have answered it, when none comes within 10 seconds.
func answered(t *testing.T, waiting <-chan pollResult, what string) response {
	t.Helper()
	select {
	case r := <-waiting:
		require.Equal(t, http.StatusOK, r.res.Status, "%s", r.res.Body)
		return r.res
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not answer the waiting long-poll", what)
		return response{}
	}
}

func assignmentETag(t *testing.T, c *client, cluster string) string {
	t.Helper()
	etag := c.must(http.StatusOK, "GET", "/api/v1/clusters/"+cluster+"/assignment", nil).Header.Get("ETag")
	require.NotEmpty(t, etag)
	return etag
}

func TestLongPollAnswersAChangeWithinASecond(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		agentA := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterA))
		agentB := newClient(t, srv, srv.Token(t, api.RoleAgent, clusterB))
		etagA, etagB := assignmentETag(t, agentA, clusterA), assignmentETag(t, agentB, clusterB)

		agentA.must(http.StatusNotModified, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil, "If-None-Match", etagA)
		waitingA := poll(agentA, clusterA, etagA, "30s")
		waitingB := poll(agentB, clusterB, etagB, "3s")
		time.Sleep(300 * time.Millisecond)
		changed := time.Now()
		admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"new_item":"on"}}`)
		select {
		case r := <-waitingA:
			assert.Equal(t, http.StatusOK, r.res.Status)
			assert.Less(t, time.Since(changed), time.Second, "the waiting poll answers within 1s of the change")
			assert.NotEqual(t, etagA, r.res.Header.Get("ETag"))
			var a api.Assignment
			r.res.json(t, &a)
			assert.Equal(t, "on", a.ConfigItems["new_item"])
		case <-time.After(5 * time.Second):
			t.Fatal("the long-poll did not answer the change")
		}
		r := <-waitingB
		assert.Equal(t, http.StatusNotModified, r.res.Status, "another cluster's change does not answer this poll")
		assert.GreaterOrEqual(t, r.elapsed, 3*time.Second-50*time.Millisecond, "a poll without a change waits its full time")
		assert.Empty(t, r.res.Body)
	})
}

func TestLongPollWakesForAccountChannelAndBlockChanges(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	changes := []string{
		`PATCH /api/v1/infrastructure-accounts/` + accountID + ` {"config_items":{"vpc_cidr":"10.1.0.0/16"}}`,
		`PATCH /api/v1/channels/dev {"branch":"develop"}`,
		`POST /api/v1/clusters/` + clusterA + `/blocks {"reason":"freeze"}`,
		`PATCH /api/v1/clusters/` + clusterA + `/node-pools/default {"max_size":9}`,
	}
	for _, change := range changes {
		etag := assignmentETag(t, admin, clusterA)
		waiting := poll(admin, clusterA, etag, "20s")
		time.Sleep(100 * time.Millisecond)
		var method, rest string
		method, rest, _ = strings.Cut(change, " ")
		p, body, _ := strings.Cut(rest, " ")
		status := http.StatusOK
		if method == "POST" {
			status = http.StatusCreated
		}
		admin.must(status, method, p, body)
		select {
		case r := <-waiting:
			assert.Equal(t, http.StatusOK, r.res.Status, change)
		case <-time.After(5 * time.Second):
			t.Fatalf("no answer after %s", change)
		}
	}
}

func TestBlockRunningOutChangesTheAssignment(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	until := time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	admin.must(http.StatusCreated, "POST", "/api/v1/clusters/"+clusterA+"/blocks", map[string]any{"reason": "short", "until": until})
	var a api.Assignment
	res := admin.must(http.StatusOK, "GET", "/api/v1/clusters/"+clusterA+"/assignment", nil)
	res.json(t, &a)
	require.Len(t, a.Blocks, 1)
	r := <-poll(admin, clusterA, res.Header.Get("ETag"), "10s")
	require.Equal(t, http.StatusOK, r.res.Status)
	assert.Less(t, r.elapsed, 5*time.Second, "the poll answers when the block runs out, not at the end of its wait")
	a = api.Assignment{}
	r.res.json(t, &a)
	assert.Empty(t, a.Blocks)
}

func TestLongPollAcrossTwoPostgresReplicas(t *testing.T) {
	db := pg.NewDatabase(t)
	replicaA := centraltest.Start(t, centraltest.WithDatabase(db))
	replicaB := centraltest.Start(t, centraltest.WithDatabase(db))
	adminB := newClient(t, replicaB, replicaB.AdminToken)
	seed(t, adminB)
	agentOnA := newClient(t, replicaA, replicaA.Token(t, api.RoleAgent, clusterA))
	etag := assignmentETag(t, agentOnA, clusterA)
	waiting := poll(agentOnA, clusterA, etag, "30s")
	time.Sleep(300 * time.Millisecond)
	changed := time.Now()
	adminB.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"from_b":"yes"}}`)
	select {
	case r := <-waiting:
		require.Equal(t, http.StatusOK, r.res.Status)
		assert.Less(t, time.Since(changed), time.Second, "a write on replica B wakes a poll on replica A within 1s")
		var a api.Assignment
		r.res.json(t, &a)
		assert.Equal(t, "yes", a.ConfigItems["from_b"])
	case <-time.After(5 * time.Second):
		t.Fatal("replica A never heard of the write on replica B")
	}
	again := assignmentETag(t, agentOnA, clusterA)
	assert.NotEqual(t, etag, again, "replica A's cache was invalidated too")
}

func TestShutdownEndsWaitingPollsWith304(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	etag := assignmentETag(t, admin, clusterA)
	var polls []<-chan pollResult
	for range 5 {
		polls = append(polls, poll(admin, clusterA, etag, "60s"))
	}
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	srv.Stop(t)
	for _, p := range polls {
		r := <-p
		assert.Equal(t, http.StatusNotModified, r.res.Status)
	}
	assert.Less(t, time.Since(stopped), 5*time.Second)
}

func TestConcurrentPatchesLoseNoUpdate(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		u := "/api/v1/clusters/" + clusterA
		etag := admin.must(http.StatusOK, "GET", u, nil).Header.Get("ETag")

		const writers = 50
		var wg sync.WaitGroup
		codes := make(chan int, writers)
		for i := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := admin.do("PATCH", u, path(`{"config_items":{"writer_%d":"x"}}`, i), "If-Match", etag)
				codes <- r.Status
			}()
		}
		wg.Wait()
		close(codes)
		count := map[int]int{}
		for c := range codes {
			count[c]++
		}
		assert.Equal(t, map[int]int{http.StatusOK: 1, http.StatusPreconditionFailed: writers - 1}, count, "one wins, every loser gets 412")

		// Losers that re-read and retry all land: no update is lost.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var retry sync.WaitGroup
		for i := range writers {
			retry.Add(1)
			go func() {
				defer retry.Done()
				for ctx.Err() == nil {
					cur := admin.do("GET", u, nil)
					r := admin.do("PATCH", u, path(`{"config_items":{"retry_%d":"x"}}`, i), "If-Match", cur.Header.Get("ETag"))
					if r.Status == http.StatusOK {
						return
					}
				}
			}()
		}
		retry.Wait()
		var c api.Cluster
		admin.must(http.StatusOK, "GET", u, nil).json(t, &c)
		for i := range writers {
			assert.Contains(t, c.ConfigItems, path("retry_%d", i))
		}
	})
}

// Regression: a change woke each of its waiting polls on a goroutine of its
// own, all at once: a change of a whole fleet's account held a goroutine
// stack per agent, hundreds of MiB on the replica. A few workers answer
// them in turn.
func TestAChangeAnswersItsPollsWithoutAGoroutineEach(t *testing.T) {
	const polls = 400
	srv := centraltest.Start(t, func(c *central.Config) { c.MaxWaitingPollsPerToken = polls })
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	reader := srv.Token(t, api.RoleReader, "")
	etag := assignmentETag(t, admin, clusterA)
	conns := make([]net.Conn, polls)
	for i := range conns {
		conns[i] = rawPoll(t, srv, reader, clusterA, etag, "5m", "Connection", "close")
	}
	require.Eventually(t, func() bool { return waitingPolls(t, srv) == polls }, 20*time.Second, 20*time.Millisecond)

	baseline := runtime.NumGoroutine()
	var most atomic.Int64
	sampling, stop := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampling)
		for {
			most.Store(max(most.Load(), int64(runtime.NumGoroutine())))
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	}()
	admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"woken":"all"}}`)
	for i, c := range conns {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Second)))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "poll %d", i)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
	}
	close(stop)
	<-sampling
	assert.Less(t, most.Load()-int64(baseline), int64(polls/4), "goroutines added while %d polls were answered", polls)
}

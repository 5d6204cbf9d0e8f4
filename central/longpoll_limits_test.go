package central_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// rawPoll sends a long-poll on a connection of its own and leaves it
// waiting; the test reads the answer, or closes the connection. headers
// are more header names and values.
func rawPoll(t *testing.T, srv *centraltest.Server, token, cluster, ifNoneMatch, wait string, headers ...string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	var more strings.Builder
	for i := 0; i+1 < len(headers); i += 2 {
		more.WriteString(headers[i] + ": " + headers[i+1] + "\r\n")
	}
	_, err = io.WriteString(conn, "GET /api/v1/clusters/"+cluster+"/assignment?wait="+wait+" HTTP/1.1\r\nHost: registry\r\n"+
		"Authorization: Bearer "+token+"\r\nIf-None-Match: "+ifNoneMatch+"\r\n"+more.String()+"\r\n")
	require.NoError(t, err)
	return conn
}

// metric reads one unlabelled sample from /metrics.
func metric(t *testing.T, srv *centraltest.Server, name string) float64 {
	t.Helper()
	return metricVia(t, newClient(t, srv, ""), name)
}

// metricVia reads one unlabelled sample from /metrics through c.
func metricVia(t *testing.T, c *client, name string) float64 {
	t.Helper()
	res := c.must(http.StatusOK, "GET", "/metrics", nil)
	for _, line := range strings.Split(string(res.Body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// tcpSocket is one of the server's sockets as /proc/net/tcp lists it.
type tcpSocket struct {
	// state is the kernel's, in hex: 01 established, 08 closed by the
	// client but not yet by the server (CLOSE_WAIT), 0A listening.
	state string
	// rxQueue is, for a listening socket, its accept queue.
	rxQueue int
}

// serverTCPSockets lists the sockets on the server's port.
func serverTCPSockets(t *testing.T, srv *centraltest.Server) []tcpSocket {
	t.Helper()
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	local := fmt.Sprintf(":%04X", p)
	raw, err := os.ReadFile("/proc/net/tcp")
	require.NoError(t, err)
	var out []tcpSocket
	for _, line := range strings.Split(string(raw), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || !strings.HasSuffix(f[1], local) {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(rx, 16, 64)
		require.NoError(t, err)
		out = append(out, tcpSocket{state: f[3], rxQueue: int(n)})
	}
	return out
}

// serverSockets counts the server's connections that are open on its end:
// established, or closed by the client but not yet by the server (CLOSE_WAIT).
func serverSockets(t *testing.T, srv *centraltest.Server) int {
	t.Helper()
	n := 0
	for _, s := range serverTCPSockets(t, srv) {
		if s.state == "01" || s.state == "08" {
			n++
		}
	}
	return n
}

func withPollSweep(d time.Duration) centraltest.Option {
	return func(c *central.Config) { c.PollSweep = d }
}

// Regression: a parked long-poll whose client had gone kept its
// descriptor, subscription and memory until its wait ran out.
func TestLongPollOfAClientThatLeftIsFreed(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		reader := srv.Token(t, api.RoleReader, "")
		etag := assignmentETag(t, admin, clusterA)
		before := serverSockets(t, srv)

		const polls = 50
		conns := make([]net.Conn, polls)
		for i := range conns {
			conns[i] = rawPoll(t, srv, reader, clusterA, etag, "5m")
		}
		require.Eventually(t, func() bool { return waitingPolls(t, srv) == polls }, 10*time.Second, 20*time.Millisecond)
		require.GreaterOrEqual(t, serverSockets(t, srv), before+polls, "the server holds a connection per poll")
		for _, c := range conns {
			require.NoError(t, c.Close())
		}
		assert.Eventually(t, func() bool { return waitingPolls(t, srv) == 0 }, 10*time.Second, 20*time.Millisecond,
			"the polls of the clients that left are freed")
		assert.Eventually(t, func() bool { return serverSockets(t, srv) <= before+2 }, 10*time.Second, 20*time.Millisecond,
			"the server closed their connections: %d open, %d before", serverSockets(t, srv), before)
		assert.Contains(t, string(admin.must(http.StatusOK, "GET", "/metrics", nil).Body),
			`caravan_central_http_requests_total{code="499",method="GET",route="GET /api/v1/clusters/{id}/assignment"} 50`,
			"counted as clients that left, not as answers")

		// A client that stays is still answered.
		waiting := rawPoll(t, srv, reader, clusterA, etag, "5m")
		require.Eventually(t, func() bool { return waitingPolls(t, srv) == 1 }, 10*time.Second, 20*time.Millisecond)
		admin.must(http.StatusOK, "PATCH", "/api/v1/clusters/"+clusterA, `{"config_items":{"after":"leaving"}}`)
		res, err := http.ReadResponse(bufio.NewReader(waiting), nil)
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, http.StatusOK, res.StatusCode)
	}, withPollSweep(50*time.Millisecond))
}

// Regression: a poll kept its whole If-None-Match header (up to 1 MiB
// then) while it waited: 100 polls of a reader held hundreds of MiB.
func TestParkedPollKeepsNoHeader(t *testing.T) {
	srv := centraltest.Start(t)
	admin := newClient(t, srv, srv.AdminToken)
	seed(t, admin)
	reader := srv.Token(t, api.RoleReader, "")
	etag := assignmentETag(t, admin, clusterA)
	// 48 KiB of other entity tags, and the current one last.
	var header strings.Builder
	for header.Len() < 48<<10 {
		header.WriteString(`"0123456789abcdef0123456789abcdef", `)
	}
	header.WriteString(etag)

	var heap runtime.MemStats
	// Collected twice: what sync.Pools hold (the /metrics answer's gzip
	// writer, 1 MiB) survives one collection, and the polls would be
	// blamed for it.
	collect := func() {
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&heap)
	}
	collect()
	before := heap.HeapAlloc
	const polls = 100
	for range polls {
		rawPoll(t, srv, reader, clusterA, header.String(), "5m")
	}
	require.Eventually(t, func() bool { return waitingPolls(t, srv) == polls }, 20*time.Second, 20*time.Millisecond)
	// A poll counts as waiting a moment before its request is let go, and
	// a loaded machine stretches the moment: the heap is read until it
	// settles.
	var held int64
	bound := int64(polls * 48 << 10 / 3)
	deadline := time.Now().Add(10 * time.Second)
	for {
		collect()
		held = int64(heap.HeapAlloc) - int64(before)
		if held < bound || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	assert.Less(t, held, bound, "%d waiting polls hold %d KiB of heap; their headers were %d KiB each", polls, held>>10, 48)

	res := admin.do("GET", "/api/v1/clusters/"+clusterA+"/assignment?wait=1s", nil, "If-None-Match", strings.Repeat(header.String(), 2))
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, res.Status, "a header over 64 KiB is refused")
}

// Regression: nothing bounded the polls waiting at once, of one token or in all.
func TestWaitingPollsAreBoundedPerTokenAndInAll(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, srv *centraltest.Server) {
		admin := newClient(t, srv, srv.AdminToken)
		seed(t, admin)
		readerA, readerB := srv.Token(t, api.RoleReader, ""), srv.Token(t, api.RoleReader, "")
		etag := assignmentETag(t, admin, clusterA)

		var first net.Conn
		for i := range 3 {
			c := rawPoll(t, srv, readerA, clusterA, etag, "5m")
			if i == 0 {
				first = c
			}
		}
		require.Eventually(t, func() bool { return waitingPolls(t, srv) == 3 }, 10*time.Second, 20*time.Millisecond)
		refused := newClient(t, srv, readerA).do("GET", "/api/v1/clusters/"+clusterA+"/assignment?wait=5m", nil, "If-None-Match", etag)
		require.Equal(t, http.StatusServiceUnavailable, refused.Status, "a fourth poll of the same token: %s", refused.Body)
		assert.Equal(t, "10", refused.Header.Get("Retry-After"))
		assert.Equal(t, "Too many waiting polls", refused.problem(t)["title"])
		noWait := newClient(t, srv, readerA).do("GET", "/api/v1/clusters/"+clusterA+"/assignment", nil, "If-None-Match", etag)
		assert.Equal(t, http.StatusNotModified, noWait.Status, "a poll that does not wait is not limited")

		rawPoll(t, srv, readerB, clusterA, etag, "5m")
		require.Eventually(t, func() bool { return waitingPolls(t, srv) == 4 }, 10*time.Second, 20*time.Millisecond)
		refused = newClient(t, srv, readerB).do("GET", "/api/v1/clusters/"+clusterA+"/assignment?wait=5m", nil, "If-None-Match", etag)
		require.Equal(t, http.StatusServiceUnavailable, refused.Status, "a fifth poll in all: %s", refused.Body)

		// A poll that ends gives its place back.
		require.NoError(t, first.Close())
		require.Eventually(t, func() bool { return waitingPolls(t, srv) == 3 }, 10*time.Second, 20*time.Millisecond)
		rawPoll(t, srv, readerB, clusterA, etag, "5m")
		assert.Eventually(t, func() bool { return waitingPolls(t, srv) == 4 }, 10*time.Second, 20*time.Millisecond)
	}, withPollSweep(50*time.Millisecond), func(c *central.Config) { c.MaxWaitingPolls, c.MaxWaitingPollsPerToken = 4, 3 })
}

package central_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/central"
	"github.com/caravan-gitops/caravan/central/centraltest"
)

// trickle opens a connection from 127.0.0.1, sends a request's header and
// then its body one byte every 300ms, as a slow-body attack does, until
// the server stops it.
func trickle(t *testing.T, srv *centraltest.Server, method, path, contentType string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = io.WriteString(conn, method+" "+path+" HTTP/1.1\r\nHost: registry\r\nContent-Type: "+contentType+"\r\nContent-Length: 1000\r\n\r\nt")
	require.NoError(t, err)
	go func() {
		for {
			time.Sleep(300 * time.Millisecond)
			if _, err := conn.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	return conn
}

// dialFrom connects from a loopback address of its own, another client to the server.
func clientFrom(ip string) *http.Client {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialer.DialContext}}
}

// Regression: a body sent a byte at a time held its connection for ever,
// and enough of them used up the server's descriptors: /healthz timed out.
func TestSlowBodiesAreCutOffAndUnauthenticatedConnectionsLimited(t *testing.T) {
	srv := centraltest.Start(t, func(c *central.Config) {
		c.BodyTimeout = time.Second
		c.MaxUnauthenticatedConnsPerIP = 4
	})
	// An admin connected before the attack keeps its connection.
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	adminGet := func() int {
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/channels", nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
		res, err := admin.Do(req)
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusOK, adminGet())

	start := time.Now()
	slow := []net.Conn{
		trickle(t, srv, "POST", "/signin", "application/x-www-form-urlencoded"),
		trickle(t, srv, "POST", "/signin", "application/x-www-form-urlencoded"),
		trickle(t, srv, "POST", "/api/v1/tokens", "application/json"),
		trickle(t, srv, "POST", "/api/v1/tokens", "application/json"),
	}

	// A fifth unauthenticated connection from the same address is closed at once.
	extra, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	require.NoError(t, err)
	defer extra.Close()
	require.NoError(t, extra.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = extra.Read(make([]byte, 1))
	assert.True(t, errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset"), "closed by the server, got %v", err)

	// Others are served meanwhile.
	res, err := clientFrom("127.0.0.2").Get(srv.URL + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, "/healthz from another address")
	assert.Equal(t, http.StatusOK, adminGet(), "an authenticated connection is not limited")

	// Each slow request is answered and its connection closed once its body is late.
	for i, c := range slow {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err, "slow request %d was never answered", i)
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		assert.Contains(t, []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden}, res.StatusCode, "slow request %d", i)
		_, err = c.Read(make([]byte, 1))
		assert.Error(t, err, "the connection of slow request %d is closed", i)
	}
	assert.Less(t, time.Since(start), 8*time.Second, "the body deadline is 1s")

	// Their places are free again.
	require.Eventually(t, func() bool {
		res, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	}, 10*time.Second, 50*time.Millisecond)
	assert.GreaterOrEqual(t, metric(t, srv, "caravan_central_connections_refused_total"), 1.0)
}

// acceptQueue is how many connections to the server wait in its
// listening socket's accept queue, not yet accepted.
func acceptQueue(t *testing.T, srv *centraltest.Server) int {
	t.Helper()
	for _, s := range serverTCPSockets(t, srv) {
		if s.state == "0A" {
			return s.rxQueue
		}
	}
	t.Fatal("the server has no listening socket")
	return 0
}

// Regression: connections beyond --max-unauthenticated-conns were closed at
// once, so when a replica's agents all moved to this one, most of them were
// refused and waited for their next attempt. They wait to be accepted
// instead, in the kernel's accept queue, and are served as places free up.
func TestABurstBeyondTheUnauthenticatedLimitWaitsAndIsServed(t *testing.T) {
	srv := centraltest.Start(t, func(c *central.Config) {
		c.MaxUnauthenticatedConns, c.MaxUnauthenticatedConnsPerIP = 3, -1
	})
	// An admin connected before keeps its connection, and reads the metrics over it.
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	adminGet := func(path string) []byte {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+srv.AdminToken)
		res, err := admin.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, res.StatusCode)
		return body
	}
	adminGet("/api/v1/channels")

	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		idle = append(idle, c)
	}
	const burst = 5
	type answer struct {
		status int
		err    error
	}
	answers := make(chan answer, burst)
	for i := range burst {
		go func() {
			res, err := clientFrom(fmt.Sprintf("127.0.0.%d", 10+i)).Get(srv.URL + "/healthz")
			if err != nil {
				answers <- answer{err: err}
				return
			}
			res.Body.Close()
			answers <- answer{status: res.StatusCode}
		}()
	}
	require.Eventually(t, func() bool { return acceptQueue(t, srv) == burst }, 10*time.Second, 10*time.Millisecond,
		"the burst waits to be accepted while 3 connections have not authenticated")
	assert.Contains(t, string(adminGet("/api/v1/channels")), "dev", "an authenticated connection is served meanwhile")

	for _, c := range idle {
		require.NoError(t, c.Close())
	}
	for range burst {
		select {
		case a := <-answers:
			require.NoError(t, a.err)
			assert.Equal(t, http.StatusOK, a.status)
		case <-time.After(10 * time.Second):
			t.Fatal("the burst was not served once the idle connections closed")
		}
	}
	metrics := string(adminGet("/metrics"))
	assert.Contains(t, metrics, "caravan_central_connections_refused_total 0")
	assert.NotContains(t, metrics, "caravan_central_connections_accept_waits_total 0\n")
}

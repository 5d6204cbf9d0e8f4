//go:build linux

package main

import (
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// requestLog counts the HTTP attempts of the whole fleet, second by
// second and by replica: every attempt the registry client makes,
// retries and attempts that never connected included, since that is the
// load a replica, or the one left, has to take.
type requestLog struct {
	start    time.Time
	replicas map[string]int // by host:port

	mu      sync.Mutex
	seconds []secondCounts
}

// secondCounts are the attempts begun in one second.
type secondCounts struct {
	byReplica [replicas]int
	failed    int
}

func newRequestLog(start time.Time, replicaHosts []string) *requestLog {
	l := &requestLog{start: start, replicas: map[string]int{}}
	for i, h := range replicaHosts {
		l.replicas[h] = i
	}
	return l
}

func (l *requestLog) record(began time.Time, host string, failed bool) {
	i := int(began.Sub(l.start) / time.Second)
	if i < 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.seconds) <= i {
		l.seconds = append(l.seconds, secondCounts{})
	}
	if r, ok := l.replicas[host]; ok {
		l.seconds[i].byReplica[r]++
	}
	if failed {
		l.seconds[i].failed++
	}
}

// window sums the attempts begun in [from, to), in whole seconds.
type window struct {
	attempts  int
	failed    int
	byReplica [replicas]int
	seconds   int
	// peak is the most attempts begun in one second.
	peak int
}

func (w window) rate() float64 {
	if w.seconds == 0 {
		return 0
	}
	return float64(w.attempts) / float64(w.seconds)
}

func (l *requestLog) between(from, to time.Time) window {
	first, last := int(from.Sub(l.start)/time.Second), int(to.Sub(l.start)/time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := window{seconds: max(last-first, 0)}
	for i := max(first, 0); i < last && i < len(l.seconds); i++ {
		s := l.seconds[i]
		n := 0
		for r, c := range s.byReplica {
			w.byReplica[r] += c
			n += c
		}
		w.attempts += n
		w.failed += s.failed
		w.peak = max(w.peak, n)
	}
	return w
}

// agentTransport is an agent's connection pool: its own, dialling from
// its own loopback address, as every agent of a fleet comes from its own
// cluster; caravan-central bounds connections per client address. Each
// attempt is counted in the log and in the agent's own record.
type agentTransport struct {
	next  http.RoundTripper
	log   *requestLog
	agent *simAgent
}

func newAgentTransport(localIP net.IP, log *requestLog, a *simAgent) *agentTransport {
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: localIP}, Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	return &agentTransport{
		// As go-cleanhttp's pooled transport, which the registry client
		// uses by default, but for the local address.
		next: &http.Transport{
			DialContext:           dialer.DialContext,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   replicas,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
			ForceAttemptHTTP2:     true,
		},
		log: log, agent: a,
	}
}

func (t *agentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	began := time.Now()
	resp, err := t.next.RoundTrip(req)
	failed := err != nil || resp.StatusCode >= 500
	t.log.record(began, req.URL.Host, failed)
	t.agent.attempted(began, time.Now(), req.URL.Host, failed)
	return resp, err
}

// agentIP is the loopback address agent i dials from: 127.1.0.1 onwards,
// 250 to a /24, all on the loopback interface.
func agentIP(i int) (net.IP, error) {
	if i < 0 || i >= 250*256 {
		return nil, fmt.Errorf("no loopback address for agent %d", i)
	}
	return net.IPv4(127, 1, byte(i/250), byte(i%250+1)), nil
}

package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// A waiting long-poll is parked: its connection is taken from net/http and
// held with a timer and a hub subscription, but no goroutine and no
// net/http buffers, so 10,000 waiting agents cost a few MiB instead of
// hundreds. Once answered, its connection goes back to net/http through
// the server's Listener and carries the agent's next request, as a kept-alive
// connection does. HTTP/2 connections cannot be taken over and wait in
// their handler instead (getAssignment's loop).
//
// A parked poll keeps only the entity tag it waits on, never the client's
// If-None-Match header (up to 64 KiB), and a sweep notices clients that
// closed their connection and frees their polls (peerGone).
type parkedPoll struct {
	s *Server
	// conn is nil once the poll is over.
	conn net.Conn
	id   string
	// etag is the assignment's entity tag that If-None-Match named; the
	// poll answers when the assignment has another one.
	etag      string
	tokenID   string
	requestID string
	route     string
	start     time.Time
	deadline  time.Time
	// keepAlive: the connection may carry another request after the answer.
	keepAlive bool

	mu          sync.Mutex
	done        bool
	timer       *time.Timer
	unsubscribe func()
}

// parkedPolls is the set of parked polls, answered all at once on shutdown.
type parkedPolls struct {
	mu    sync.Mutex
	polls map[*parkedPoll]struct{}
	// closed refuses new parking once shutdown has begun.
	closed bool
}

func (pp *parkedPolls) add(p *parkedPoll) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.closed {
		return false
	}
	if pp.polls == nil {
		pp.polls = map[*parkedPoll]struct{}{}
	}
	pp.polls[p] = struct{}{}
	return true
}

// remove reports whether p was among the parked polls.
func (pp *parkedPolls) remove(p *parkedPoll) bool {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	_, ok := pp.polls[p]
	delete(pp.polls, p)
	return ok
}

// list returns the polls waiting now.
func (pp *parkedPolls) list() []*parkedPoll {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	out := make([]*parkedPoll, 0, len(pp.polls))
	for p := range pp.polls {
		out = append(out, p)
	}
	return out
}

// closeAll refuses new polls and returns those waiting.
func (pp *parkedPolls) closeAll() []*parkedPoll {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.closed = true
	out := make([]*parkedPoll, 0, len(pp.polls))
	for p := range pp.polls {
		out = append(out, p)
	}
	return out
}

// park takes the request's connection over; it reports false when the
// connection cannot be taken (HTTP/2) and the caller must wait itself.
// etag is the current entity tag, which If-None-Match named; the caller
// holds a waiting slot of the token, which the poll gives back when it ends.
func (s *Server) park(w http.ResponseWriter, r *http.Request, id, etag string, deadline time.Time) bool {
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	// Pipelined requests are not expected from agents; anything buffered
	// beyond this request is dropped with the connection after the answer.
	keepAlive := r.ProtoAtLeast(1, 1) && !r.Close && buf.Reader.Buffered() == 0
	releaseBuffers(buf)
	_ = conn.SetReadDeadline(time.Time{})
	p := &parkedPoll{
		s: s, conn: conn, id: id, etag: strings.Clone(etag), tokenID: principalFrom(r.Context()).TokenID,
		requestID: requestIDFrom(r.Context()), route: r.Pattern, start: time.Now(), deadline: deadline, keepAlive: keepAlive,
	}
	if !s.parked.add(p) {
		p.mu.Lock()
		p.finish(http.StatusNotModified, store.Assignment{ETag: etag}, nil)
		p.mu.Unlock()
		return true
	}
	s.metrics.waiting.Inc()
	s.sweepOnce.Do(func() {
		go s.sweepParked()
		for range checkWorkers {
			go s.checkQueued()
		}
	})
	p.check(false)
	return true
}

// checkWorkers is how many goroutines check woken polls. A change of the
// whole fleet (an account's config item) wakes every poll at once: a few
// workers taking them in turn answer them as fast, with a few goroutine
// stacks where a goroutine each would hold thousands; enough of them wait
// for the database together that what they read is read in batches.
const checkWorkers = 64

// checkQueue holds the polls a change or their timer woke, for the workers.
type checkQueue struct {
	mu    sync.Mutex
	polls []*parkedPoll
	ready chan struct{}
}

func newCheckQueue() *checkQueue { return &checkQueue{ready: make(chan struct{}, 1)} }

// push queues p without blocking: it runs on the writer's goroutine.
func (q *checkQueue) push(p *parkedPoll) {
	q.mu.Lock()
	q.polls = append(q.polls, p)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop takes the poll queued first; nil when none is.
func (q *checkQueue) pop() *parkedPoll {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.polls) == 0 {
		return nil
	}
	p := q.polls[0]
	q.polls[0] = nil
	q.polls = q.polls[1:]
	if len(q.polls) > 0 {
		// Pass the turn on, so that the other workers take the rest.
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return p
}

// checkQueued checks queued polls until shutdown.
func (s *Server) checkQueued() {
	for {
		if p := s.checks.pop(); p != nil {
			p.check(false)
			continue
		}
		select {
		case <-s.closing:
			return
		case <-s.checks.ready:
		}
	}
}

// sweepParked frees, every pollSweep until shutdown, the parked polls whose
// client closed its connection: without it each would hold a descriptor, a
// subscription and a waiting slot of its token until its wait ran out.
func (s *Server) sweepParked() {
	tick := time.NewTicker(s.pollSweep)
	defer tick.Stop()
	for {
		select {
		case <-s.closing:
			return
		case <-tick.C:
		}
		for _, p := range s.parked.list() {
			p.mu.Lock()
			gone := !p.done && peerGone(p.conn)
			p.mu.Unlock()
			if gone {
				p.abandon()
			}
		}
	}
}

// releaseBuffers drops the references to net/http's per-connection buffers.
func releaseBuffers(buf *bufio.ReadWriter) {
	buf.Reader, buf.Writer = nil, nil
}

// check answers the poll when the assignment changed, the wait ran out or
// final is set (shutdown); otherwise it waits again for the next change.
func (p *parkedPoll) check(final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	if p.unsubscribe != nil {
		p.unsubscribe()
	}
	// Subscribe before reading, so a change in between is not missed.
	p.unsubscribe = p.s.store.Hub().Subscribe(p.id, func() { p.s.checks.push(p) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := p.s.store.Assignment(ctx, p.id)
	now := time.Now()
	switch {
	case err != nil:
		p.finish(0, a, err)
	case a.ETag != p.etag:
		p.finish(http.StatusOK, a, nil)
	case final || !now.Before(p.deadline):
		p.finish(http.StatusNotModified, a, nil)
	default:
		next := p.deadline
		if !a.ChangesAt.IsZero() && a.ChangesAt.Before(next) {
			next = a.ChangesAt.Add(time.Millisecond)
		}
		if p.timer != nil {
			p.timer.Stop()
		}
		p.timer = time.AfterFunc(next.Sub(now), func() { p.s.checks.push(p) })
	}
}

// end stops the poll's timer and subscription and gives back its place
// among the parked polls and its token's waiting slot. The caller holds p.mu.
func (p *parkedPoll) end() {
	p.done = true
	if p.unsubscribe != nil {
		p.unsubscribe()
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.s.parked.remove(p) {
		p.s.metrics.waiting.Dec()
	}
	p.s.waiting.release(p.tokenID)
}

// abandon ends a poll whose client is gone, without an answer; it is
// counted and logged as 499, the client closing its request.
func (p *parkedPoll) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return
	}
	p.end()
	_ = p.conn.Close()
	elapsed := time.Since(p.start)
	p.s.metrics.observe(p.route, http.MethodGet, statusClientClosed, elapsed)
	p.s.log.Debug("request", "request_id", p.requestID, "method", http.MethodGet, "route", p.route, "status", statusClientClosed,
		"duration_ms", float64(elapsed.Microseconds())/1000, "parked", true, "cluster", p.id, "client_disconnected", true)
}

// finish writes the answer and gives the connection back to net/http, or
// closes it. The caller holds p.mu.
func (p *parkedPoll) finish(status int, a store.Assignment, err error) {
	p.end()
	var body []byte
	contentType := "application/json"
	switch {
	case err != nil && errors.Is(err, store.ErrNotFound):
		status, contentType = http.StatusNotFound, "application/problem+json"
		body = []byte(fmt.Sprintf(`{"type":"https://caravan.io/problems/not-found","title":"Not found","status":404,"detail":%q}`+"\n", err.Error()))
	case err != nil:
		p.s.log.Error("answering a long-poll failed", "request_id", p.requestID, "error", err)
		status, contentType = http.StatusInternalServerError, "application/problem+json"
		body = []byte(`{"type":"https://caravan.io/problems/internal-server-error","title":"Internal error","status":500}` + "\n")
	case status == http.StatusOK:
		body = slices.Concat(a.Body, newline)
	}
	p.write(status, a.ETag, contentType, body)
	elapsed := time.Since(p.start)
	p.s.metrics.observe(p.route, http.MethodGet, status, elapsed)
	p.s.log.Debug("request", "request_id", p.requestID, "method", http.MethodGet, "route", p.route, "status", status,
		"duration_ms", float64(elapsed.Microseconds())/1000, "parked", true, "cluster", p.id)
}

func (p *parkedPoll) write(status int, etag, contentType string, body []byte) {
	keepAlive := p.keepAlive && p.s.resumer != nil && !p.s.shuttingDown()
	_ = p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	head := "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" +
		"Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n" +
		"Cache-Control: no-cache\r\n" +
		"X-Request-Id: " + p.requestID + "\r\n"
	if etag != "" {
		head += "ETag: " + etag + "\r\n"
	}
	if status == http.StatusOK || status == http.StatusNotModified {
		head += api.RegistryTimeHeader + ": " + p.s.registryTime() + "\r\n"
	}
	if status != http.StatusNotModified {
		head += "Content-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	if !keepAlive {
		head += "Connection: close\r\n"
	}
	if _, err := p.conn.Write(append([]byte(head+"\r\n"), body...)); err != nil {
		p.s.log.LogAttrs(context.Background(), slog.LevelDebug, "the agent left before its long-poll was answered",
			slog.String("request_id", p.requestID), slog.String("error", err.Error()))
		keepAlive = false
	}
	_ = p.conn.SetWriteDeadline(time.Time{})
	if !keepAlive || !p.s.resumer.resume(p.conn) {
		_ = p.conn.Close()
	}
}

// shuttingDown reports whether BeginShutdown was called: answers then
// close their connections.
func (s *Server) shuttingDown() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// answerParked ends every parked poll: 304 unless its assignment changed.
func (s *Server) answerParked() {
	for _, p := range s.parked.closeAll() {
		p.check(true)
	}
}

// statusClientClosed is how a request whose client went away before its
// answer is counted and logged (nginx's 499): not a server error.
const statusClientClosed = 499

// waitingSlots bounds the long-polls that wait at once, per token and in
// all, so that one token cannot hold the server's descriptors and memory.
type waitingSlots struct {
	mu                 sync.Mutex
	maxTotal, maxToken int
	total              int
	byToken            map[string]int
}

// acquire takes a slot for a poll of tokenID; false means none is free.
func (ws *waitingSlots) acquire(tokenID string) bool {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if ws.total >= ws.maxTotal || ws.byToken[tokenID] >= ws.maxToken {
		return false
	}
	if ws.byToken == nil {
		ws.byToken = map[string]int{}
	}
	ws.total++
	ws.byToken[tokenID]++
	return true
}

func (ws *waitingSlots) release(tokenID string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	ws.total--
	if ws.byToken[tokenID] <= 1 {
		delete(ws.byToken, tokenID)
		return
	}
	ws.byToken[tokenID]--
}

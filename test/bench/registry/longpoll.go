//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// longPollMetric is caravan-central's gauge of waiting long-polls.
const longPollMetric = "caravan_central_long_polls_waiting"

// longPollResult is a server holding n open long-polls.
type longPollResult struct {
	wanted     int
	waiting    int           // what the server's gauge reached
	opening    time.Duration // until the gauge reached wanted, or gave up
	before     memory        // the server's memory before the polls
	held       memory        // and while they wait
	errors     int           // polls answered before they were cancelled, or that failed
	firstError string
}

// perPoll is what each waiting poll added to the server's RSS.
func (r longPollResult) perPoll() int64 {
	if r.waiting == 0 {
		return 0
	}
	return (r.held.RSS - r.before.RSS) / int64(r.waiting)
}

// pollWait is how long each long-poll asks to wait: long enough to read the
// server's memory while all wait, short enough to let them end by
// themselves. caravan-central notices an agent that leaves a parked poll
// only when its wait ends, so the polls are not cancelled but answered.
const pollWait = 30 * time.Second

// longPolls opens n assignment long-polls (?wait=30s, matching ETag) to srv,
// each on its own connection as every agent holds one, waits until the
// server's gauge waitingMetric says they all wait, reads the server's
// memory, and waits for the 304 answers when the wait ends.
func (b *bench) longPolls(ctx context.Context, srv *host.Process, waitingMetric string, n int) (longPollResult, error) {
	n = min(n, len(b.agents))
	r := longPollResult{wanted: n}
	var err error
	if r.before, err = serverMemory(ctx, b.client, srv); err != nil {
		return r, err
	}
	transport := longPollTransport(n)
	defer transport.CloseIdleConnections()
	pollCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	start := time.Now()
	polls := b.openLongPolls(pollCtx, &http.Client{Transport: transport}, srv, b.agents[:n])
	r.waiting, err = b.awaitWaiting(ctx, srv, waitingMetric, func(w int) bool { return w >= n }, 90*time.Second)
	r.opening = time.Since(start)
	if err == nil {
		// A moment for the server's allocations to settle before reading them.
		time.Sleep(2 * time.Second)
		r.held, err = serverMemory(ctx, b.client, srv)
	}
	if err != nil {
		cancel()
	}
	polls.wg.Wait()
	r.errors, r.firstError = polls.count, polls.first
	if err != nil {
		return r, err
	}
	left, err := b.awaitWaiting(ctx, srv, waitingMetric, func(w int) bool { return w == 0 }, 30*time.Second)
	if err == nil && left > 0 {
		err = fmt.Errorf("%d long-polls still waiting on %s 30 s after their wait ended", left, srv.Name)
	}
	return r, err
}

// openPolls are long-polls under way and the errors of those that ended.
type openPolls struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	count int
	first string
}

func (p *openPolls) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.count++
	if p.first == "" {
		p.first = err.Error()
	}
}

// openLongPolls starts one long-poll per agent; they end when ctx does.
func (b *bench) openLongPolls(ctx context.Context, client *http.Client, srv *host.Process, agents []*agent) *openPolls {
	p := &openPolls{}
	for _, a := range agents {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := longPoll(ctx, client, srv, a); err != nil {
				p.fail(err)
			}
		}()
	}
	return p
}

// longPoll waits for a change of the agent's assignment; none comes, so it
// ends with 304 when its wait runs out.
func longPoll(ctx context.Context, client *http.Client, srv *host.Process, a *agent) error {
	req, err := agentRequest(ctx, http.MethodGet, assignmentURL(srv.URL, a)+"?wait="+pollWait.String(), a, nil)
	if err != nil {
		return err
	}
	req.Header.Set("If-None-Match", a.etag)
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("long-poll of %s: %w", a.clusterID, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusNotModified {
		return fmt.Errorf("long-poll of %s answered %d, not 304", a.clusterID, resp.StatusCode)
	}
	return nil
}

// longPollTransport gives every poll its own connection, and dials a few
// at a time so that the server's listen backlog does not overflow.
func longPollTransport(n int) *http.Transport {
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	dials := make(chan struct{}, 64)
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			select {
			case dials <- struct{}{}:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			defer func() { <-dials }()
			return dialer.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: n,
		DisableCompression:  true,
	}
}

// awaitWaiting reads the server's gauge of waiting long-polls until done
// says the count is reached or the timeout runs out; it returns the last count.
func (b *bench) awaitWaiting(ctx context.Context, srv *host.Process, metric string, done func(waiting int) bool, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		values, err := host.ReadMetrics(ctx, b.client, srv, metric)
		if err != nil {
			return 0, err
		}
		waiting := int(values[metric])
		if done(waiting) || time.Now().After(deadline) {
			return waiting, nil
		}
		select {
		case <-ctx.Done():
			return waiting, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// bench holds what the scenarios share: the fleet and the running servers.
type bench struct {
	opts    options
	agents  []*agent
	central *host.Process
	bare    *host.Process
	client  *http.Client
}

// measureOne runs one scenario against caravan-central with the configured
// clients, warm-up and duration.
func (b *bench) measureOne(ctx context.Context, next nextRequest) (loadResult, error) {
	cfg := loadConfig{clients: b.opts.clients, warmup: b.opts.warmup, duration: b.opts.duration}
	run, err := runLoad(ctx, b.client, b.central, cfg, next)
	if err != nil {
		return loadResult{}, err
	}
	return summarize(run), nil
}

func assignmentURL(base string, a *agent) string {
	return base + "/api/v1/clusters/" + url.PathEscape(a.clusterID) + "/assignment"
}

func agentRequest(ctx context.Context, method, target string, a *agent, body []byte) (*http.Request, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, r)
	if err != nil {
		return nil, fmt.Errorf("building %s %s: %w", method, target, err)
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// primeResult is the first full GET of every assignment, which the server
// builds from the database and caches.
type primeResult struct {
	requests  int
	elapsed   time.Duration
	bodyBytes int
}

// prime fetches every cluster's assignment once, as agents do when they
// start, and keeps its ETag for the conditional polls.
func (b *bench) prime(ctx context.Context) (primeResult, error) {
	var bodyBytes atomic.Int64
	start := time.Now()
	err := forEachAgent(ctx, b.agents, b.opts.clients, func(ctx context.Context, a *agent) error {
		req, err := agentRequest(ctx, http.MethodGet, assignmentURL(b.central.URL, a), a, nil)
		if err != nil {
			return err
		}
		resp, err := b.client.Do(req)
		if err != nil {
			return fmt.Errorf("fetching the assignment of %s: %w", a.clusterID, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("fetching the assignment of %s: status %d, %v: %.200s", a.clusterID, resp.StatusCode, err, body)
		}
		if a.etag = resp.Header.Get("ETag"); a.etag == "" {
			return fmt.Errorf("the assignment of %s came without an ETag", a.clusterID)
		}
		bodyBytes.Store(int64(len(body)))
		return nil
	})
	if err != nil {
		return primeResult{}, fmt.Errorf("priming assignments: %w", err)
	}
	return primeResult{requests: len(b.agents), elapsed: time.Since(start), bodyBytes: int(bodyBytes.Load())}, nil
}

// steadyRounds is how many times the steady-state scenario alternates
// between caravan-central and the bare server: their ratio is the goal, and
// alternating short rounds exposes both alike to whatever else the machine runs.
const steadyRounds = 5

// steadyState measures the agents' steady-state poll on caravan-central and
// on the bare server, in alternating rounds.
func (b *bench) steadyState(ctx context.Context) (central, bare loadResult, err error) {
	var centralRuns, bareRuns []loadRun
	round := loadConfig{clients: b.opts.clients, warmup: b.opts.warmup / steadyRounds, duration: b.opts.duration / steadyRounds}
	for range steadyRounds {
		c, err := b.conditionalPolls(ctx, b.central, round)
		if err != nil {
			return loadResult{}, loadResult{}, fmt.Errorf("caravan-central: %w", err)
		}
		n, err := b.conditionalPolls(ctx, b.bare, round)
		if err != nil {
			return loadResult{}, loadResult{}, fmt.Errorf("bare server: %w", err)
		}
		centralRuns, bareRuns = append(centralRuns, c), append(bareRuns, n)
	}
	return summarize(centralRuns...), summarize(bareRuns...), nil
}

// conditionalPolls is the agents' steady state: an assignment GET whose
// If-None-Match matches, answered 304, against srv (caravan-central or the
// bare baseline, which ignores the path and answers 304 alike).
func (b *bench) conditionalPolls(ctx context.Context, srv *host.Process, cfg loadConfig) (loadRun, error) {
	return runLoad(ctx, b.client, srv, cfg, func(ctx context.Context, worker, iter int) (*http.Request, int, error) {
		a := ownAgent(b.agents, b.opts.clients, worker, iter)
		req, err := agentRequest(ctx, http.MethodGet, assignmentURL(srv.URL, a), a, nil)
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("If-None-Match", a.etag)
		return req, http.StatusNotModified, nil
	})
}

// fullGets are assignment GETs without If-None-Match: each answers the whole document.
func (b *bench) fullGets(ctx context.Context) (loadResult, error) {
	return b.measureOne(ctx, func(ctx context.Context, worker, iter int) (*http.Request, int, error) {
		a := ownAgent(b.agents, b.opts.clients, worker, iter)
		req, err := agentRequest(ctx, http.MethodGet, assignmentURL(b.central.URL, a), a, nil)
		return req, http.StatusOK, err
	})
}

// rolloutEvery is how often a worker's status report starts a rollout
// (phase applying, a new version) instead of a plain heartbeat; such
// reports, and the heartbeat after them, also append status history.
const rolloutEvery = 50

// statusPuts are agents' status reports, mostly heartbeats.
func (b *bench) statusPuts(ctx context.Context) (loadResult, error) {
	return b.measureOne(ctx, func(ctx context.Context, worker, iter int) (*http.Request, int, error) {
		a := ownAgent(b.agents, b.opts.clients, worker, iter)
		body, err := json.Marshal(statusReport(a, iter%rolloutEvery == rolloutEvery-1))
		if err != nil {
			return nil, 0, fmt.Errorf("encoding a status report: %w", err)
		}
		target := b.central.URL + "/api/v1/clusters/" + url.PathEscape(a.clusterID) + "/status"
		req, err := agentRequest(ctx, http.MethodPut, target, a, body)
		return req, http.StatusOK, err
	})
}

func statusReport(a *agent, rollout bool) api.ClusterStatus {
	sum := sha1.Sum([]byte(a.clusterID))
	version := hex.EncodeToString(sum[:]) + "#" + strings.Trim(a.etag, `"`)[:12]
	st := api.ClusterStatus{
		Phase: api.PhaseIdle, CurrentVersion: version, LastVersion: version, AgentVersion: "v0.1.0",
		Heartbeat: time.Now().UTC(),
		NodePools: []api.NodePoolProgress{{Name: "system", NodesTotal: 3}, {Name: "workers", NodesTotal: 12}},
	}
	if rollout {
		st.Phase = api.PhaseApplying
		st.NextVersion = strings.Repeat("f", 40) + "#" + strconv.FormatInt(st.Heartbeat.UnixNano(), 16)
	}
	return st
}

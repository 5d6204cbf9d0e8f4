//go:build linux

package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/pkg/registry"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// fleet is the simulated agents, each a goroutine with its own registry
// client, built as caravan-agent builds it.
type fleet struct {
	agents []*simAgent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// agentSettings are how the simulated agents talk to the registry.
type agentSettings struct {
	interval time.Duration
	// severalURLs gives every agent all the replicas' URLs, the registry
	// client picking one and failing over; without it agent i is given
	// replica i mod 2 alone.
	severalURLs bool
	failback    time.Duration
}

// agentClient is the registry client as caravan-agent's lead builds it
// (agent/agent.go), through the agent's own connection pool; the failback
// is the client's default unless -failback says otherwise, so that a short
// run can see a restarted replica's share come back.
func agentClient(urls, token string, transport http.RoundTripper, failback time.Duration) (*registry.Client, error) {
	return registry.New(urls, token, registry.WithUserAgent("caravan-agent/"+agentVersion),
		registry.WithRetryMax(1), registry.WithRetryWait(500*time.Millisecond, agentBackoffCap),
		registry.WithFailback(failback), registry.WithHTTPClient(&http.Client{Transport: transport}))
}

// agentBackoffCap is the longest wait between two attempts of the agent's
// registry client (its WithRetryWait).
const agentBackoffCap = 2 * time.Second

// startFleet starts one agent per seeded cluster, spread evenly over one
// interval, as a fleet whose agents started at different times is.
func startFleet(seeded []host.SeededCluster, replicaURLs []string, s agentSettings, log *requestLog) (*fleet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fleet{cancel: cancel}
	for i, c := range seeded {
		a := &simAgent{cluster: c, interval: s.interval}
		ip, err := agentIP(i)
		if err != nil {
			cancel()
			return nil, err
		}
		urls := replicaURLs[i%len(replicaURLs)]
		if s.severalURLs {
			urls = strings.Join(replicaURLs, ",")
		}
		if a.client, err = agentClient(urls, c.Token, newAgentTransport(ip, log, a), s.failback); err != nil {
			cancel()
			return nil, fmt.Errorf("the registry client of agent %d: %w", i, err)
		}
		f.agents = append(f.agents, a)
	}
	for i, a := range f.agents {
		delay := time.Duration(i) * s.interval / time.Duration(len(f.agents))
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			sleep(ctx, delay)
			a.run(ctx)
		}()
	}
	return f, nil
}

func (f *fleet) stop() {
	f.cancel()
	f.wg.Wait()
}

// of returns the agents of a channel.
func (f *fleet) of(channel string) []*simAgent {
	var out []*simAgent
	for _, a := range f.agents {
		if a.cluster.Channel == channel {
			out = append(out, a)
		}
	}
	return out
}

// await waits until every agent satisfies done, looking every 250 ms (the
// agents time what they do themselves), or fails naming how many do not
// after the timeout, with the last error of one of them.
func await(ctx context.Context, what string, agents []*simAgent, timeout time.Duration, done func(snapshot) bool) error {
	deadline := time.Now().Add(timeout)
	for {
		missing, example := 0, ""
		for _, a := range agents {
			if !a.inspect(done) {
				missing++
				if example == "" {
					example = fmt.Sprintf("%s (last error: %s)", a.cluster.ID, orNone(a.snapshot().lastErr))
				}
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %d of %d agents not there after %s, such as %s", what, missing, len(agents), timeout, example)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// failures sums the agents' failed polls and reports, by errorKind.
func (f *fleet) failures() map[string]int {
	out := map[string]int{}
	for _, a := range f.agents {
		for kind, n := range a.snapshot().counts.errors {
			out[kind] += n
		}
	}
	return out
}

// since is what the counts of now add to those of before.
func since(now, before map[string]int) map[string]int {
	out := map[string]int{}
	for kind, n := range now {
		if d := n - before[kind]; d > 0 {
			out[kind] = d
		}
	}
	return out
}

//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// TestTheBenchRunsOnASmallFleet runs every scenario on 12 agents with
// short windows: two real replicas, PostgreSQL stopped and started, a
// replica killed and restarted.
func TestTheBenchRunsOnASmallFleet(t *testing.T) {
	o, err := parseOptions([]string{"-sizes", "12", "-interval", "6s", "-git-refresh", "5s", "-steady", "3s", "-rounds", "2",
		"-outage", "1s", "-kill-window", "4s", "-failback", "4s"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := bench(ctx, o)
	require.NoError(t, err)

	require.Len(t, rep.sizes, 1)
	push := rep.sizes[0].push
	assert.Equal(t, 3, push.pushedAgents, "a quarter of the fleet follows dev")
	assert.Len(t, push.toAssignment, 3*2, "every agent of dev held every push")
	assert.Len(t, push.toReport, 3*2, "and reported it")
	assert.Zero(t, push.othersWoken, "no agent of another channel took a new assignment")
	assert.Positive(t, push.steady.listings, "the registry read the config repo")
	assert.LessOrEqual(t, push.steady.listingsPerTurn(), goalListingsPerTurn)
	assert.Positive(t, push.steady.memory[0].Peak)
	assert.GreaterOrEqual(t, push.steady.steadyCPU.wall, 3*time.Second, "the steady window's CPU is read over the window")

	assert.True(t, rep.outage.met(), "outage: %+v", rep.outage)
	assert.Contains(t, failureList(rep.sizes[0].logged, 100), lostListenLine, "the replicas' logged warnings are counted")
	for i, x := range rep.outage.readiness {
		assert.True(t, x.wentFalse && x.cameBack, "replica %d: %+v", i+1, x)
		assert.Positive(t, rep.outage.listenLost[i], "replica %d logged its LISTEN connection lost", i+1)
	}

	f := rep.failover
	require.NoError(t, f.unsupported)
	assert.Positive(t, f.moved, "the killed replica served agents")
	assert.Len(t, f.gaps, 12)
	assert.Zero(t, f.missed)
	assert.Zero(t, f.statusesLost)
	assert.Positive(t, f.spread, "the restarted replica got polls again")

	md := rep.markdown()
	assert.Contains(t, md, "<!-- fleet:start -->")
	assert.Contains(t, md, "not measured (12 agents, not 10,000)")
	assert.Contains(t, md, "`go run ./test/bench/fleet -sizes 12 ")
}

func TestParseOptionsNamesTheBadFlag(t *testing.T) {
	for flag, args := range map[string][]string{
		"-sizes":    {"-sizes", "1000,x"},
		"-interval": {"-interval", "2s"},
		"-rounds":   {"-rounds", "0"},
		"-outage":   {"-outage", "0s"},
	} {
		_, err := parseOptions(args)
		require.Error(t, err, flag)
		assert.Contains(t, err.Error(), flag)
	}
	o, err := parseOptions(nil)
	require.NoError(t, err)
	assert.Equal(t, []int{1000, 10000}, o.sizes)
}

func TestTheRequestLogCountsWholeSeconds(t *testing.T) {
	start := time.Unix(1000, 0)
	l := newRequestLog(start, []string{"a:1", "b:2"})
	at := func(s float64) time.Time { return start.Add(time.Duration(s * float64(time.Second))) }
	l.record(at(0.1), "a:1", false)
	l.record(at(0.9), "b:2", true)
	l.record(at(1.5), "a:1", false)
	l.record(at(3.2), "b:2", false)
	l.record(at(-1), "a:1", false)

	w := l.between(at(0), at(2))
	assert.Equal(t, window{attempts: 3, failed: 1, byReplica: [replicas]int{2, 1}, seconds: 2, peak: 2}, w)
	assert.InDelta(t, 1.5, w.rate(), 1e-9)
	assert.Equal(t, 1, l.between(at(2), at(10)).attempts, "seconds not reached yet count as none")
}

func TestALinkOutageRunsFromTheFirstFailureToTheNextAnswer(t *testing.T) {
	a := &simAgent{}
	t0 := time.Unix(1000, 0)
	a.attempted(t0, t0.Add(time.Second), "a:1", false)
	a.attempted(t0.Add(2*time.Second), t0.Add(3*time.Second), "a:1", true)
	a.attempted(t0.Add(3*time.Second), t0.Add(4*time.Second), "b:2", true)
	assert.Equal(t, t0.Add(3*time.Second), a.snapshot().link.downSince, "from the end of the first failure")
	a.attempted(t0.Add(5*time.Second), t0.Add(36*time.Second), "b:2", false)
	s := a.snapshot()
	assert.Equal(t, []outage{{from: t0.Add(3 * time.Second), to: t0.Add(5 * time.Second)}}, s.link.outages, "to the start of the answered attempt")
	assert.True(t, s.link.downSince.IsZero())
	assert.Equal(t, "b:2", s.link.replica)
}

func TestReadinessAroundAnOutage(t *testing.T) {
	stop := time.Unix(1000, 0)
	started := stop.Add(10 * time.Second)
	changes := []readinessChange{{at: stop.Add(300 * time.Millisecond), ready: false}, {at: started.Add(2 * time.Second), ready: true}}
	assert.Equal(t, readinessOutcome{wentFalse: true, falseAfter: 300 * time.Millisecond, cameBack: true, trueAfter: 2 * time.Second},
		readinessAround(changes, stop, started))
	assert.False(t, readinessAround(changes[:1], stop, started).cameBack, "still unready")
	assert.False(t, readinessAround(nil, stop, started).wentFalse, "never unready")
}

func TestErrorKindsLeaveOutWhatDiffersByAgent(t *testing.T) {
	problem := fmt.Errorf("PUT /clusters/x/status: %w", &api.Problem{Status: 500, Title: "Internal error", Detail: "database down"})
	assert.Equal(t, "500 Internal error", errorKind(problem))
	assert.Equal(t, "EOF", errorKind(fmt.Errorf("calling the registry: %w", fmt.Errorf("Get \"http://127.0.0.1:1/x\": %w", errors.New("EOF")))))
	failures := map[string]int{"500 Internal error": 3, "EOF": 12, "401 Unauthenticated": 1}
	assert.Equal(t, "12 × `EOF`, 3 × `500 Internal error`, 1 × `401 Unauthenticated`", failureList(failures, 5))
	assert.Equal(t, "12 × `EOF`, and 2 other kinds", failureList(failures, 1))
	assert.Equal(t, "none", failureList(nil, 5))
}

func TestLoggedProblemsFoldWhatDiffersByRequest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "central.log")
	require.NoError(t, os.WriteFile(path, []byte(`{"level":"ERROR","msg":"request failed","error":"reading cluster 12: timeout"}
{"level":"ERROR","msg":"request failed","error":"reading cluster 345: timeout"}
{"level":"INFO","msg":"caravan-central serving"}
{"level":"WARN","msg":"lost the database notification connection; reconnecting","error":"EOF"}
not json
`), 0o644))
	assert.Equal(t, map[string]int{
		"request failed: reading cluster N: timeout":                   2,
		"lost the database notification connection; reconnecting: EOF": 1,
	}, loggedProblems(path, filepath.Join(t.TempDir(), "missing.log")))
}

func TestListingsAreCountedPerChannelAndRefresh(t *testing.T) {
	s := steadyState{listings: 10, refreshes: 5}
	assert.InDelta(t, 0.5, s.listingsPerTurn(), 1e-9, "10 listings over 5 refreshes of 4 channels")
	assert.Zero(t, steadyState{}.listingsPerTurn())
}

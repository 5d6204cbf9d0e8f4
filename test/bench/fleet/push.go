//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// pushedChannel is the channel scenario 1 pushes to: the first of the
// promotion path, dev, whose heads reach its agents without a gate.
var pushedChannel = channelNames[0]

// pushResult is scenario 1 at one fleet size.
type pushResult struct {
	size, pushedAgents int
	rounds             []pushRound
	// toAssignment and toReport are every round's delays, from sending
	// the webhook, sorted.
	toAssignment, toReport []time.Duration
	// onWebhookReplica and onOtherReplica split toAssignment by the
	// replica that answered the agent: the one that took the webhook, and
	// the other, which hears of the new head through NOTIFY.
	onWebhookReplica, onOtherReplica []time.Duration
	// othersWoken counts the agents of other channels that took a new
	// assignment during a round: none should.
	othersWoken int
	// webhookAnswers are the times until the webhooks were answered, which
	// the registry does once it read the branch from git, sorted.
	webhookAnswers []time.Duration
	steady         steadyState
}

// pushRound is one push and its webhook.
type pushRound struct {
	commit         string
	webhookReplica int
	webhookTook    time.Duration
	// raced is set when a periodic refresh read the push before the
	// webhook arrived: the round does not count.
	raced bool
}

// steadyState is what the fleet cost in scenario 1, in its steady window
// and during the pushes, and the registry's reads of the config repo over both.
type steadyState struct {
	steadyCPU, pushCPU cpuUse
	memory             [replicas]host.Memory
	requests           window // in the steady window
	listings, fetches  int
	// refreshes counts the reads of the channels' heads the registry was
	// asked for: each replica's every --git-refresh, and every webhook.
	refreshes float64
	// atEnd is each replica's metrics at the end of scenario 1, during
	// what its counters added during the pushes.
	atEnd, during [replicas]replicaMetrics
	failures      map[string]int
}

// measurePushes runs scenario 1 on a settled deployment: a steady
// window, then rounds pushes to dev, each followed by its webhook,
// alternately to either replica.
func (d *deployment) measurePushes(ctx context.Context) (pushResult, error) {
	res := pushResult{size: d.size, pushedAgents: len(d.fleet.of(pushedChannel))}
	failures0 := d.fleet.failures()
	listings0, fetches0 := d.w.registryListings()
	host.Progress("1. %s of steady state", d.w.opts.steady)
	cpu0, err := d.sampleCPU()
	if err != nil {
		return res, err
	}
	sleep(ctx, d.w.opts.steady)
	cpu1, err := d.sampleCPU()
	if err != nil {
		return res, err
	}
	var before [replicas]replicaMetrics
	for i, r := range d.replicas {
		if before[i], err = r.metrics(ctx); err != nil {
			return res, err
		}
	}
	webhooks := 0
	for len(res.rounds) < d.w.opts.rounds {
		if webhooks >= 2*d.w.opts.rounds {
			return res, fmt.Errorf("%d of %d pushes raced with the periodic refresh", webhooks-len(res.rounds), webhooks)
		}
		r, err := d.pushRound(ctx, webhooks, &res)
		webhooks++
		if err != nil {
			return res, fmt.Errorf("push %d: %w", webhooks, err)
		}
		if !r.raced {
			res.rounds = append(res.rounds, r)
			res.webhookAnswers = append(res.webhookAnswers, r.webhookTook)
		}
	}
	for _, s := range [][]time.Duration{res.toAssignment, res.toReport, res.onWebhookReplica, res.onOtherReplica, res.webhookAnswers} {
		slices.Sort(s)
	}
	cpu2, err := d.sampleCPU()
	if err != nil {
		return res, err
	}
	res.steady, err = d.steady(ctx, [3]cpuSample{cpu0, cpu1, cpu2}, listings0, fetches0, before)
	res.steady.refreshes += float64(webhooks)
	res.steady.failures = since(d.fleet.failures(), failures0)
	return res, err
}

// pushRound pushes a commit to dev, sends the webhook to one replica and
// waits until every agent of dev reported the commit.
func (d *deployment) pushRound(ctx context.Context, round int, res *pushResult) (pushRound, error) {
	agents := d.fleet.of(pushedChannel)
	pushed := time.Now()
	commit, err := d.w.git.Commit(configRepo, pushedChannel, fmt.Sprintf("fleet bench: push %d", round+1),
		map[string][]byte{"fleet/push": []byte(fmt.Sprintf("%d\n", round+1))})
	if err != nil {
		return pushRound{}, fmt.Errorf("pushing: %w", err)
	}
	r := pushRound{commit: commit, webhookReplica: round % replicas}
	host.Progress("1. push %d: %s to %s, webhook to replica %d", round+1, commit[:12], pushedChannel, r.webhookReplica+1)
	sent := time.Now()
	if err := d.sendWebhook(ctx, d.replicas[r.webhookReplica], pushedChannel, commit); err != nil {
		return r, err
	}
	r.webhookTook = time.Since(sent)
	holds := func(a *api.Assignment) bool { return a.Channel.Commit == commit }
	reports := func(version string) bool { return strings.HasPrefix(version, commit+"#") }
	timeout := time.Minute + time.Duration(len(agents))*10*time.Millisecond
	if err := await(ctx, "the pushed commit reported", agents, timeout, func(s snapshot) bool {
		_, ok := s.firstReport(pushed, reports)
		return ok
	}); err != nil {
		return r, err
	}
	var toAssignment, toReport, onWebhook, onOther []time.Duration
	for _, a := range agents {
		s := a.snapshot()
		held, ok := s.firstAssignment(pushed, holds)
		reported, _ := s.firstReport(pushed, reports)
		if !ok || held.at.Before(sent) {
			r.raced = true
			break
		}
		toAssignment, toReport = append(toAssignment, held.at.Sub(sent)), append(toReport, reported.at.Sub(sent))
		if held.replica == d.replicas[r.webhookReplica].host() {
			onWebhook = append(onWebhook, held.at.Sub(sent))
		} else {
			onOther = append(onOther, held.at.Sub(sent))
		}
	}
	if r.raced {
		host.Progress("   a periodic refresh read the push before the webhook; pushing again")
		return r, nil
	}
	res.toAssignment, res.toReport = append(res.toAssignment, toAssignment...), append(res.toReport, toReport...)
	res.onWebhookReplica, res.onOtherReplica = append(res.onWebhookReplica, onWebhook...), append(res.onOtherReplica, onOther...)
	for _, a := range d.fleet.agents {
		if a.cluster.Channel == pushedChannel {
			continue
		}
		if _, woken := a.snapshot().firstAssignment(pushed, func(*api.Assignment) bool { return true }); woken {
			res.othersWoken++
		}
	}
	slices.Sort(toAssignment)
	host.Progress("   %d agents: assignment p99 %s, reported p99 %s", len(agents),
		host.Percentile(toAssignment, 0.99).Round(time.Millisecond), host.Percentile(slices.Sorted(slices.Values(toReport)), 0.99).Round(time.Millisecond))
	return r, nil
}

// sendWebhook announces the push to a replica as a plain JSON payload
// signed as GitHub signs its own (X-Hub-Signature-256).
func (d *deployment) sendWebhook(ctx context.Context, r *replica, branch, commit string) error {
	body, err := json.Marshal(map[string]string{"ref": "refs/heads/" + branch, "after": commit, "repository_url": d.w.git.RepoURL(configRepo)})
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(d.w.secrets.webhook))
	mac.Write(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/api/v1/webhooks/git", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("sending the webhook: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("the webhook was answered %d, not 204: %s", resp.StatusCode, answer)
	}
	return nil
}

// steady reads what the fleet cost over scenario 1, from CPU samples at
// its start, at the end of its steady window and at its end, and the
// replicas' metrics before the pushes.
func (d *deployment) steady(ctx context.Context, cpu [3]cpuSample, listings0, fetches0 int, before [replicas]replicaMetrics) (steadyState, error) {
	s := steadyState{steadyCPU: cpu[0].until(cpu[1]), pushCPU: cpu[1].until(cpu[2]), requests: d.log.between(cpu[0].at, cpu[1].at)}
	listings, fetches := d.w.registryListings()
	s.listings, s.fetches = listings-listings0, fetches-fetches0
	s.refreshes = replicas * cpu[2].at.Sub(cpu[0].at).Seconds() / d.w.opts.gitRefresh.Seconds()
	for i, r := range d.replicas {
		u, err := r.usage()
		if err != nil {
			return s, err
		}
		s.memory[i] = u.mem
		if s.atEnd[i], err = r.metrics(ctx); err != nil {
			return s, err
		}
		s.during[i] = s.atEnd[i].minus(before[i])
	}
	return s, nil
}

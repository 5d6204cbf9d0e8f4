//go:build linux

package main

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The goals, at goalSize agents.
const (
	sectionName         = "fleet"
	goalSize            = 10000
	goalAssignmentP99   = 2 * time.Second
	goalListingsPerTurn = 1.0
	goalRSS             = 300 << 20
	goalKillRatio       = 3.0
)

type report struct {
	opts                  options
	started               time.Time
	elapsed               time.Duration
	loadBefore, loadAfter string
	sizes                 []sizeResult
	outage                outageResult
	failover              failoverResult
}

// sizeResult is one fleet size's deployment and scenario 1.
type sizeResult struct {
	push              pushResult
	seeding, settling time.Duration
	waitingAtSettle   [replicas]int
	// logged counts the replicas' logged warnings and errors over all the
	// scenarios at this size.
	logged map[string]int
}

func newReport(o options) *report {
	return &report{opts: o, started: time.Now().UTC(), loadBefore: loadAverage()}
}

func (r *report) finish() {
	r.elapsed, r.loadAfter = time.Since(r.started), loadAverage()
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (r *report) command() string {
	return strings.TrimSpace("go run ./test/bench/fleet " + strings.Join(r.opts.args, " "))
}

func (r *report) largest() sizeResult { return r.sizes[len(r.sizes)-1] }

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	var sizes []string
	for _, s := range r.sizes {
		sizes = append(sizes, host.Thousands(s.push.size))
	}
	fmt.Fprintf(&b, "## Fleet: %s simulated agents on two caravan-central replicas and PostgreSQL\n\n", strings.Join(sizes, " and "))
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `%s` (%s in all; the machine's load average %s before, %s after; "+
		"other workers share its cores, their share is in the tables as *other processes*).\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.command(), r.elapsed.Round(time.Second), r.loadBefore, r.loadAfter)
	r.writeSetup(&b)
	r.writeGoals(&b)
	r.writePushes(&b)
	r.writeOutage(&b)
	r.writeFailover(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *report) writeSetup(b *strings.Builder) {
	urls := "both replicas' URLs (`a,b`, as `--registry-url` takes them): the client picks one, stays while it answers and moves to the other when it does not"
	if r.failover.unsupported != nil {
		urls = "one replica's URL each, alternately (the client takes no more)"
	}
	fmt.Fprintf(b, "Two caravan-central replicas, built from cmd/caravan-central and each run as a process of its own on 127.0.0.1, serve one PostgreSQL "+
		"database (test/postgres: `initdb`, `fsync=off`) with the fleet seeded through the store API: one account, clusters with 2 node pools and "+
		"3 config items each, a quarter on each channel (dev, alpha, beta, stable). They read the channels' heads from the config repo on the test "+
		"git server (`git http-backend`, one branch per channel) every `--git-refresh %s`, and at once for a webhook (`--webhook-secret-file`). "+
		"Each agent is a goroutine of this process with pkg/registry's client built as caravan-agent builds it (one retry, backoff 0.5 s to %s, "+
		"failback %s), its own connection pool dialling from its own loopback address (127.1.x.y), and %s. The agents start evenly over one "+
		"interval; each long-polls its assignment (`?wait=`: %s less up to a tenth, at random; with its ETag) and reports its status after every answer (PUT, with its heartbeat): "+
		"the new version (`<commit>#<hash>`, as the agent computes it) when the answer brought one, else the same again, so a heartbeat every "+
		"%s. They read no git: the assignment names the channel's head. Requests are counted at the agents' transports, every attempt, retries "+
		"and refused connections included.\n\n",
		r.opts.gitRefresh, agentBackoffCap, r.opts.failback, urls, r.opts.interval, r.opts.interval)
	if len(r.opts.centralEnv) > 0 {
		fmt.Fprintf(b, "The replicas ran with `%s` in their environment.\n\n", r.opts.centralEnv.String())
	}
}

func (r *report) writeGoals(b *strings.Builder) {
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	big := r.largest()
	atGoal := big.push.size >= goalSize
	unmeasured := fmt.Sprintf("not measured (%s agents, not %s)", host.Thousands(big.push.size), host.Thousands(goalSize))
	judge := func(ok bool) string {
		if !atGoal {
			return unmeasured
		}
		return yesNo(ok)
	}
	p99 := host.Percentile(big.push.toAssignment, 0.99)
	fmt.Fprintf(b, "| 1. A push to dev, then its webhook, at %s agents: p99 from the webhook to an agent of dev holding the new head | %s | ≤ %s | %s |\n",
		host.Thousands(big.push.size), secs(p99), secs(goalAssignmentP99), judge(p99 <= goalAssignmentP99))
	var perTurn []string
	listingsOK := true
	for _, s := range r.sizes {
		v := s.push.steady.listingsPerTurn()
		perTurn = append(perTurn, fmt.Sprintf("%.2f at %s", v, host.Thousands(s.push.size)))
		listingsOK = listingsOK && v <= goalListingsPerTurn
	}
	fmt.Fprintf(b, "| 2. The registry's ref listings of the config repo, per channel per refresh | %s | ≤ %.0f, whatever N | %s |\n",
		strings.Join(perTurn, ", "), goalListingsPerTurn, yesNo(listingsOK))
	m := big.push.steady.memory
	fmt.Fprintf(b, "| 3. Peak RSS (VmHWM) per replica at %s agents | %s / %s | ≤ %s | %s |\n",
		host.Thousands(big.push.size), host.MiB(m[0].Peak), host.MiB(m[1].Peak), host.MiB(goalRSS), judge(m[0].Peak <= goalRSS && m[1].Peak <= goalRSS))
	o := r.outage
	fmt.Fprintf(b, "| 4. PostgreSQL stopped %s and started under %s agents: both replicas unready and ready again; the write accepted before the stop and the one after the start held by every agent | %s; %s and %s of %s agents | all | %s |\n",
		r.opts.outage, host.Thousands(o.size), o.readinessSummary(), host.Thousands(len(o.before.toHold)), host.Thousands(len(o.after.toHold)),
		host.Thousands(o.size), yesNo(o.met()))
	r.writeFailoverGoals(b, judge)
	b.WriteString("\n")
}

func (r *report) writeFailoverGoals(b *strings.Builder, judge func(bool) string) {
	f := r.failover
	if f.unsupported != nil {
		fmt.Fprintf(b, "| 5.–8. A replica killed with SIGKILL under %s agents | not run: %s | | **no** |\n", host.Thousands(f.size), f.unsupported)
		return
	}
	fmt.Fprintf(b, "| 5. Requests in the %s after the kill, against the %s before | %.2f× (%s vs %s req/s) | ≤ %.0f× | %s |\n",
		r.opts.killWindow, r.opts.killWindow, f.ratio(), rate(f.afterKill.rate()), rate(f.steady.rate()), goalKillRatio, judge(f.ratio() <= goalKillRatio))
	fmt.Fprintf(b, "| 6. Longest time an agent was without a registry after the kill | %s | ≤ %s (the client's backoff cap) | %s |\n",
		secs(f.longest()), secs(agentBackoffCap), judge(f.longest() <= agentBackoffCap))
	fmt.Fprintf(b, "| 7. Nothing lost: agents not holding a write made after the kill; statuses accepted and lost | %d; %d | 0; 0 | %s |\n",
		f.missed, f.statusesLost, judge(f.missed == 0 && f.statusesLost == 0))
	spread := "not within " + f.spreadWait.String()
	if f.spread > 0 {
		spread = "after " + secs(f.spread)
	}
	fmt.Fprintf(b, "| 8. The restarted replica holds its share of the polls again (half the agents it answered last before the kill, or more) | %s | within the failback and 2 intervals (%s) | %s |\n",
		spread, f.spreadWait, judge(f.spread > 0))
}

func (r *report) writePushes(b *strings.Builder) {
	fmt.Fprintf(b, "### 1. A push to dev, then its webhook\n\n"+
		"At each size, %d times: a commit pushed to dev through the git server (`git push`), then the webhook (a plain `{ref, after}` payload "+
		"signed as GitHub signs, `X-Hub-Signature-256`) sent to replica 1, 2, 1, … in turn. Times run from sending the webhook to an agent of dev "+
		"holding the new head in its assignment (`channel.commit`), and to the registry accepting its status PUT of that version. A push that a "+
		"periodic refresh read before its webhook came would not count, and another is made.\n\n", r.opts.rounds)
	b.WriteString("| Fleet | Agents of dev × pushes | Webhook answered (the branch read from git), median | Webhook → assignment p50 / p90 / p99 / max | " +
		"Webhook → status reported p50 / p90 / p99 / max | p99 via the webhook's replica / via the other (NOTIFY) | Agents of other channels woken |\n" +
		"|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.sizes {
		p := s.push
		fmt.Fprintf(b, "| %s | %s × %d | %s | %s | %s | %s / %s | %d |\n", host.Thousands(p.size), host.Thousands(p.pushedAgents), len(p.rounds),
			secs(host.Percentile(p.webhookAnswers, 0.5)), quantiles(p.toAssignment), quantiles(p.toReport),
			secs(host.Percentile(p.onWebhookReplica, 0.99)), secs(host.Percentile(p.onOtherReplica, 0.99)), p.othersWoken)
	}
	b.WriteString("\n| Fleet | Replica | CPU, steady window | CPU, during the pushes | Peak RSS (VmHWM) | RSS at the end | Waiting long-polls at the end | " +
		"During the pushes: database reads of clusters' own inputs / transactions writing statuses (statuses) | " +
		"Connections refused at their address's limit / accepts that waited for an unauthenticated one, in all |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.sizes {
		st := s.push.steady
		for i := range replicas {
			end, during := st.atEnd[i], st.during[i]
			fmt.Fprintf(b, "| %s | %d | %.2f cores | %.2f cores | %s | %s | %s | %s / %s (%s) | %s / %s |\n", host.Thousands(s.push.size), i+1,
				st.steadyCPU.cores(st.steadyCPU.replicas[i]), st.pushCPU.cores(st.pushCPU.replicas[i]), host.MiB(st.memory[i].Peak), host.MiB(st.memory[i].RSS),
				host.Thousands(end.waiting), host.Thousands(during.inputReads), host.Thousands(during.statusTransactions), host.Thousands(during.statusReports),
				host.Thousands(end.refused), host.Thousands(end.acceptWaits))
		}
	}
	b.WriteString("\n| Fleet | Steady window | Agents' requests per second (peak second) | CPU: the agents (this process) / PostgreSQL / other processes | " +
		"Scenario 1 in all | Registry's ref listings / fetches of the config repo | Refreshes (2 × time ÷ `--git-refresh`, + webhooks) | Listings per channel per refresh |\n" +
		"|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range r.sizes {
		st := s.push.steady
		c := st.steadyCPU
		fmt.Fprintf(b, "| %s | %s | %s (%s) | %.2f / %.2f / %.2f cores | %s | %d / %d | %.1f | %.2f |\n", host.Thousands(s.push.size), secs(c.wall),
			rate(st.requests.rate()), host.Thousands(st.requests.peak), c.cores(c.bench), c.cores(c.pg), c.cores(c.other),
			secs(c.wall+st.pushCPU.wall), st.listings, st.fetches, st.refreshes, st.listingsPerTurn())
	}
	b.WriteString("\n")
	for _, s := range r.sizes {
		fmt.Fprintf(b, "%s agents: seeding took %s; from the first agent's start until every agent had reported, %s; the replicas then held %s and %s "+
			"waiting long-polls. Failed polls and reports in scenario 1: %s. The replicas logged, over every scenario at this size: %s.\n\n",
			host.Thousands(s.push.size), secs(s.seeding), secs(s.settling), host.Thousands(s.waitingAtSettle[0]), host.Thousands(s.waitingAtSettle[1]),
			failureList(s.push.steady.failures, 5), failureList(s.logged, 5))
	}
	b.WriteString("A replica answers the polls a change woke with a few workers, from its cache of each cluster's own inputs and of what clusters " +
		"share, and keeps each answered poll's connection for the agent's next request; statuses arriving together are written in one " +
		"transaction. Beyond `--max-unauthenticated-conns` (1,024 by default) connections that have not presented a token yet, a new one waits " +
		"to be accepted until one of those does; beyond `--max-unauthenticated-conns-per-ip` (128) it is closed at once, and its agent sees " +
		"`EOF` or `connection reset by peer`.\n\n")
}

// failureList writes the most frequent kinds of failures, up to most, most first.
func failureList(m map[string]int, most int) string {
	if len(m) == 0 {
		return "none"
	}
	kinds := slices.Collect(maps.Keys(m))
	slices.SortFunc(kinds, func(a, b string) int { return cmp.Or(m[b]-m[a], strings.Compare(a, b)) })
	var parts []string
	for _, k := range kinds[:min(len(kinds), most)] {
		parts = append(parts, fmt.Sprintf("%s × `%s`", host.Thousands(m[k]), strings.ReplaceAll(k, "`", "'")))
	}
	if len(kinds) > most {
		parts = append(parts, fmt.Sprintf("and %d other kinds", len(kinds)-most))
	}
	return strings.Join(parts, ", ")
}

// listingsPerTurn is the registry's ref listings per channel per refresh.
func (s steadyState) listingsPerTurn() float64 {
	if s.refreshes == 0 {
		return 0
	}
	return float64(s.listings) / float64(len(channelNames)) / s.refreshes
}

func (r *report) writeOutage(b *strings.Builder) {
	o := r.outage
	fmt.Fprintf(b, "### 2. PostgreSQL stopped and started under %s agents\n\n"+
		"A config item written on the fleet's account through replica 1 (every cluster's assignment changes), then at once `pg_ctl stop -m fast` "+
		"(took %s); PostgreSQL down %s; `pg_ctl restart` (took %s, until it accepted connections); then a second config item written through "+
		"replica 2, tried every 100 ms until accepted (%d tries, %s). /readyz of both replicas probed every 100 ms. The agents' polls and reports "+
		"that failed meanwhile: %s.\n\n",
		host.Thousands(o.size), secs(o.stopTook), secs(o.down), secs(o.startTook), o.after.tries, secs(o.after.trying), failureList(o.failures, 5))
	b.WriteString("| | Replica 1 | Replica 2 |\n|---|---:|---:|\n")
	row := func(what string, cell func(readinessOutcome, int) string) {
		fmt.Fprintf(b, "| %s | %s | %s |\n", what, cell(o.readiness[0], o.listenLost[0]), cell(o.readiness[1], o.listenLost[1]))
	}
	row("/readyz unready, after the stop began", func(x readinessOutcome, _ int) string {
		if !x.wentFalse {
			return "**never**"
		}
		return secs(x.falseAfter)
	})
	row("/readyz ready again, after the start ended (it needs LISTEN back)", func(x readinessOutcome, _ int) string {
		if !x.cameBack {
			return "**not**"
		}
		return secs(x.trueAfter)
	})
	row("LISTEN connection lost (its log)", func(_ readinessOutcome, n int) string { return fmt.Sprintf("%d", n) })
	b.WriteString("\n| Write | Agents holding it | Held before PostgreSQL was down | Acceptance → held p50 / p90 / p99 / max | Acceptance → reported p50 / p90 / p99 / max |\n" +
		"|---|---:|---:|---:|---:|\n")
	for _, w := range []struct {
		name  string
		reach writeReach
	}{{"accepted just before the stop (replica 1)", o.before}, {"made just after the start (replica 2)", o.after}} {
		fmt.Fprintf(b, "| %s | %s of %s | %s | %s | %s |\n", w.name, host.Thousands(len(w.reach.toHold)), host.Thousands(o.size),
			host.Thousands(w.reach.beforeDown), quantiles(w.reach.toHold), quantiles(w.reach.toReport))
	}
	b.WriteString("\n")
	if o.failures[unauthenticated] > 0 {
		fmt.Fprintf(b, "While PostgreSQL was down the replicas answered %s polls and reports `%s`: they could not look the agents' tokens up, "+
			"and said the tokens were bad where a 503 would say to retry.\n\n", host.Thousands(o.failures[unauthenticated]), unauthenticated)
	}
}

// unauthenticated is the errorKind of a 401 answer.
const unauthenticated = "401 Unauthenticated"

func (o outageResult) readinessSummary() string {
	var parts []string
	for i, x := range o.readiness {
		switch {
		case !x.wentFalse:
			parts = append(parts, fmt.Sprintf("replica %d never unready", i+1))
		case !x.cameBack:
			parts = append(parts, fmt.Sprintf("replica %d not ready again", i+1))
		default:
			parts = append(parts, fmt.Sprintf("replica %d unready after %s, ready %s after the start", i+1, secs(x.falseAfter), secs(x.trueAfter)))
		}
	}
	return strings.Join(parts, ", ")
}

func (o outageResult) met() bool {
	for _, x := range o.readiness {
		if !x.wentFalse || !x.cameBack {
			return false
		}
	}
	return len(o.before.toHold) == o.size && len(o.after.toHold) == o.size
}

func (r *report) writeFailover(b *strings.Builder) {
	f := r.failover
	fmt.Fprintf(b, "### 3. Replica %d killed with SIGKILL under %s agents\n\n", killedReplica+1, host.Thousands(f.size))
	if f.unsupported != nil {
		fmt.Fprintf(b, "Not run: %s. The scenario's code is ready (test/bench/fleet/failover.go) and runs once the client fails over.\n\n", f.unsupported)
		return
	}
	fmt.Fprintf(b, "After %s of steady state, replica %d was killed with SIGKILL; its agents (%s, those it answered last) lost their "+
		"connections at once. After %s more, a config item was written through the survivor, and every agent had to hold it and report it; "+
		"then every agent's last accepted status was read back from the registry. Then replica %d was started again, with the same command.\n\n",
		r.opts.killWindow, killedReplica+1, host.Thousands(f.moved), r.opts.killWindow, killedReplica+1)
	b.WriteString("| | Before the kill | After the kill |\n|---|---:|---:|\n")
	fmt.Fprintf(b, "| Agents' requests per second over %s (peak second) | %s (%s) | %s (%s) |\n", r.opts.killWindow,
		rate(f.steady.rate()), host.Thousands(f.steady.peak), rate(f.afterKill.rate()), host.Thousands(f.afterKill.peak))
	fmt.Fprintf(b, "| of which failed (no connection, or 5xx) | %s | %s |\n", host.Thousands(f.steady.failed), host.Thousands(f.afterKill.failed))
	fmt.Fprintf(b, "| Waiting long-polls, replica 1 / replica 2 | %s / %s | %s / %s |\n",
		host.Thousands(f.waitingBefore[0]), host.Thousands(f.waitingBefore[1]), host.Thousands(f.waitingAfterKill[0]), host.Thousands(f.waitingAfterKill[1]))
	k := f.survivorAfterKill
	fmt.Fprintf(b, "| Connections the survivor refused at their address's limit / accepts that waited for an unauthenticated one | | %s / %s |\n",
		host.Thousands(k.refused), host.Thousands(k.acceptWaits))
	fmt.Fprintf(b, "| The survivor's database reads of clusters' own inputs / transactions writing statuses (statuses) | | %s / %s (%s) |\n",
		host.Thousands(k.inputReads), host.Thousands(k.statusTransactions), host.Thousands(k.statusReports))
	fmt.Fprintf(b, "| The survivor's peak RSS (VmHWM), serving every agent, by the end of the window | | %s |\n", host.MiB(f.survivorPeakInWindow))
	fmt.Fprintf(b, "| The same once every agent took the write made after it (every poll answered at once, every agent reporting at once) | | %s |\n\n",
		host.MiB(f.survivorPeak))
	fmt.Fprintf(b, "Time without a registry after the kill, per agent (from its first failed attempt to the start of the next answered one): "+
		"p50 %s, p90 %s, p99 %s, max %s. The agents' failed polls and reports from the kill until all held the write: %s. "+
		"After the restart the replicas held %s and %s waiting long-polls.\n\n",
		secs(host.Percentile(f.gaps, 0.5)), secs(host.Percentile(f.gaps, 0.9)), secs(host.Percentile(f.gaps, 0.99)), secs(f.longest()),
		failureList(f.failures, 5), host.Thousands(f.waitingAfterRestart[0]), host.Thousands(f.waitingAfterRestart[1]))
}

func quantiles(sorted []time.Duration) string {
	if len(sorted) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s / %s / %s / %s", secs(host.Percentile(sorted, 0.5)), secs(host.Percentile(sorted, 0.9)),
		secs(host.Percentile(sorted, 0.99)), secs(sorted[len(sorted)-1]))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func rate(perSecond float64) string { return host.Thousands(int(perSecond + 0.5)) }

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

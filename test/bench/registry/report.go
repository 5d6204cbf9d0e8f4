//go:build linux

package main

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// The goals.
const (
	goalRatio    = 0.5
	goalFullGets = 5000.0
	goalPuts     = 1000.0
	goalRSS      = 200 << 20
	// sectionName names the registry's section of BENCHMARKS.md.
	sectionName = "registry"
)

type report struct {
	opts      options
	started   time.Time
	command   string
	seeding   time.Duration
	prime     primeResult
	steady    loadResult
	bare      loadResult
	full      loadResult
	put       loadResult
	polls     longPollResult
	barePolls longPollResult

	memIdle, memPrimed, memLoaded, memEnd memory
}

func newReport(o options) *report {
	return &report{opts: o, started: time.Now().UTC(), command: command()}
}

func (r *report) markdown() string {
	startMarker, endMarker := host.Markers(sectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	b.WriteString("## Registry: caravan-central on SQLite\n\n")
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `%s` (its bare server: `net/http` of the same Go).\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), r.command)
	fmt.Fprintf(&b, "%s clusters in one account (2 node pools and 3 config items each, spread over the channels dev, alpha, beta and stable, "+
		"each with its own agent token) in a SQLite file. caravan-central runs as its own process on 127.0.0.1; %d concurrent clients "+
		"of a Go load generator, on the same cores, each with a keep-alive connection and its own clusters and their agent tokens, "+
		"send requests for %s of warm-up and then %s measured; scenario 1 alternates caravan-central and the bare server in %d rounds "+
		"of %s + %s, so that both meet whatever else the machine runs alike. Latency is per request, seen by the client.\n\n",
		host.Thousands(r.opts.clusters), r.opts.clients, r.opts.warmup, r.opts.duration,
		steadyRounds, r.opts.warmup/steadyRounds, r.opts.duration/steadyRounds)
	if len(r.opts.centralEnv) > 0 {
		fmt.Fprintf(&b, "caravan-central ran with `%s` in its environment.\n\n", r.opts.centralEnv.String())
	}
	r.writeLoadTable(&b)
	r.writeGoalTable(&b)
	r.writeLongPollTable(&b)
	r.writeMemoryTable(&b)
	r.writeNotes(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *report) writeLoadTable(b *strings.Builder) {
	b.WriteString("| Scenario | Requests | req/s | p50 | p99 | Errors | CPU cores: server + load generator (+ other processes) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	rows := []struct {
		name string
		res  loadResult
	}{
		{"1. Assignment GET, matching `If-None-Match` → 304", r.steady},
		{"1. Baseline: bare `net/http` handler → 304", r.bare},
		{fmt.Sprintf("2. Assignment GET, no `If-None-Match` → 200 (%s bytes)", host.Thousands(r.prime.bodyBytes)), r.full},
		{fmt.Sprintf("3. Status PUT (heartbeats; 1 in %d reports a new phase)", rolloutEvery), r.put},
	}
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %d | %.2f + %.2f (+ %.2f) |\n", row.name, host.Thousands(row.res.requests),
			host.Thousands(int(row.res.rate+0.5)), ms(row.res.p50), ms(row.res.p99), row.res.errors, row.res.serverCPU, row.res.benchCPU, row.res.otherCPU)
	}
	b.WriteString("\n")
}

func (r *report) ratio() float64 {
	if r.bare.rate == 0 {
		return 0
	}
	return r.steady.rate / r.bare.rate
}

func (r *report) writeGoalTable(b *strings.Builder) {
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	fmt.Fprintf(b, "| 1. 304 steady state, as a share of the bare server's rate | %.2f (%s vs %s req/s) | ≥ %.1f | %s |\n",
		r.ratio(), host.Thousands(int(r.steady.rate+0.5)), host.Thousands(int(r.bare.rate+0.5)), goalRatio,
		met(r.ratio() >= goalRatio, r.steady.errors+r.bare.errors))
	fmt.Fprintf(b, "| 2. Full assignment GETs | %s req/s | ≥ %s req/s | %s |\n",
		host.Thousands(int(r.full.rate+0.5)), host.Thousands(goalFullGets), met(r.full.rate >= goalFullGets, r.full.errors))
	fmt.Fprintf(b, "| 3. Status PUTs on SQLite | %s req/s | ≥ %s req/s | %s |\n",
		host.Thousands(int(r.put.rate+0.5)), host.Thousands(goalPuts), met(r.put.rate >= goalPuts, r.put.errors))
	held := r.polls.waiting >= r.polls.wanted
	fmt.Fprintf(b, "| 4. RSS holding %s clusters and %s open long-polls | %s (bare `net/http`: %s) | ≤ %s | %s |\n",
		host.Thousands(r.opts.clusters), host.Thousands(r.polls.wanted), host.MiB(r.polls.held.RSS), host.MiB(r.barePolls.held.RSS), host.MiB(goalRSS),
		met(held && r.polls.held.RSS <= goalRSS, r.polls.errors))
	b.WriteString("\n")
}

// met says whether a goal is met; errors void a rate however high.
func met(ok bool, errors int) string {
	switch {
	case errors > 0:
		return fmt.Sprintf("**no** (%d errors)", errors)
	case ok:
		return "yes"
	default:
		return "**no**"
	}
}

func (r *report) writeLongPollTable(b *strings.Builder) {
	fmt.Fprintf(b, "| 4. %s long-polls (`?wait=30s`, matching ETag), one connection each | caravan-central | bare `net/http` handler holding the request |\n",
		host.Thousands(r.polls.wanted))
	b.WriteString("|---|---:|---:|\n")
	c, n := r.polls, r.barePolls
	rows := []struct{ what, central, bare string }{
		{"waiting, by the server's count", host.Thousands(c.waiting), host.Thousands(n.waiting)},
		{"all waiting after", seconds(c.opening), seconds(n.opening)},
		{"RSS before → while they wait", host.MiB(c.before.RSS) + " → " + host.MiB(c.held.RSS), host.MiB(n.before.RSS) + " → " + host.MiB(n.held.RSS)},
		{"RSS per waiting poll", kib(c.perPoll()), kib(n.perPoll())},
		{"Go heap in use while they wait", host.MiB(c.held.goHeap), host.MiB(n.held.goHeap)},
		{"goroutine stacks while they wait", host.MiB(c.held.goStacks), host.MiB(n.held.goStacks)},
		{"goroutines while they wait", host.Thousands(c.held.goroutines), host.Thousands(n.held.goroutines)},
		{"errors", strconv.Itoa(c.errors), strconv.Itoa(n.errors)},
	}
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s |\n", row.what, row.central, row.bare)
	}
	b.WriteString("\n")
}

func (r *report) writeMemoryTable(b *strings.Builder) {
	b.WriteString("| caravan-central memory | RSS | Go heap in use | Goroutine stacks | Goroutines |\n|---|---:|---:|---:|---:|\n")
	rows := []struct {
		when string
		mem  memory
	}{
		{"idle after start, " + host.Thousands(r.opts.clusters) + " clusters in the database", r.memIdle},
		{"after every assignment was fetched once (all cached)", r.memPrimed},
		{"after the load scenarios", r.memLoaded},
		{fmt.Sprintf("holding %s long-polls (%s waiting)", host.Thousands(r.polls.wanted), host.Thousands(r.polls.waiting)), r.polls.held},
		{"after the long-polls ended", r.memEnd},
	}
	for _, row := range rows {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", row.when, host.MiB(row.mem.RSS), host.MiB(row.mem.goHeap), host.MiB(row.mem.goStacks), host.Thousands(row.mem.goroutines))
	}
	fmt.Fprintf(b, "| peak over the run (VmHWM) | %s | | | |\n\n", host.MiB(r.memEnd.Peak))
}

func (r *report) writeNotes(b *strings.Builder) {
	fmt.Fprintf(b, "Seeding %s clusters with their node pools and tokens through the store API took %.1f s. "+
		"The first fetch of every assignment, built from the database, ran at %s req/s.\n",
		host.Thousands(r.opts.clusters), r.seeding.Seconds(), host.Thousands(int(float64(r.prime.requests)/r.prime.elapsed.Seconds()+0.5)))
	for _, e := range []struct{ name, err string }{
		{"1. caravan-central 304", r.steady.firstError}, {"1. bare 304", r.bare.firstError},
		{"2. full GET", r.full.firstError}, {"3. status PUT", r.put.firstError}, {"4. long-polls", r.polls.firstError}, {"4. bare long-polls", r.barePolls.firstError},
	} {
		if e.err != "" {
			fmt.Fprintf(b, "\nFirst error of %s: `%s`\n", e.name, strings.ReplaceAll(e.err, "`", "'"))
		}
	}
	if r.polls.held.RSS > goalRSS && r.barePolls.waiting > 0 {
		fmt.Fprintf(b, "\nEach waiting long-poll adds %s to caravan-central's RSS, and %s to the bare server's, which holds nothing but "+
			"the request in its handler: %s such requests cost `net/http` alone %s, before caravan-central holds anything.\n",
			kib(r.polls.perPoll()), kib(r.barePolls.perPoll()), host.Thousands(r.barePolls.waiting), host.MiB(r.barePolls.held.RSS-r.barePolls.before.RSS))
	}
	if r.polls.waiting < r.polls.wanted {
		fmt.Fprintf(b, "\nOnly %s of %s long-polls were waiting when the benchmark gave up.\n", host.Thousands(r.polls.waiting), host.Thousands(r.polls.wanted))
	}
	b.WriteString("\n")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func kib(n int64) string { return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10)) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

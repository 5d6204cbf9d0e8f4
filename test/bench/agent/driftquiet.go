//go:build linux

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/bench/host"
)

// quietSide is what one process asked of the API server while nothing
// changed.
type quietSide struct {
	requests apicount.Tally
	writes   int
	// gets and patches are the requests about one object (PATCHes dry-run
	// or not), by resource: what watches alone would make unnecessary.
	gets, patches map[string]int
	// managed counts those about the objects of the process's copy, the
	// ones the goal is about; own, by resource, the rest, about the
	// process's own objects, such as the agent's ClusterConfig.
	managed int
	own     map[string]int
	cpu     time.Duration
}

// quietResult is item 3.
type quietResult struct {
	length        time.Duration
	caravan, flux quietSide
}

// measureQuiet is item 3: both processes at once, for -quiet, with no
// edit, commit or artifact.
func (d *driftRun) measureQuiet(ctx context.Context) error {
	if _, err := waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	host.Progress("drift 3. %s in which nothing changes", d.b.opts.quiet)
	_, _, agentCPU, _ := procStat(d.agent.pid())
	_, _, fluxCPU, _ := procStat(d.flux.Pid())
	from := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-d.agent.done:
		return fmt.Errorf("caravan-agent exited (%v):\n%s", d.agent.waitErr, tailFile(d.agent.log, 3000))
	case <-time.After(d.b.opts.quiet):
	}
	to := time.Now()
	r := &d.rep.quietRun
	r.length = to.Sub(from)
	r.caravan = quietSideOf(d.agentProxy.Requests(from, to), processNS)
	r.flux = quietSideOf(d.fluxProxy.Requests(from, to), fluxNS)
	if _, _, cpu, err := procStat(d.agent.pid()); err == nil {
		r.caravan.cpu = cpu - agentCPU
	}
	if _, _, cpu, err := procStat(d.flux.Pid()); err == nil {
		r.flux.cpu = cpu - fluxCPU
	}
	host.Progress("   caravan-agent %s requests, kustomize-controller %s", host.Thousands(r.caravan.requests.Total), host.Thousands(r.flux.requests.Total))
	return nil
}

// quietSideOf sums up requests of the process whose copy of the objects
// is in the namespaces PREFIX-*.
func quietSideOf(reqs []apicount.Request, prefix string) quietSide {
	q := quietSide{requests: apicount.Count(reqs), gets: map[string]int{}, patches: map[string]int{}, own: map[string]int{}}
	for _, r := range reqs {
		if r.Write() {
			q.writes++
		}
		perObject := true
		switch {
		case r.Verb == "get":
			q.gets[r.GroupResource()]++
		case r.Verb == "patch" && r.Name != "":
			q.patches[r.GroupResource()]++
		default:
			perObject = false
		}
		// A request about a Namespace names it as its namespace too.
		switch {
		case perObject && strings.HasPrefix(r.Namespace, prefix+"-"):
			q.managed++
		case perObject:
			q.own[r.GroupResource()]++
		}
	}
	return q
}

// measureMemory is item 4: caravan-agent's peak RSS over its whole run,
// its watches included, and kustomize-controller's beside it.
func (d *driftRun) measureMemory() {
	r := &d.rep.memory
	if m, err := readMemory(d.agent.pid()); err == nil {
		r.agentPeak, r.agentRSS = m.peak, m.rss
	}
	if m, err := readMemory(d.flux.Pid()); err == nil {
		r.fluxPeak, r.fluxRSS = m.peak, m.rss
	}
}

// memoryResult is item 4.
type memoryResult struct {
	agentPeak, agentRSS, fluxPeak, fluxRSS int64
}

func sumValues(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// byCount is "n resource, m resource", most first.
func byCount(m map[string]int) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return m[b] - m[a]
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %s", host.Thousands(m[k]), k))
	}
	return strings.Join(parts, ", ")
}

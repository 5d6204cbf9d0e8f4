//go:build linux

package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/apicount"
	"github.com/caravan-gitops/caravan/test/bench/host"
	"github.com/caravan-gitops/caravan/test/flux"
)

// The drift issue's goals.
const (
	goalEditMedian     = time.Second
	goalEditP99        = 3 * time.Second
	goalCommitTime     = 300 * time.Millisecond
	goalCommitRequests = 10
	defaultQuiet       = 10 * time.Minute
)

// driftReport is what the drift section found.
type driftReport struct {
	started     time.Time
	elapsed     time.Duration
	kubeVersion string
	// agentFirst and fluxFirst are the first applies, side by side.
	agentFirst, fluxFirst time.Duration
	edits                 []edit
	driftMetrics          map[string]float64 // the agent's, after the edits
	commit                commitResult
	quietRun              quietResult
	memory                memoryResult
}

// command is how the figures were made.
func (o options) command() string {
	c := "go run ./test/bench/agent -out BENCHMARKS.md"
	if o.quiet != defaultQuiet {
		c += " -quiet " + o.quiet.String()
	}
	if o.driftOnly {
		c += " -drift-only"
	}
	return c
}

// editPercentile is the q-th of the outcomes (nearest rank), an edit not
// corrected counting as longer than any; ok is false when the rank falls
// on one.
func editPercentile(outcomes []editOutcome, q float64) (time.Duration, bool) {
	if len(outcomes) == 0 {
		return 0, false
	}
	s := slices.Clone(outcomes)
	slices.SortFunc(s, func(a, b editOutcome) int {
		switch {
		case a.corrected != b.corrected:
			if a.corrected {
				return -1
			}
			return 1
		case a.took < b.took:
			return -1
		case a.took > b.took:
			return 1
		}
		return 0
	})
	o := s[min(max(int(q*float64(len(s))+0.5)-1, 0), len(s)-1)]
	return o.took, o.corrected
}

func outcomes(edits []edit, flux bool, kind string) []editOutcome {
	var out []editOutcome
	for _, e := range edits {
		if kind != "" && e.kind != kind {
			continue
		}
		if flux {
			out = append(out, e.flux)
		} else {
			out = append(out, e.caravan)
		}
	}
	return out
}

func corrected(o []editOutcome) int {
	n := 0
	for _, x := range o {
		if x.corrected {
			n++
		}
	}
	return n
}

// editTime writes an outcome, or that it was not corrected within limit.
func editTime(d time.Duration, ok bool, limit time.Duration) string {
	if !ok {
		return "> " + seconds(limit) + " (not corrected)"
	}
	return seconds2(d)
}

func (r *driftReport) markdown(o options) string {
	startMarker, endMarker := host.Markers(driftSectionName)
	var b strings.Builder
	b.WriteString(startMarker + "\n")
	b.WriteString("## Drift: hand edits, a one-object commit and ten quiet minutes, beside Flux\n\n")
	fmt.Fprintf(&b, "Measured %s on %s, %s, by `%s` (its drift part, %s), on a control plane of its own: "+
		"kube-apiserver %s with etcd, kube-controller-manager, kube-scheduler and %d kwok nodes (test/controlplane). "+
		"Beside Flux's kustomize-controller %s (test/flux/controller, built from the Go module proxy by `make tools`) "+
		"and kubectl %s.\n\n",
		r.started.Format("2006-01-02 15:04 UTC"), host.Machine(), runtime.Version(), o.command(), r.elapsed.Round(time.Second),
		r.kubeVersion, driftNodes, flux.Version, r.kubeVersion)
	fmt.Fprintf(&b, "`caravan-agent` runs as its own process as in goal 4 of the agent section (`--interval 10s`, the config item `drift_correction` at its default), "+
		"following channel alpha of the generated config repo (%s objects, into `%s-*`) through the git server and caravan-central. "+
		"kustomize-controller applies the same objects, rendered from the same commit by the agent's render for the same cluster, into `%s-*`: "+
		"one Kustomization (`interval: %s`, `prune: true`, `wait: true`, `timeout: 5m`) of a GitRepository whose status this benchmark writes "+
		"as source-controller would, naming a tarball of the rendered manifests served on loopback, with its sha256 digest. "+
		"kustomize-controller runs with its release's defaults (`--concurrent 4`, `--concurrent-ssa 4`, `--kube-api-qps 50`, `--kube-api-burst 300`), "+
		"without leader election or notification-controller. Each process reaches kube-apiserver through a counting proxy of its own (test/apicount), "+
		"which records its requests by verb and resource. Both first applies ran at the same time: "+
		"caravan-agent was at its first version %s after it started, kustomize-controller's Kustomization Ready %s after it was created.\n\n",
		host.Thousands(appliedObjects), processNS, fluxNS, fluxInterval, seconds(r.agentFirst), seconds(r.fluxFirst))
	r.writeGoals(&b)
	r.writeEdits(&b)
	r.writeCommit(&b)
	r.writeQuiet(&b)
	r.writeMemory(&b)
	b.WriteString(endMarker + "\n")
	return b.String()
}

func (r *driftReport) writeGoals(b *strings.Builder) {
	caravan := outcomes(r.edits, false, "")
	med, medOK := editPercentile(caravan, 0.5)
	p99, p99OK := editPercentile(caravan, 0.99)
	c := r.commit.caravan
	commitMeasured := "n/a (see 2.)"
	if c.measured {
		commitMeasured = fmt.Sprintf("%s / %s", host.Thousands(c.requests.Total), seconds2(c.took))
	}
	q := r.quietRun.caravan
	b.WriteString("| Goal | Measured | Target | Met |\n|---|---:|---:|:-:|\n")
	fmt.Fprintf(b, "| 1. Hand edit to correction, %d edits (%s): median / p99 | %s / %s | ≤ %s / ≤ %s | %s |\n",
		len(caravan), editMix(r.edits), editTime(med, medOK, caravanEditLimit), editTime(p99, p99OK, caravanEditLimit),
		seconds(goalEditMedian), seconds(goalEditP99), yesNo(medOK && p99OK && med <= goalEditMedian && p99 <= goalEditP99))
	fmt.Fprintf(b, "| 2. A commit changing 1 object of %s, from `fetched the commit` to `version applied and healthy`: requests to the API server / time | %s | ≤ %d / ≤ %s | %s |\n",
		host.Thousands(appliedObjects), commitMeasured, goalCommitRequests, seconds(goalCommitTime),
		yesNo(c.measured && c.requests.Total <= goalCommitRequests && c.took <= goalCommitTime))
	others := ""
	if len(q.own) > 0 {
		others = fmt.Sprintf(" (and of its own objects: %s)", byCount(q.own))
	}
	fmt.Fprintf(b, "| 3. %s in which nothing changes: the agent's writes / per-object GET or PATCH of the objects it manages | %s / %s%s | 0 / 0 (watches only) | %s |\n",
		minutes(r.quietRun.length), host.Thousands(q.writes), host.Thousands(q.managed), others, yesNo(quietMet(r.quietRun)))
	fmt.Fprintf(b, "| 4. Peak RSS (VmHWM) of the `caravan-agent` process with the watches over %s objects, over its whole run | %s | ≤ %s | %s |\n\n",
		host.Thousands(appliedObjects), mib(r.memory.agentPeak), mib(goalRSS), yesNo(r.memory.agentPeak > 0 && r.memory.agentPeak <= goalRSS))
}

// editMix is "7 scale, 7 ConfigMap data, 6 delete".
func editMix(edits []edit) string {
	n := map[string]int{}
	for _, e := range edits {
		n[e.kind]++
	}
	return fmt.Sprintf("%d scale, %d ConfigMap data, %d delete", n[editScale], n[editData], n[editDelete])
}

func (r *driftReport) writeEdits(b *strings.Builder) {
	b.WriteString("### 1. Hand edits\n\n")
	fmt.Fprintf(b, "This process makes each edit as a person with kubectl would (`kubectl scale`, `kubectl edit`, `kubectl delete`), with a field manager of its own (`%s`), "+
		"to the agent's object and, at the same moment, to its twin in Flux's copy. Each is timed from the edit's response to the watch event that shows the object "+
		"as its manifest has it again (`spec.replicas: 1`, the data value back) or re-created. The agent's edits come one after the other, "+
		"each waited for up to %s, a second apart; Flux's corrections, which wait for its next interval, are waited for in the background, up to two intervals (%s) after each edit.\n\n",
		handManager, seconds(caravanEditLimit), fluxEditLimit)
	b.WriteString("| Edit | Object (in `*-N`) | caravan-agent | kustomize-controller |\n|---|---|---:|---:|\n")
	for i, e := range r.edits {
		fmt.Fprintf(b, "| %d. %s | %s in `*-%d` | %s | %s |\n", i+1, e.kind, e.name, e.ns,
			editTime(e.caravan.took, e.caravan.corrected, caravanEditLimit), editTime(e.flux.took, e.flux.corrected, fluxEditLimit))
	}
	for _, kind := range append([]string{""}, editKinds...) {
		c, f := outcomes(r.edits, false, kind), outcomes(r.edits, true, kind)
		name := "all"
		if kind != "" {
			name = kind
		}
		cm, cok := editPercentile(c, 0.5)
		fm, fok := editPercentile(f, 0.5)
		fmt.Fprintf(b, "| **median, %s** | | %s | %s |\n", name, editTime(cm, cok, caravanEditLimit), editTime(fm, fok, fluxEditLimit))
	}
	cp, cok := editPercentile(outcomes(r.edits, false, ""), 0.99)
	fp, fok := editPercentile(outcomes(r.edits, true, ""), 0.99)
	fmt.Fprintf(b, "| **p99, all** | | %s | %s |\n", editTime(cp, cok, caravanEditLimit), editTime(fp, fok, fluxEditLimit))
	c, f := outcomes(r.edits, false, ""), outcomes(r.edits, true, "")
	fmt.Fprintf(b, "| **corrected** | | %d of %d | %d of %d |\n\n", corrected(c), len(c), corrected(f), len(f))
	m := r.driftMetrics
	if m == nil {
		b.WriteString("The agent's metrics could not be read after the edits.\n\n")
	} else {
		fmt.Fprintf(b, "The agent's metrics after the edits: `caravan_agent_drift_detected_total` %.0f, `caravan_agent_drift_corrected_total` %.0f, "+
			"`caravan_agent_drift_fights` %.0f (summed over kinds). kustomize-controller does not watch what it applied: it puts every object back as its manifest has it "+
			"each time it applies the whole Kustomization again, every `interval` after the end of the last apply.\n\n",
			m["caravan_agent_drift_detected_total"], m["caravan_agent_drift_corrected_total"], m["caravan_agent_drift_fights"])
	}
}

func (r *driftReport) writeCommit(b *strings.Builder) {
	c := r.commit
	b.WriteString("### 2. A commit that changes one object\n\n")
	fmt.Fprintf(b, "The commit `%s` (on `%s`) changes one value of ConfigMap %s in the first namespace; the rest of the %s objects are as before. "+
		"The agent noticed it on its own (`--interval 10s`) and is timed from its log line `fetched the commit` to `version applied and healthy`, "+
		"with the requests its proxy saw in that span. Then the same change was published as kustomize-controller's artifact of that commit, "+
		"once its Kustomization was idle, timed from the GitRepository status write to the watch event of the Kustomization at that revision and Ready "+
		"(with `wait: true`, its health checks passed). kubectl, the reference, applied its own copy (`kubectl-*`) on the same control plane before "+
		"the others started, then applied it again with the same change (`kubectl apply --server-side -f`, discovery cached); its namespaces were then deleted, "+
		"since the control plane's service range holds two copies' Services, not three.\n\n",
		shortSHA(c.commit), "alpha", changedConfigMap, host.Thousands(appliedObjects))
	b.WriteString("| Who | Span | Time | Requests to kube-apiserver | Target | Met |\n|---|---|---:|---|---|:-:|\n")
	caravanTime, caravanMet := "n/a", yesNo(false)
	if c.caravan.measured {
		caravanTime = seconds2(c.caravan.took)
		caravanMet = yesNo(c.caravan.requests.Total <= goalCommitRequests && c.caravan.took <= goalCommitTime)
	}
	fmt.Fprintf(b, "| caravan-agent | `fetched the commit` → `version applied and healthy` | %s | %s | ≤ %s, ≤ %d requests | %s |\n",
		caravanTime, tallyOrNA(c.caravan), seconds(goalCommitTime), goalCommitRequests, caravanMet)
	fmt.Fprintf(b, "| kustomize-controller | artifact published → Kustomization at the revision, Ready | %s | %s | | |\n",
		seconds2(c.flux.took), c.flux.requests)
	fmt.Fprintf(b, "| kubectl apply --server-side | the whole re-apply | %s | %s | | |\n\n", seconds2(c.kubectl.took), c.kubectl.requests)
	if !c.caravan.measured {
		fmt.Fprintf(b, "caravan-agent's span could not be measured: %s. From the push to the ClusterConfig at the commit's version "+
			"(which includes noticing the commit) it took %s, with %s requests.\n\n", c.caravan.note, seconds2(c.caravan.took), c.caravan.requests)
	}
}

func tallyOrNA(s commitSide) string {
	if !s.measured {
		return "n/a"
	}
	return s.requests.String()
}

func (r *driftReport) writeQuiet(b *strings.Builder) {
	q := r.quietRun
	b.WriteString("### 3. Nothing changes\n\n")
	fmt.Fprintf(b, "Both processes at once, for %s after the machine was quiet, with no edit, commit or artifact: every request each made, from its proxy. "+
		"A watch counts once, when it is opened. Per-object reads and patches are GET and PATCH (dry-run or not) of one object: "+
		"of the objects a process manages, what one that relies on its watches does not need. The agent's own ClusterConfig, "+
		"whose metadata it reads once a reconcile (every `--interval`, see goal 3 of the agent section), is not one of them.\n\n", minutes(q.length))
	b.WriteString("| | caravan-agent | kustomize-controller |\n|---|---|---|\n")
	fmt.Fprintf(b, "| requests, by verb | %s | %s |\n", q.caravan.requests, q.flux.requests)
	fmt.Fprintf(b, "| writes | %s | %s |\n", host.Thousands(q.caravan.writes), host.Thousands(q.flux.writes))
	fmt.Fprintf(b, "| per-object GET | %s | %s |\n", orNone(q.caravan.gets), orNone(q.flux.gets))
	fmt.Fprintf(b, "| per-object PATCH | %s | %s |\n", orNone(q.caravan.patches), orNone(q.flux.patches))
	fmt.Fprintf(b, "| per-object GET or PATCH of the objects it manages | %s | %s |\n", host.Thousands(q.caravan.managed), host.Thousands(q.flux.managed))
	fmt.Fprintf(b, "| applies of all %s objects (dry-run applies / %s) | %s | %s |\n", host.Thousands(appliedObjects), host.Thousands(appliedObjects),
		wholeApplies(q.caravan.requests), wholeApplies(q.flux.requests))
	fmt.Fprintf(b, "| CPU time of the process | %s | %s |\n", seconds(q.caravan.cpu), seconds(q.flux.cpu))
	fmt.Fprintf(b, "| **goal (caravan-agent)**: 0 writes, no per-object GET or PATCH of the objects it manages | %s | |\n\n", yesNo(quietMet(q)))
}

// quietMet is item 3's goal: no writes, and the managed objects are only
// watched. Reads of the agent's own ClusterConfig, once a reconcile, are
// shown beside it.
func quietMet(q quietResult) bool {
	return q.length > 0 && q.caravan.writes == 0 && q.caravan.managed == 0
}

// wholeApplies is how many times a process applied every object: each
// such apply asks for a dry-run apply of each.
func wholeApplies(t apicount.Tally) string {
	return fmt.Sprintf("%.1f", float64(t.Counts["dry-run apply"])/appliedObjects)
}

func orNone(m map[string]int) string {
	if len(m) == 0 {
		return "0"
	}
	return host.Thousands(sumValues(m)) + ": " + byCount(m)
}

func (r *driftReport) writeMemory(b *strings.Builder) {
	m := r.memory
	b.WriteString("### 4. Memory\n\n")
	b.WriteString("Read from /proc at the end of the run: the peak covers the first apply, the edits, the commit and the quiet minutes.\n\n")
	b.WriteString("| | caravan-agent | kustomize-controller |\n|---|---:|---:|\n")
	fmt.Fprintf(b, "| peak RSS (VmHWM) | %s | %s |\n", mib(m.agentPeak), mib(m.fluxPeak))
	fmt.Fprintf(b, "| RSS at the end (VmRSS) | %s | %s |\n", mib(m.agentRSS), mib(m.fluxRSS))
	fmt.Fprintf(b, "| **goal (caravan-agent)**: peak ≤ %s | %s | |\n\n", mib(goalRSS), yesNo(m.agentPeak > 0 && m.agentPeak <= goalRSS))
}

func minutes(d time.Duration) string {
	if d%time.Minute == 0 || d > 5*time.Minute {
		return fmt.Sprintf("%.0f minutes", d.Minutes())
	}
	return seconds(d)
}

func shortSHA(s string) string { return s[:min(len(s), 12)] }

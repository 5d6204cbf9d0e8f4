//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// replicas is how many caravan-central processes serve the fleet, on one database.
const replicas = 2

// caravan-central's metrics the benchmark reads.
const (
	waitingMetric            = "caravan_central_long_polls_waiting"
	refusedMetric            = "caravan_central_connections_refused_total"
	acceptWaitsMetric        = "caravan_central_connections_accept_waits_total"
	inputReadsMetric         = "caravan_central_cluster_input_reads_total"
	statusTransactionsMetric = "caravan_central_status_write_transactions_total"
	statusReportsMetric      = "caravan_central_status_reports_written_total"
)

// replicaMetrics is what the benchmark reads of a replica's metrics: the
// long-polls waiting now, and the counters so far.
type replicaMetrics struct {
	waiting int
	// refused counts the connections closed at their address's limit of
	// unauthenticated ones, acceptWaits the times the next accept waited
	// for one of those to authenticate or close.
	refused, acceptWaits int
	// inputReads counts the database reads of clusters' own assignment
	// inputs; statusTransactions the transactions that wrote
	// statusReports reports.
	inputReads, statusTransactions, statusReports int
}

// minus is what the counters of m added since before.
func (m replicaMetrics) minus(before replicaMetrics) replicaMetrics {
	return replicaMetrics{
		waiting: m.waiting, refused: m.refused - before.refused, acceptWaits: m.acceptWaits - before.acceptWaits,
		inputReads: m.inputReads - before.inputReads, statusTransactions: m.statusTransactions - before.statusTransactions,
		statusReports: m.statusReports - before.statusReports,
	}
}

// replica is one caravan-central process; a killed one starts again with
// the same command, address and log.
type replica struct {
	spec host.ProcessSpec
	*host.Process
}

// replicaSpec is the command line of replica i: every replica serves the
// same database, reads the channels' heads with the git server's
// credentials, takes webhooks and has the bench's admin token.
func (w *world) replicaSpec(i int, db, addr string) host.ProcessSpec {
	argv := []string{w.central, "serve", "--listen", addr, "--database", db,
		"--repository-url", w.git.RepoURL(configRepo), "--git-username", w.git.User, "--git-password-file", w.secrets.gitPasswordFile,
		"--git-refresh", w.opts.gitRefresh.String(), "--webhook-secret-file", w.secrets.webhookFile,
		"--admin-token-file", w.secrets.adminFile, "--log-level", "warn"}
	return host.ProcessSpec{
		Name: fmt.Sprintf("caravan-central replica %d", i+1), Addr: addr, ReadyPath: "/readyz",
		LogPath: filepath.Join(w.dir, fmt.Sprintf("central-%d-%d.log", w.dbs, i+1)), Argv: argv, Env: w.opts.centralEnv,
	}
}

func startReplica(ctx context.Context, spec host.ProcessSpec) (*replica, error) {
	p, err := host.StartProcess(ctx, spec)
	if err != nil {
		return nil, err
	}
	return &replica{spec: spec, Process: p}, nil
}

// restart starts the replica's process again, as its supervisor would.
func (r *replica) restart(ctx context.Context) error {
	p, err := host.StartProcess(ctx, r.spec)
	if err != nil {
		return err
	}
	r.Process = p
	return nil
}

// host is the replica's host:port, as the agents' requests name it.
func (r *replica) host() string { return r.spec.Addr }

// usage is a replica's CPU time and memory at one instant.
type usage struct {
	cpu time.Duration
	mem host.Memory
}

func (r *replica) usage() (usage, error) {
	cpu, err := r.CPUTime()
	if err != nil {
		return usage{}, err
	}
	mem, err := r.Memory()
	return usage{cpu: cpu, mem: mem}, err
}

// metrics reads the replica's metrics.
func (r *replica) metrics(ctx context.Context) (replicaMetrics, error) {
	v, err := host.ReadMetrics(ctx, metricsClient, r.Process, waitingMetric, refusedMetric, acceptWaitsMetric,
		inputReadsMetric, statusTransactionsMetric, statusReportsMetric)
	if err != nil {
		return replicaMetrics{}, err
	}
	return replicaMetrics{
		waiting: int(v[waitingMetric]), refused: int(v[refusedMetric]), acceptWaits: int(v[acceptWaitsMetric]),
		inputReads: int(v[inputReadsMetric]), statusTransactions: int(v[statusTransactionsMetric]), statusReports: int(v[statusReportsMetric]),
	}, nil
}

var metricsClient = &http.Client{Timeout: 10 * time.Second}

// readiness probes a replica's /readyz every 100 ms, recording when the
// answer changes.
type readiness struct {
	mu      sync.Mutex
	changes []readinessChange
	stop    context.CancelFunc
	done    chan struct{}
}

type readinessChange struct {
	at    time.Time
	ready bool
}

func watchReadiness(r *replica) *readiness {
	ctx, cancel := context.WithCancel(context.Background())
	w := &readiness{stop: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	url := r.URL + "/readyz"
	go func() {
		defer close(w.done)
		last := true
		for ctx.Err() == nil {
			ready := probe(ctx, client, url)
			if ready != last && ctx.Err() == nil {
				w.mu.Lock()
				w.changes = append(w.changes, readinessChange{at: time.Now(), ready: ready})
				w.mu.Unlock()
				last = ready
			}
			sleep(ctx, 100*time.Millisecond)
		}
	}()
	return w
}

func probe(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// end stops the probing and returns the changes seen.
func (w *readiness) end() []readinessChange {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]readinessChange(nil), w.changes...)
}

// ready reports whether the last answer was ready.
func (w *readiness) ready() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.changes) == 0 || w.changes[len(w.changes)-1].ready
}

// awaitReady waits until every watched replica is ready again.
func awaitReady(ctx context.Context, watchers []*readiness, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for i := 0; i < len(watchers); {
		if watchers[i].ready() {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replica %d not ready %s after the outage", i+1, timeout)
		}
		sleep(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// loggedProblems counts the warnings and errors in replica logs (JSON, as
// caravan-central writes them) by message and error, digits folded, so
// that the same failure of different requests counts as one kind.
func loggedProblems(paths ...string) map[string]int {
	out := map[string]int{}
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var entry struct{ Level, Msg, Error string }
			if json.Unmarshal(line, &entry) != nil || (entry.Level != "WARN" && entry.Level != "ERROR") {
				continue
			}
			kind := entry.Msg
			if entry.Error != "" {
				kind += ": " + entry.Error
			}
			kind = digits.ReplaceAllString(kind, "N")
			out[kind[:min(len(kind), 200)]]++
		}
	}
	return out
}

var digits = regexp.MustCompile(`[0-9]+`)

//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// nextRequest builds a worker's iter-th request and the status it expects.
type nextRequest func(ctx context.Context, worker, iter int) (*http.Request, int, error)

// loadConfig bounds a load run: clients workers, each sending one request
// after the other for warmup and then duration.
type loadConfig struct {
	clients  int
	warmup   time.Duration
	duration time.Duration
}

// loadResult sums up one or more measured runs. Requests and latencies are
// those that completed within the measured windows; errors are counted over
// the whole runs, warm-ups included, because none is acceptable.
type loadResult struct {
	requests   int
	rate       float64 // requests per second
	p50, p99   time.Duration
	errors     int
	firstError string
	serverCPU  float64 // cores the server kept busy
	benchCPU   float64 // cores the load generator kept busy
	otherCPU   float64 // cores other processes kept busy
}

// loadRun is the raw outcome of one run, which summarize merges with other
// runs of the same scenario.
type loadRun struct {
	workers []workerStats
	window  time.Duration
	cpu     cpuTimes
}

type workerStats struct {
	latencies []time.Duration
	errors    int
	firstErr  error
}

// newLoadClient is the load generator's client: one keep-alive connection
// per worker, reused from one request to the next, as an agent's would be.
func newLoadClient(clients int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0, // no overall limit
		MaxIdleConnsPerHost: clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}}
}

// runLoad runs next from cfg.clients workers against srv and measures the
// window after the warm-up.
func runLoad(ctx context.Context, client *http.Client, srv *host.Process, cfg loadConfig, next nextRequest) (loadRun, error) {
	start := time.Now()
	from := start.Add(cfg.warmup)
	end := from.Add(cfg.duration)
	cpu := sampleCPU(srv, from, end)
	stats := make([]workerStats, cfg.clients)
	var wg sync.WaitGroup
	for w := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[w] = runWorker(ctx, client, w, from, end, next)
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return loadRun{}, err
	}
	usage := <-cpu
	if usage.err != nil {
		return loadRun{}, usage.err
	}
	return loadRun{workers: stats, window: cfg.duration, cpu: usage.cpuTimes}, nil
}

func runWorker(ctx context.Context, client *http.Client, worker int, from, end time.Time, next nextRequest) workerStats {
	var s workerStats
	for iter := 0; ctx.Err() == nil && time.Now().Before(end); iter++ {
		req, want, err := next(ctx, worker, iter)
		if err == nil {
			t0 := time.Now()
			err = roundTrip(client, req, want)
			// Only requests completed within the window count towards the rate.
			if t1 := time.Now(); !t1.Before(from) && !t1.After(end) {
				s.latencies = append(s.latencies, t1.Sub(t0))
			}
		}
		if err != nil && ctx.Err() == nil {
			s.errors++
			if s.firstErr == nil {
				s.firstErr = err
			}
			// A failing server must not turn the worker into a busy loop.
			time.Sleep(10 * time.Millisecond)
		}
	}
	return s
}

// roundTrip sends req and reads the whole answer, so the connection is reused.
func roundTrip(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %.200s", req.Method, req.URL.Path, resp.StatusCode, want, body)
	}
	return nil
}

// summarize merges runs of one scenario.
func summarize(runs ...loadRun) loadResult {
	var r loadResult
	var all []time.Duration
	var window time.Duration
	var cpu cpuTimes
	for _, run := range runs {
		window += run.window
		cpu.server, cpu.bench, cpu.other = cpu.server+run.cpu.server, cpu.bench+run.cpu.bench, cpu.other+run.cpu.other
		for _, s := range run.workers {
			all = append(all, s.latencies...)
			r.errors += s.errors
			if s.firstErr != nil && r.firstError == "" {
				r.firstError = s.firstErr.Error()
			}
		}
	}
	slices.Sort(all)
	r.requests = len(all)
	r.rate = float64(len(all)) / window.Seconds()
	r.p50, r.p99 = host.Percentile(all, 0.50), host.Percentile(all, 0.99)
	r.serverCPU, r.benchCPU, r.otherCPU = cpu.server.Seconds()/window.Seconds(), cpu.bench.Seconds()/window.Seconds(), cpu.other.Seconds()/window.Seconds()
	return r
}

// cpuTimes is the CPU time the server, the load generator and other
// processes used during a measured window.
type cpuTimes struct{ server, bench, other time.Duration }

type cpuUsage struct {
	cpuTimes
	err error
}

// cpuSample is the CPU time used so far by the server, the load generator
// and the whole machine.
type cpuSample struct{ server, bench, machine time.Duration }

func takeCPUSample(srv *host.Process) (cpuSample, error) {
	server, err := srv.CPUTime()
	if err != nil {
		return cpuSample{}, err
	}
	machine, err := host.MachineCPUTime()
	if err != nil {
		return cpuSample{}, err
	}
	return cpuSample{server: server, bench: host.SelfCPUTime(), machine: machine}, nil
}

// sampleCPU measures, in the background, the CPU time the server, the load
// generator and any other process used between from and end: on 2 cores
// the first two share the machine, and the split says who the bottleneck
// is; the third says whether the machine was quiet.
func sampleCPU(srv *host.Process, from, end time.Time) <-chan cpuUsage {
	out := make(chan cpuUsage, 1)
	go func() {
		time.Sleep(time.Until(from))
		s0, err := takeCPUSample(srv)
		if err != nil {
			out <- cpuUsage{err: err}
			return
		}
		time.Sleep(time.Until(end))
		s1, err := takeCPUSample(srv)
		if err != nil {
			out <- cpuUsage{err: err}
			return
		}
		server, bench := s1.server-s0.server, s1.bench-s0.bench
		other := max(s1.machine-s0.machine-server-bench, 0)
		out <- cpuUsage{cpuTimes: cpuTimes{server: server, bench: bench, other: other}}
	}()
	return out
}

// forEachAgent calls fn once for every agent, from clients workers, each
// owning the agents worker, worker+clients, ...; it returns the first error.
func forEachAgent(ctx context.Context, agents []*agent, clients int, fn func(ctx context.Context, a *agent) error) error {
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(agents) && ctx.Err() == nil; i += clients {
				if err := fn(ctx, agents[i]); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ownAgent is the agent a worker serves at its iter-th request: workers
// own disjoint sets of clusters (worker, worker+clients, ...) and cycle
// through them, so no two workers write the same cluster.
func ownAgent(agents []*agent, clients, worker, iter int) *agent {
	owned := (len(agents) - worker + clients - 1) / clients
	return agents[worker+(iter%owned)*clients]
}

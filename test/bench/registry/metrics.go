//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Go runtime metrics, as Prometheus' Go collector names them, that split a
// server's RSS.
const (
	heapMetric       = "go_memstats_heap_inuse_bytes"
	stackMetric      = "go_memstats_stack_inuse_bytes"
	goroutinesMetric = "go_goroutines"
)

// readMetrics reads unlabelled metrics from a server's /metrics.
func readMetrics(ctx context.Context, client *http.Client, p *process, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("building the metrics request of %s: %w", p.name, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the metrics of %s: %w", p.name, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || !slices.Contains(names, name) {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return nil, fmt.Errorf("metric %s of %s: %w", name, p.name, err)
		}
		out[name] = f
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the metrics of %s: %w", p.name, err)
	}
	for _, name := range names {
		if _, ok := out[name]; !ok {
			return nil, errors.New("metric " + name + " not found on the /metrics of " + p.name)
		}
	}
	return out, nil
}

// serverMemory is a server's RSS with the Go runtime's view of it: heap
// spans in use, goroutine stacks and the number of goroutines. What RSS
// holds beyond them is freed heap not yet returned to the OS, runtime
// overhead, SQLite's own allocations and the program's code.
func serverMemory(ctx context.Context, client *http.Client, p *process) (memory, error) {
	m, err := p.memory()
	if err != nil {
		return memory{}, err
	}
	values, err := readMetrics(ctx, client, p, heapMetric, stackMetric, goroutinesMetric)
	if err != nil {
		return memory{}, err
	}
	m.goHeap, m.goStacks, m.goroutines = int64(values[heapMetric]), int64(values[stackMetric]), int(values[goroutinesMetric])
	return m, nil
}

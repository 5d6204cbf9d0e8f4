//go:build linux

package main

import (
	"context"
	"net/http"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

// Go runtime metrics, as Prometheus' Go collector names them, that split a
// server's RSS.
const (
	heapMetric       = "go_memstats_heap_inuse_bytes"
	stackMetric      = "go_memstats_stack_inuse_bytes"
	goroutinesMetric = "go_goroutines"
)

// memory is a server's resident set and, for caravan-central, what its Go
// runtime says of it.
type memory struct {
	host.Memory
	goHeap, goStacks int64
	goroutines       int
}

// serverMemory is a server's RSS with the Go runtime's view of it: heap
// spans in use, goroutine stacks and the number of goroutines. What RSS
// holds beyond them is freed heap not yet returned to the OS, runtime
// overhead, SQLite's own allocations and the program's code.
func serverMemory(ctx context.Context, client *http.Client, p *host.Process) (memory, error) {
	rss, err := p.Memory()
	if err != nil {
		return memory{}, err
	}
	m := memory{Memory: rss}
	values, err := host.ReadMetrics(ctx, client, p, heapMetric, stackMetric, goroutinesMetric)
	if err != nil {
		return memory{}, err
	}
	m.goHeap, m.goStacks, m.goroutines = int64(values[heapMetric]), int64(values[stackMetric]), int(values[goroutinesMetric])
	return m, nil
}

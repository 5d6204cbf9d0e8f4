//go:build linux

package main

import (
	"runtime"
	"runtime/metrics"
	"sync"
	"time"
)

// heapSampler follows this process's Go heap in use (live and not yet
// collected objects, and the unused room of their spans) while a step runs,
// without stopping the world, to show which of the agent's steps needs the
// memory its process has at its peak.
type heapSampler struct {
	stop chan struct{}
	done sync.WaitGroup
	peak uint64
	base uint64
}

func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64() + s[1].Value.Uint64()
}

// sampleHeap collects the garbage of what ran before, then samples every
// 10 ms until the step ends.
func sampleHeap() *heapSampler {
	runtime.GC()
	h := &heapSampler{stop: make(chan struct{}), base: heapInUse()}
	h.peak = h.base
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.peak = max(h.peak, heapInUse())
			}
		}
	}()
	return h
}

// end returns the heap in use before the step and its peak during it.
func (h *heapSampler) end() (base, peak int64) {
	close(h.stop)
	h.done.Wait()
	return int64(h.base), int64(max(h.peak, heapInUse()))
}

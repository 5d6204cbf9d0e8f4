package store

import (
	"cmp"
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// batchTimeout bounds one run of a batcher, which works for every caller
// whose item it took and so under none's context.
const batchTimeout = 30 * time.Second

// batcher runs items in batches: the items added while a run is under way
// are run together by the next one. When thousands of requests want the
// same kind of work at once (a change answered every agent, and each reads
// or reports), a few runs serve them all; an item alone runs at once.
type batcher[T any] struct {
	run func(ctx context.Context, items []T)

	mu      sync.Mutex
	queued  []T
	running bool
}

func newBatcher[T any](run func(ctx context.Context, items []T)) *batcher[T] {
	return &batcher[T]{run: run}
}

// add queues item for the next run, starting one when none is under way.
func (b *batcher[T]) add(item T) {
	b.mu.Lock()
	b.queued = append(b.queued, item)
	start := !b.running
	b.running = true
	b.mu.Unlock()
	if start {
		go b.runQueued()
	}
}

// runQueued runs what is queued, again and again, until nothing is.
func (b *batcher[T]) runQueued() {
	for {
		b.mu.Lock()
		items := b.queued
		b.queued = nil
		if len(items) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
		b.run(ctx, items)
		cancel()
	}
}

// lookups reads values by key in batches (batcher): every key asked for
// while a read is under way is read once, by the next read, and each
// caller gets its own key's value.
type lookups[K cmp.Ordered, V any] struct {
	read    func(ctx context.Context, keys []K) (map[K]V, error)
	batches *batcher[lookup[K, V]]
}

// lookup is one caller's wait for the value of key.
type lookup[K cmp.Ordered, V any] struct {
	key    K
	result chan lookupResult[V]
}

type lookupResult[V any] struct {
	value V
	found bool
	err   error
}

// newLookups reads with read, which returns the values of the keys found.
func newLookups[K cmp.Ordered, V any](read func(ctx context.Context, keys []K) (map[K]V, error)) *lookups[K, V] {
	l := &lookups[K, V]{read: read}
	l.batches = newBatcher(l.readBatch)
	return l
}

// get queues key for the next read and waits for its value; found is
// false when it has none.
func (l *lookups[K, V]) get(ctx context.Context, key K) (value V, found bool, err error) {
	req := lookup[K, V]{key: key, result: make(chan lookupResult[V], 1)}
	l.batches.add(req)
	res, err := await(ctx, req.result)
	if err != nil {
		return value, false, err
	}
	return res.value, res.found, res.err
}

func (l *lookups[K, V]) readBatch(ctx context.Context, reqs []lookup[K, V]) {
	waiting := map[K][]chan lookupResult[V]{}
	for _, req := range reqs {
		waiting[req.key] = append(waiting[req.key], req.result)
	}
	found, err := l.read(ctx, slices.Sorted(maps.Keys(waiting)))
	for key, results := range waiting {
		v, ok := found[key]
		for _, result := range results {
			result <- lookupResult[V]{value: v, found: ok, err: err}
		}
	}
}

// pageSize bounds the keys one query names: PostgreSQL and SQLite both
// take far more parameters, but a page of this size reads quickly.
const pageSize = 500

// await waits for a batched item's result.
func await[R any](ctx context.Context, result <-chan R) (R, error) {
	select {
	case r := <-result:
		return r, nil
	case <-ctx.Done():
		var none R
		return none, ctx.Err()
	}
}

// inList is a parenthesized list of n placeholders, for `IN`.
func inList(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// queryArgs is keys as a query's arguments.
func queryArgs(keys []string) []any {
	args := make([]any, len(keys))
	for i, k := range keys {
		args[i] = k
	}
	return args
}

// valueRows is rows parenthesized lists of columns placeholders each, for
// a multi-row `VALUES`.
func valueRows(rows, columns int) string {
	row := inList(columns)
	return strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}

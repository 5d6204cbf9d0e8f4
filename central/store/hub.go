package store

import "sync"

// Hub tells long-polls and caches that a cluster's assignment may have
// changed. Each cluster has a generation that every change of its own
// inputs bumps (the cluster, its node pools, blocks and plans), and a
// channel that is closed on its next change; waiters of other clusters are
// never woken. What clusters share (accounts, channels, what the channels
// publish, freezes) has one fleet generation: a change of it wakes the
// clusters it concerns without making their own inputs stale.
type Hub struct {
	mu          sync.Mutex
	epoch       uint64
	fleet       uint64
	gens        map[string]uint64
	waiters     map[string]chan struct{}
	subscribers map[string]map[uint64]func()
	nextSub     uint64
	tokens      uint64
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{gens: map[string]uint64{}, waiters: map[string]chan struct{}{}, subscribers: map[string]map[uint64]func(){}}
}

// Subscribe calls fn once, at the cluster's next change, unless the
// returned cancel comes first. fn runs on the writer's goroutine and must
// not block. Unlike Watch it needs no goroutine waiting on a channel.
func (h *Hub) Subscribe(clusterID string, fn func()) (cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextSub++
	key := h.nextSub
	subs, ok := h.subscribers[clusterID]
	if !ok {
		subs = map[uint64]func(){}
		h.subscribers[clusterID] = subs
	}
	subs[key] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if subs, ok := h.subscribers[clusterID]; ok {
			delete(subs, key)
			if len(subs) == 0 {
				delete(h.subscribers, clusterID)
			}
		}
	}
}

// takeSubscribers removes and returns the callbacks of clusters; with no
// ids, those of every cluster. The caller holds h.mu.
func (h *Hub) takeSubscribers(clusterIDs []string, all bool) []func() {
	var fns []func()
	take := func(id string) {
		for _, fn := range h.subscribers[id] {
			fns = append(fns, fn)
		}
		delete(h.subscribers, id)
	}
	if all {
		for id := range h.subscribers {
			take(id)
		}
	}
	for _, id := range clusterIDs {
		take(id)
	}
	return fns
}

func run(fns []func()) {
	for _, fn := range fns {
		fn()
	}
}

// Generation identifies the state of a cluster's assignment inputs: equal
// generations mean nothing of the cluster changed in between.
type Generation struct{ epoch, cluster uint64 }

// Generation returns the current generation of a cluster.
func (h *Hub) Generation(clusterID string) Generation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Generation{h.epoch, h.gens[clusterID]}
}

// FleetGeneration identifies the state of the inputs clusters share: equal
// numbers mean none of them changed in between.
func (h *Hub) FleetGeneration() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.fleet
}

// Watch returns a channel that is closed at the cluster's next change.
func (h *Hub) Watch(clusterID string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.waiters[clusterID]
	if !ok {
		ch = make(chan struct{})
		h.waiters[clusterID] = ch
	}
	return ch
}

// Changed announces that the own inputs of the given clusters changed.
func (h *Hub) Changed(clusterIDs ...string) {
	h.mu.Lock()
	for _, id := range clusterIDs {
		h.gens[id]++
	}
	fns := h.wake(clusterIDs)
	h.mu.Unlock()
	run(fns)
}

// FleetChanged announces that inputs clusters share changed, and wakes the
// clusters whose assignment that changes.
func (h *Hub) FleetChanged(clusterIDs ...string) {
	h.mu.Lock()
	h.fleet++
	fns := h.wake(clusterIDs)
	h.mu.Unlock()
	run(fns)
}

// Wake wakes the given clusters' waiters, for a change of shared inputs
// announced before.
func (h *Hub) Wake(clusterIDs ...string) {
	h.mu.Lock()
	fns := h.wake(clusterIDs)
	h.mu.Unlock()
	run(fns)
}

// wake closes the waiters of clusters and takes their subscribers, which
// the caller runs once it released h.mu.
func (h *Hub) wake(clusterIDs []string) []func() {
	for _, id := range clusterIDs {
		if ch, ok := h.waiters[id]; ok {
			close(ch)
			delete(h.waiters, id)
		}
	}
	return h.takeSubscribers(clusterIDs, false)
}

// ChangedAll announces that any cluster may have changed, as after a lost
// connection to the other replicas' notifications.
func (h *Hub) ChangedAll() {
	h.mu.Lock()
	h.epoch++
	h.fleet++
	h.tokens++
	for id, ch := range h.waiters {
		close(ch)
		delete(h.waiters, id)
	}
	fns := h.takeSubscribers(nil, true)
	h.mu.Unlock()
	run(fns)
}

// TokensChanged announces that a token was revoked or created.
func (h *Hub) TokensChanged() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tokens++
}

// TokenGeneration returns a number that changes whenever tokens change.
func (h *Hub) TokenGeneration() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tokens
}

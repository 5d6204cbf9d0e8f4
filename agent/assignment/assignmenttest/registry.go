// Package assignmenttest is a registry for the tests of what polls
// assignments: it answers long-polls as caravan-central does, without a
// server, so that the tests of the Keeper and of the reconciler's loop can
// drive a change at the instant they choose.
package assignmenttest

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/registry"
)

// GenerationItem is the config item that holds an assignment's generation.
const GenerationItem = "generation"

// Registry serves generations of one assignment: a request whose ETag is
// the current generation waits up to its Wait for the next one.
type Registry struct {
	template api.Assignment
	mu       sync.Mutex
	gen      int
	changed  chan struct{}
}

// NewRegistry serves generation 1 of template.
func NewRegistry(template api.Assignment) *Registry {
	return &Registry{template: template, gen: 1, changed: make(chan struct{})}
}

// Change publishes the next generation and wakes the waiting polls.
func (r *Registry) Change() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next()
}

// PublishHead publishes the next generation with the channel's head
// commit and gate, as caravan-central does once it read a new head.
func (r *Registry) PublishHead(commit, gate string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.template.Channel.Commit, r.template.Channel.Gate = commit, gate
	r.next()
}

func (r *Registry) next() {
	r.gen++
	close(r.changed)
	r.changed = make(chan struct{})
}

// Assignment is the current generation.
func (r *Registry) Assignment() *api.Assignment {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.assignment()
}

func (r *Registry) assignment() *api.Assignment {
	a := r.template
	a.ConfigItems = maps.Clone(a.ConfigItems)
	if a.ConfigItems == nil {
		a.ConfigItems = map[string]string{}
	}
	a.ConfigItems[GenerationItem] = strconv.Itoa(r.gen)
	return &a
}

// GetAssignment answers as caravan-central's assignment endpoint does.
func (r *Registry) GetAssignment(ctx context.Context, _ string, o registry.AssignmentOptions) (*registry.AssignmentResult, error) {
	r.mu.Lock()
	if o.IfNoneMatch == strconv.Itoa(r.gen) && o.Wait > 0 {
		changed := r.changed
		r.mu.Unlock()
		timer := time.NewTimer(o.Wait)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if o.IfNoneMatch == strconv.Itoa(r.gen) {
		return &registry.AssignmentResult{NotModified: true, RegistryTime: time.Now()}, nil
	}
	return &registry.AssignmentResult{Assignment: r.assignment(), ETag: strconv.Itoa(r.gen), RegistryTime: time.Now()}, nil
}

// Generation is the generation of an assignment the Registry served, 0 for none.
func Generation(a *api.Assignment) int {
	if a == nil {
		return 0
	}
	n, _ := strconv.Atoi(a.ConfigItems[GenerationItem])
	return n
}

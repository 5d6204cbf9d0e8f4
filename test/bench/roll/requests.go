//go:build linux

package main

import (
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/test/apicount"
)

// requestCounter holds the agent's API requests, each with its kind and
// when it arrived at the counting proxy in front of the API server.
type requestCounter struct {
	entries []requestEntry
}

// requestEntry is one request: its kind, when it arrived and, for a
// pod's DELETE, the pod (namespace/name).
type requestEntry struct {
	Kind string
	At   time.Time
	Pod  string
}

// countRequests sorts the proxy's requests by kind.
func countRequests(reqs []apicount.Request) *requestCounter {
	c := &requestCounter{entries: make([]requestEntry, 0, len(reqs))}
	for _, r := range reqs {
		e := requestEntry{Kind: requestKind(r), At: r.At}
		if e.Kind == "DELETE pods" {
			e.Pod = r.Namespace + "/" + r.Name
		}
		c.entries = append(c.entries, e)
	}
	return c
}

// requestKind names a request by its verb and, for the ones a roll makes
// in numbers, what it is about.
func requestKind(r apicount.Request) string {
	switch {
	case r.Verb == "create" && r.Subresource == "eviction":
		return "POST eviction"
	case r.Verb == "create" && r.Resource == "events":
		return "POST event"
	case r.Resource == "":
		return strings.ToUpper(r.Verb)
	}
	verb := map[string]string{"get": "GET", "list": "LIST", "watch": "WATCH", "patch": "PATCH", "delete": "DELETE",
		"create": "POST", "update": "PUT"}[r.Verb]
	if verb == "" {
		verb = strings.ToUpper(r.Verb)
	}
	if r.Apply {
		verb = "APPLY"
	}
	return verb + " " + r.Resource
}

// requests is what the counter holds between two instants.
type requests struct {
	counts map[string]int
	total  int
	// peak is the most requests in one second, its windows counted from
	// from.
	peak int
}

func (c *requestCounter) between(from, to time.Time) requests {
	out := requests{counts: map[string]int{}}
	perSecond := map[int64]int{}
	for _, e := range c.entries {
		if e.At.Before(from) || e.At.After(to) {
			continue
		}
		out.total++
		out.counts[e.Kind]++
		s := int64(e.At.Sub(from) / time.Second)
		perSecond[s]++
		out.peak = max(out.peak, perSecond[s])
	}
	return out
}

// deleteOf is when the first DELETE of the pod (namespace/name) arrived;
// zero when none did.
func (c *requestCounter) deleteOf(pod string) time.Time {
	for _, e := range c.entries {
		if e.Pod == pod {
			return e.At
		}
	}
	return time.Time{}
}

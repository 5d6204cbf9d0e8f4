//go:build linux

package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go/middleware"
	"k8s.io/client-go/rest"
)

// requestCounter counts the API requests of the roller's client, by kind,
// and when each was made.
type requestCounter struct {
	mu      sync.Mutex
	entries []requestEntry
}

// requestEntry is one request: its kind, when it was sent and, for a
// Node's PATCH, the node (the roller takes the drain's start just before
// it sends the one that records it).
type requestEntry struct {
	Kind string
	At   time.Time
	Node string `json:",omitempty"`
}

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			e := requestEntry{Kind: requestKind(r), At: time.Now()}
			if e.Kind == "PATCH nodes" {
				e.Node = r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			}
			c.mu.Lock()
			c.entries = append(c.entries, e)
			c.mu.Unlock()
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

// log is every request so far.
func (c *requestCounter) log() []requestEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.entries)
}

// requestKind names a request by its verb and, for the ones a roll makes
// in numbers, what it is about.
func requestKind(r *http.Request) string {
	path := strings.Trim(r.URL.Path, "/")
	segs := strings.Split(path, "/")
	last := segs[len(segs)-1]
	switch {
	case r.Method == http.MethodPost && last == "eviction":
		return "POST eviction"
	case r.Method == http.MethodPost && last == "events":
		return "POST event"
	case r.Method == http.MethodGet && isList(segs) && r.URL.Query().Get("watch") == "true":
		return "WATCH " + last
	case r.Method == http.MethodGet && isList(segs):
		return "LIST " + last
	case r.Method == http.MethodGet && len(segs) >= 2:
		return "GET " + segs[len(segs)-2]
	case r.Method == http.MethodPatch && len(segs) >= 2:
		return "PATCH " + segs[len(segs)-2]
	case r.Method == http.MethodDelete && len(segs) >= 2:
		return "DELETE " + segs[len(segs)-2]
	}
	return r.Method + " other"
}

// isList tells a LIST from a GET of one object by the path: after the
// group version, a collection is RESOURCE or namespaces/NS/RESOURCE.
func isList(segs []string) bool {
	switch {
	case len(segs) >= 2 && segs[0] == "api":
		segs = segs[2:]
	case len(segs) >= 3 && segs[0] == "apis":
		segs = segs[3:]
	default:
		return false
	}
	if len(segs) >= 3 && segs[0] == "namespaces" {
		segs = segs[2:]
	}
	return len(segs) == 1
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// requests is what the counter holds between two instants.
type requests struct {
	counts map[string]int
	total  int
	// peak is the most requests in one second, its windows counted from
	// from.
	peak int
}

func (c *requestCounter) between(from, to time.Time) requests {
	c.mu.Lock()
	defer c.mu.Unlock()
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

// lastNodePatch is the last PATCH of the node sent at or before t.
func (c *requestCounter) lastNodePatch(node string, t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	var last time.Time
	for _, e := range c.entries {
		if e.Node == node && !e.At.After(t) {
			last = e.At
		}
	}
	return last
}

// snapshot counts every request so far by kind.
func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for _, e := range c.entries {
		out[e.Kind]++
	}
	return out
}

// awsCall is one call of the roller's AWS clients.
type awsCall struct {
	Op       string
	At       time.Time
	Instance string `json:",omitempty"` // TerminateInstanceInAutoScalingGroup's
	Desired  int    `json:",omitempty"` // SetDesiredCapacity's
}

// awsTimeline records the roller's AWS calls as they start.
type awsTimeline struct {
	mu    sync.Mutex
	calls []awsCall
}

// record makes the clients created from cfg afterwards record their calls.
func (t *awsTimeline) record(cfg *aws.Config) {
	cfg.APIOptions = append(slices.Clip(cfg.APIOptions), func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("bench.awsTimeline",
			func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				call := awsCall{Op: awsmiddleware.GetOperationName(ctx), At: time.Now()}
				switch p := in.Parameters.(type) {
				case *autoscaling.TerminateInstanceInAutoScalingGroupInput:
					call.Instance = aws.ToString(p.InstanceId)
				case *autoscaling.SetDesiredCapacityInput:
					call.Desired = int(aws.ToInt32(p.DesiredCapacity))
				}
				t.mu.Lock()
				t.calls = append(t.calls, call)
				t.mu.Unlock()
				return next.HandleInitialize(ctx, in)
			}), middleware.After)
	})
}

func (t *awsTimeline) snapshot() []awsCall {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

// describeCounter counts the EC2 DescribeInstances requests that pass
// through an HTTP client: the agent sends that one as a signed query of
// its own (agent/cloud.NewInstances), past the SDK's middleware that
// moto.CountCalls hooks.
type describeCounter struct {
	mu sync.Mutex
	n  int
}

func (d *describeCounter) client() *http.Client {
	return &http.Client{Timeout: time.Minute, Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.Body != nil {
			body, err := io.ReadAll(r.Body)
			r.Body.Close()
			if err != nil {
				return nil, err
			}
			if bytes.Contains(body, []byte("Action=DescribeInstances")) {
				d.mu.Lock()
				d.n++
				d.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

func (d *describeCounter) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
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
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

// facts is what the watches saw happen, each at the instant this process
// saw it (a watch delivers within milliseconds on this machine), beside
// the timestamps the cluster itself records, which keep whole seconds.
type facts struct {
	mu    sync.Mutex
	pods  map[types.UID]*podFacts
	nodes map[string]*nodeFacts
	pdbs  map[string]*pdbFacts // by namespace/name
}

type podFacts struct {
	namespace, name, app string
	uid                  types.UID
	node                 string
	created              time.Time // metadata.creationTimestamp (whole seconds)
	seen                 time.Time // first seen
	readySince           time.Time // the Ready condition's lastTransitionTime (whole seconds)
	readySeen            time.Time // first seen Ready
	terminating          time.Time // first seen with a deletionTimestamp
	gone                 time.Time // seen deleted
}

type nodeFacts struct {
	name, instance string
	seen           time.Time
	readySeen      time.Time
	drainStart     string // the caravan.io/drain-start annotation
	// lastForced are the values the caravan.io/last-forced-drain
	// annotation took, in order.
	lastForced   []time.Time
	drainingSeen time.Time
	gone         time.Time
}

// pdbFacts is a budget's disruptionsAllowed over time.
type pdbFacts struct {
	allowed []pdbPoint
}

type pdbPoint struct {
	at      time.Time
	allowed int32
}

// startFacts watches Pods, Nodes and PodDisruptionBudgets until ctx ends.
func startFacts(ctx context.Context, cs kubernetes.Interface) (*facts, error) {
	f := &facts{pods: map[types.UID]*podFacts{}, nodes: map[string]*nodeFacts{}, pdbs: map[string]*pdbFacts{}}
	factory := informers.NewSharedInformerFactory(cs, 0)
	handlers := []struct {
		informer cache.SharedIndexInformer
		update   func(obj any, now time.Time)
		gone     func(obj any, now time.Time)
	}{
		{factory.Core().V1().Pods().Informer(), f.pod, f.podGone},
		{factory.Core().V1().Nodes().Informer(), f.node, f.nodeGone},
		{factory.Policy().V1().PodDisruptionBudgets().Informer(), f.pdb, func(any, time.Time) {}},
	}
	for _, h := range handlers {
		_, err := h.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { h.update(obj, time.Now()) },
			UpdateFunc: func(_, obj any) { h.update(obj, time.Now()) },
			DeleteFunc: func(obj any) {
				now := time.Now()
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				h.gone(obj, now)
			},
		})
		if err != nil {
			return nil, err
		}
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("the watch of %v did not sync", typ)
		}
	}
	return f, nil
}

func (f *facts) pod(obj any, now time.Time) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Labels["app"] == "" {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	pf := f.pods[p.UID]
	if pf == nil {
		pf = &podFacts{namespace: p.Namespace, name: p.Name, app: p.Labels["app"], uid: p.UID, created: p.CreationTimestamp.Time, seen: now}
		f.pods[p.UID] = pf
	}
	if p.Spec.NodeName != "" {
		pf.node = p.Spec.NodeName
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && pf.readySeen.IsZero() {
			pf.readySeen, pf.readySince = now, c.LastTransitionTime.Time
		}
	}
	if p.DeletionTimestamp != nil && pf.terminating.IsZero() {
		pf.terminating = now
	}
}

func (f *facts) podGone(obj any, now time.Time) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	f.pod(p, now)
	f.mu.Lock()
	defer f.mu.Unlock()
	if pf := f.pods[p.UID]; pf != nil && pf.gone.IsZero() {
		pf.gone = now
		if pf.terminating.IsZero() {
			pf.terminating = now
		}
	}
}

func (f *facts) node(obj any, now time.Time) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	nf := f.nodes[n.Name]
	if nf == nil {
		nf = &nodeFacts{name: n.Name, instance: nodes.InstanceID(n.Spec.ProviderID), seen: now}
		f.nodes[n.Name] = nf
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && nf.readySeen.IsZero() {
			nf.readySeen = now
		}
	}
	if n.Labels[nodes.LifecycleLabel] == nodes.DrainingValue && nf.drainingSeen.IsZero() {
		nf.drainingSeen = now
	}
	if v := n.Annotations[nodes.DrainStartAnnotation]; v != "" {
		nf.drainStart = v
	}
	if t, err := time.Parse(time.RFC3339Nano, n.Annotations[nodes.LastForcedAnnotation]); err == nil &&
		(len(nf.lastForced) == 0 || !nf.lastForced[len(nf.lastForced)-1].Equal(t)) {
		nf.lastForced = append(nf.lastForced, t)
	}
}

func (f *facts) nodeGone(obj any, now time.Time) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	f.node(n, now)
	f.mu.Lock()
	defer f.mu.Unlock()
	if nf := f.nodes[n.Name]; nf != nil && nf.gone.IsZero() {
		nf.gone = now
	}
}

func (f *facts) pdb(obj any, now time.Time) {
	b, ok := obj.(*policyv1.PodDisruptionBudget)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	key := b.Namespace + "/" + b.Name
	pf := f.pdbs[key]
	if pf == nil {
		pf = &pdbFacts{}
		f.pdbs[key] = pf
	}
	// Only what the budget's controller has computed for its spec counts.
	if b.Status.ObservedGeneration != b.Generation {
		return
	}
	if n := len(pf.allowed); n == 0 || pf.allowed[n-1].allowed != b.Status.DisruptionsAllowed {
		pf.allowed = append(pf.allowed, pdbPoint{at: now, allowed: b.Status.DisruptionsAllowed})
	}
}

// lastPodSeen is when the newest pod was first seen.
func (f *facts) lastPodSeen() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	var last time.Time
	for _, p := range f.pods {
		if p.seen.After(last) {
			last = p.seen
		}
	}
	return last
}

// snapshot copies the facts, for the analysis after the roll.
func (f *facts) snapshot() (map[types.UID]podFacts, map[string]nodeFacts, map[string][]pdbPoint) {
	f.mu.Lock()
	defer f.mu.Unlock()
	pods := map[types.UID]podFacts{}
	for k, v := range f.pods {
		pods[k] = *v
	}
	ns := map[string]nodeFacts{}
	for k, v := range f.nodes {
		ns[k] = *v
	}
	pdbs := map[string][]pdbPoint{}
	for k, v := range f.pdbs {
		pdbs[k] = slices.Clone(v.allowed)
	}
	return pods, ns, pdbs
}

// requestCounter counts the API requests of the roller's client, by kind,
// and when each was made.
type requestCounter struct {
	mu     sync.Mutex
	counts map[string]int
	at     []time.Time
	// nodePatches are the PATCHes of Nodes, by node: the roller takes the
	// drain's start just before it sends the one that records it.
	nodePatches map[string][]time.Time
}

func newRequestCounter() *requestCounter {
	return &requestCounter{counts: map[string]int{}, nodePatches: map[string][]time.Time{}}
}

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			now := time.Now()
			kind := requestKind(r)
			c.add(kind, now)
			if kind == "PATCH nodes" {
				c.mu.Lock()
				name := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				c.nodePatches[name] = append(c.nodePatches[name], now)
				c.mu.Unlock()
			}
			return rt.RoundTrip(r)
		})
	})
	return cfg
}

func (c *requestCounter) add(kind string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[kind]++
	c.at = append(c.at, at)
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
	for _, at := range c.at {
		if at.Before(from) || at.After(to) {
			continue
		}
		out.total++
		s := int64(at.Sub(from) / time.Second)
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
	for _, at := range c.nodePatches[node] {
		if !at.After(t) {
			last = at
		}
	}
	return last
}

func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// awsCall is one call of the roller's AWS clients.
type awsCall struct {
	op       string
	at       time.Time
	instance string // TerminateInstanceInAutoScalingGroup's
	desired  int    // SetDesiredCapacity's
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
				call := awsCall{op: awsmiddleware.GetOperationName(ctx), at: time.Now()}
				switch p := in.Parameters.(type) {
				case *autoscaling.TerminateInstanceInAutoScalingGroupInput:
					call.instance = aws.ToString(p.InstanceId)
				case *autoscaling.SetDesiredCapacityInput:
					call.desired = int(aws.ToInt32(p.DesiredCapacity))
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

//go:build linux

package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
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

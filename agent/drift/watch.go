package drift

import (
	"context"
	"slices"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/caravan-gitops/caravan/agent/apply"
)

// kindWatch is the metadata-only watch of one managed kind: no object is
// cached whole, so the agent's memory grows with the metadata of what it
// manages, not with their specs.
type kindWatch struct {
	informer cache.SharedIndexInformer
	stop     context.CancelFunc
}

// syncWatches runs one watch per kind of inv and stops the others.
func (t *Tracker) syncWatches(inv apply.Inventory) {
	want := map[schema.GroupKind]string{}
	for _, e := range inv {
		if m, err := object.ParseObjMetadata(e.ID); err == nil {
			want[m.GroupKind] = e.Version
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for gk, w := range t.watches {
		if _, ok := want[gk]; !ok {
			w.stop()
			delete(t.watches, gk)
		}
	}
	for gk, version := range want {
		if _, ok := t.watches[gk]; ok {
			continue
		}
		w, err := t.startWatch(gk, version)
		if err != nil {
			t.log.Error(err, "watching a managed kind", "kind", gk.String())
			continue
		}
		t.watches[gk] = w
	}
}

func (t *Tracker) startWatch(gk schema.GroupKind, version string) (*kindWatch, error) {
	mapping, err := t.mapper.RESTMapping(gk, version)
	if err != nil {
		return nil, err
	}
	informer := metadatainformer.NewFilteredMetadataInformer(t.meta, mapping.Resource, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = apply.ManagedLabel + "=" + apply.ManagedValue }).Informer()
	if err := informer.SetTransform(slim); err != nil {
		return nil, err
	}
	_, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { t.observed(gk, o) },
		UpdateFunc: func(_, o any) { t.observed(gk, o) },
		DeleteFunc: func(o any) { t.observed(gk, o) },
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(t.ctx)
	go informer.RunWithContext(ctx)
	// What was deleted while no watch ran shows in no event: after the
	// first listing, every recorded object missing from it is looked at.
	go func() {
		if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			return
		}
		t.mu.Lock()
		var missing []string
		for id := range t.records {
			if m, err := object.ParseObjMetadata(id); err == nil && m.GroupKind == gk {
				if _, ok, _ := informer.GetStore().GetByKey(storeKey(m)); !ok {
					missing = append(missing, id)
				}
			}
		}
		t.mu.Unlock()
		for _, id := range missing {
			t.queue.AddAfter(id, debounce)
		}
	}()
	return &kindWatch{informer: informer, stop: stop}, nil
}

// slim drops from the cached metadata what drift is never about: the
// managedFields entries of the status subresource (controllers' frequent
// status writes) and kubectl's client-side copy of the whole object.
func slim(o any) (any, error) {
	m, ok := o.(*metav1.PartialObjectMetadata)
	if !ok {
		return o, nil
	}
	m.ManagedFields = slices.DeleteFunc(m.ManagedFields, func(e metav1.ManagedFieldsEntry) bool { return e.Subresource == "status" })
	delete(m.Annotations, lastApplied)
	return m, nil
}

const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// observed queues an object whose event may be drift; the worker decides.
func (t *Tracker) observed(gk schema.GroupKind, o any) {
	if tomb, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = tomb.Obj
	}
	m, ok := o.(metav1.Object)
	if !ok {
		return
	}
	id := apply.IDOf(gk, m.GetNamespace(), m.GetName())
	t.mu.Lock()
	e, tracked := t.records[id]
	t.mu.Unlock()
	if tracked && Drifted(e, t.observation(id)) {
		t.queue.AddAfter(id, debounce)
	}
}

// observation reads the object of id from its watch's cache.
func (t *Tracker) observation(id string) Observation {
	live, _ := t.live(id)
	return Observe(live)
}

// live is the cached metadata of the object of id; ok is false when its
// kind's watch has not listed yet, and a nil object is a missing one.
func (t *Tracker) live(id string) (metav1.Object, bool) {
	m, err := object.ParseObjMetadata(id)
	if err != nil {
		return nil, false
	}
	t.mu.Lock()
	w := t.watches[m.GroupKind]
	t.mu.Unlock()
	if w == nil || !w.informer.HasSynced() {
		return nil, false
	}
	o, exists, err := w.informer.GetStore().GetByKey(storeKey(m))
	if err != nil {
		return nil, false
	}
	if !exists {
		return nil, true
	}
	live, ok := o.(metav1.Object)
	return live, ok
}

func storeKey(m object.ObjMetadata) string {
	if m.Namespace == "" {
		return m.Name
	}
	return m.Namespace + "/" + m.Name
}

// waitSynced waits, at most timeout, for every watch to have listed.
func (t *Tracker) waitSynced(ctx context.Context, timeout time.Duration) {
	t.mu.Lock()
	var synced []cache.InformerSynced
	for _, w := range t.watches {
		synced = append(synced, w.informer.HasSynced)
	}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cache.WaitForCacheSync(ctx.Done(), synced...)
}

package reconciler

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"

	"github.com/caravan-gitops/caravan/agent/clusterconfig"
)

// configWatch follows the ClusterConfig's resourceVersion with a watch of
// its metadata, so that a reconcile learns whether the object moved since
// it wrote it without a request: while nodes roll, the loop runs at every
// change the roll waits on.
type configWatch struct {
	informer cache.SharedIndexInformer
}

// WithConfigWatch makes the reconciler read the ClusterConfig's
// resourceVersion from a watch, which runs until ctx ends; without it,
// each reconcile asks the API server.
func (r *Reconciler) WithConfigWatch(ctx context.Context, meta metadata.Interface) *Reconciler {
	gvr := clusterconfig.GroupVersion.WithResource("clusterconfigs")
	informer := metadatainformer.NewFilteredMetadataInformer(meta, gvr, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", clusterconfig.Name).String()
		}).Informer()
	go informer.RunWithContext(ctx)
	r.watch = &configWatch{informer: informer}
	return r
}

// version is the ClusterConfig's resourceVersion as the watch last saw
// it; false until the watch has listed it.
func (w *configWatch) version() (string, bool) {
	if w == nil || !w.informer.HasSynced() {
		return "", false
	}
	obj, ok, err := w.informer.GetStore().GetByKey(clusterconfig.Name)
	if err != nil || !ok {
		return "", false
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if !ok {
		return "", false
	}
	return m.ResourceVersion, true
}

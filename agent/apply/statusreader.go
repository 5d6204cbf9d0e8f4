package apply

import (
	"context"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// statusFields are the spec fields kstatus's status.Compute reads; the
// rest of a spec (a Deployment's pod template, a CRD's schemas) never
// decides health.
var statusFields = []string{"replicas", "updateStrategy", "progressDeadlineSeconds", "parallelism", "completions", "type", "clusterIP"}

// statusReader is what the health wait reads the cluster through: it keeps
// of every object listed only what health is computed from. A wait polls
// every second, for minutes, and lists every object of each waited kind in
// each namespace; managed fields and pod templates would make that tens of
// megabytes per poll held in the poller's cache.
type statusReader struct{ client.Reader }

func (r statusReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if err := r.Reader.Get(ctx, key, obj, opts...); err != nil {
		return err
	}
	if u, ok := obj.(*unstructured.Unstructured); ok {
		trimForStatus(u)
	}
	return nil
}

func (r statusReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if err := r.Reader.List(ctx, list, opts...); err != nil {
		return err
	}
	if l, ok := list.(*unstructured.UnstructuredList); ok {
		for i := range l.Items {
			trimForStatus(&l.Items[i])
		}
	}
	return nil
}

// trimForStatus drops everything status.Compute does not read.
func trimForStatus(u *unstructured.Unstructured) {
	unstructured.RemoveNestedField(u.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	delete(u.Object, "data")
	delete(u.Object, "binaryData")
	spec, ok := u.Object["spec"].(map[string]any)
	if !ok {
		return
	}
	kept := map[string]any{}
	for _, f := range statusFields {
		if v, ok := spec[f]; ok {
			kept[f] = v
		}
	}
	u.Object["spec"] = kept
}

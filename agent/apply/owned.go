package apply

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/object"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ReconcileAnnotation: "disabled" on a live object keeps Caravan from
// correcting it between versions; a version that changes it still applies it.
const ReconcileAnnotation = "caravan.io/reconcile"

// LiveState tells what the cluster holds now, as the drift watch sees it.
type LiveState interface {
	// InSync is true when the live object of e exists and Caravan's fields
	// in it are as its last apply left them (or another manager's change
	// of them is to be left alone); false when that is not known.
	InSync(e Entry) bool
}

// IDOf is the inventory ID of an object.
func IDOf(gk schema.GroupKind, namespace, name string) string {
	return object.ObjMetadata{Namespace: namespace, Name: name, GroupKind: gk}.String()
}

// Subject names an object in messages and statuses: "Kind namespace/name",
// or "Kind name" when it is cluster-scoped.
func Subject(kind, namespace, name string) string {
	return kind + " " + strings.TrimPrefix(namespace+"/"+name, "/")
}

// ObjectDigest is a digest of the object as applied: two objects with the
// same digest need one apply between them.
func ObjectDigest(o *unstructured.Unstructured) (string, error) {
	b, err := json.Marshal(o.Object)
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", o.GetName(), err)
	}
	return shortDigest(b), nil
}

// OwnedFields is a digest of the fields Caravan's apply owns in the object,
// read from its managedFields; "" when Caravan owns none. Another manager's
// write of a field Caravan set takes the field over, so a new digest means
// someone changed what Caravan applied; changes to fields Caravan does not
// set (status, replicas left to an autoscaler) leave it as it is.
func OwnedFields(o metav1.Object) string {
	e := OwnedEntry(o)
	if e == nil || e.FieldsV1 == nil {
		return ""
	}
	return shortDigest(e.FieldsV1.GetRawBytes())
}

// OwnedEntry is Caravan's apply entry of the object's managedFields.
func OwnedEntry(o metav1.Object) *metav1.ManagedFieldsEntry {
	fields := o.GetManagedFields()
	for i := range fields {
		f := &fields[i]
		if f.Manager == FieldManager && f.Operation == metav1.ManagedFieldsOperationApply && f.Subresource == "" {
			return f
		}
	}
	return nil
}

func shortDigest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:12])
}

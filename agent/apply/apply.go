// Package apply puts a rendered revision into the cluster with server-side
// apply in stages, deletes what deletions.yaml names, prunes what left the
// config, and waits for health.
package apply

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/kstatus/polling/engine"
	"github.com/fluxcd/cli-utils/pkg/kstatus/polling/statusreaders"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	ssaerrors "github.com/fluxcd/pkg/ssa/errors"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/caravan-gitops/caravan/agent/render"
)

// Labels and annotations Caravan reads and writes on applied objects.
const (
	FieldManager = "caravan"
	// ManagedLabel marks what Caravan applied; prune deletes nothing without it.
	ManagedLabel = "caravan.io/managed-by"
	ManagedValue = "caravan"
	// PruneAnnotation: "disabled" keeps an object when it leaves the config.
	PruneAnnotation = "caravan.io/prune"
	// ForceAnnotation: "enabled" lets an immutable-field change recreate the object.
	ForceAnnotation = "caravan.io/force"
)

// Applier applies revisions to one cluster.
type Applier struct {
	// live, when set, lets an apply skip the objects that are in the
	// cluster as the last apply left them.
	live      LiveState
	client    client.Client
	manager   *ssa.ResourceManager
	mapper    meta.RESTMapper
	discovery discovery.DiscoveryInterface
	rest      rest.Interface
}

// New connects an Applier to the cluster of cfg.
func New(cfg *rest.Config) (*Applier, error) {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("building the REST mapper: %w", err)
	}
	c, err := client.New(cfg, client.Options{Mapper: mapper, HTTPClient: httpClient})
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	restClient, err := rawClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	// Health is read from each object alone: kstatus's Deployment and
	// StatefulSet readers would also list every ReplicaSet and Pod of each
	// namespace on every poll, only to word the messages, and an agent must
	// stay small in the cluster it serves.
	poller := polling.NewStatusPoller(statusReader{c}, mapper, polling.Options{
		CustomStatusReaders: []engine.StatusReader{statusreaders.NewGenericStatusReader(mapper, status.Compute)},
	})
	manager := ssa.NewResourceManager(c, poller, ssa.Owner{Field: FieldManager, Group: "caravan.io"})
	manager.SetConcurrency(8)
	return &Applier{client: c, manager: manager, mapper: mapper, discovery: disco, rest: restClient}, nil
}

// UseLiveState makes every later apply skip the objects whose rendered
// content is as last applied and that live says are unchanged since.
func (a *Applier) UseLiveState(live LiveState) { a.live = live }

// rawClient sends requests whose status code matters, such as an apply
// that tells created from configured.
func rawClient(cfg *rest.Config, httpClient *http.Client) (rest.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientForConfigAndClient(c, httpClient)
	if err != nil {
		return nil, fmt.Errorf("building the REST client: %w", err)
	}
	return rc, nil
}

// Result is what one apply changed.
type Result struct {
	// Applied are the objects the apply sent; Unchanged counts those it
	// skipped, as last applied and unchanged in the cluster since.
	Applied   *ssa.ChangeSet
	Unchanged int
	Deleted   []string
	Pruned    *ssa.ChangeSet
	Inventory Inventory
}

// AppliedInventory lists the entries of the objects this apply sent.
func (r *Result) AppliedInventory() Inventory {
	sent := map[string]bool{}
	if r.Applied != nil {
		for _, e := range r.Applied.Entries {
			sent[e.ObjMetadata.String()] = true
		}
	}
	var out Inventory
	for _, e := range r.Inventory {
		if sent[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

// ObjectError is an apply failure of the revision's content (an invalid
// object, an immutable field changed without the force annotation), as
// opposed to a failure of the cluster or the network.
type ObjectError struct{ Err error }

func (e *ObjectError) Error() string { return e.Err.Error() }
func (e *ObjectError) Unwrap() error { return e.Err }

// Apply runs pre-apply deletions, the staged apply, the prune of what the
// previous inventory has and this revision does not, and post-apply
// deletions. An object rendered as the previous revision applied it, and
// unchanged in the cluster since, costs no request.
func (a *Applier) Apply(ctx context.Context, r *render.Result, previous Inventory) (*Result, error) {
	Label(r.Objects)
	res := &Result{}
	changed, digests, err := a.plan(r.Objects, previous, res)
	if err != nil {
		return res, err
	}
	deleted, err := a.deleteRefs(ctx, r.Deletions.PreApply)
	res.Deleted = append(res.Deleted, deleted...)
	if err != nil {
		return res, fmt.Errorf("pre-apply deletions: %w", err)
	}
	res.Applied, err = a.applyStaged(ctx, changed, digests, res.Inventory)
	if err != nil {
		return res, applyError(err)
	}
	if res.Pruned, err = a.prune(ctx, previous.Stale(res.Inventory)); err != nil {
		return res, err
	}
	deleted, err = a.deleteRefs(ctx, r.Deletions.PostApply)
	res.Deleted = append(res.Deleted, deleted...)
	if err != nil {
		return res, fmt.Errorf("post-apply deletions: %w", err)
	}
	return res, nil
}

// Label marks objects as Caravan's, as every apply sends them.
func Label(objects []*unstructured.Unstructured) {
	for _, o := range objects {
		labels := o.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		labels[ManagedLabel] = ManagedValue
		o.SetLabels(labels)
	}
}

// plan fills res.Inventory with the revision's objects, keeping the
// records of those it skips, and returns the objects to apply with their
// digests, which their records get once applied.
func (a *Applier) plan(objects []*unstructured.Unstructured, previous Inventory, res *Result) ([]*unstructured.Unstructured, map[string]string, error) {
	res.Inventory = InventoryOf(objects)
	before := previous.Index()
	skip := map[string]Entry{}
	digests := map[string]string{}
	var changed []*unstructured.Unstructured
	for _, o := range objects {
		id := object.UnstructuredToObjMetadata(o).String()
		digest, err := ObjectDigest(o)
		if err != nil {
			return nil, nil, &ObjectError{Err: err}
		}
		if e, ok := before[id]; ok && e.Digest == digest && a.live != nil && a.live.InSync(e) {
			skip[id] = e
			continue
		}
		changed = append(changed, o)
		digests[id] = digest
	}
	for i, e := range res.Inventory {
		if kept, ok := skip[e.ID]; ok {
			res.Inventory[i].Digest, res.Inventory[i].Fields = kept.Digest, kept.Fields
		}
	}
	res.Unchanged = len(skip)
	return changed, digests, nil
}

func applyError(err error) error {
	var status apierrors.APIStatus
	if ssaerrors.IsImmutableError(err) {
		return &ObjectError{Err: fmt.Errorf("%w; annotate the object %s=enabled to let Caravan recreate it", err, ForceAnnotation)}
	}
	if errors.As(err, &status) && (apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)) {
		return &ObjectError{Err: err}
	}
	if strings.Contains(err.Error(), "dry-run failed") {
		return &ObjectError{Err: err}
	}
	return fmt.Errorf("applying: %w", err)
}

// prune deletes stale objects that carry Caravan's label and not the
// prune-disabled annotation.
func (a *Applier) prune(ctx context.Context, stale Inventory) (*ssa.ChangeSet, error) {
	if len(stale) == 0 {
		return ssa.NewChangeSet(), nil
	}
	objects, err := stale.Objects()
	if err != nil {
		return nil, err
	}
	cs, err := a.manager.DeleteAll(ctx, objects, ssa.DeleteOptions{
		PropagationPolicy: metav1.DeletePropagationBackground,
		Inclusions:        map[string]string{ManagedLabel: ManagedValue},
		Exclusions:        map[string]string{PruneAnnotation: "disabled"},
	})
	if err != nil {
		return cs, fmt.Errorf("pruning: %w", err)
	}
	return cs, nil
}

// deleteRefs deletes the named objects; one that does not exist is fine.
func (a *Applier) deleteRefs(ctx context.Context, refs []render.ObjectRef) ([]string, error) {
	var deleted []string
	for _, ref := range refs {
		gvk, err := a.resolveKind(ref.Kind)
		if err != nil {
			return deleted, err
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		u.SetName(ref.Name)
		u.SetNamespace(ref.Namespace)
		err = a.client.Delete(ctx, u, client.PropagationPolicy(metav1.DeletePropagationBackground))
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return deleted, fmt.Errorf("deleting %s: %w", Subject(ref.Kind, ref.Namespace, ref.Name), err)
		default:
			deleted = append(deleted, Subject(ref.Kind, ref.Namespace, ref.Name))
		}
	}
	return deleted, nil
}

// resolveKind finds the group and preferred version of a kind that
// deletions.yaml names without its API group.
func (a *Applier) resolveKind(kind string) (schema.GroupVersionKind, error) {
	lists, err := a.discovery.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return schema.GroupVersionKind{}, fmt.Errorf("discovering API resources: %w", err)
	}
	var found []schema.GroupVersionKind
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if r.Kind == kind && !strings.Contains(r.Name, "/") {
				found = append(found, gv.WithKind(kind))
			}
		}
	}
	switch len(found) {
	case 0:
		return schema.GroupVersionKind{}, &ObjectError{Err: fmt.Errorf("%s: the cluster serves no kind %q", render.DeletionsFile, kind)}
	case 1:
		return found[0], nil
	}
	return schema.GroupVersionKind{}, &ObjectError{Err: fmt.Errorf("%s: kind %q is served by several API groups (%v)", render.DeletionsFile, kind, found)}
}

// Wait waits until every object of the inventory is healthy (kstatus
// Current), the timeout passes, or ctx ends, as when a newer revision
// arrives; its error names the objects that are not healthy.
func (a *Applier) Wait(ctx context.Context, inv Inventory, timeout time.Duration) error {
	inv = inv.WithHealth()
	set, err := inv.ObjMetadataSet()
	if err != nil {
		return err
	}
	err = a.manager.WaitForSetWithContext(ctx, set, ssa.WaitOptions{Interval: time.Second, Timeout: timeout, FailFast: true})
	if err == nil || ctx.Err() != nil {
		return err
	}
	// The wait may end inside a request, with an error that names no object.
	if names := a.unhealthy(inv); len(names) > 0 && !strings.Contains(err.Error(), names[0]) {
		return fmt.Errorf("%w; not healthy: %s", err, strings.Join(names, ", "))
	}
	return err
}

// unhealthy names up to ten objects of the inventory that are not Current.
func (a *Applier) unhealthy(inv Inventory) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	objects, err := inv.Objects()
	if err != nil {
		return nil
	}
	var names []string
	for _, o := range objects {
		if len(names) == 10 || ctx.Err() != nil {
			break
		}
		if err := a.client.Get(ctx, client.ObjectKeyFromObject(o), o); err != nil {
			continue
		}
		if res, err := status.Compute(o); err == nil && res.Status != status.CurrentStatus {
			names = append(names, fmt.Sprintf("%s (%s: %s)", Subject(o.GetKind(), o.GetNamespace(), o.GetName()), res.Status, res.Message))
		}
	}
	return names
}

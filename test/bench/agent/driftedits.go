//go:build linux

package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/caravan-gitops/caravan/test/bench/host"
)

const (
	driftEdits = 20
	// caravanEditLimit bounds the wait for the agent's correction of one
	// edit: over three times the goal's p99, so that a slow correction is
	// still measured, short enough that 20 missed ones take minutes.
	caravanEditLimit = 10 * time.Second
	// fluxEditLimit is two of Flux's intervals: its next apply corrects
	// an edit, and the one after is the last chance.
	fluxEditLimit = 2 * fluxInterval
	// handManager is the field manager of the hand edits, as kubectl's
	// own would be kubectl-edit or kubectl-scale.
	handManager = "bench-hand-edit"
	// handValue is what a hand edit writes into a ConfigMap's data.
	handValue = "edited-by-hand"
)

// The kinds of hand edit.
const (
	editScale  = "scale a Deployment to 3"
	editData   = "change a ConfigMap's data"
	editDelete = "delete a ConfigMap"
)

var editKinds = []string{editScale, editData, editDelete}

// edit is one hand edit, made to the same object in both copies: in
// namespace PREFIX-ns of each.
type edit struct {
	kind          string
	ns            int
	name          string
	caravan, flux editOutcome
}

// editOutcome is how long the correction of an edit took, from the edit's
// response to the watch event that showed the object as the manifest has
// it again, or re-created.
type editOutcome struct {
	took      time.Duration
	corrected bool // false: not within the limit
}

// editPlan spreads the edits over the namespaces and the three kinds, each
// on an object of its own: Deployments app-010 on, ConfigMaps settings-010
// on for data and settings-060 on for deletions, clear of settings-000,
// which item 2's commit changes.
func editPlan() []edit {
	plan := make([]edit, driftEdits)
	for i := range plan {
		e := edit{kind: editKinds[i%len(editKinds)], ns: i%namespaces + 1}
		switch e.kind {
		case editScale:
			e.name = fmt.Sprintf("app-%03d", 10+i)
		case editData:
			e.name = fmt.Sprintf("settings-%03d", 10+i)
		case editDelete:
			e.name = fmt.Sprintf("settings-%03d", 60+i)
		}
		plan[i] = e
	}
	return plan
}

// measureEdits is item 1: each edit is made to the agent's object and to
// Flux's twin at once; the next edit follows the agent's correction (or
// its limit), while Flux's corrections, which wait for its interval, are
// waited for in the background.
func (d *driftRun) measureEdits(ctx context.Context) error {
	if _, err := waitQuiet(ctx, 30*time.Second); err != nil {
		return err
	}
	host.Progress("drift 1. %d hand edits, each to caravan-agent's object and to Flux's twin", driftEdits)
	plan := editPlan()
	var wg sync.WaitGroup
	errs := make([]error, len(plan))
	for i := range plan {
		e := &plan[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			e.flux, err = d.handEdit(ctx, e.kind, fmt.Sprintf("%s-%d", fluxNS, e.ns), e.name, fluxEditLimit)
			errs[i] = err
		}()
		var err error
		if e.caravan, err = d.handEdit(ctx, e.kind, fmt.Sprintf("%s-%d", processNS, e.ns), e.name, caravanEditLimit); err != nil {
			wg.Wait()
			return err
		}
		took := "not corrected within " + seconds(caravanEditLimit)
		if e.caravan.corrected {
			took = fmt.Sprintf("corrected after %s", ms(e.caravan.took))
		}
		host.Progress("   %2d. %s, %s: caravan-agent %s", i+1, e.kind, e.name, took)
		// The correction's own requests and events settle before the next.
		time.Sleep(time.Second)
	}
	host.Progress("   waiting for kustomize-controller's corrections, up to %s after each edit", fluxEditLimit)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	d.rep.edits = plan
	d.rep.driftMetrics, _ = scrape(ctx, "http://"+d.agent.metricsAddr+"/metrics",
		"caravan_agent_drift_detected_total", "caravan_agent_drift_corrected_total", "caravan_agent_drift_fights")
	return nil
}

// handEdit makes one edit of kind to the object name in namespace ns, as
// a person with kubectl would, and waits up to limit for its correction.
func (d *driftRun) handEdit(ctx context.Context, kind, ns, name string, limit time.Duration) (editOutcome, error) {
	kube := d.c.cp.Client
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	switch kind {
	case editScale:
		deployments := kube.AppsV1().Deployments(ns)
		scale, err := deployments.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return editOutcome{}, err
		}
		scale.Spec.Replicas = 3
		got, err := deployments.UpdateScale(ctx, name, scale, metav1.UpdateOptions{FieldManager: handManager})
		if err != nil {
			return editOutcome{}, fmt.Errorf("scaling %s/%s: %w", ns, name, err)
		}
		return waitCorrected(ctx, time.Now(), limit, got.ResourceVersion, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return deployments.Watch(ctx, o)
		}, func(e watch.Event) bool {
			dep, ok := e.Object.(*appsv1.Deployment)
			return ok && e.Type == watch.Modified && dep.Spec.Replicas != nil && *dep.Spec.Replicas == 1
		})
	case editData:
		configMaps := kube.CoreV1().ConfigMaps(ns)
		got, err := configMaps.Patch(ctx, name, types.MergePatchType, fmt.Appendf(nil, `{"data":{"log-level":%q}}`, handValue),
			metav1.PatchOptions{FieldManager: handManager})
		if err != nil {
			return editOutcome{}, fmt.Errorf("editing %s/%s: %w", ns, name, err)
		}
		return waitCorrected(ctx, time.Now(), limit, got.ResourceVersion, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return configMaps.Watch(ctx, o)
		}, func(e watch.Event) bool {
			cm, ok := e.Object.(*corev1.ConfigMap)
			return ok && e.Type != watch.Deleted && cm.Data["log-level"] != handValue
		})
	case editDelete:
		configMaps := kube.CoreV1().ConfigMaps(ns)
		cur, err := configMaps.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return editOutcome{}, err
		}
		if err := configMaps.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			return editOutcome{}, fmt.Errorf("deleting %s/%s: %w", ns, name, err)
		}
		// From the version before the deletion, so that a re-creation
		// right after it is not missed.
		return waitCorrected(ctx, time.Now(), limit, cur.ResourceVersion, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = selector
			return configMaps.Watch(ctx, o)
		}, func(e watch.Event) bool { return e.Type == watch.Added })
	}
	return editOutcome{}, fmt.Errorf("unknown edit %q", kind)
}

// waitCorrected watches from resourceVersion until corrected says an event
// shows the correction, at most until edited+limit.
func waitCorrected(ctx context.Context, edited time.Time, limit time.Duration, resourceVersion string,
	watchFunc cache.WatchFuncWithContext, corrected func(watch.Event) bool) (editOutcome, error) {
	wctx, cancel := context.WithDeadline(ctx, edited.Add(limit))
	defer cancel()
	w, err := watchtools.NewRetryWatcherWithContext(wctx, resourceVersion, &cache.ListWatch{WatchFuncWithContext: watchFunc})
	if err != nil {
		return editOutcome{}, err
	}
	defer w.Stop()
	_, err = watchtools.UntilWithoutRetry(wctx, w, func(e watch.Event) (bool, error) { return corrected(e), nil })
	seen := time.Now()
	switch {
	case err == nil:
		return editOutcome{took: max(seen.Sub(edited), 0), corrected: true}, nil
	case ctx.Err() == nil && wctx.Err() != nil:
		return editOutcome{}, nil
	default:
		return editOutcome{}, err
	}
}

package drift

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/clusterconfig"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func (t *Tracker) work() {
	for {
		id, shutdown := t.queue.Get()
		if shutdown {
			return
		}
		t.process(t.ctx, id)
		t.queue.Done(id)
	}
}

// process looks at one queued object again, as it is now, and acts on it.
func (t *Tracker) process(ctx context.Context, id string) {
	t.applying.RLock()
	defer t.applying.RUnlock()
	live, known := t.live(id)
	t.mu.Lock()
	e, tracked := t.records[id]
	desired := t.desired[id]
	if !known || !tracked || desired == nil {
		t.mu.Unlock()
		return
	}
	now := t.now()
	if f := t.fights[id]; f != nil && !now.Before(f.Until) {
		t.log.Info("a fight expired; correcting the object again", "object", f.Object)
		delete(t.fights, id)
		delete(t.history, id)
		t.status.Fights, t.dirty = t.fightList(), true
		t.metrics.fights.Set(float64(len(t.fights)))
	}
	_, fighting := t.fights[id]
	verdict := Judge(Case{Entry: e, Live: Observe(live), Settings: t.settings, Held: t.held != "", Fighting: fighting, Corrections: t.history[id], Now: now})
	if wait := t.lastFix[id].Add(minInterval).Sub(now); wait > 0 && verdict == Correct {
		t.mu.Unlock()
		t.queue.AddAfter(id, wait)
		return
	}
	t.mu.Unlock()
	if verdict == InSync || verdict == LeftAlone || verdict == Fought {
		return
	}
	// Decoded only now: after a version, every object is looked at again,
	// and nearly all are in sync.
	o := &unstructured.Unstructured{}
	if err := json.Unmarshal(desired, &o.Object); err != nil {
		return
	}
	switch verdict {
	case Report:
		t.report(ctx, id, o, live, "")
	case Hold:
		t.hold(ctx, id, o, live)
	case StartFight:
		t.startFight(id, o, live)
	case Correct:
		if reason := t.inClusterHold(ctx); reason != "" {
			t.mu.Lock()
			t.held = reason
			t.mu.Unlock()
			t.hold(ctx, id, o, live)
			return
		}
		t.correct(ctx, id, o, live)
	}
}

// inClusterHold reads the ClusterConfig's suspension and block right
// before a correction: users set them with kubectl, and a correction must
// not wait for the next reconcile to notice.
func (t *Tracker) inClusterHold(ctx context.Context) string {
	cc := &clusterconfig.ClusterConfig{}
	if err := t.kube.Get(ctx, client.ObjectKey{Name: clusterconfig.Name}, cc); err != nil {
		return ""
	}
	switch {
	case cc.Spec.Suspend:
		return "suspended"
	case cc.Spec.Block != nil:
		return "blocked: " + cc.Spec.Block.Reason
	}
	return ""
}

// correct re-applies the object, or re-creates it.
func (t *Tracker) correct(ctx context.Context, id string, o *unstructured.Unstructured, before metav1.Object) {
	after, err := t.applier.Reapply(ctx, o)
	if err != nil {
		t.mu.Lock()
		t.failures[id]++
		backoff := min(time.Second<<min(t.failures[id], 6), time.Minute)
		t.mu.Unlock()
		t.log.Error(err, "correcting drift", "object", subject(o))
		t.queue.AddAfter(id, backoff)
		return
	}
	c := api.DriftCorrection{Object: subject(o), Action: api.DriftRecreated, At: t.now().UTC()}
	if before != nil {
		c.Action = api.DriftCorrected
		c.Fields = TakenFields(apply.OwnedEntry(before), apply.OwnedEntry(after))
		c.Manager = Managers(before, c.Fields)
	}
	t.mu.Lock()
	delete(t.failures, id)
	t.lastFix[id] = t.now()
	t.history[id] = append(Recent(t.history[id], t.now(), t.settings.FightPeriod), t.now())
	if e, ok := t.records[id]; ok {
		e.Fields = apply.OwnedFields(after)
		t.records[id] = e
	}
	t.status.Detected++
	t.status.Corrected++
	t.remember(c)
	t.mu.Unlock()
	t.metrics.detected.WithLabelValues(o.GetKind()).Inc()
	t.metrics.corrected.WithLabelValues(o.GetKind()).Inc()
	t.log.Info("drift corrected", "object", c.Object, "action", c.Action, "fields", c.Fields, "manager", c.Manager)
	events.Publish(t.recorder, driftCorrectedEvents(after, t.clusterConfigRef(), c)...)
}

// report records a drift once per state of Caravan's fields in the
// object, without changing it: the controllers' status writes that follow
// a hand edit are no new drift.
func (t *Tracker) report(ctx context.Context, id string, o *unstructured.Unstructured, live metav1.Object, held string) {
	state := "deleted"
	if live != nil {
		state = "fields " + apply.OwnedFields(live)
	}
	t.mu.Lock()
	seen := t.reported[id] == state
	t.reported[id] = state
	t.mu.Unlock()
	if seen {
		return
	}
	c := api.DriftCorrection{Object: subject(o), Action: api.DriftReported, At: t.now().UTC()}
	if live != nil {
		// A dry run of the object's apply shows which fields it would
		// take back, and so which another manager changed.
		if after, err := t.applier.DryRun(ctx, o); err == nil {
			c.Fields = TakenFields(apply.OwnedEntry(live), apply.OwnedEntry(after))
			c.Manager = Managers(live, c.Fields)
		}
	}
	t.mu.Lock()
	t.status.Detected++
	t.remember(c)
	t.mu.Unlock()
	t.metrics.detected.WithLabelValues(o.GetKind()).Inc()
	t.log.Info("drift detected", "object", c.Object, "fields", c.Fields, "manager", c.Manager, "held", held)
	events.Publish(t.recorder, driftDetectedEvents(eventSubject(o, live), t.clusterConfigRef(), c, held)...)
}

// hold parks a drifted object until the block or suspension is lifted.
func (t *Tracker) hold(ctx context.Context, id string, o *unstructured.Unstructured, live metav1.Object) {
	t.mu.Lock()
	t.parked[id] = true
	reason := t.held
	t.mu.Unlock()
	t.report(ctx, id, o, live, reason)
}

// startFight stops correcting an object another manager keeps changing.
func (t *Tracker) startFight(id string, o *unstructured.Unstructured, live metav1.Object) {
	now := t.now().UTC()
	t.mu.Lock()
	f := &api.DriftFight{Object: subject(o), Corrections: len(Recent(t.history[id], now, t.settings.FightPeriod)), Until: now.Add(t.settings.FightExpiry)}
	if h := t.history[id]; len(h) > 0 {
		f.Since = h[0].UTC()
	}
	for _, c := range t.status.Recent {
		if c.Object == f.Object && c.Action == api.DriftCorrected {
			f.Fields, f.Manager = c.Fields, c.Manager
			break
		}
	}
	t.fights[id] = f
	t.status.Detected++
	t.status.Fights, t.dirty = t.fightList(), true
	t.metrics.fights.Set(float64(len(t.fights)))
	expiry := t.settings.FightExpiry
	t.mu.Unlock()
	t.metrics.detected.WithLabelValues(o.GetKind()).Inc()
	t.queue.AddAfter(id, expiry)
	t.log.Info("drift fight; correcting no more", "object", f.Object, "fields", f.Fields, "manager", f.Manager, "until", f.Until)
	events.Publish(t.recorder, driftFightEvents(eventSubject(o, live), t.clusterConfigRef(), *f)...)
}

// remember adds a correction to the status; t.mu is held.
func (t *Tracker) remember(c api.DriftCorrection) {
	t.status.Recent = append([]api.DriftCorrection{c}, t.status.Recent...)
	if len(t.status.Recent) > api.DriftKeep {
		t.status.Recent = t.status.Recent[:api.DriftKeep]
	}
	t.dirty = true
}

func describe(c api.DriftCorrection) string {
	switch {
	case c.Action == api.DriftRecreated:
		return "deleted by hand; re-created"
	case c.Action == api.DriftReported && len(c.Fields) == 0:
		return "changed or deleted by someone other than Caravan"
	}
	what := fmt.Sprintf("%s changed by %s", strings.Join(c.Fields, ", "), orUnknown(c.Manager))
	if len(c.Fields) == 0 {
		what = "changed by " + orUnknown(c.Manager)
	}
	if c.Action == api.DriftCorrected {
		what += "; set back as the version has it"
	}
	return what
}

// subject names an object as the status does: "Kind namespace/name".
func subject(o *unstructured.Unstructured) string {
	return apply.Subject(o.GetKind(), o.GetNamespace(), o.GetName())
}

// eventSubject is what an Event is about: the live object, or the
// rendered one when it is gone.
func eventSubject(o *unstructured.Unstructured, live metav1.Object) *unstructured.Unstructured {
	ref := &unstructured.Unstructured{}
	ref.SetGroupVersionKind(o.GroupVersionKind())
	ref.SetNamespace(o.GetNamespace())
	ref.SetName(o.GetName())
	if live != nil {
		ref.SetUID(live.GetUID())
		ref.SetResourceVersion(live.GetResourceVersion())
	}
	return ref
}

func (t *Tracker) clusterConfigRef() *clusterconfig.ClusterConfig {
	cc := &clusterconfig.ClusterConfig{}
	cc.SetGroupVersionKind(clusterconfig.GroupVersion.WithKind("ClusterConfig"))
	cc.Name = clusterconfig.Name
	return cc
}

// fightList is the fights in a stable order; t.mu is held.
func (t *Tracker) fightList() []api.DriftFight {
	var out []api.DriftFight
	for _, f := range t.fights {
		out = append(out, *f)
	}
	slicesSortFights(out)
	return out
}

// Drifted lists the objects that differ from the version now and are not
// being corrected, for a plan.
func (t *Tracker) Drifted(ctx context.Context) []api.DriftedObject {
	t.mu.Lock()
	ids := make([]string, 0, len(t.records))
	for id := range t.records {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	var out []api.DriftedObject
	for _, id := range ids {
		live, known := t.live(id)
		t.mu.Lock()
		e, desired := t.records[id], t.desired[id]
		_, fighting := t.fights[id]
		c := Case{Entry: e, Live: Observe(live), Settings: t.settings, Held: t.held != "", Fighting: fighting, Corrections: t.history[id], Now: t.now()}
		t.mu.Unlock()
		verdict := Judge(c)
		if !known || desired == nil || verdict == InSync {
			continue
		}
		o := &unstructured.Unstructured{}
		if err := json.Unmarshal(desired, &o.Object); err != nil {
			continue
		}
		d := api.DriftedObject{Object: subject(o), Deleted: live == nil, Held: heldBy(verdict, c)}
		if live != nil {
			if after, err := t.applier.DryRun(ctx, o); err == nil {
				d.Fields = TakenFields(apply.OwnedEntry(live), apply.OwnedEntry(after))
				d.Manager = Managers(live, d.Fields)
			}
		}
		out = append(out, d)
	}
	slicesSortDrifted(out)
	return out
}

func heldBy(v Verdict, c Case) string {
	switch v {
	case LeftAlone:
		if c.Live.Disabled {
			return api.DriftHeldAnnotation
		}
		return api.DriftHeldDisabled
	case Fought:
		return api.DriftHeldFight
	case Report:
		return api.DriftHeldReport
	case Hold:
		return api.DriftHeldBlocked
	}
	return ""
}

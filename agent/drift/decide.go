// Package drift keeps a cluster as its version left it between versions:
// it watches the metadata of every object Caravan applied, tells Caravan's
// own writes from other managers' changes of the fields Caravan sets, and
// re-applies or re-creates what drifted, unless told to only report it,
// held by a block, or fighting another manager.
package drift

import (
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Observation is a managed object as the watch last saw it.
type Observation struct {
	Exists bool
	// Fields is apply.OwnedFields of the live object.
	Fields string
	// Disabled: the live object is annotated caravan.io/reconcile: disabled.
	Disabled bool
}

// Observe reads an observation from a live object's metadata; nil is a
// missing object.
func Observe(o metav1.Object) Observation {
	if o == nil {
		return Observation{}
	}
	return Observation{Exists: true, Fields: apply.OwnedFields(o), Disabled: o.GetAnnotations()[apply.ReconcileAnnotation] == "disabled"}
}

// Drifted is true when the object is missing or the fields Caravan owns in
// it are no longer what its last apply left. An entry without a record of
// its fields (written before the agent kept them) drifts only by deletion.
func Drifted(e apply.Entry, o Observation) bool {
	return !o.Exists || e.Fields != "" && o.Fields != e.Fields
}

// Verdict is what to do about one object.
type Verdict int

const (
	// InSync: the object is as Caravan left it.
	InSync Verdict = iota
	// LeftAlone: drifted, and its owners asked Caravan to leave it be
	// (the reconcile annotation), or drift correction is disabled.
	LeftAlone
	// Fought: drifted, in a fight Caravan already stopped.
	Fought
	// Report: drifted; drift_correction is report.
	Report
	// Hold: drifted; a block or suspension holds corrections.
	Hold
	// StartFight: drifted again after enough corrections to make a fight.
	StartFight
	// Correct: re-apply or re-create it.
	Correct
)

// Case is everything a verdict depends on.
type Case struct {
	Entry       apply.Entry
	Live        Observation
	Settings    Settings
	Held        bool
	Fighting    bool
	Corrections []time.Time
	Now         time.Time
}

// Judge decides what to do about one object.
func Judge(c Case) Verdict {
	switch {
	case !Drifted(c.Entry, c.Live):
		return InSync
	case c.Live.Exists && c.Live.Disabled, c.Settings.Mode == api.DriftDisabled:
		return LeftAlone
	case c.Fighting:
		return Fought
	case c.Settings.Mode == api.DriftReport:
		return Report
	case c.Held:
		return Hold
	case len(Recent(c.Corrections, c.Now, c.Settings.FightPeriod)) >= c.Settings.FightCorrections:
		return StartFight
	}
	return Correct
}

// Recent keeps the times within period before now.
func Recent(times []time.Time, now time.Time, period time.Duration) []time.Time {
	return slices.DeleteFunc(slices.Clone(times), func(t time.Time) bool { return !t.After(now.Add(-period)) })
}

// TakenFields are the fields Caravan owns in after and did not own in
// before: when before is the object as another manager left it and after
// the object once Caravan re-applied it, the fields that manager had taken.
func TakenFields(before, after *metav1.ManagedFieldsEntry) []string {
	a := fieldSet(after)
	if a == nil {
		return nil
	}
	if b := fieldSet(before); b != nil {
		a = a.Difference(b)
	}
	var out []string
	a.Leaves().Iterate(func(p fieldpath.Path) { out = append(out, strings.TrimPrefix(p.String(), ".")) })
	slices.Sort(out)
	return out
}

// Managers names the field managers other than Caravan's apply that own
// any of fields in the object, each with its operation's subresource when
// it wrote one (kubectl/scale).
func Managers(o metav1.Object, fields []string) string {
	if len(fields) == 0 {
		return ""
	}
	want := map[string]bool{}
	for _, f := range fields {
		want[f] = true
	}
	var names []string
	for _, e := range o.GetManagedFields() {
		if e.Manager == apply.FieldManager && e.Operation == metav1.ManagedFieldsOperationApply {
			continue
		}
		set := fieldSet(&e)
		if set == nil {
			continue
		}
		owns := false
		set.Leaves().Iterate(func(p fieldpath.Path) { owns = owns || want[strings.TrimPrefix(p.String(), ".")] })
		if !owns {
			continue
		}
		name := e.Manager
		if e.Subresource != "" {
			name += "/" + e.Subresource
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

func fieldSet(e *metav1.ManagedFieldsEntry) *fieldpath.Set {
	if e == nil || e.FieldsV1 == nil {
		return nil
	}
	s := &fieldpath.Set{}
	if err := s.FromJSON(strings.NewReader(e.FieldsV1.GetRawString())); err != nil {
		return nil
	}
	return s
}

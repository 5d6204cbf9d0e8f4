package drift

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func TestDriftedIsADeletionOrAChangeOfCaravansFields(t *testing.T) {
	e := apply.Entry{ID: "default_a__ConfigMap", Fields: "f1"}
	assert.False(t, Drifted(e, Observation{Exists: true, Fields: "f1"}))
	assert.True(t, Drifted(e, Observation{Exists: true, Fields: "f2"}))
	assert.True(t, Drifted(e, Observation{}), "a deleted object drifted")
	old := apply.Entry{ID: e.ID}
	assert.False(t, Drifted(old, Observation{Exists: true, Fields: "f2"}), "without a record of its fields only a deletion is drift")
	assert.True(t, Drifted(old, Observation{}))
}

func TestJudge(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	e := apply.Entry{ID: "default_a__ConfigMap", Fields: "f1"}
	drifted := Observation{Exists: true, Fields: "f2"}
	enabled, report, disabled := DefaultSettings, DefaultSettings, DefaultSettings
	report.Mode, disabled.Mode = api.DriftReport, api.DriftDisabled
	ago := func(d ...time.Duration) []time.Time {
		var out []time.Time
		for _, x := range d {
			out = append(out, now.Add(-x))
		}
		return out
	}
	for name, tc := range map[string]struct {
		c    Case
		want Verdict
	}{
		"in sync":                          {Case{Entry: e, Live: Observation{Exists: true, Fields: "f1"}, Settings: enabled}, InSync},
		"in sync whatever else holds":      {Case{Entry: e, Live: Observation{Exists: true, Fields: "f1"}, Settings: report, Held: true, Fighting: true}, InSync},
		"drifted":                          {Case{Entry: e, Live: drifted, Settings: enabled}, Correct},
		"deleted":                          {Case{Entry: e, Settings: enabled}, Correct},
		"annotated disabled":               {Case{Entry: e, Live: Observation{Exists: true, Fields: "f2", Disabled: true}, Settings: enabled}, LeftAlone},
		"drift_correction disabled":        {Case{Entry: e, Live: drifted, Settings: disabled}, LeftAlone},
		"deleted with correction disabled": {Case{Entry: e, Settings: disabled}, LeftAlone},
		"in a fight":                       {Case{Entry: e, Live: drifted, Settings: enabled, Fighting: true}, Fought},
		"report":                           {Case{Entry: e, Live: drifted, Settings: report}, Report},
		"report while held":                {Case{Entry: e, Live: drifted, Settings: report, Held: true}, Report},
		"held":                             {Case{Entry: e, Live: drifted, Settings: enabled, Held: true}, Hold},
		"two corrections are no fight":     {Case{Entry: e, Live: drifted, Settings: enabled, Corrections: ago(time.Minute, time.Second), Now: now}, Correct},
		"three within the period":          {Case{Entry: e, Live: drifted, Settings: enabled, Corrections: ago(9*time.Minute, time.Minute, time.Second), Now: now}, StartFight},
		"three, one before the period":     {Case{Entry: e, Live: drifted, Settings: enabled, Corrections: ago(10*time.Minute, time.Minute, time.Second), Now: now}, Correct},
		"held beats a fight to come":       {Case{Entry: e, Live: drifted, Settings: enabled, Held: true, Corrections: ago(3*time.Second, 2*time.Second, time.Second), Now: now}, Hold},
	} {
		assert.Equal(t, tc.want, Judge(tc.c), name)
	}
}

func TestSettingsOf(t *testing.T) {
	s, err := SettingsOf(nil)
	assert.NoError(t, err)
	assert.Equal(t, DefaultSettings, s)

	s, err = SettingsOf(map[string]string{ItemMode: "report", ItemFightCorrections: "5", ItemFightPeriod: "2m", ItemFightExpiry: "30m"})
	assert.NoError(t, err)
	assert.Equal(t, Settings{Mode: api.DriftReport, FightCorrections: 5, FightPeriod: 2 * time.Minute, FightExpiry: 30 * time.Minute}, s)

	s, err = SettingsOf(map[string]string{ItemMode: "sometimes", ItemFightCorrections: "0", ItemFightPeriod: "-1m", ItemFightExpiry: "soon"})
	assert.ErrorContains(t, err, `drift_correction "sometimes"`)
	assert.ErrorContains(t, err, ItemFightCorrections)
	assert.ErrorContains(t, err, ItemFightPeriod)
	assert.ErrorContains(t, err, ItemFightExpiry)
	assert.Equal(t, DefaultSettings, s, "the defaults stand for invalid items")
}

func entry(manager string, op metav1.ManagedFieldsOperationType, subresource, fields string) metav1.ManagedFieldsEntry {
	return metav1.ManagedFieldsEntry{Manager: manager, Operation: op, Subresource: subresource, FieldsV1: metav1.NewFieldsV1(fields)}
}

func TestTakenFieldsAndTheManagerThatTookThem(t *testing.T) {
	full := `{"f:metadata":{"f:labels":{"f:caravan.io/managed-by":{}}},"f:spec":{"f:replicas":{},"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:name":{}}}}}}}`
	taken := `{"f:metadata":{"f:labels":{"f:caravan.io/managed-by":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:name":{}}}}}}}`
	before := &metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		entry(apply.FieldManager, metav1.ManagedFieldsOperationApply, "", taken),
		entry("kubectl", metav1.ManagedFieldsOperationUpdate, "scale", `{"f:spec":{"f:replicas":{}}}`),
		entry("kubectl-edit", metav1.ManagedFieldsOperationUpdate, "", `{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{"f:image":{}}}}}}}`),
		entry("kube-controller-manager", metav1.ManagedFieldsOperationUpdate, "status", `{"f:status":{"f:replicas":{}}}`),
	}}
	after := entry(apply.FieldManager, metav1.ManagedFieldsOperationApply, "", full)
	fields := TakenFields(apply.OwnedEntry(before), &after)
	assert.Equal(t, []string{`spec.replicas`, `spec.template.spec.containers[name="app"].image`}, fields)
	assert.Equal(t, "kubectl/scale, kubectl-edit", Managers(before, fields))
	assert.Equal(t, "kubectl/scale", Managers(before, fields[:1]))
	assert.Empty(t, Managers(before, nil))
	assert.Empty(t, TakenFields(&after, &after), "nothing taken")
	assert.Len(t, TakenFields(nil, &after), 4, "from nothing, every field Caravan owns")
}

func TestOwnedFieldsChangeOnlyWithCaravansApplyEntry(t *testing.T) {
	o := &metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{entry(apply.FieldManager, metav1.ManagedFieldsOperationApply, "", `{"f:data":{"f:a":{}}}`)}}
	before := apply.OwnedFields(o)
	assert.NotEmpty(t, before)
	o.ManagedFields = append(o.ManagedFields, entry("kubectl-annotate", metav1.ManagedFieldsOperationUpdate, "", `{"f:metadata":{"f:annotations":{"f:note":{}}}}`))
	assert.Equal(t, before, apply.OwnedFields(o), "another manager's new field is no drift")
	o.ManagedFields[0] = entry(apply.FieldManager, metav1.ManagedFieldsOperationApply, "status", `{"f:status":{}}`)
	assert.Empty(t, apply.OwnedFields(o), "a status entry is not the object's")
	assert.Equal(t, Observation{Exists: true, Disabled: true}, Observe(&metav1.ObjectMeta{Annotations: map[string]string{apply.ReconcileAnnotation: "disabled"}}))
	assert.Equal(t, Observation{}, Observe(nil))
}

package drift

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/agent/apply"
	"github.com/caravan-gitops/caravan/agent/events"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// Reapplier applies one object as a version apply does.
type Reapplier interface {
	Reapply(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, error)
	DryRun(ctx context.Context, o *unstructured.Unstructured) (*unstructured.Unstructured, error)
}

// Timing of corrections: a burst of events on one object (an edit, then
// the controllers' reactions) is one correction after debounce, and one
// object is not corrected more often than minInterval.
const (
	debounce    = 100 * time.Millisecond
	minInterval = time.Second
	workers     = 4
	// statusEvery bounds how often the ClusterConfig status is written.
	statusEvery = time.Second
)

// Tracker watches the managed objects and corrects their drift. It runs
// on the elected leader only, as the agent's loop does.
type Tracker struct {
	ctx      context.Context
	applier  Reapplier
	meta     metadata.Interface
	mapper   meta.RESTMapper
	kube     client.Client
	recorder events.Recorder
	log      logr.Logger
	metrics  *Metrics
	now      func() time.Time
	queue    workqueue.TypedDelayingInterface[string]

	// applying is held by a version apply, which wins over corrections.
	applying sync.RWMutex

	mu          sync.Mutex
	settings    Settings
	settingsErr error
	// desired is each object as the current version rendered it; nil while
	// there is no version to keep (none applied yet, or its apply failed).
	desired  map[string][]byte
	records  map[string]apply.Entry
	watches  map[schema.GroupKind]*kindWatch
	held     string
	parked   map[string]bool
	fights   map[string]*api.DriftFight
	history  map[string][]time.Time
	reported map[string]string
	failures map[string]int
	lastFix  map[string]time.Time
	status   api.DriftStatus
	dirty    bool
}

// Options are the parts a Tracker talks to.
type Options struct {
	Applier  Reapplier
	Metadata metadata.Interface
	Mapper   meta.RESTMapper
	Kube     client.Client
	Recorder events.Recorder
	Log      logr.Logger
	Metrics  *Metrics
}

// New starts a Tracker that runs until ctx ends. It watches nothing until
// the first Track.
func New(ctx context.Context, o Options) *Tracker {
	t := &Tracker{
		ctx: ctx, applier: o.Applier, meta: o.Metadata, mapper: o.Mapper, kube: o.Kube, recorder: o.Recorder, log: o.Log, metrics: o.Metrics,
		now: time.Now, queue: workqueue.NewTypedDelayingQueue[string](), settings: DefaultSettings,
		watches: map[schema.GroupKind]*kindWatch{}, parked: map[string]bool{}, fights: map[string]*api.DriftFight{},
		history: map[string][]time.Time{}, reported: map[string]string{}, failures: map[string]int{}, lastFix: map[string]time.Time{},
	}
	t.status.Mode = t.settings.Mode
	go func() {
		<-ctx.Done()
		t.queue.ShutDown()
	}()
	for range workers {
		go t.work()
	}
	go t.writeStatus(ctx)
	return t
}

// Track makes the tracker keep objects, the current version's rendered
// objects as applied, with the records of inv; nil objects stop
// corrections until the next version. Fights of objects the version
// changed end: the version is a new word from git on them.
func (t *Tracker) Track(objects []*unstructured.Unstructured, inv apply.Inventory, items map[string]string) {
	desired := map[string][]byte{}
	for _, o := range objects {
		b, err := json.Marshal(o.Object)
		if err != nil {
			continue
		}
		desired[object.UnstructuredToObjMetadata(o).String()] = b
	}
	settings, err := SettingsOf(items)
	records := inv.Index()
	t.mu.Lock()
	for id, f := range t.fights {
		if before, now := t.records[id], records[id]; before.Digest != now.Digest || now.Digest == "" {
			t.log.Info("a new version changes the object; correcting it again", "object", f.Object)
			delete(t.fights, id)
			delete(t.history, id)
		}
	}
	if objects == nil {
		desired = nil
	}
	t.desired, t.records, t.settings, t.settingsErr = desired, records, settings, err
	t.status.Mode = settings.Mode
	t.status.Fights = t.fightList()
	t.dirty = true
	t.metrics.fights.Set(float64(len(t.fights)))
	t.mu.Unlock()
	t.syncWatches(inv)
	// Settings or records may have changed what to do about an object
	// seen before, such as one reported while drift_correction was report.
	for id := range records {
		t.queue.AddAfter(id, debounce)
	}
}

// Tracking is true while the tracker keeps a version.
func (t *Tracker) Tracking() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.desired != nil
}

// Pause stops corrections for a version apply, once the watches of the
// kinds of inv, the objects the apply may skip, have listed what the
// cluster has: the apply asks them what is in sync.
func (t *Tracker) Pause(ctx context.Context, inv apply.Inventory) {
	t.syncWatches(inv)
	t.waitSynced(ctx, 30*time.Second)
	t.applying.Lock()
}

// Unpause lets corrections go on after a version apply.
func (t *Tracker) Unpause() { t.applying.Unlock() }

// Hold stops corrections while reason is set (a block or suspension); when
// it is lifted, what drifted meanwhile is corrected.
func (t *Tracker) Hold(reason string) {
	t.mu.Lock()
	was := t.held
	t.held = reason
	var release []string
	if reason == "" && was != "" {
		for id := range t.parked {
			release = append(release, id)
		}
		clear(t.parked)
	}
	t.mu.Unlock()
	for _, id := range release {
		t.queue.Add(id)
	}
}

// InSync tells an apply whether it may skip the object of e: it exists
// and Caravan's fields in it are as its last apply left them, or another
// manager's change of them is to be left alone (the reconcile annotation,
// a fight Caravan stopped).
func (t *Tracker) InSync(e apply.Entry) bool {
	live, ok := t.live(e.ID)
	if !ok {
		return false
	}
	obs := Observe(live)
	t.mu.Lock()
	_, fighting := t.fights[e.ID]
	t.mu.Unlock()
	return obs.Exists && (!Drifted(e, obs) || obs.Disabled || fighting)
}

// Status is what the tracker found and did, for the registry.
func (t *Tracker) Status() *api.DriftStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.status
	st.Recent = append([]api.DriftCorrection(nil), st.Recent...)
	st.Fights = t.fightList()
	return &st
}

// Problems are the fights and a bad setting, for the registry.
func (t *Tracker) Problems() []api.StatusProblem {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []api.StatusProblem
	for _, f := range t.fightList() {
		out = append(out, api.StatusProblem{Type: api.ProblemDriftFight, Title: "Another field manager keeps changing " + f.Object,
			Detail: fightDetail(f), Since: f.Since})
	}
	if t.settingsErr != nil {
		out = append(out, api.StatusProblem{Type: api.ProblemTypeBase + "drift-settings", Title: "A drift correction setting is invalid; its default applies",
			Detail: t.settingsErr.Error(), Since: t.now().UTC()})
	}
	return out
}

func fightDetail(f api.DriftFight) string {
	return fmt.Sprintf("%s changed %v back %d times; Caravan stopped correcting it until %s or a version that changes it",
		orUnknown(f.Manager), f.Fields, f.Corrections, f.Until.UTC().Format(time.RFC3339))
}

func orUnknown(manager string) string {
	if manager == "" {
		return "another manager"
	}
	return manager
}

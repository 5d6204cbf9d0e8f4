package drift

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// writeStatus writes the drift status into the ClusterConfig when it
// changed, at most every statusEvery: a burst of corrections is one write,
// and a quiet cluster none.
func (t *Tracker) writeStatus(ctx context.Context) {
	tick := time.NewTicker(statusEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t.mu.Lock()
		if !t.dirty {
			t.mu.Unlock()
			continue
		}
		t.dirty = false
		st := t.status
		st.Fights = t.fightList()
		t.mu.Unlock()
		if err := t.patchStatus(ctx, &st); err != nil && ctx.Err() == nil {
			t.log.Error(err, "writing the drift status")
			t.mu.Lock()
			t.dirty = true
			t.mu.Unlock()
		}
	}
}

// patchStatus merges the drift status into the ClusterConfig's; lists
// that became empty are sent as null, which a merge patch needs to remove
// them.
func (t *Tracker) patchStatus(ctx context.Context, st *api.DriftStatus) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	drift := map[string]any{}
	if err := json.Unmarshal(b, &drift); err != nil {
		return err
	}
	for _, list := range []string{"recent", "fights"} {
		if _, ok := drift[list]; !ok {
			drift[list] = nil
		}
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"drift": drift}})
	if err != nil {
		return err
	}
	return t.kube.Status().Patch(ctx, t.clusterConfigRef(), client.RawPatch(types.MergePatchType, body))
}

func slicesSortFights(f []api.DriftFight) {
	slices.SortFunc(f, func(a, b api.DriftFight) int { return strings.Compare(a.Object, b.Object) })
}

func slicesSortDrifted(d []api.DriftedObject) {
	slices.SortFunc(d, func(a, b api.DriftedObject) int { return strings.Compare(a.Object, b.Object) })
}

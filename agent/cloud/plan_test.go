package cloud

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const (
	oldDigest = "1111111111111111111111111111111111111111111111111111111111111111"
	newDigest = "2222222222222222222222222222222222222222222222222222222222222222"
)

func stackIn(status, digest string) *Observed {
	return &Observed{Name: "kube-1", Status: status, Tags: map[string]string{TagDigest: digest}}
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		observed *Observed
		want     Action
		// reason holds, when set, words the reason must contain.
		reason []string
	}{
		{name: "missing", observed: nil, want: Create},
		{name: "deleted", observed: stackIn("DELETE_COMPLETE", newDigest), want: Create},

		{name: "create in progress", observed: stackIn("CREATE_IN_PROGRESS", newDigest), want: Wait, reason: []string{"CREATE_IN_PROGRESS"}},
		{name: "update in progress", observed: stackIn("UPDATE_IN_PROGRESS", oldDigest), want: Wait, reason: []string{"UPDATE_IN_PROGRESS"}},
		{name: "update cleanup", observed: stackIn("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", newDigest), want: Wait},
		{name: "update rollback in progress", observed: stackIn("UPDATE_ROLLBACK_IN_PROGRESS", oldDigest), want: Wait},
		{name: "update rollback cleanup", observed: stackIn("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", oldDigest), want: Wait},
		{name: "rollback in progress", observed: stackIn("ROLLBACK_IN_PROGRESS", newDigest), want: Wait},
		{name: "delete in progress", observed: stackIn("DELETE_IN_PROGRESS", newDigest), want: Wait},
		{name: "import in progress", observed: stackIn("IMPORT_IN_PROGRESS", oldDigest), want: Wait},
		{name: "import rollback in progress", observed: stackIn("IMPORT_ROLLBACK_IN_PROGRESS", oldDigest), want: Wait},

		{name: "create rolled back", observed: &Observed{Name: "kube-1", Status: "ROLLBACK_COMPLETE",
			StatusReason: "The following resource(s) failed to create: [NodeRole].", Tags: map[string]string{TagDigest: oldDigest}},
			want: Stuck, reason: []string{"ROLLBACK_COMPLETE", "failed to create: [NodeRole]"}},
		// Even with the desired digest: the stack cannot be updated.
		{name: "create rolled back, same digest", observed: stackIn("ROLLBACK_COMPLETE", newDigest), want: Stuck, reason: []string{"ROLLBACK_COMPLETE"}},
		{name: "rollback failed", observed: stackIn("ROLLBACK_FAILED", oldDigest), want: Stuck, reason: []string{"ROLLBACK_FAILED"}},
		{name: "create failed", observed: stackIn("CREATE_FAILED", oldDigest), want: Stuck, reason: []string{"CREATE_FAILED"}},
		{name: "delete failed", observed: stackIn("DELETE_FAILED", newDigest), want: Stuck, reason: []string{"DELETE_FAILED"}},
		{name: "update rollback failed", observed: stackIn("UPDATE_ROLLBACK_FAILED", oldDigest), want: Stuck, reason: []string{"UPDATE_ROLLBACK_FAILED"}},
		{name: "import rollback failed", observed: stackIn("IMPORT_ROLLBACK_FAILED", oldDigest), want: Stuck, reason: []string{"IMPORT_ROLLBACK_FAILED"}},
		{name: "under review", observed: stackIn("REVIEW_IN_PROGRESS", oldDigest), want: Stuck, reason: []string{"REVIEW_IN_PROGRESS"}},

		// A rolled back update left the old template (and the old tags): update again.
		{name: "update rolled back", observed: stackIn("UPDATE_ROLLBACK_COMPLETE", oldDigest), want: Update},
		// An update without rollback failed half way: another update may follow.
		{name: "update failed", observed: stackIn("UPDATE_FAILED", oldDigest), want: Update},
		{name: "created, old digest", observed: stackIn("CREATE_COMPLETE", oldDigest), want: Update},
		{name: "updated, old digest", observed: stackIn("UPDATE_COMPLETE", oldDigest), want: Update},
		{name: "no digest tag", observed: &Observed{Name: "kube-1", Status: "CREATE_COMPLETE", Tags: map[string]string{}}, want: Update},
		{name: "import rolled back, old digest", observed: stackIn("IMPORT_ROLLBACK_COMPLETE", oldDigest), want: Update},

		{name: "created", observed: stackIn("CREATE_COMPLETE", newDigest), want: Nothing},
		{name: "updated", observed: stackIn("UPDATE_COMPLETE", newDigest), want: Nothing},
		{name: "imported", observed: stackIn("IMPORT_COMPLETE", newDigest), want: Nothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step := Plan(newDigest, tt.observed)
			assert.Equal(t, tt.want, step.Action, "%s: %s", step.Action, step.Reason)
			assert.NotEmpty(t, step.Reason)
			for _, word := range tt.reason {
				assert.Contains(t, step.Reason, word)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	assert.Equal(t, "nothing", Nothing.String())
	assert.Equal(t, "create", Create.String())
	assert.Equal(t, "update", Update.String())
	assert.Equal(t, "wait", Wait.String())
	assert.Equal(t, "stuck", Stuck.String())
}

func TestFailed(t *testing.T) {
	failed := []string{
		"CREATE_FAILED", "ROLLBACK_FAILED", "ROLLBACK_COMPLETE", "DELETE_FAILED", "UPDATE_FAILED",
		"UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_FAILED", "IMPORT_ROLLBACK_COMPLETE",
	}
	for _, s := range failed {
		assert.True(t, Failed(s), s)
	}
	fine := []string{
		"CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE", "IMPORT_COMPLETE",
		"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "UPDATE_ROLLBACK_IN_PROGRESS",
		"UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "REVIEW_IN_PROGRESS", "",
	}
	for _, s := range fine {
		assert.False(t, Failed(s), s)
	}
}

func TestOrphans(t *testing.T) {
	const cluster = "aws:123456789012:eu-central-1:kube-1"
	stack := func(name, clusterID, pool string) Observed {
		tags := map[string]string{TagClusterID: clusterID, TagDigest: oldDigest}
		if pool != "" {
			tags[TagNodePool] = pool
		}
		return Observed{Name: name, Status: "UPDATE_COMPLETE", Tags: tags}
	}
	observed := []Observed{
		stack("kube-1", cluster, ""),                                                // the cluster stack
		stack("nodepool-default-kube-1", cluster, "default"),                        // kept
		stack("nodepool-gpu-kube-1", cluster, "gpu"),                                // left
		stack("nodepool-spot-kube-1", cluster, "spot"),                              // left
		stack("nodepool-gpu-kube-2", "aws:123456789012:eu-central-1:kube-2", "gpu"), // another cluster's
		stack("kube-2", "aws:123456789012:eu-central-1:kube-2", ""),
		{Name: "unrelated", Status: "CREATE_COMPLETE", Tags: map[string]string{TagNodePool: "gpu"}}, // no cluster tag
	}

	got := Orphans(observed, cluster, []string{"default"})
	assert.Len(t, got, 2)
	assert.Equal(t, "nodepool-gpu-kube-1", got["gpu"].Name)
	assert.Equal(t, "nodepool-spot-kube-1", got["spot"].Name)

	assert.Empty(t, Orphans(observed, cluster, []string{"default", "gpu", "spot"}))

	// Without any pool, every pool stack of the cluster and nothing else.
	got = Orphans(observed, cluster, nil)
	assert.Len(t, got, 3)
	for pool, o := range got {
		assert.Equal(t, cluster, o.Tags[TagClusterID], pool)
		assert.NotEqual(t, "kube-1", o.Name)
	}

	assert.Empty(t, Orphans(nil, cluster, nil))
}

func TestFind(t *testing.T) {
	stacks := []Observed{{Name: "kube-1"}, {Name: "nodepool-default-kube-1", Status: "CREATE_COMPLETE"}}
	got := Find(stacks, "nodepool-default-kube-1")
	if assert.NotNil(t, got) {
		assert.Equal(t, "CREATE_COMPLETE", got.Status)
		// A pointer into the slice, not a copy.
		assert.Same(t, &stacks[1], got)
	}
	assert.Nil(t, Find(stacks, "nodepool-gpu-kube-1"))
	assert.Nil(t, Find(nil, "kube-1"))
}

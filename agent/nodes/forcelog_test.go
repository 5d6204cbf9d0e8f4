package nodes

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAForceCountsFromWhenItsDeletionWasMade(t *testing.T) {
	recorded := func(at time.Time) map[string]string {
		return map[string]string{LastForcedAnnotation: at.Format(time.RFC3339Nano)}
	}
	ours := t0.Add(-time.Minute)
	log := ForceLog{Made: map[string]time.Time{ours.Format(time.RFC3339Nano): ours.Add(700 * time.Millisecond)}}
	for _, c := range []struct {
		name        string
		log         ForceLog
		annotations map[string]string
		want        time.Time
	}{
		{"none recorded", log, nil, time.Time{}},
		{"unreadable", log, map[string]string{LastForcedAnnotation: "yesterday"}, time.Time{}},
		{"made by this roller: when its deletion was made", log, recorded(ours), ours.Add(700 * time.Millisecond)},
		{"recorded by an agent before: the time recorded", log, recorded(t0.Add(-10 * time.Second)), t0.Add(-10 * time.Second)},
		{"seconds-only times are read", log, map[string]string{LastForcedAnnotation: t0.Format(time.RFC3339)}, t0},
		{"no log: the time recorded", ForceLog{}, recorded(ours), ours},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.True(t, c.want.Equal(c.log.Instant(c.annotations)), "want %s, got %s", c.want, c.log.Instant(c.annotations))
		})
	}
}

func TestTheForceLogForgetsDeletionsOlderThanADay(t *testing.T) {
	var log ForceLog
	log.made("old", t0)
	log.made("recent", t0.Add(forceLogRetention))
	log.made("new", t0.Add(forceLogRetention+time.Second))
	assert.NotContains(t, log.Made, "old")
	assert.Contains(t, log.Made, "recent")
	assert.Contains(t, log.Made, "new")
	clone := log.clone()
	clone.made("other", t0)
	assert.NotContains(t, log.Made, "other", "a snapshot's log is its own")
}

// A plan counts a force's interval from its deletion, not from the time
// recorded before it, on the node and in the budget.
func TestAPlanCountsTheForceIntervalFromTheDeletion(t *testing.T) {
	recorded := t0.Add(-61 * time.Second)
	raw := recorded.Format(time.RFC3339Nano)
	for _, on := range []string{"node", "budget"} {
		t.Run(on, func(t *testing.T) {
			w := newWorld().group("workers", 4, 5, 1).draining("workers-0", t0.Add(-time.Hour)).rolling("workers", 3, 4).
				pods("workers-0", "a", 1).budget("a", 0, "workers-0-p0", "sib").refused("workers-0-p0", Refusal{Asked: t0})
			if on == "node" {
				w.nodeOf("workers-0").Annotations[LastForcedAnnotation] = raw
			} else {
				w.s.Budgets[0].Annotations = map[string]string{LastForcedAnnotation: raw}
			}
			cmds, _ := Plan(w.s, rollConfig("workers"))
			require.Equal(t, []string{"force team/workers-0-p0"}, names(cmds), "a minute after the time recorded: %v", cmds[0].Decision)

			w.s.Forces = ForceLog{Made: map[string]time.Time{raw: recorded.Add(2 * time.Second)}}
			cmds, _ = Plan(w.s, rollConfig("workers"))
			require.Equal(t, []string{"forecast team/workers-0-p0"}, names(cmds), "not a minute after the deletion")
			assert.True(t, recorded.Add(62*time.Second).Equal(cmds[0].Decision.At), "a minute after the deletion: %s", cmds[0].Decision.At)
		})
	}
}

package api

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/window"
)

func TestFreezeCovers(t *testing.T) {
	cases := []struct {
		name                 string
		f                    Freeze
		covers               map[[2]string]bool
		coversStable, scoped string
	}{
		{"fleet", Freeze{All: true}, map[[2]string]bool{{"stable", "production"}: true, {"dev", "test"}: true}, "", "the whole fleet"},
		{"channel", Freeze{Channel: "stable"}, map[[2]string]bool{{"stable", "production"}: true, {"stable", "test"}: true, {"dev", "production"}: false}, "", "channel stable"},
		{"environment", Freeze{Environment: "production"}, map[[2]string]bool{{"stable", "production"}: true, {"dev", "production"}: true, {"stable", "test"}: false}, "", "environment production"},
		{"both", Freeze{Channel: "stable", Environment: "production"}, map[[2]string]bool{{"stable", "production"}: true, {"stable", "test"}: false, {"dev", "production"}: false}, "", "channel stable, environment production"},
		{"nothing", Freeze{}, map[[2]string]bool{{"stable", "production"}: false}, "", ""},
	}
	for _, tc := range cases {
		for where, want := range tc.covers {
			assert.Equal(t, want, tc.f.Covers(where[0], where[1]), "%s freeze covers %v", tc.name, where)
		}
		assert.Equal(t, tc.scoped, tc.f.Scope(), tc.name)
	}
	assert.True(t, Freeze{All: true}.CoversChannel("stable"))
	assert.True(t, Freeze{Channel: "stable"}.CoversChannel("stable"))
	assert.False(t, Freeze{Channel: "stable"}.CoversChannel("beta"))
	assert.False(t, Freeze{Channel: "stable", Environment: "production"}.CoversChannel("stable"),
		"a freeze of a channel's production clusters does not hold back the whole channel's promotion")
	assert.False(t, Freeze{Environment: "production"}.CoversChannel("stable"))
}

func TestFreezeActiveAt(t *testing.T) {
	since := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	f := Freeze{All: true, Since: since, Until: since.Add(time.Hour)}
	assert.False(t, f.ActiveAt(since.Add(-time.Nanosecond)))
	assert.True(t, f.ActiveAt(since), "a freeze is in force from since")
	assert.True(t, f.ActiveAt(since.Add(time.Hour-time.Nanosecond)))
	assert.False(t, f.ActiveAt(since.Add(time.Hour)), "and no longer at until")
}

func TestFrozenReason(t *testing.T) {
	until := time.Date(2026, 12, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600))
	f := Freeze{Channel: "stable", By: "alice", Reason: "cyber week", Until: until}
	assert.Equal(t, "channel stable is frozen until 2026-12-01T00:00:00Z by alice: cyber week", FrozenReason(f, "stable"))
	f.Channel, f.All = "", true
	assert.Equal(t, "channel stable is frozen (the whole fleet is) until 2026-12-01T00:00:00Z by alice: cyber week", FrozenReason(f, "stable"))
}

func mustParse(t *testing.T, s string) window.Schedule {
	t.Helper()
	w, err := window.Parse(s)
	require.NoError(t, err)
	return w
}

func TestNextStart(t *testing.T) {
	// Monday 2026-11-23 10:00 UTC.
	mon := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	always := mustParse(t, "")
	office := mustParse(t, "Mon-Fri 08:00-17:00 UTC")

	at, ok := NextStart(always, nil, mon)
	assert.True(t, ok)
	assert.Equal(t, mon, at, "always open, nothing frozen: now")

	at, ok = NextStart(office, nil, mon.Add(8*time.Hour))
	assert.True(t, ok)
	assert.Equal(t, time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), at.UTC(), "after hours: the next morning")

	frozen := []Freeze{{All: true, Since: mon.Add(-time.Hour), Until: mon.Add(2 * time.Hour)}}
	at, ok = NextStart(always, frozen, mon)
	assert.True(t, ok)
	assert.Equal(t, mon.Add(2*time.Hour), at, "a freeze in force: its end")

	lateFreeze := []Freeze{{All: true, Since: mon.Add(-time.Hour), Until: mon.Add(8 * time.Hour)}}
	at, ok = NextStart(office, lateFreeze, mon)
	assert.True(t, ok)
	assert.Equal(t, time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), at.UTC(), "a freeze that ends after hours: the next window after it")

	chained := []Freeze{
		{All: true, Since: mon.Add(-time.Hour), Until: mon.Add(time.Hour)},
		{All: true, Since: mon.Add(time.Hour), Until: mon.Add(3 * time.Hour)},
	}
	at, ok = NextStart(always, chained, mon)
	assert.True(t, ok)
	assert.Equal(t, mon.Add(3*time.Hour), at, "back-to-back freezes: the end of the last")

	scheduled := []Freeze{{All: true, Since: mon.Add(time.Hour), Until: mon.Add(2 * time.Hour)}}
	at, ok = NextStart(always, scheduled, mon)
	assert.True(t, ok)
	assert.Equal(t, mon, at, "a freeze still to come does not hold now")

	// Back-to-back freezes listed latest first: each step passes one.
	var many []Freeze
	for i := range 2 * maxScheduleSteps {
		many = append([]Freeze{{All: true, Since: mon.Add(time.Duration(i) * time.Minute), Until: mon.Add(time.Duration(i+1) * time.Minute)}}, many...)
	}
	_, ok = NextStart(office, many, mon)
	assert.False(t, ok, "the walk gives up after its bound of steps")
	at, ok = NextStart(office, many[maxScheduleSteps+2:], mon)
	assert.True(t, ok)
	assert.Equal(t, mon.Add((maxScheduleSteps-2)*time.Minute), at, "within the bound it finds the end")
}

func TestScheduleOf(t *testing.T) {
	mon := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	items := map[string]string{ConfigUpdateWindows: "Mon-Fri 08:00-17:00 UTC", ConfigNodeUpdateWindows: "daily 01:00-05:00 UTC", "other": "x"}

	s := ScheduleOf(items, "stable", "production", nil, mon)
	assert.True(t, s.Open)
	assert.Nil(t, s.NextOpening)
	assert.Equal(t, "Mon-Fri 08:00-17:00 UTC", s.UpdateWindows)
	assert.Equal(t, "daily 01:00-05:00 UTC", s.NodeUpdateWindows)
	assert.NotNil(t, s.Freezes)
	assert.Empty(t, s.Freezes)
	assert.Empty(t, s.Error)

	s = ScheduleOf(items, "stable", "production", nil, mon.Add(8*time.Hour))
	assert.False(t, s.Open, "after hours")
	require.NotNil(t, s.NextOpening)
	assert.Equal(t, time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC), s.NextOpening.UTC())

	freezes := []Freeze{
		{ID: "b", Channel: "stable", Since: mon.Add(-time.Hour), Until: mon.Add(time.Hour)},
		{ID: "a", All: true, Since: mon.Add(-2 * time.Hour), Until: mon.Add(time.Hour)},
		{ID: "later", Environment: "production", Since: mon.Add(24 * time.Hour), Until: mon.Add(25 * time.Hour)},
		{ID: "ended", All: true, Since: mon.Add(-2 * time.Hour), Until: mon},
		{ID: "other channel", Channel: "dev", Since: mon.Add(-time.Hour), Until: mon.Add(time.Hour)},
	}
	s = ScheduleOf(items, "stable", "production", freezes, mon)
	assert.False(t, s.Open, "frozen")
	require.NotNil(t, s.NextOpening)
	assert.Equal(t, mon.Add(time.Hour), *s.NextOpening, "opens when the freezes end, inside the window")
	var ids []string
	for _, f := range s.Freezes {
		ids = append(ids, f.ID)
	}
	assert.Equal(t, []string{"a", "b", "later"}, ids, "the covering freezes that have not ended, by start")

	s = ScheduleOf(map[string]string{ConfigUpdateWindows: "Mnn 08:00-17:00 UTC"}, "stable", "production", nil, mon)
	assert.False(t, s.Open)
	assert.Nil(t, s.NextOpening)
	assert.Contains(t, s.Error, "update_windows: position 1")

	s = ScheduleOf(map[string]string{ConfigNodeUpdateWindows: "nightly"}, "stable", "production", nil, mon)
	assert.True(t, s.Open, "a bad node window holds no version back")
	assert.Contains(t, s.Error, "node_update_windows: ")

	s = ScheduleOf(nil, "stable", "production", nil, mon)
	assert.True(t, s.Open, "no windows: always")
	raw, err := json.Marshal(s)
	require.NoError(t, err)
	assert.JSONEq(t, `{"update_windows":"","node_update_windows":"","open":true,"freezes":[]}`, string(raw))
}

func TestBuildAssignmentTakesTheCoveringFreezesInForce(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	in := AssignmentInput{
		Cluster: Cluster{ID: "aws:123456789012:eu-central-1:kube-1", Environment: "production", Channel: "stable"},
		Channel: Channel{Name: "stable", Branch: "stable"},
		Freezes: []Freeze{
			{ID: "z-fleet", All: true, Since: now.Add(-time.Hour), Until: now.Add(3 * time.Hour)},
			{ID: "a-channel", Channel: "stable", Since: now.Add(-time.Hour), Until: now.Add(2 * time.Hour)},
			{ID: "other-channel", Channel: "dev", Since: now.Add(-time.Hour), Until: now.Add(time.Minute)},
			{ID: "other-env", Environment: "test", Since: now.Add(-time.Hour), Until: now.Add(time.Minute)},
			{ID: "ended", All: true, Since: now.Add(-time.Hour), Until: now},
			{ID: "scheduled", Environment: "production", Since: now.Add(time.Hour), Until: now.Add(5 * time.Hour)},
		},
	}
	a, changesAt := BuildAssignment(in, now)
	var ids []string
	for _, f := range a.Freezes {
		ids = append(ids, f.ID)
	}
	assert.Equal(t, []string{"a-channel", "z-fleet"}, ids, "in force and covering, by id")
	assert.Equal(t, now.Add(time.Hour), changesAt, "the scheduled freeze's start changes the assignment first")

	a, changesAt = BuildAssignment(in, now.Add(90*time.Minute))
	assert.Len(t, a.Freezes, 3, "the scheduled one joined")
	assert.Equal(t, now.Add(2*time.Hour), changesAt, "next: the channel freeze ends")

	a, changesAt = BuildAssignment(in, now.Add(5*time.Hour))
	assert.NotNil(t, a.Freezes)
	assert.Empty(t, a.Freezes, "all ended")
	assert.True(t, changesAt.IsZero())
}

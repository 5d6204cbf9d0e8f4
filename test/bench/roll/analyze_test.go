//go:build linux

package main

import (
	"testing"
	"time"

	"github.com/caravan-gitops/caravan/agent/nodes"
)

func TestAllowedSinceIsTheStartOfTheLastAllowingRun(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	points := []pdbPoint{{at(0), 1}, {at(1000), 0}, {at(1500), 1}, {at(1600), 1}, {at(2000), 0}}
	for _, c := range []struct {
		eviction int
		want     time.Time
	}{
		{500, at(0)},
		// The eviction ended the run it came in just before the watch saw
		// the pod go.
		{1010, at(0)},
		{1700, at(1500)},
		{2500, at(1500)},
	} {
		if got := allowedSince(points, at(c.eviction)); !got.Equal(c.want) {
			t.Errorf("an eviction at %d ms: allowed since %s, want %s", c.eviction, got.Sub(t0), c.want.Sub(t0))
		}
	}
	if got := allowedSince([]pdbPoint{{at(0), 0}}, at(500)); !got.IsZero() {
		t.Errorf("a budget that never allowed: %s, want zero", got)
	}
}

func TestSiblingRuleReadsRecordedOrSeenTimes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	sla := nodes.SLA{MinHealthySiblingLifetime: time.Second, MinUnhealthySiblingLifetime: time.Second}
	// Ready 600 ms after its second began: recorded, it has been ready
	// since the second began.
	ready := podFacts{created: t0.Add(-5 * time.Second), seen: t0.Add(-5 * time.Second), readySince: t0, readySeen: t0.Add(600 * time.Millisecond)}
	force := t0.Add(1100 * time.Millisecond)
	if r := siblingRule([]podFacts{ready}, force, sla, recordedAges, 0); r != "" {
		t.Errorf("recorded: %q, want none", r)
	}
	if r := siblingRule([]podFacts{ready}, force, sla, instantAges, 0); r != nodes.RuleMinHealthySiblingLifetime {
		t.Errorf("exact: %q, want %s", r, nodes.RuleMinHealthySiblingLifetime)
	}
	terminating := podFacts{created: t0.Add(-time.Hour), seen: t0.Add(-time.Hour), terminating: t0, gone: t0.Add(time.Second)}
	if r := siblingRule([]podFacts{terminating}, t0.Add(500*time.Millisecond), sla, recordedAges, 0); r != nodes.RuleSiblingTerminating {
		t.Errorf("a sibling terminating: %q", r)
	}
	if r := siblingRule([]podFacts{terminating}, t0.Add(1500*time.Millisecond), sla, recordedAges, 0); r != "" {
		t.Errorf("a sibling gone: %q", r)
	}
	young := podFacts{created: t0, seen: t0.Add(300 * time.Millisecond)}
	if r := siblingRule([]podFacts{young}, t0.Add(800*time.Millisecond), sla, recordedAges, 0); r != nodes.RuleMinUnhealthySiblingLifetime {
		t.Errorf("a young sibling not ready: %q", r)
	}
}

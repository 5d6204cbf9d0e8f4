package store

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/caravan-gitops/caravan/pkg/api"
)

func commitID(c byte) string { return strings.Repeat(string(c), 40) }

// TestDecidePublication is the gate's decision alone: what a channel
// publishes given its head, what it published and the promotions recorded.
func TestDecidePublication(t *testing.T) {
	stable := api.Channel{Name: "stable", Branch: "stable"}
	a, b, c := commitID('a'), commitID('b'), commitID('c')
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	passed := &api.Promotion{From: "beta", To: "stable", Commit: c, GateMet: true, By: "ops", At: at}
	failed := &api.Promotion{From: "beta", To: "stable", Commit: b, GateReasons: []string{"kube-1: silent: it has never reported"}, By: "ops", At: at}
	many := &api.Promotion{From: "beta", To: "stable", Commit: b, GateReasons: []string{"r1", "r2", "r3", "r4", "r5"}, By: "ops", At: at}
	const then, now = "2026-12-07T09:00:00.000000000Z", "2026-12-07T11:00:00.000000000Z"
	published := publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then}

	cases := []struct {
		name     string
		in       publishInput
		cur      publication
		want     publication
		reasonIs []string
	}{
		{
			name: "a channel's first head is where it starts",
			in:   publishInput{Channel: stable, Previous: "beta", Head: a, Now: now},
			want: publication{Gate: api.GateEnforced, Commit: a, PublishedAt: now},
		},
		{
			name: "an unread head changes nothing",
			in:   publishInput{Channel: stable, Previous: "beta", Now: now},
			cur:  published,
			want: published,
		},
		{
			name: "the published head stays published",
			in:   publishInput{Channel: stable, Previous: "beta", Head: a, Now: now},
			cur:  published,
			want: published,
		},
		{
			name:     "a pushed head is held, and the agents keep the published commit",
			in:       publishInput{Channel: stable, Previous: "beta", Head: b, Now: now},
			cur:      published,
			want:     publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldSince: now},
			reasonIs: []string{"bbbbbbb arrived on branch stable without a promotion from beta", "its agents keep aaaaaaa", "caravan promote beta stable --commit " + b + " --override-gate --reason"},
		},
		{
			name: "a head held before keeps when it was first held",
			in:   publishInput{Channel: stable, Previous: "beta", Head: b, Now: now},
			cur:  publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldReason: "old", HeldSince: then},
			want: publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldSince: then},
		},
		{
			name:     "a promotion that did not pass holds its commit, saying why",
			in:       publishInput{Channel: stable, Previous: "beta", Head: b, LastPromotion: failed, Now: now},
			cur:      published,
			want:     publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldSince: now},
			reasonIs: []string{"the promotion of bbbbbbb from beta recorded by ops at 2026-12-07T10:00:00Z did not meet the gate (kube-1: silent: it has never reported) and gave no override reason"},
		},
		{
			name:     "a held head's reason repeats the first few of the gate's reasons",
			in:       publishInput{Channel: stable, Previous: "beta", Head: b, LastPromotion: many, Now: now},
			cur:      published,
			want:     publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldSince: now},
			reasonIs: []string{"did not meet the gate (r1; r2; r3; and 2 more)"},
		},
		{
			name: "the promoted commit is published once it is the head, the hold ends",
			in:   publishInput{Channel: stable, Previous: "beta", Head: c, LastPromotion: passed, Now: now},
			cur:  publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: c, HeldReason: "x", HeldSince: then, Promoted: c},
			want: publication{Gate: api.GateEnforced, Commit: c, PublishedAt: now, Promoted: c},
		},
		{
			name:     "a push on top of a promoted commit is held",
			in:       publishInput{Channel: stable, Previous: "beta", Head: b, LastPromotion: passed, Now: now},
			cur:      publication{Gate: api.GateEnforced, Commit: c, PublishedAt: then, Promoted: c},
			want:     publication{Gate: api.GateEnforced, Commit: c, PublishedAt: then, HeldCommit: b, HeldSince: now, Promoted: c},
			reasonIs: []string{"without a promotion from beta"},
		},
		{
			name: "an advisory channel publishes every head",
			in:   publishInput{Channel: api.Channel{Name: "beta", Branch: "beta", Gate: api.GateAdvisory}, Previous: "alpha", Head: b, Now: now},
			cur:  publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldReason: "x", HeldSince: then},
			want: publication{Gate: api.GateAdvisory, Commit: b, PublishedAt: now},
		},
		{
			name: "the first channel is advisory whatever it says",
			in:   publishInput{Channel: api.Channel{Name: "dev", Branch: "dev", Gate: api.GateEnforced}, Head: b, Now: now},
			cur:  publication{Gate: api.GateAdvisory, Commit: a, PublishedAt: then},
			want: publication{Gate: api.GateAdvisory, Commit: b, PublishedAt: now},
		},
		{
			name: "a force-push back to the published commit ends the hold",
			in:   publishInput{Channel: stable, Previous: "beta", Head: a, Now: now},
			cur:  publication{Gate: api.GateEnforced, Commit: a, PublishedAt: then, HeldCommit: b, HeldReason: "x", HeldSince: then},
			want: published,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := decidePublication(tc.in, tc.cur)
			reason := got.HeldReason
			got.HeldReason = ""
			assert.Equal(t, tc.want, got)
			if tc.want.HeldCommit == "" {
				assert.Empty(t, reason)
			} else {
				assert.NotEmpty(t, reason)
			}
			for _, part := range tc.reasonIs {
				assert.Contains(t, reason, part)
			}
		})
	}
}

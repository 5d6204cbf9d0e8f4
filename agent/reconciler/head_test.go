package reconciler

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestChooseHead(t *testing.T) {
	for name, c := range map[string]struct {
		in   headInputs
		want headChoice
	}{
		"the registry's head while it answers": {
			in: headInputs{Published: "p", Listed: "l"}, want: headChoice{Commit: "p"}},
		"the registry's head under an enforced gate": {
			in: headInputs{Published: "p", Enforced: true}, want: headChoice{Commit: "p"}},
		"advisory, registry down: the listed head": {
			in: headInputs{Published: "p", RegistryDown: true, Listed: "l"}, want: headChoice{Commit: "l"}},
		"advisory, registry down, not listed yet: the published head": {
			in: headInputs{Published: "p", RegistryDown: true}, want: headChoice{Commit: "p"}},
		"enforced, registry down: the published head, the listed one held back": {
			in: headInputs{Published: "p", Enforced: true, RegistryDown: true, Listed: "l"}, want: headChoice{Commit: "p", HeldBack: "l"}},
		"enforced, registry down, the branch where it was": {
			in: headInputs{Published: "p", Enforced: true, RegistryDown: true, Listed: "p"}, want: headChoice{Commit: "p"}},
		"enforced, nothing published: nothing": {
			in: headInputs{Enforced: true, RegistryDown: true, Listed: "l"}, want: headChoice{HeldBack: "l"}},
		"a registry that publishes no head: the listed head": {
			in: headInputs{Listed: "l"}, want: headChoice{Commit: "l"}},
		"nothing known": {
			in: headInputs{}, want: headChoice{}},
	} {
		assert.Equal(t, c.want, chooseHead(c.in), name)
	}
}

func TestListDue(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	poll := 10 * time.Minute
	for name, c := range map[string]struct {
		in   headInputs
		due  bool
		next time.Time
	}{
		"the registry publishes heads: never": {
			in: headInputs{Published: "p", ListedAt: now.Add(-time.Hour)}},
		"enforced, nothing published yet, registry up: never": {
			in: headInputs{Enforced: true}},
		"no head published, nothing listed: at once": {
			in: headInputs{}, due: true},
		"no head published, listed just now: a git_poll_interval later": {
			in: headInputs{Listed: "l", ListedAt: now.Add(-time.Minute)}, next: now.Add(9 * time.Minute)},
		"no head published, listed a git_poll_interval ago": {
			in: headInputs{Listed: "l", ListedAt: now.Add(-poll)}, due: true, next: now},
		"registry down since just now: a git_poll_interval later": {
			in: headInputs{Published: "p", RegistryDown: true, ListedAt: now}, next: now.Add(poll)},
		"registry down for a git_poll_interval": {
			in: headInputs{Published: "p", RegistryDown: true, ListedAt: now.Add(-poll)}, due: true, next: now},
		"enforced, registry down for a git_poll_interval: listed to tell the branch moved": {
			in: headInputs{Published: "p", Enforced: true, RegistryDown: true, ListedAt: now.Add(-poll)}, due: true, next: now},
	} {
		c.in.Now, c.in.GitPoll = now, poll
		assert.Equal(t, c.due, c.in.listDue(), name)
		assert.Equal(t, c.next, c.in.nextListing(), name)
	}
}

func TestGitPollInterval(t *testing.T) {
	assert.Equal(t, 10*time.Minute, gitPollInterval(nil, 0), "the default")
	assert.Equal(t, time.Minute, gitPollInterval(nil, time.Minute), "config-defaults.yaml's, as the last render read it")
	assert.Equal(t, 30*time.Second, gitPollInterval(map[string]string{ConfigGitPollInterval: "30s"}, time.Minute), "the registry's value")
	assert.Equal(t, time.Minute, gitPollInterval(map[string]string{ConfigGitPollInterval: "soon"}, time.Minute), "a value that does not parse keeps the default")
	assert.Equal(t, 10*time.Minute, gitPollInterval(map[string]string{ConfigGitPollInterval: "-1m"}, 0), "nor does a negative one")
}

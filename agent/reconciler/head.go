package reconciler

import (
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// ConfigGitPollInterval is the config item of how often the agent lists
// its channel's branch itself: only while the registry names no head in
// the assignment, or cannot be reached.
const ConfigGitPollInterval = "git_poll_interval"

// defaultGitPollInterval is git_poll_interval when no config item sets it.
const defaultGitPollInterval = 10 * time.Minute

// headInputs are what picks the commit a reconcile converges on.
type headInputs struct {
	// Published is the channel's head as the registry published it (the
	// assignment's channel.commit); empty from a registry that publishes
	// none, or did not read the branch yet.
	Published string
	// Enforced: the registry publishes only heads that passed the
	// promotion gate, so a head it did not publish is never taken.
	Enforced bool
	// RegistryDown: the last poll did not reach the registry, and the
	// assignment is the last good one.
	RegistryDown bool
	// Listed is the head the agent listed itself, empty before it did;
	// ListedAt is when, or when it began to follow the branch itself.
	Listed   string
	ListedAt time.Time
	Now      time.Time
	// GitPoll is the least time between two listings.
	GitPoll time.Duration
}

// followsBranch reports whether the agent lists the branch itself: the
// registry names no head (and its gate does not forbid taking the branch's
// own), or cannot be reached. Under an enforced gate the listing only
// tells that the branch moved past the published head.
func (in headInputs) followsBranch() bool {
	return in.RegistryDown || in.Published == "" && !in.Enforced
}

// listDue reports whether the agent lists the branch now: at once when it
// has nothing else to go on, else git_poll_interval after its last listing
// or after it began to follow the branch.
func (in headInputs) listDue() bool {
	if !in.followsBranch() {
		return false
	}
	if in.Listed == "" && in.Published == "" {
		return true
	}
	return !in.ListedAt.IsZero() && !in.Now.Before(in.nextListing())
}

// nextListing is when the next listing is due; zero when the agent does
// not follow the branch itself.
func (in headInputs) nextListing() time.Time {
	if !in.followsBranch() || in.ListedAt.IsZero() {
		return time.Time{}
	}
	return in.ListedAt.Add(in.GitPoll)
}

// headChoice is the commit to converge on; empty when there is none yet.
// HeldBack is a head of the branch that differs from the published one
// and is not taken, because the gate is enforced and the registry, which
// alone publishes promoted heads, cannot be reached.
type headChoice struct {
	Commit   string
	HeldBack string
}

// chooseHead picks the commit to converge on. The registry's head wins
// while it answers; without it, an advisory gate lets the agent take the
// branch's head it listed, an enforced one keeps the last published head.
func chooseHead(in headInputs) headChoice {
	switch {
	case in.Published != "" && !in.RegistryDown:
		return headChoice{Commit: in.Published}
	case in.Enforced:
		c := headChoice{Commit: in.Published}
		if in.Listed != "" && in.Listed != in.Published {
			c.HeldBack = in.Listed
		}
		return c
	case in.Listed != "":
		return headChoice{Commit: in.Listed}
	}
	return headChoice{Commit: in.Published}
}

// enforced reports whether the assignment's channel gates the heads it
// publishes; an older registry that says nothing is advisory.
func enforced(a *api.Assignment) bool { return a.Channel.Gate == api.GateEnforced }

// gitPollInterval is git_poll_interval: the assignment's config item, else
// the one the last render saw (config-defaults.yaml), else 10 minutes.
func gitPollInterval(items map[string]string, rendered time.Duration) time.Duration {
	if d, err := time.ParseDuration(items[ConfigGitPollInterval]); err == nil && d > 0 {
		return d
	}
	if rendered > 0 {
		return rendered
	}
	return defaultGitPollInterval
}

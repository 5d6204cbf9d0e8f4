package reconciler

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// headMode says where a reconcile takes its commit from.
type headMode int

const (
	// followRegistry: the head the registry publishes in the assignment;
	// the branch is listed only as the fallback. The loop's mode.
	followRegistry headMode = iota
	// listBranch: the branch's head, listed now. A one-off Reconcile's
	// mode, as a rehearsal's, whose source pins the head.
	listBranch
)

// branchState is what the agent knows of its branch besides the
// assignment. The loop and a health wait's watch (watchForNewer) both pick
// heads, so it is guarded.
type branchState struct {
	mu sync.Mutex
	// of is the repository and branch the listing and refusal are of.
	of string
	// listed is the head the agent listed itself; listedAt when, or when
	// it began to follow the branch itself. nextAt is when the loop lists
	// next, zero when it does not follow the branch.
	listed           string
	listedAt, nextAt time.Time
	// heldBack is the last listed head not taken under an enforced gate,
	// reported once.
	heldBack string
	// refused is the last commit the branch was found not to hold.
	refused refusal
	// renderedPoll is git_poll_interval as the last render read it.
	renderedPoll time.Duration
	// spread is this agent's share of git_poll_interval added to each wait
	// between listings, so that a fleet that lost its registry at once
	// does not list at once.
	spread float64
}

type refusal struct {
	commit string
	at     time.Time
	err    error
}

// follow starts over when the repository or branch changed.
func (s *branchState) follow(repo Source, branch string) {
	if of := repo.Location() + " " + branch; s.of != of {
		s.of, s.listed, s.listedAt, s.nextAt, s.heldBack, s.refused = of, "", time.Time{}, time.Time{}, "", refusal{}
	}
}

// pollInterval is git_poll_interval with this agent's spread.
func (s *branchState) pollInterval(a *api.Assignment) time.Duration {
	d := gitPollInterval(a.ConfigItems, s.renderedPoll)
	return d + time.Duration(s.spread*float64(d)/10)
}

// nextListing is when the loop lists the branch next; zero when it does
// not follow the branch itself.
func (r *Reconciler) nextListing() time.Time {
	r.branch.mu.Lock()
	defer r.branch.mu.Unlock()
	return r.branch.nextAt
}

// keepRenderedPoll keeps git_poll_interval of a render's config items,
// which hold config-defaults.yaml's default.
func (r *Reconciler) keepRenderedPoll(items map[string]string) {
	r.branch.mu.Lock()
	defer r.branch.mu.Unlock()
	if d, err := time.ParseDuration(items[ConfigGitPollInterval]); err == nil && d > 0 {
		r.branch.renderedPoll = d
	}
}

// pickHead is the commit a reconcile converges on (chooseHead), listing
// the branch only when that is due.
func (r *Reconciler) pickHead(ctx context.Context, repo Source, a *api.Assignment, mode headMode) (headChoice, error) {
	if mode == listBranch {
		head, err := r.listHead(ctx, repo, a.Channel.Branch)
		return headChoice{Commit: head}, err
	}
	s := &r.branch
	s.mu.Lock()
	defer s.mu.Unlock()
	s.follow(repo, a.Channel.Branch)
	in := headInputs{Published: a.Channel.Commit, Enforced: enforced(a), RegistryDown: r.registryDown.Load(),
		Now: r.now(), GitPoll: s.pollInterval(a)}
	if _, ok := repo.(BranchReader); !ok {
		// A head that cannot be checked against the branch is not taken.
		in.Published = ""
	}
	switch {
	case !in.followsBranch():
		s.listed, s.listedAt, s.heldBack = "", time.Time{}, ""
	case s.listedAt.IsZero() && in.Published != "":
		// The registry went away: the first listing is a
		// git_poll_interval from now, the published head meanwhile.
		s.listedAt = in.Now
	}
	in.Listed, in.ListedAt = s.listed, s.listedAt
	if in.listDue() {
		head, err := r.listHead(ctx, repo, a.Channel.Branch)
		switch {
		case err == nil:
			s.listed = head
		case chooseHead(in).Commit == "":
			return headChoice{}, err
		default:
			r.log.Error(err, "listing the channel's branch; going on with the head known", "branch", a.Channel.Branch)
		}
		s.listedAt = in.Now
		in.Listed, in.ListedAt = s.listed, s.listedAt
	}
	s.nextAt = in.nextListing()
	choice := chooseHead(in)
	if choice.HeldBack != "" && choice.HeldBack != s.heldBack {
		s.heldBack = choice.HeldBack
		r.sourceMetrics.heldBack.Inc()
		r.log.Info("the branch moved past the head the registry published; keeping the published head, as the channel's gate is enforced and the registry cannot be reached",
			"branch", a.Channel.Branch, "head", choice.HeldBack, "published", choice.Commit)
	}
	return choice, nil
}

// listHead lists the branch's head, and counts it.
func (r *Reconciler) listHead(ctx context.Context, repo Source, branch string) (string, error) {
	r.sourceMetrics.listings.Inc()
	return repo.Head(ctx, branch)
}

// fetchCommit reads the files of commit once the branch shows it holds it.
// A commit the branch does not hold is looked for again only a
// git_poll_interval later: until then the same refusal stands.
func (r *Reconciler) fetchCommit(ctx context.Context, repo Source, a *api.Assignment, commit string) (*configrepo.Snapshot, error) {
	br, ok := repo.(BranchReader)
	if !ok {
		return repo.Fetch(ctx, a.Channel.Branch)
	}
	s := &r.branch
	s.mu.Lock()
	s.follow(repo, a.Channel.Branch)
	last, poll := s.refused, s.pollInterval(a)
	s.mu.Unlock()
	now := r.now()
	if last.commit == commit && now.Sub(last.at) < poll {
		return nil, last.err
	}
	snap, err := br.FetchOnBranch(ctx, a.Channel.Branch, commit)
	if errors.Is(err, configrepo.ErrNotOnBranch) {
		s.mu.Lock()
		s.refused = refusal{commit: commit, at: now, err: err}
		s.mu.Unlock()
	}
	return snap, err
}

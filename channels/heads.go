package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
	"github.com/caravan-gitops/caravan/pkg/gitauth"
)

const (
	// maxCommits and maxLogs bound the caches of commit descriptions and
	// branch logs; past them the cache starts over.
	maxCommits = 4096
	maxLogs    = 64
	// parallelRepos bounds the repositories read at once.
	parallelRepos = 4
)

// ErrNoRepository means a channel names no config repository and the
// registry has no default one.
var ErrNoRepository = errors.New("the channel names no repository_url and the registry has no default (--repository-url)")

// Heads keeps the head commit of every channel's branch, read from git
// with read-only credentials. Run reads them all every interval; a head
// that was never read, is older than twice the interval (Run is not
// running or cannot keep up) or was forgotten is read when asked for. A
// repository that cannot be read sets the error of its channels' heads,
// which keep the last commit read.
type Heads struct {
	creds    gitauth.Credentials
	interval time.Duration
	timeout  time.Duration
	now      func() time.Time
	log      *slog.Logger
	flight   singleflight.Group
	onChange func(repo, branch string, head api.ChannelHead) error
	gap      time.Duration

	mu        sync.Mutex
	heads     map[branchRef]cachedHead
	refreshes map[branchRef]*branchRefresh
	commits   map[string]configrepo.Commit
	logs      map[logKey][]configrepo.Commit
}

type branchRef struct{ repo, branch string }

type cachedHead struct {
	head      api.ChannelHead
	checked   time.Time
	forgotten bool
	// unannounced is set when the change callback failed for this head.
	unannounced bool
}

type logKey struct {
	repo, head string
	limit      int
}

// HeadsOption changes a Heads.
type HeadsOption func(*Heads)

// WithClock makes Heads read time from now; tests pass a fake clock.
func WithClock(now func() time.Time) HeadsOption { return func(h *Heads) { h.now = now } }

// WithLogger sets where Heads logs the repositories it cannot read.
func WithLogger(l *slog.Logger) HeadsOption { return func(h *Heads) { h.log = l } }

// WithTimeout bounds one read of a repository (10s unless set).
func WithTimeout(d time.Duration) HeadsOption { return func(h *Heads) { h.timeout = d } }

// WithOnChange calls fn whenever a read finds a branch's head at another
// commit than the read before it (the first read of a branch included). fn
// runs on the reading goroutine, outside Heads' lock, one call at a time
// per read of a repository. When fn fails, the next read of the branch
// calls it again, even for the same commit.
func WithOnChange(fn func(repo, branch string, head api.ChannelHead) error) HeadsOption {
	return func(h *Heads) { h.onChange = fn }
}

// WithRefreshGap sets the least time between two reads of one branch that
// Refresh asks for (1s unless set): pushes announced faster are coalesced.
func WithRefreshGap(d time.Duration) HeadsOption { return func(h *Heads) { h.gap = d } }

// NewHeads returns an empty cache reading with creds every interval.
func NewHeads(creds gitauth.Credentials, interval time.Duration, opts ...HeadsOption) *Heads {
	h := &Heads{
		creds: creds, interval: interval, timeout: 10 * time.Second, now: time.Now, log: slog.Default(), gap: time.Second,
		heads: map[branchRef]cachedHead{}, refreshes: map[branchRef]*branchRefresh{}, commits: map[string]configrepo.Commit{}, logs: map[logKey][]configrepo.Commit{},
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Run reads the heads of the channels list returns every interval until
// ctx ends.
func (h *Heads) Run(ctx context.Context, list func(context.Context) ([]api.Channel, error)) {
	ticker := time.NewTicker(h.interval)
	defer ticker.Stop()
	for {
		chans, err := list(ctx)
		if err == nil {
			h.retain(chans)
		}
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			h.log.Warn("listing the channels to read their heads", "error", err)
		default:
			h.read(ctx, branchesOf(chans, func(branchRef) bool { return true }))
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// retain drops the heads of branches no channel follows any more.
func (h *Heads) retain(chans []api.Channel) {
	followed := map[branchRef]bool{}
	for _, ch := range chans {
		followed[branchRef{ch.RepositoryURL, ch.Branch}] = true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for b := range h.heads {
		if !followed[b] {
			delete(h.heads, b)
		}
	}
}

// Of returns the head of each channel by channel name, reading first the
// heads that are stale.
func (h *Heads) Of(ctx context.Context, chans []api.Channel) map[string]api.ChannelHead {
	now := h.now()
	h.mu.Lock()
	stale := branchesOf(chans, func(b branchRef) bool {
		c, ok := h.heads[b]
		return !ok || c.forgotten || now.Sub(c.checked) >= 2*h.interval
	})
	h.mu.Unlock()
	h.read(ctx, stale)
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]api.ChannelHead, len(chans))
	for _, ch := range chans {
		if ch.RepositoryURL == "" {
			out[ch.Name] = api.ChannelHead{Error: ErrNoRepository.Error()}
			continue
		}
		out[ch.Name] = h.heads[branchRef{ch.RepositoryURL, ch.Branch}].head
	}
	return out
}

// Head returns the head of one channel, as Of does.
func (h *Heads) Head(ctx context.Context, ch api.Channel) api.ChannelHead {
	return h.Of(ctx, []api.Channel{ch})[ch.Name]
}

// Forget makes the next Of read the heads of the repository again, after
// a push to it.
func (h *Heads) Forget(repo string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for b, c := range h.heads {
		if b.repo == repo {
			c.forgotten = true
			h.heads[b] = c
		}
	}
}

// branchesOf groups the branches of the channels that pick chooses by repository.
func branchesOf(chans []api.Channel, pick func(branchRef) bool) map[string][]string {
	out := map[string][]string{}
	for _, ch := range chans {
		b := branchRef{ch.RepositoryURL, ch.Branch}
		if b.repo == "" || slices.Contains(out[b.repo], b.branch) || !pick(b) {
			continue
		}
		out[b.repo] = append(out[b.repo], b.branch)
	}
	return out
}

// read reads the branches of several repositories, a few at a time. Each
// read is bounded by the timeout and outlives a caller that gives up, so
// that callers asking for the same branches share it.
func (h *Heads) read(ctx context.Context, repos map[string][]string) {
	if len(repos) == 0 {
		return
	}
	var g errgroup.Group
	g.SetLimit(parallelRepos)
	for repo, branches := range repos {
		slices.Sort(branches)
		g.Go(func() error {
			key := repo + "\x00" + strings.Join(branches, "\x00")
			done := h.flight.DoChan(key, func() (any, error) {
				readCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
				defer cancel()
				h.readRepo(readCtx, repo, branches)
				return nil, nil
			})
			select {
			case <-done:
			case <-ctx.Done():
			}
			return nil
		})
	}
	_ = g.Wait()
}

// readRepo lists the repository's branches and describes the head commit
// of each branch asked for, fetching only commits not described before.
func (h *Heads) readRepo(ctx context.Context, repo string, branches []string) {
	r, err := configrepo.Open(repo, h.creds)
	if err != nil {
		h.fail(repo, branches, err)
		return
	}
	refs, err := r.Branches(ctx)
	if err != nil {
		h.fail(repo, branches, err)
		return
	}
	var known, unknown []string
	for _, b := range branches {
		hash, ok := refs[b]
		switch {
		case !ok:
			h.fail(repo, []string{b}, fmt.Errorf("%s has no branch %s: %w", repo, b, configrepo.ErrBranchNotFound))
		case h.described(hash):
			known = append(known, b)
		default:
			unknown = append(unknown, b)
		}
	}
	h.succeed(repo, known, refs)
	if len(unknown) == 0 {
		return
	}
	described, err := r.HeadCommits(ctx, unknown)
	if err != nil {
		h.fail(repo, unknown, err)
		return
	}
	h.describe(refs, described)
	h.succeed(repo, unknown, refs)
}

func (h *Heads) described(hash string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.commits[hash]
	return ok
}

// describe keeps the descriptions of fetched heads under the commit the
// listing named; the fetch may have found the branch moved on since.
func (h *Heads) describe(refs map[string]string, fetched map[string]configrepo.Commit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.commits) > maxCommits {
		h.commits = map[string]configrepo.Commit{}
	}
	for branch, c := range fetched {
		h.commits[c.Hash] = c
		refs[branch] = c.Hash
	}
}

func (h *Heads) succeed(repo string, branches []string, refs map[string]string) {
	now := h.now().UTC()
	type change struct {
		branch string
		head   api.ChannelHead
	}
	var changes []change
	h.mu.Lock()
	for _, b := range branches {
		c := h.commits[refs[b]]
		t, checked := c.Time, now
		key := branchRef{repo, b}
		head := api.ChannelHead{Commit: c.Hash, Subject: c.Subject, Author: c.Author, Time: &t, CheckedAt: &checked}
		if old, ok := h.heads[key]; (!ok || old.unannounced || old.head.Commit != c.Hash) && c.Hash != "" {
			changes = append(changes, change{b, head})
		}
		h.heads[key] = cachedHead{checked: now, head: head}
	}
	h.mu.Unlock()
	if h.onChange == nil {
		return
	}
	for _, c := range changes {
		if err := h.onChange(repo, c.branch, c.head); err != nil {
			h.log.Warn("announcing a channel head", "repository", repo, "branch", c.branch, "commit", c.head.Commit, "error", err)
			h.mu.Lock()
			if cached, ok := h.heads[branchRef{repo, c.branch}]; ok && cached.head.Commit == c.head.Commit {
				cached.unannounced = true
				h.heads[branchRef{repo, c.branch}] = cached
			}
			h.mu.Unlock()
		}
	}
}

// branchRefresh coalesces the refreshes of one branch that Refresh asks
// for: at most one read runs at a time, the next starts no sooner than the
// gap after the last one began, and every request that arrives meanwhile
// is answered by that next read (which lists the branch after the request
// came, so it sees the push that caused it).
type branchRefresh struct {
	next *refreshRound
}

// refreshRound is one read that Refresh requests wait for.
type refreshRound struct{ done chan struct{} }

// Refresh reads the head of the repository's branch again, now or, when
// that branch was read for a Refresh less than the gap ago, once the gap
// has passed, and returns when a read that began after the call has ended
// (or ctx ends first). However often it is called, one branch is read at
// most once per gap: a webhook cannot make the registry hammer the git
// server. The head's change is announced through WithOnChange.
func (h *Heads) Refresh(ctx context.Context, repo, branch string) {
	key := branchRef{repo, branch}
	h.mu.Lock()
	r, running := h.refreshes[key]
	if !running {
		r = &branchRefresh{}
		h.refreshes[key] = r
	}
	if r.next == nil {
		r.next = &refreshRound{done: make(chan struct{})}
	}
	round := r.next
	h.mu.Unlock()
	if !running {
		go h.refreshLoop(key, r)
	}
	select {
	case <-round.done:
	case <-ctx.Done():
	}
}

// refreshLoop runs the reads a branch's Refresh calls asked for, a gap
// apart, and ends when a gap passed without a request.
func (h *Heads) refreshLoop(key branchRef, r *branchRefresh) {
	for {
		h.mu.Lock()
		round := r.next
		r.next = nil
		if round == nil {
			delete(h.refreshes, key)
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		began := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		h.readRepo(ctx, key.repo, []string{key.branch})
		cancel()
		close(round.done)
		time.Sleep(time.Until(began.Add(h.gap)))
	}
}

// fail records err on the branches' heads, which keep the commit last read.
func (h *Heads) fail(repo string, branches []string, err error) {
	now := h.now().UTC()
	h.log.Warn("reading channel heads", "repository", repo, "branches", branches, "error", err)
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range branches {
		key := branchRef{repo, b}
		head := h.heads[key].head
		checked := now
		head.CheckedAt, head.Error = &checked, err.Error()
		h.heads[key] = cachedHead{checked: now, head: head, unannounced: h.heads[key].unannounced}
	}
}

// Log returns up to limit commits of the channel's branch, newest first
// (see configrepo.Repo.Log), from its current head; the branch is fetched only when
// its head moved since the last log of that length.
func (h *Heads) Log(ctx context.Context, ch api.Channel, limit int) ([]configrepo.Commit, error) {
	head := h.Head(ctx, ch)
	if head.Error != "" {
		return nil, errors.New(head.Error)
	}
	key := logKey{repo: ch.RepositoryURL, head: head.Commit, limit: limit}
	h.mu.Lock()
	cached, ok := h.logs[key]
	h.mu.Unlock()
	if ok {
		return cached, nil
	}
	r, err := configrepo.Open(ch.RepositoryURL, h.creds)
	if err != nil {
		return nil, err
	}
	readCtx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	log, err := r.Log(readCtx, ch.Branch, limit)
	if err != nil {
		return nil, err
	}
	if len(log) > 0 {
		h.mu.Lock()
		if len(h.logs) >= maxLogs {
			h.logs = map[logKey][]configrepo.Commit{}
		}
		h.logs[logKey{repo: ch.RepositoryURL, head: log[0].Hash, limit: limit}] = log
		h.mu.Unlock()
	}
	return log, nil
}

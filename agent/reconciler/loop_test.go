package reconciler

import (
	"context"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/caravan-gitops/caravan/agent/assignment"
	"github.com/caravan-gitops/caravan/agent/assignment/assignmenttest"
	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/configrepo"
)

// headSource is a config repo of which only the head is read; it counts
// its listings.
type headSource struct {
	mu       sync.Mutex
	head     string
	listings int
}

func (s *headSource) set(head string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.head = head
}

func (s *headSource) Location() string { return "test" }
func (s *headSource) Head(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listings++
	return s.head, nil
}

func (s *headSource) listed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listings
}

func (s *headSource) Fetch(context.Context, string) (*configrepo.Snapshot, error) { panic("not read") }
func (s *headSource) FetchCommit(context.Context, string) (fs.FS, error)          { panic("not read") }
func (s *headSource) FetchOnBranch(context.Context, string, string) (*configrepo.Snapshot, error) {
	panic("not read")
}

// Regression test of the data race of issue 14: the loop's long-poll and a
// health wait's watch for a newer version run at once (under -race they
// once both called Keeper.Poll). The watch sees a newer assignment, and a
// newer head the registry publishes, within a tick of it, never waiting out
// the loop's long-poll and never listing the branch; and the loop's poller
// goes on polling while nobody takes its updates.
func TestHealthWaitSeesANewerVersionWhileTheLoopLongPolls(t *testing.T) {
	const interval = 6 * time.Second // the long-poll's wait; the watch's tick is 1 s
	reg := assignmenttest.NewRegistry(api.Assignment{Cluster: api.AssignedCluster{ID: "c1"},
		Channel: api.AssignedChannel{Name: "stable", Branch: "stable", Commit: "commit1"}})
	k := assignment.New(reg, fake.NewClientBuilder().Build(), "c1", "caravan-system")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	upd, err := k.Poll(ctx, 0)
	require.NoError(t, err)
	r := New(Config{ClusterID: "c1", Interval: interval}, k, nil, nil, nil, nil, logr.Discard(), NewMetrics(prometheus.NewRegistry()))
	updates := make(chan assignment.Update, 1)
	go r.pollAssignments(ctx, updates)
	repo := &headSource{head: "commit1"}

	// watch runs a health wait's watch for the version of the registry's
	// current assignment, changes something, and tells how long the watch
	// took to end the wait.
	watch := func(change func()) time.Duration {
		t.Helper()
		current := reg.Assignment()
		version := Version(current.Channel.Commit, current)
		waitCtx, cancelWait := context.WithCancelCause(ctx)
		defer cancelWait(nil)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r.watchForNewer(waitCtx, cancelWait, repo, upd.Assignment, version)
		}()
		time.Sleep(100 * time.Millisecond) // the loop's long-poll is waiting
		start := time.Now()
		change()
		select {
		case <-done:
		case <-time.After(interval):
			t.Fatal("the health wait was not cancelled within the long-poll's wait")
		}
		require.ErrorIs(t, context.Cause(waitCtx), errSuperseded)
		return time.Since(start)
	}

	took := watch(reg.Change)
	assert.Less(t, took, 3*time.Second, "a newer assignment ends the wait within a tick or two")
	took = watch(func() { reg.PublishHead("commit2", "") })
	assert.Less(t, took, 3*time.Second, "a newer head the registry publishes ends the wait within a tick or two")
	assert.Zero(t, repo.listed(), "the head came with the assignment: the branch was never listed")

	// Nobody took an update: the poller replaced the untaken one with the
	// latest and went on polling, so a fourth assignment reached the keeper.
	reg.Change()
	require.Eventually(t, func() bool { return k.Latest().ConfigItems["generation"] == "4" }, interval, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		select {
		case u := <-updates:
			return u.Assignment.ConfigItems["generation"] == "4"
		default:
			return false
		}
	}, interval, 10*time.Millisecond, "the loop takes the latest assignment")
}

// Without a head in the assignment (a registry that publishes none), a
// health wait's watch lists the branch itself: once at the start, then
// only every git_poll_interval, however often it ticks.
func TestHealthWaitListsTheBranchOnlyEveryGitPollInterval(t *testing.T) {
	reg := assignmenttest.NewRegistry(api.Assignment{Cluster: api.AssignedCluster{ID: "c1"},
		Channel: api.AssignedChannel{Name: "dev", Branch: "dev"}, ConfigItems: map[string]string{ConfigGitPollInterval: "3s"}})
	k := assignment.New(reg, fake.NewClientBuilder().Build(), "c1", "caravan-system")
	_, err := k.Poll(t.Context(), 0)
	require.NoError(t, err)
	r := New(Config{ClusterID: "c1", Interval: 6 * time.Second}, k, nil, nil, nil, nil, logr.Discard(), NewMetrics(prometheus.NewRegistry()))
	r.branch.spread = 0
	repo := &headSource{head: "commit1"}
	waitCtx, cancelWait := context.WithCancelCause(t.Context())
	defer cancelWait(nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.watchForNewer(waitCtx, cancelWait, repo, k.Latest(), Version("commit1", reg.Assignment()))
	}()
	require.Eventually(t, func() bool { return repo.listed() == 1 }, 5*time.Second, 10*time.Millisecond, "the branch is listed at once: nothing else names a head")
	repo.set("commit2")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the newer head did not end the wait")
	}
	require.ErrorIs(t, context.Cause(waitCtx), errSuperseded)
	assert.Equal(t, 2, repo.listed(), "one listing more, a git_poll_interval after the first, though the watch ticks every second")
}

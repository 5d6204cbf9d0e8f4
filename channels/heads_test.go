package channels

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/pkg/gitauth"

	"github.com/caravan-gitops/caravan/test/gitserver"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func quiet() HeadsOption { return WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))) }

func TestHeadsReadEachChannelAndReportAnUnreadableOneAlone(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	dns := repo.Commit("dev", "four DNS replicas")
	clock := &fakeClock{t: now}
	heads := NewHeads(repo.Credentials(), 30*time.Second, WithClock(clock.now), quiet())
	chans := []api.Channel{
		{Name: "dev", Branch: "dev", RepositoryURL: repo.URL},
		{Name: "alpha", Branch: "alpha", RepositoryURL: repo.URL},
		{Name: "nightly", Branch: "nightly", RepositoryURL: repo.URL},
		{Name: "elsewhere", Branch: "dev", RepositoryURL: "http://127.0.0.1:1/config.git"},
		{Name: "nowhere", Branch: "dev"},
	}

	got := heads.Of(context.Background(), chans)
	require.Len(t, got, 5)
	dev := got["dev"]
	assert.Equal(t, dns, dev.Commit)
	assert.Equal(t, "four DNS replicas", dev.Subject)
	assert.Equal(t, "Caravan Test", dev.Author)
	require.NotNil(t, dev.Time)
	assert.WithinDuration(t, time.Now(), *dev.Time, time.Minute, "the commit's time")
	assert.Equal(t, now, *dev.CheckedAt)
	assert.Empty(t, dev.Error)
	assert.Equal(t, repo.First, got["alpha"].Commit)
	assert.Equal(t, "Initial configuration", got["alpha"].Subject)
	assert.Contains(t, got["nightly"].Error, "has no branch nightly")
	assert.Empty(t, got["nightly"].Commit)
	assert.Contains(t, got["elsewhere"].Error, "127.0.0.1:1")
	assert.Equal(t, ErrNoRepository.Error(), got["nowhere"].Error)

	next := repo.Commit("dev", "five DNS replicas")
	assert.Equal(t, dns, heads.Head(context.Background(), chans[0]).Commit, "a head read moments ago is not read again")
	clock.advance(61 * time.Second)
	assert.Equal(t, next, heads.Head(context.Background(), chans[0]).Commit, "a head older than twice the interval is read again")

	last := repo.Commit("dev", "six DNS replicas")
	heads.Forget(repo.URL)
	assert.Equal(t, last, heads.Head(context.Background(), chans[0]).Commit, "a forgotten repository is read again")

	require.NoError(t, repo.Server.Close())
	clock.advance(time.Hour)
	gone := heads.Head(context.Background(), chans[0])
	assert.NotEmpty(t, gone.Error, "an unreachable server is reported")
	assert.Equal(t, last, gone.Commit, "the last head read is kept")
	assert.Equal(t, "six DNS replicas", gone.Subject)
	assert.Equal(t, now.Add(61*time.Second+time.Hour), *gone.CheckedAt)
}

func TestHeadsRunReadsThemEveryInterval(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	clock := &fakeClock{t: now}
	// The clock stands still, so Of never finds a head stale: only Run reads.
	heads := NewHeads(repo.Credentials(), 20*time.Millisecond, WithClock(clock.now), quiet())
	chans := []api.Channel{{Name: "dev", Branch: "dev", RepositoryURL: repo.URL}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		heads.Run(ctx, func(context.Context) ([]api.Channel, error) { return chans, nil })
	}()
	t.Cleanup(func() { cancel(); <-done })

	require.Eventually(t, func() bool { return heads.Head(ctx, chans[0]).Commit == repo.First }, 10*time.Second, 10*time.Millisecond)
	next := repo.Commit("dev", "four DNS replicas")
	require.Eventually(t, func() bool { return heads.Head(ctx, chans[0]).Commit == next }, 10*time.Second, 10*time.Millisecond)
}

func TestHeadsOverSSHWithAKeyAndAPinnedHost(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	ssh := repo.Server.StartSSH(t)
	heads := NewHeads(gitauth.Credentials{SSHKey: ssh.ClientKey, KnownHosts: ssh.KnownHosts}, time.Minute, quiet())
	head := heads.Head(context.Background(), api.Channel{Name: "beta", Branch: "beta", RepositoryURL: ssh.URL("config")})
	assert.Empty(t, head.Error)
	assert.Equal(t, repo.First, head.Commit)
}

func TestHeadsLogIsCachedPerHead(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	clock := &fakeClock{t: now}
	heads := NewHeads(repo.Credentials(), time.Minute, WithClock(clock.now), quiet())
	dev := api.Channel{Name: "dev", Branch: "dev", RepositoryURL: repo.URL}
	log, err := heads.Log(context.Background(), dev, 5)
	require.NoError(t, err)
	require.Len(t, log, 1)

	next := repo.Commit("dev", "two")
	log, err = heads.Log(context.Background(), dev, 5)
	require.NoError(t, err)
	assert.Len(t, log, 1, "the log follows the cached head")
	clock.advance(3 * time.Minute)
	log, err = heads.Log(context.Background(), dev, 5)
	require.NoError(t, err)
	require.Len(t, log, 2)
	assert.Equal(t, next, log[0].Hash)

	_, err = heads.Log(context.Background(), api.Channel{Name: "x", Branch: "dev", RepositoryURL: "http://127.0.0.1:1/config.git"}, 5)
	assert.ErrorContains(t, err, "127.0.0.1:1", "an unreadable repository is an error of the log")
}

func TestHeadsRunForgetsBranchesNoChannelFollows(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	heads := NewHeads(repo.Credentials(), time.Hour, quiet())
	dev := api.Channel{Name: "dev", Branch: "dev", RepositoryURL: repo.URL}
	alpha := api.Channel{Name: "alpha", Branch: "alpha", RepositoryURL: repo.URL}
	heads.Of(context.Background(), []api.Channel{dev, alpha})
	cached := func() []branchRef {
		heads.mu.Lock()
		defer heads.mu.Unlock()
		return slices.Collect(maps.Keys(heads.heads))
	}
	require.Len(t, cached(), 2)

	// A context that has ended lets Run look at the channels once, and read nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	heads.Run(ctx, func(context.Context) ([]api.Channel, error) { return []api.Channel{dev}, nil })
	assert.Equal(t, []branchRef{{repo.URL, "dev"}}, cached(), "alpha's channel is gone")
}

func TestHeadsRefreshCoalescesABurstAndAnnouncesChanges(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	var listings atomic.Int64
	target, err := url.Parse(repo.Server.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			listings.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(counting.Close)
	repoURL := counting.URL + "/config.git"

	var mu sync.Mutex
	var announced []string
	heads := NewHeads(repo.Credentials(), time.Hour, quiet(), WithRefreshGap(500*time.Millisecond),
		WithOnChange(func(r, branch string, head api.ChannelHead) error {
			mu.Lock()
			defer mu.Unlock()
			announced = append(announced, branch+" "+head.Commit)
			return nil
		}))
	dev := api.Channel{Name: "dev", Branch: "dev", RepositoryURL: repoURL}
	require.Equal(t, repo.First, heads.Head(context.Background(), dev).Commit)
	before := listings.Load()

	pushed := repo.Commit("dev", "burst")
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { heads.Refresh(context.Background(), repoURL, "dev") })
	}
	wg.Wait()
	// At most two reads: the first lists the branches and fetches the new
	// head to describe it (two ref advertisements), the one after it only lists.
	assert.LessOrEqual(t, listings.Load()-before, int64(3), "50 refreshes at once read the branch at most twice: one read and the one after it")
	assert.Equal(t, pushed, heads.Head(context.Background(), dev).Commit)
	mu.Lock()
	assert.Equal(t, []string{"dev " + repo.First, "dev " + pushed}, announced, "each new head is announced once")
	mu.Unlock()

	// A refresh after the burst reads again and sees the next push.
	next := repo.Commit("dev", "after the burst")
	heads.Refresh(context.Background(), repoURL, "dev")
	assert.Equal(t, next, heads.Head(context.Background(), dev).Commit)
}

func TestHeadsAnnounceAgainAfterAFailedAnnouncement(t *testing.T) {
	repo := gitserver.StartChannelRepo(t)
	fail := true
	var calls int
	heads := NewHeads(repo.Credentials(), time.Hour, quiet(), WithOnChange(func(string, string, api.ChannelHead) error {
		calls++
		if fail {
			return errors.New("database down")
		}
		return nil
	}))
	heads.Refresh(context.Background(), repo.URL, "dev")
	fail = false
	heads.Refresh(context.Background(), repo.URL, "dev")
	heads.Refresh(context.Background(), repo.URL, "dev")
	assert.Equal(t, 2, calls, "the head is announced again after a failed announcement, then not any more")
}

package store

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
	"github.com/caravan-gitops/caravan/test/postgres"
)

// PostgreSQL is started once, by the first test that needs it.
var (
	pgOnce   sync.Once
	pgServer *postgres.Server
	pgErr    error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if pgServer != nil {
		pgServer.Stop()
	}
	os.Exit(code)
}

// onBothDatabases runs test against a new SQLite file and a new PostgreSQL database.
func onBothDatabases(t *testing.T, test func(t *testing.T, databaseURL string)) {
	t.Run("sqlite", func(t *testing.T) { test(t, "sqlite://"+filepath.Join(t.TempDir(), "caravan.db")) })
	t.Run("postgres", func(t *testing.T) { test(t, sharedPostgres(t).NewDatabase(t)) })
}

func sharedPostgres(t *testing.T) *postgres.Server {
	t.Helper()
	pgOnce.Do(func() { pgServer, pgErr = postgres.Launch() })
	require.NoError(t, pgErr)
	return pgServer
}

const (
	configRepo = "https://git.example.org/fleet-config.git"
	onStable   = "aws:123456789012:eu-central-1:kube-s"
	onDev      = "aws:123456789012:eu-central-1:kube-d"
)

// openFleet opens a store with the channels dev, beta and stable of one
// repository and a cluster on dev and on stable; seed writes them first.
func openFleet(t *testing.T, databaseURL string, seed bool) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, databaseURL)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	if !seed {
		return s
	}
	_, err = Create(ctx, s, Accounts, Ref{Key: "aws:123456789012"}, api.InfrastructureAccount{ID: "aws:123456789012", Environment: "test"}, "test")
	require.NoError(t, err)
	for i, name := range []string{"dev", "beta", "stable"} {
		_, err := Create(ctx, s, Channels, Ref{Key: name}, api.Channel{Name: name, Branch: name, Position: 10 * (i + 1), RepositoryURL: configRepo}, "test")
		require.NoError(t, err)
	}
	for id, ch := range map[string]string{onStable: "stable", onDev: "dev"} {
		_, err := CreateCluster(ctx, s, api.Cluster{ID: id, InfrastructureAccount: "aws:123456789012", Region: "eu-central-1", Environment: "test", Channel: ch}, "test")
		require.NoError(t, err)
	}
	return s
}

// assigned is the channel of a cluster's assignment.
func assigned(t *testing.T, s *Store, clusterID string) api.AssignedChannel {
	t.Helper()
	return assignmentOf(t, s, clusterID).Channel
}

func publicationOf(t *testing.T, s *Store, channel string) api.ChannelPublication {
	t.Helper()
	pubs, err := s.Publications(context.Background())
	require.NoError(t, err)
	p, ok := pubs[channel]
	require.True(t, ok, "channel %s publishes something", channel)
	return p
}

func setHead(t *testing.T, s *Store, branch, commit string) {
	t.Helper()
	_, err := s.SetChannelHead(context.Background(), configRepo, branch, commit)
	require.NoError(t, err)
}

func promote(t *testing.T, s *Store, commit string, met bool, override string) {
	t.Helper()
	p := api.Promotion{From: "beta", To: "stable", Commit: commit, GateMet: met, OverrideReason: override, GateReasons: []string{}, By: "ops", At: time.Now().UTC()}
	if !met {
		p.GateReasons = []string{onDev + ": silent: it has never reported"}
	}
	require.NoError(t, s.RecordPromotion(context.Background(), p, "ops"))
}

func TestEnforcedGatePublishesOnlyPromotedHeads(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		ctx := context.Background()
		s := openFleet(t, databaseURL, true)
		a, b, c, d, e := commitID('a'), commitID('b'), commitID('c'), commitID('d'), commitID('e')

		setHead(t, s, "stable", a)
		assert.Equal(t, api.AssignedChannel{Name: "stable", Branch: "stable", RepositoryURL: configRepo, Commit: a, Gate: api.GateEnforced}, assigned(t, s, onStable),
			"stable's gate is enforced by default; its first head is where it starts")

		woken := s.Hub().Watch(onStable)
		setHead(t, s, "stable", b)
		assert.Equal(t, a, assigned(t, s, onStable).Commit, "a head that only arrived by a push is not published")
		assert.False(t, closed(woken), "and wakes no poll")
		pub := publicationOf(t, s, "stable")
		require.NotNil(t, pub.Held)
		assert.Equal(t, b, pub.Held.Commit)
		assert.Contains(t, pub.Held.Reason, "without a promotion from beta")
		assert.Equal(t, a, pub.Commit)

		promote(t, s, b, true, "")
		assert.True(t, closed(woken), "publishing wakes the polls of the channel")
		assert.Equal(t, b, assigned(t, s, onStable).Commit, "a promotion recorded after the push publishes the held head")
		assert.Nil(t, publicationOf(t, s, "stable").Held)

		promote(t, s, c, true, "")
		assert.Equal(t, b, assigned(t, s, onStable).Commit, "a promotion recorded before its push arrives publishes nothing yet")
		assert.Equal(t, c, publicationOf(t, s, "stable").Promoted)
		setHead(t, s, "stable", c)
		assert.Equal(t, c, assigned(t, s, onStable).Commit, "the promoted commit is published when it is read as the head")

		setHead(t, s, "stable", d)
		assert.Equal(t, c, assigned(t, s, onStable).Commit, "a push on top of a promoted commit is held")
		promote(t, s, d, false, "")
		assert.Equal(t, c, assigned(t, s, onStable).Commit, "a promotion whose gate was not met and not overridden lets nothing through")
		assert.Contains(t, publicationOf(t, s, "stable").Held.Reason, "did not meet the gate ("+onDev+": silent: it has never reported) and gave no override reason")
		promote(t, s, d, false, "hotfix for incident 4711")
		assert.Equal(t, d, assigned(t, s, onStable).Commit, "an override with a reason lets it through")

		setHead(t, s, "stable", c)
		assert.Equal(t, d, assigned(t, s, onStable).Commit, "a force-push back to an older promoted commit is held too")
		assert.Equal(t, c, publicationOf(t, s, "stable").Held.Commit)

		setHead(t, s, "stable", e)
		s.Close()
		s = openFleet(t, databaseURL, false)
		require.NoError(t, s.ReconcilePublications(ctx))
		assert.Equal(t, d, assigned(t, s, onStable).Commit, "a restarted registry publishes what it published")
		assert.Equal(t, e, publicationOf(t, s, "stable").Held.Commit, "and holds what it held")

		rec, err := Get(ctx, s, Channels, "stable")
		require.NoError(t, err)
		advisory := rec.Value
		advisory.Gate = api.GateAdvisory
		woken = s.Hub().Watch(onStable)
		_, err = Update(ctx, s, Channels, Ref{Key: "stable"}, rec.Revision, rec.Value, advisory, "ops")
		require.NoError(t, err)
		assert.Equal(t, api.AssignedChannel{Name: "stable", Branch: "stable", RepositoryURL: configRepo, Commit: e, Gate: api.GateAdvisory}, assigned(t, s, onStable),
			"switching to advisory publishes the head")
		assert.True(t, closed(woken))
		assert.Nil(t, publicationOf(t, s, "stable").Held)
	})
}

func TestTheFirstChannelPublishesItsHeadWhateverItsGate(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		ctx := context.Background()
		s := openFleet(t, databaseURL, true)
		rec, err := Get(ctx, s, Channels, "dev")
		require.NoError(t, err)
		enforced := rec.Value
		enforced.Gate = api.GateEnforced
		_, err = Update(ctx, s, Channels, Ref{Key: "dev"}, rec.Revision, rec.Value, enforced, "ops")
		require.NoError(t, err)
		setHead(t, s, "dev", commitID('1'))
		setHead(t, s, "dev", commitID('2'))
		assert.Equal(t, api.AssignedChannel{Name: "dev", Branch: "dev", RepositoryURL: configRepo, Commit: commitID('2'), Gate: api.GateAdvisory}, assigned(t, s, onDev))
		assert.Equal(t, api.GateAdvisory, publicationOf(t, s, "dev").Gate)

		// A channel put before dev makes dev's gate bind.
		_, err = Create(ctx, s, Channels, Ref{Key: "sandbox"}, api.Channel{Name: "sandbox", Branch: "sandbox", RepositoryURL: configRepo}, "ops")
		require.NoError(t, err)
		setHead(t, s, "dev", commitID('3'))
		assert.Equal(t, api.AssignedChannel{Name: "dev", Branch: "dev", RepositoryURL: configRepo, Commit: commitID('2'), Gate: api.GateEnforced}, assigned(t, s, onDev))
		assert.Contains(t, publicationOf(t, s, "dev").Held.Reason, "without a promotion from sandbox")

		rec, err = Get(ctx, s, Channels, "sandbox")
		require.NoError(t, err)
		require.NoError(t, Delete(ctx, s, Channels, Ref{Key: "sandbox"}, rec.Revision, rec.Value, "ops"))
		assert.Equal(t, commitID('3'), assigned(t, s, onDev).Commit, "dev is first again, and publishes its head")
		pubs, err := s.Publications(ctx)
		require.NoError(t, err)
		assert.NotContains(t, pubs, "sandbox", "a deleted channel publishes nothing")
	})
}

// openAtVersion6 makes a database as a registry before publications left
// it: the migrations up to 0006 applied, the channels stored with their
// branch heads read.
func openAtVersion6(t *testing.T, databaseURL string, heads map[string]string) {
	t.Helper()
	ctx := context.Background()
	old := &Store{now: time.Now}
	require.NoError(t, old.connect(databaseURL))
	defer old.Close()
	_, err := old.write.ExecContext(ctx, `CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`)
	require.NoError(t, err)
	for v, file := range []string{"0001_init.sql", "0002_decommission.sql", "0003_plans.sql", "0004_freezes.sql", "0005_sessions.sql", "0006_channel_heads.sql"} {
		ddl, err := migrations.ReadFile("migrations/" + file)
		require.NoError(t, err)
		_, err = old.write.ExecContext(ctx, old.dialectSQL(string(ddl)))
		require.NoError(t, err, file)
		_, err = old.write.ExecContext(ctx, old.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, '2026-01-01T00:00:00.000000000Z')`), v+1)
		require.NoError(t, err)
	}
	for i, name := range []string{"dev", "beta", "stable"} {
		doc, err := json.Marshal(api.Channel{Name: name, Branch: name, Position: i, RepositoryURL: configRepo})
		require.NoError(t, err)
		_, err = old.write.ExecContext(ctx, old.rebind(`INSERT INTO channels (key, doc, revision, position) VALUES (?, ?, 1, ?)`), name, string(doc), i)
		require.NoError(t, err)
		_, err = old.write.ExecContext(ctx, old.rebind(`INSERT INTO channel_heads (repository_url, branch, commit_id, read_at) VALUES (?, ?, ?, '2026-01-01T00:00:00.000000000Z')`), configRepo, name, heads[name])
		require.NoError(t, err)
	}
}

func TestAnUpgradedRegistryPublishesTheHeadsItHandedOut(t *testing.T) {
	onBothDatabases(t, func(t *testing.T, databaseURL string) {
		heads := map[string]string{"dev": commitID('1'), "beta": commitID('2'), "stable": commitID('3')}
		openAtVersion6(t, databaseURL, heads)
		s := openFleet(t, databaseURL, false)
		require.NoError(t, s.ReconcilePublications(context.Background()))
		for name, head := range heads {
			p := publicationOf(t, s, name)
			assert.Equal(t, head, p.Commit, name)
			assert.Nil(t, p.Held, name)
		}
		assert.Equal(t, api.GateEnforced, publicationOf(t, s, "stable").Gate)
		setHead(t, s, "stable", commitID('4'))
		assert.Equal(t, commitID('3'), publicationOf(t, s, "stable").Commit, "from then on the gate binds")
	})
}

// TestAPublishedCommitWakesPollsOnTheOtherReplica: two registries on one
// PostgreSQL database; a commit published by one wakes the polls waiting
// on the other, a head held by one does not.
func TestAPublishedCommitWakesPollsOnTheOtherReplica(t *testing.T) {
	databaseURL := sharedPostgres(t).NewDatabase(t)
	one := openFleet(t, databaseURL, true)
	other := openFleet(t, databaseURL, false)
	// Both first heads are heard before the test watches for what follows.
	firstHeads := []<-chan struct{}{other.Hub().Watch(onStable), other.Hub().Watch(onDev)}
	setHead(t, one, "stable", commitID('a'))
	setHead(t, one, "dev", commitID('1'))
	for _, heard := range firstHeads {
		awaitWoken(t, heard, "the other replica did not hear of the first heads")
	}
	require.Equal(t, commitID('a'), assigned(t, other, onStable).Commit)

	stableWoken, devWoken := other.Hub().Watch(onStable), other.Hub().Watch(onDev)
	setHead(t, one, "stable", commitID('b'))
	setHead(t, one, "dev", commitID('2'))
	awaitWoken(t, devWoken, "the other replica did not hear of dev's new head")
	// Notifications arrive in commit order: the held head's would have come first.
	assert.False(t, closed(stableWoken), "a held head wakes no poll on the other replica")
	assert.Equal(t, commitID('a'), assigned(t, other, onStable).Commit)

	promote(t, one, commitID('b'), true, "")
	awaitWoken(t, stableWoken, "a commit published on one replica did not wake the polls on the other")
	assert.Equal(t, commitID('b'), assigned(t, other, onStable).Commit)
}

// awaitWoken waits for a hub's watch channel to close; the test fails
// with why when it does not within 10 seconds.
func awaitWoken(t *testing.T, woken <-chan struct{}, why string) {
	t.Helper()
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal(why)
	}
}

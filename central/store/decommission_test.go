package store

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// openAtVersion1 makes a SQLite database as a registry before the decommission
// migration left it: 0001 applied, one account, channel and cluster stored.
func openAtVersion1(t *testing.T, databaseURL string, c api.Cluster) {
	t.Helper()
	ctx := context.Background()
	old := &Store{log: slog.Default(), now: time.Now}
	require.NoError(t, old.connect(databaseURL))
	defer old.Close()
	ddl, err := migrations.ReadFile("migrations/0001_init.sql")
	require.NoError(t, err)
	doc := `{"id":"` + c.ID + `","alias":"kube-1","infrastructure_account":"aws:123456789012","region":"eu-central-1",` +
		`"api_server_url":"https://kube-1.example.org","environment":"test","channel":"dev","provider":"aws","criticality_level":1,` +
		`"lifecycle_status":"ready","config_items":{},"node_pools":null,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z"}`
	for _, stmt := range []string{
		`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`,
		old.dialectSQL(string(ddl)),
		`INSERT INTO schema_migrations (version, applied_at) VALUES (1, '2025-01-01T00:00:00.000000000Z')`,
		`INSERT INTO accounts (key, doc, revision) VALUES ('aws:123456789012', '{}', 1)`,
		`INSERT INTO channels (key, doc, revision) VALUES ('dev', '{}', 1)`,
	} {
		_, err := old.write.ExecContext(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	_, err = old.write.ExecContext(ctx, `INSERT INTO clusters (key, parent, doc, revision, channel, environment, lifecycle_status, alias)
		VALUES (?, 'aws:123456789012', ?, 1, 'dev', 'test', 'ready', 'kube-1')`, c.ID, doc)
	require.NoError(t, err)
}

func TestDecommissionMigrationUpgradesAnExistingDatabase(t *testing.T) {
	ctx := context.Background()
	id := "aws:123456789012:eu-central-1:kube-1"
	databaseURL := "sqlite://" + filepath.Join(t.TempDir(), "caravan.db")
	openAtVersion1(t, databaseURL, api.Cluster{ID: id})

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	s, err := Open(ctx, databaseURL, WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	defer s.Close()

	var versions []int
	rows, err := s.read.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	for rows.Next() {
		var v int
		require.NoError(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	require.NoError(t, rows.Close())
	assert.Subset(t, versions, []int{1, 2}, "the decommission migration is applied, and any later one")

	column := func() sql.NullString {
		t.Helper()
		var v sql.NullString
		require.NoError(t, s.read.QueryRowContext(ctx, `SELECT decommission_confirmed_at FROM clusters WHERE key = ?`, id).Scan(&v))
		return v
	}
	assert.False(t, column().Valid, "a cluster from before the migration is not confirmed")
	rec, err := Get(ctx, s, Clusters, id)
	require.NoError(t, err)
	assert.Nil(t, rec.Value.DecommissionConfirmedAt)

	_, err = s.ConfirmDecommission(ctx, id, now, "admin")
	var p *api.Problem
	require.True(t, errors.As(err, &p), "%v", err)
	assert.Equal(t, http.StatusConflict, p.Status)
	assert.Equal(t, api.ProblemDecommissionNotRequested, p.Type)

	requested := rec.Value
	requested.LifecycleStatus = api.LifecycleDecommissionRequested
	rec, err = Update(ctx, s, Clusters, Ref{Key: id, Parent: requested.InfrastructureAccount}, rec.Revision, rec.Value, requested, "admin")
	require.NoError(t, err)
	gen := s.Hub().Generation(id)
	confirmed, err := s.ConfirmDecommission(ctx, id, now, "admin")
	require.NoError(t, err)
	assert.NotEqual(t, gen, s.Hub().Generation(id), "the confirmation is announced to the cluster's long-polls")
	require.NotNil(t, confirmed.Value.DecommissionConfirmedAt)
	assert.Equal(t, now, *confirmed.Value.DecommissionConfirmedAt)
	assert.Equal(t, rec.Revision+1, confirmed.Revision)
	assert.Equal(t, sql.NullString{String: "2026-01-01T12:00:00.000000000Z", Valid: true}, column(), "the column is written with the document")

	again, err := s.ConfirmDecommission(ctx, id, now.Add(time.Hour), "admin")
	require.NoError(t, err)
	assert.Equal(t, confirmed.ETag, again.ETag, "confirming again writes nothing")
	assert.Equal(t, now, *again.Value.DecommissionConfirmedAt)

	back := again.Value
	back.LifecycleStatus = api.LifecycleReady
	back.CarryDecommissionConfirmation(again.Value)
	_, err = Update(ctx, s, Clusters, Ref{Key: id, Parent: back.InfrastructureAccount}, again.Revision, again.Value, back, "admin")
	require.NoError(t, err)
	assert.False(t, column().Valid, "a write that drops the confirmation clears the column")
}

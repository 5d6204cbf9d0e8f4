// Package store keeps the registry's resources in SQLite or PostgreSQL and
// tells waiting readers which clusters a write changed.
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite", pure Go
)

//go:embed migrations
var migrations embed.FS

// Errors callers map to HTTP answers.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrStale    = errors.New("changed since it was read")
)

// InUseError says a resource cannot be deleted while others refer to it.
type InUseError struct{ Reason string }

func (e *InUseError) Error() string { return e.Reason }

type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

func (d dialect) String() string {
	if d == postgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// Store is the registry's database. Reads and writes go through separate
// pools because SQLite allows one writer at a time: a single write
// connection queues writers in Go instead of failing them with SQLITE_BUSY.
type Store struct {
	read     *sql.DB
	write    *sql.DB
	dialect  dialect
	dsn      string
	hub      *Hub
	log      *slog.Logger
	now      func() time.Time
	migrated atomic.Bool
	cache    *assignmentCache
	// inputReader reads the clusters' own inputs the cache lacks, and
	// tokenReader the tokens by their secret's hash, in batches.
	inputReader *lookups[string, clusterInputs]
	tokenReader *lookups[string, api.Token]
	stats       Stats
	// statuses writes the agents' reports in batches.
	statuses *batcher[statusWrite]
	// origin names this store in its notifications, so that its listener
	// skips the writes it announced itself.
	origin   string
	listener *listener
}

// Option changes how a Store is opened.
type Option func(*Store)

// WithClock makes the store read time from now; tests pass a fake clock.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// WithLogger sets the store's logger.
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.log = l } }

// Open connects to sqlite://PATH (or a bare path) or postgres://..., applies
// the embedded migrations, and for PostgreSQL starts listening for writes of
// other replicas.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*Store, error) {
	s := &Store{hub: NewHub(), log: slog.Default(), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if err := s.connect(databaseURL); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("migrating %s database: %w", s.dialect, err)
	}
	s.cache = newAssignmentCache()
	s.inputReader = newLookups(s.readClusterInputs)
	s.tokenReader = newLookups(s.readTokens)
	s.statuses = newBatcher(s.writeStatuses)
	if s.dialect == postgresDialect {
		origin, err := newID()
		if err != nil {
			s.Close()
			return nil, err
		}
		s.origin = origin
		l, err := startListener(ctx, s.dsn, s.origin, s.hub, s.log)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.listener = l
	}
	return s, nil
}

func (s *Store) connect(databaseURL string) error {
	switch {
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		db, err := sql.Open("pgx", databaseURL)
		if err != nil {
			return fmt.Errorf("opening postgres: %w", err)
		}
		db.SetMaxOpenConns(16)
		db.SetMaxIdleConns(16)
		s.read, s.write, s.dialect, s.dsn = db, db, postgresDialect, databaseURL
		return nil
	default:
		file := strings.TrimPrefix(databaseURL, "sqlite://")
		if file == "" {
			return errors.New("database URL names no SQLite file")
		}
		q := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "synchronous(NORMAL)", "foreign_keys(1)"} {
			q.Add("_pragma", p)
		}
		read, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
		if err != nil {
			return fmt.Errorf("opening sqlite %s: %w", file, err)
		}
		q.Set("_txlock", "immediate")
		write, err := sql.Open("sqlite", "file:"+file+"?"+q.Encode())
		if err != nil {
			read.Close()
			return fmt.Errorf("opening sqlite %s: %w", file, err)
		}
		read.SetMaxOpenConns(8)
		read.SetMaxIdleConns(8)
		write.SetMaxOpenConns(1)
		s.read, s.write, s.dialect = read, write, sqliteDialect
		return nil
	}
}

// Close stops the listener and closes the database pools.
func (s *Store) Close() error {
	if s.listener != nil {
		s.listener.stop()
	}
	errs := []error{s.read.Close()}
	if s.write != s.read {
		errs = append(errs, s.write.Close())
	}
	return errors.Join(errs...)
}

// Hub is where writes are announced, for long-polls and caches.
func (s *Store) Hub() *Hub { return s.hub }

// Dialect names the database in use: sqlite or postgres.
func (s *Store) Dialect() string { return s.dialect.String() }

// Ready reports whether the database answers and the migrations are done.
func (s *Store) Ready(ctx context.Context) error {
	if !s.migrated.Load() {
		return errors.New("migrations not applied")
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	if s.listener != nil && !s.listener.connected.Load() {
		return errors.New("not listening for the other replicas' writes; long-polls would miss them")
	}
	return nil
}

// rebind turns the ? placeholders used throughout into PostgreSQL's $n.
func (s *Store) rebind(query string) string {
	if s.dialect != postgresDialect {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.dialect == postgresDialect {
		// Replicas starting together must not apply the same migration twice.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(7364518)`); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)`); err != nil {
		return err
	}
	dir := "migrations"
	entries, err := fs.ReadDir(migrations, dir)
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		if err := s.applyMigration(ctx, tx, path.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("%s: %w", e.Name(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.migrated.Store(true)
	return nil
}

func (s *Store) applyMigration(ctx context.Context, tx *sql.Tx, file string) error {
	version, err := strconv.Atoi(strings.SplitN(path.Base(file), "_", 2)[0])
	if err != nil {
		return fmt.Errorf("migration file name must start with a number: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`), version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	body, err := migrations.ReadFile(file)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.dialectSQL(string(body))); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, formatTime(s.now()))
	return err
}

// dialectSQL fills in the few places where the databases' DDL differs.
func (s *Store) dialectSQL(ddl string) string {
	serial := "INTEGER PRIMARY KEY AUTOINCREMENT"
	if s.dialect == postgresDialect {
		serial = "BIGSERIAL PRIMARY KEY"
	}
	return strings.ReplaceAll(ddl, "{{serial_primary_key}}", serial)
}

// formatTime writes a fixed-width UTC time, so that text columns sort by time.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

// SeedChannels stores channels when none exist yet, so a new registry
// starts with the default promotion path.
func (s *Store) SeedChannels(ctx context.Context, channels []api.Channel, actor string) error {
	var n int
	if err := s.read.QueryRowContext(ctx, `SELECT COUNT(*) FROM channels`).Scan(&n); err != nil {
		return fmt.Errorf("counting channels: %w", err)
	}
	if n > 0 {
		return nil
	}
	for _, c := range channels {
		if _, err := Create(ctx, s, Channels, Ref{Key: c.Name}, c, actor); err != nil && !errors.Is(err, ErrExists) {
			return err
		}
	}
	return nil
}

// TokenGeneration changes whenever a token is created or revoked through this store.
func (s *Store) TokenGeneration() uint64 { return s.hub.TokenGeneration() }

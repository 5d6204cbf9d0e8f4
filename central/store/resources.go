package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Record is a stored resource with its revision, which guards updates, and
// its strong ETag, a hash of the stored document.
type Record[T any] struct {
	Value    T
	Revision int64
	ETag     string
}

// Ref addresses a stored resource: its key and the key of its owner (the
// cluster of a node pool or block, the account of a cluster).
type Ref struct {
	Key    string
	Parent string
}

// Kind describes how one resource type is stored.
type Kind[T any] struct {
	table    string
	resource string
	// columns are copied out of the document so that lists can filter on them.
	columns []string
	values  func(T) []any
	// stored drops what is served with the resource but kept elsewhere.
	stored func(T) T
	// affected lists the clusters whose assignment a write of ref changes.
	affected func(ctx context.Context, s *Store, q querier, ref Ref) ([]string, error)
	// beforeDelete refuses a delete or removes what depends on the resource.
	beforeDelete func(ctx context.Context, s *Store, q querier, ref Ref) error
	// references lists the resources a write of v needs to exist.
	references func(v T, ref Ref) []reference
	// hasAssignment marks clusters, whose cached assignment a delete drops.
	hasAssignment bool
	// fleetInput marks what clusters share (accounts, channels, freezes):
	// a write changes the fleet's inputs and wakes the clusters affected
	// lists, whose own inputs stay as they were.
	fleetInput bool
	// afterWrite runs inside the transaction of a create, update or
	// delete, once the resource is written: for what depends on all
	// resources of the kind at once.
	afterWrite func(ctx context.Context, s *Store, tx *sql.Tx, n *notes) error
}

// reference is a resource another one refers to. A write checks it inside
// its transaction and, on PostgreSQL, holds a share lock on it until commit,
// so that a concurrent delete or update of the referenced resource is
// ordered before or after the write, never interleaved with it.
type reference struct {
	table, key string
	// field names the request field that refers, for a 422; empty means the
	// reference comes from the path, and its absence is a 404.
	field    string
	resource string
}

// Filterable reports whether lists of this kind can be filtered by column.
func (k Kind[T]) Filterable(column string) bool { return slices.Contains(k.columns, column) }

// Resource names the kind in the audit log.
func (k Kind[T]) Resource() string { return k.resource }

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Filter selects a page of a list: column equality, a page size and the
// cursor of the previous page.
type Filter struct {
	Equal    map[string]string
	Parent   string
	Limit    int
	Continue string
}

// Get reads one resource.
func Get[T any](ctx context.Context, s *Store, k Kind[T], key string) (Record[T], error) {
	return get(ctx, s, s.read, k, key)
}

func get[T any](ctx context.Context, s *Store, q querier, k Kind[T], key string) (Record[T], error) {
	var doc string
	var rev int64
	err := q.QueryRowContext(ctx, s.rebind(`SELECT doc, revision FROM `+k.table+` WHERE key = ?`), key).Scan(&doc, &rev)
	if errors.Is(err, sql.ErrNoRows) {
		return Record[T]{}, fmt.Errorf("%s %q: %w", k.resource, key, ErrNotFound)
	}
	if err != nil {
		return Record[T]{}, fmt.Errorf("reading %s %q: %w", k.resource, key, err)
	}
	return decodeRecord[T](doc, rev)
}

func decodeRecord[T any](doc string, rev int64) (Record[T], error) {
	var v T
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		return Record[T]{}, fmt.Errorf("decoding stored document: %w", err)
	}
	return Record[T]{Value: v, Revision: rev, ETag: etagOf([]byte(doc))}, nil
}

// ETagOf returns the strong ETag of a body.
func ETagOf(body []byte) string { return etagOf(body) }

func etagOf(body []byte) string {
	sum := sha256.Sum256(body)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// List reads one page of resources ordered by key.
func List[T any](ctx context.Context, s *Store, k Kind[T], f Filter) ([]Record[T], string, error) {
	var where []string
	var args []any
	if f.Parent != "" {
		where, args = append(where, "parent = ?"), append(args, f.Parent)
	}
	cols := make([]string, 0, len(f.Equal))
	for c := range f.Equal {
		cols = append(cols, c)
	}
	slices.Sort(cols)
	for _, c := range cols {
		if !k.Filterable(c) {
			return nil, "", fmt.Errorf("%s cannot be filtered by %q", k.resource, c)
		}
		where, args = append(where, c+" = ?"), append(args, f.Equal[c])
	}
	if f.Continue != "" {
		after, err := base64.RawURLEncoding.DecodeString(f.Continue)
		if err != nil || !ValidText(string(after)) {
			return nil, "", &api.Problem{Type: api.ProblemTypeBase + "invalid-query-parameter", Status: 400, Title: "Invalid query parameter continue", Field: "continue", Detail: "continue is not a cursor this server issued"}
		}
		where, args = append(where, "key > ?"), append(args, string(after))
	}
	query := `SELECT key, doc, revision FROM ` + k.table
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY key LIMIT ?`
	args = append(args, f.Limit+1)
	rows, err := s.read.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", k.resource, err)
	}
	defer rows.Close()
	var out []Record[T]
	var keys []string
	for rows.Next() {
		var key, doc string
		var rev int64
		if err := rows.Scan(&key, &doc, &rev); err != nil {
			return nil, "", fmt.Errorf("listing %s: %w", k.resource, err)
		}
		r, err := decodeRecord[T](doc, rev)
		if err != nil {
			return nil, "", err
		}
		out, keys = append(out, r), append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", k.resource, err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[f.Limit-1]))
	}
	return out, next, nil
}

// ValidText reports whether s can be kept in a text column of both
// databases: valid UTF-8 without NUL characters, which PostgreSQL refuses.
func ValidText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsRune(s, 0)
}

// Create stores a new resource and audits it.
func Create[T any](ctx context.Context, s *Store, k Kind[T], ref Ref, v T, actor string) (Record[T], error) {
	var rec Record[T]
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		var err error
		rec, err = insert(ctx, s, tx, n, k, ref, v, actor)
		return err
	})
	return rec, err
}

func insert[T any](ctx context.Context, s *Store, tx *sql.Tx, n *notes, k Kind[T], ref Ref, v T, actor string) (Record[T], error) {
	doc, err := k.encode(v)
	if err != nil {
		return Record[T]{}, err
	}
	if err := s.checkReferences(ctx, tx, k, ref, v); err != nil {
		return Record[T]{}, err
	}
	cols := append([]string{"key", "parent", "doc", "revision"}, k.columns...)
	args := append([]any{ref.Key, ref.Parent, string(doc), 1}, k.values(v)...)
	query := `INSERT INTO ` + k.table + ` (` + strings.Join(cols, ", ") + `) VALUES ` + inList(len(cols)) + ` ON CONFLICT DO NOTHING`
	res, err := tx.ExecContext(ctx, s.rebind(query), args...)
	if err != nil {
		return Record[T]{}, fmt.Errorf("creating %s %q: %w", k.resource, ref.Key, constraintError(err))
	}
	if count, _ := res.RowsAffected(); count == 0 {
		return Record[T]{}, fmt.Errorf("%s %q: %w", k.resource, ref.Key, ErrExists)
	}
	if err := s.audit(ctx, tx, actor, "create", k.resource, ref.Key, nil, json.RawMessage(doc)); err != nil {
		return Record[T]{}, err
	}
	if err := s.noteAffected(ctx, tx, n, k, ref); err != nil {
		return Record[T]{}, err
	}
	if err := k.written(ctx, s, tx, n); err != nil {
		return Record[T]{}, err
	}
	return Record[T]{Value: v, Revision: 1, ETag: etagOf(doc)}, nil
}

// checkReferences makes sure what v refers to exists, and locks it on PostgreSQL.
func (s *Store) checkReferences(ctx context.Context, tx *sql.Tx, k interface{ refsOf(any, Ref) []reference }, ref Ref, v any) error {
	verr := &api.ValidationError{}
	for _, r := range k.refsOf(v, ref) {
		query := `SELECT 1 FROM ` + r.table + ` WHERE key = ?`
		if s.dialect == postgresDialect {
			query += ` FOR SHARE`
		}
		var one int
		err := tx.QueryRowContext(ctx, s.rebind(query), r.key).Scan(&one)
		switch {
		case errors.Is(err, sql.ErrNoRows) && r.field == "":
			return fmt.Errorf("%s %q: %w", r.resource, r.key, ErrNotFound)
		case errors.Is(err, sql.ErrNoRows):
			verr.Errors = append(verr.Errors, api.FieldError{Field: r.field, Detail: fmt.Sprintf("no %s %q exists", r.resource, r.key)})
		case err != nil:
			return fmt.Errorf("reading %s %q: %w", r.resource, r.key, err)
		}
	}
	if len(verr.Errors) > 0 {
		return verr
	}
	return nil
}

func (k Kind[T]) refsOf(v any, ref Ref) []reference {
	if k.references == nil {
		return nil
	}
	return k.references(v.(T), ref)
}

// Update replaces a resource if it is still at revision, and audits it.
func Update[T any](ctx context.Context, s *Store, k Kind[T], ref Ref, revision int64, before, v T, actor string) (Record[T], error) {
	doc, err := k.encode(v)
	if err != nil {
		return Record[T]{}, err
	}
	err = s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		if err := s.checkReferences(ctx, tx, k, ref, v); err != nil {
			return err
		}
		sets := []string{"doc = ?", "revision = revision + 1"}
		args := []any{string(doc)}
		for i, c := range k.columns {
			sets = append(sets, c+" = ?")
			args = append(args, k.values(v)[i])
		}
		args = append(args, ref.Key, revision)
		query := `UPDATE ` + k.table + ` SET ` + strings.Join(sets, ", ") + ` WHERE key = ? AND revision = ?`
		res, err := tx.ExecContext(ctx, s.rebind(query), args...)
		if err != nil {
			return fmt.Errorf("updating %s %q: %w", k.resource, ref.Key, constraintError(err))
		}
		if count, _ := res.RowsAffected(); count == 0 {
			return s.missingOrStale(ctx, tx, k.table, k.resource, ref.Key)
		}
		if err := s.audit(ctx, tx, actor, "update", k.resource, ref.Key, before, json.RawMessage(doc)); err != nil {
			return err
		}
		if err := s.noteAffected(ctx, tx, n, k, ref); err != nil {
			return err
		}
		return k.written(ctx, s, tx, n)
	})
	if err != nil {
		return Record[T]{}, err
	}
	return Record[T]{Value: v, Revision: revision + 1, ETag: etagOf(doc)}, nil
}

// Delete removes a resource if it is still at revision, and audits it.
func Delete[T any](ctx context.Context, s *Store, k Kind[T], ref Ref, revision int64, before T, actor string) error {
	return s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		// Affected clusters are read before the delete, while references still resolve.
		if err := s.noteAffected(ctx, tx, n, k, ref); err != nil {
			return err
		}
		if k.beforeDelete != nil {
			if err := k.beforeDelete(ctx, s, tx, ref); err != nil {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM `+k.table+` WHERE key = ? AND revision = ?`), ref.Key, revision)
		if err != nil {
			return fmt.Errorf("deleting %s %q: %w", k.resource, ref.Key, constraintError(err))
		}
		if count, _ := res.RowsAffected(); count == 0 {
			return s.missingOrStale(ctx, tx, k.table, k.resource, ref.Key)
		}
		if k.hasAssignment {
			n.deleted = append(n.deleted, ref.Key)
		}
		if err := s.audit(ctx, tx, actor, "delete", k.resource, ref.Key, before, nil); err != nil {
			return err
		}
		return k.written(ctx, s, tx, n)
	})
}

func (k Kind[T]) written(ctx context.Context, s *Store, tx *sql.Tx, n *notes) error {
	if k.afterWrite == nil {
		return nil
	}
	return k.afterWrite(ctx, s, tx, n)
}

func (s *Store) missingOrStale(ctx context.Context, q querier, table, resource, key string) error {
	var n int
	if err := q.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM `+table+` WHERE key = ?`), key).Scan(&n); err != nil {
		return fmt.Errorf("reading %s %q: %w", resource, key, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %q: %w", resource, key, ErrNotFound)
	}
	return fmt.Errorf("%s %q: %w", resource, key, ErrStale)
}

func (s *Store) noteAffected(ctx context.Context, q querier, n *notes, k interface {
	affectedClusters(context.Context, *Store, querier, Ref) ([]string, error)
	isFleetInput() bool
}, ref Ref) error {
	ids, err := k.affectedClusters(ctx, s, q, ref)
	if err != nil {
		return fmt.Errorf("finding clusters changed by %q: %w", ref.Key, err)
	}
	if k.isFleetInput() {
		n.fleetChanged(ids...)
		return nil
	}
	n.clusters = append(n.clusters, ids...)
	return nil
}

func (k Kind[T]) isFleetInput() bool { return k.fleetInput }

func (k Kind[T]) affectedClusters(ctx context.Context, s *Store, q querier, ref Ref) ([]string, error) {
	if k.affected == nil {
		return nil, nil
	}
	return k.affected(ctx, s, q, ref)
}

func (k Kind[T]) encode(v T) ([]byte, error) {
	if k.stored != nil {
		v = k.stored(v)
	}
	doc, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", k.resource, err)
	}
	return doc, nil
}

// constraintError turns a foreign key violation, a write that raced with a
// delete or create of what it refers to, into an InUseError (409).
func constraintError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23503" || strings.Contains(err.Error(), "FOREIGN KEY constraint failed") {
		return &InUseError{Reason: "a resource it refers to, or one that refers to it, changed at the same time; read it again and retry"}
	}
	return err
}

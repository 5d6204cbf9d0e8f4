package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// notes collects what a transaction changed, announced once it commits.
type notes struct {
	clusters []string
	deleted  []string
	tokens   bool
}

// notifyChannel is the PostgreSQL channel replicas announce writes on.
const notifyChannel = "caravan_changes"

// maxNotifyPayload stays under PostgreSQL's 8,000 byte NOTIFY limit.
const maxNotifyPayload = 7000

// inTx runs fn in a write transaction. With PostgreSQL the change is also
// announced through NOTIFY inside the transaction, so the other replicas hear
// of it exactly when it commits; the local hub hears of it right after.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx, n *notes) error) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("starting transaction: %w", err)
	}
	defer tx.Rollback()
	n := &notes{}
	if err := fn(tx, n); err != nil {
		return err
	}
	slices.Sort(n.clusters)
	n.clusters = slices.Compact(n.clusters)
	if s.dialect == postgresDialect {
		if err := notifyReplicas(ctx, tx, n); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	s.cache.forget(n.deleted)
	if len(n.clusters) > 0 {
		s.hub.Changed(n.clusters...)
	}
	if n.tokens {
		s.hub.TokensChanged()
	}
	return nil
}

// notifyReplicas sends "c:<id>,<id>" for clusters, "t" for tokens, or "*"
// when the list does not fit into one notification.
func notifyReplicas(ctx context.Context, tx *sql.Tx, n *notes) error {
	var payloads []string
	if len(n.clusters) > 0 {
		p := "c:" + strings.Join(n.clusters, ",")
		if len(p) > maxNotifyPayload {
			p = "*"
		}
		payloads = append(payloads, p)
	}
	if n.tokens {
		payloads = append(payloads, "t")
	}
	for _, p := range payloads {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, p); err != nil {
			return fmt.Errorf("notifying replicas: %w", err)
		}
	}
	return nil
}

func (s *Store) audit(ctx context.Context, q querier, actor, action, resource, id string, before, after any) error {
	b, err := marshalNullable(before)
	if err != nil {
		return err
	}
	a, err := marshalNullable(after)
	if err != nil {
		return err
	}
	_, err = q.ExecContext(ctx, s.rebind(`INSERT INTO audit (at, actor, action, resource_type, resource_id, before_doc, after_doc) VALUES (?, ?, ?, ?, ?, ?, ?)`),
		formatTime(s.now()), actor, action, resource, id, b, a)
	if err != nil {
		return fmt.Errorf("writing audit entry: %w", err)
	}
	return nil
}

func marshalNullable(v any) (sql.NullString, error) {
	if v == nil {
		return sql.NullString{}, nil
	}
	if raw, ok := v.(json.RawMessage); ok {
		return sql.NullString{String: string(raw), Valid: true}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, fmt.Errorf("encoding audit document: %w", err)
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

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
	// clusters are those whose own inputs changed: the cluster, its node
	// pools, blocks or plans.
	clusters []string
	// fleet: inputs clusters share changed (accounts, channels, what the
	// channels publish, freezes); woken are the clusters whose assignment
	// that changes.
	fleet   bool
	woken   []string
	deleted []string
	tokens  bool
}

// fleetChanged notes a change of inputs clusters share, which changes the
// assignments of clusterIDs.
func (n *notes) fleetChanged(clusterIDs ...string) {
	n.fleet = true
	n.woken = append(n.woken, clusterIDs...)
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
	n.clusters = sortedSet(n.clusters)
	n.woken = sortedSet(n.woken)
	if s.dialect == postgresDialect {
		if err := notifyReplicas(ctx, tx, s.origin, n); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	s.cache.forget(n.deleted)
	if n.fleet {
		s.hub.FleetChanged(n.woken...)
	}
	if len(n.clusters) > 0 {
		s.hub.Changed(n.clusters...)
	}
	if n.tokens {
		s.hub.TokensChanged()
	}
	return nil
}

func sortedSet(ids []string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// originSeparator ends the origin a notification begins with.
const originSeparator = "|"

// notifyReplicas sends "f:<id>,<id>" for a change of shared inputs and the
// clusters it wakes (the clusters beyond the first notification's in
// "w:<id>,<id>"), "c:<id>,<id>" for clusters whose own inputs changed,
// and "t" for tokens, each after "<origin>|", this store's. A list too
// long for one notification goes in several, so that the other replicas
// wake the same clusters as this one, never all of them.
func notifyReplicas(ctx context.Context, tx *sql.Tx, origin string, n *notes) error {
	var payloads []string
	if n.fleet {
		fleet := idPayloads("w:", n.woken, true)
		// The first says the shared inputs changed; the others only wake.
		fleet[0] = "f:" + strings.TrimPrefix(fleet[0], "w:")
		payloads = append(payloads, fleet...)
	}
	payloads = append(payloads, idPayloads("c:", n.clusters, false)...)
	if n.tokens {
		payloads = append(payloads, "t")
	}
	for _, p := range payloads {
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, notifyChannel, origin+originSeparator+p); err != nil {
			return fmt.Errorf("notifying replicas: %w", err)
		}
	}
	return nil
}

// idPayloads splits ids over notifications of at most maxNotifyPayload
// bytes, each prefix and a comma-separated part of the list; with always,
// an empty list still gives one.
func idPayloads(prefix string, ids []string, always bool) []string {
	var out []string
	var b strings.Builder
	flush := func() {
		out = append(out, b.String())
		b.Reset()
	}
	for _, id := range ids {
		if b.Len() > 0 && b.Len()+1+len(id) > maxNotifyPayload {
			flush()
		}
		if b.Len() == 0 {
			b.WriteString(prefix)
		} else {
			b.WriteByte(',')
		}
		b.WriteString(id)
	}
	if b.Len() > 0 || (always && len(out) == 0) {
		if b.Len() == 0 {
			b.WriteString(prefix)
		}
		flush()
	}
	return out
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

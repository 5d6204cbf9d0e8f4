package store

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Freezes are keyed by their id, which begins with the creation time. A
// write of a freeze that has not ended changes the assignment of every
// cluster it covers.
var Freezes = Kind[api.Freeze]{
	table: "freezes", resource: "freeze", fleetInput: true,
	columns: []string{"channel", "environment", "since_at", "until_at"},
	values: func(f api.Freeze) []any {
		return []any{f.Channel, f.Environment, formatTime(f.Since), formatTime(f.Until)}
	},
	affected: freezeClusters,
	references: func(f api.Freeze, _ Ref) []reference {
		if f.Channel == "" {
			return nil
		}
		return []reference{{table: "channels", key: f.Channel, field: "channel", resource: "channel"}}
	},
}

// NewFreezeID returns a new freeze id: 16 hex digits, the first 11 the
// creation time in milliseconds, so that ids sort by age.
func NewFreezeID(now time.Time) (string, error) { return newTimeID(now) }

// freezeClusters lists the clusters a freeze covers, read inside the
// write's transaction: after an insert, before a delete. A freeze that has
// ended is in no assignment, so its writes change none.
func freezeClusters(ctx context.Context, s *Store, q querier, ref Ref) ([]string, error) {
	// Read without Freezes, which refers to this function.
	var doc string
	if err := q.QueryRowContext(ctx, s.rebind(`SELECT doc FROM freezes WHERE key = ?`), ref.Key).Scan(&doc); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		return nil, err
	}
	var f api.Freeze
	if err := json.Unmarshal([]byte(doc), &f); err != nil {
		return nil, fmt.Errorf("decoding freeze %q: %w", ref.Key, err)
	}
	if !s.now().Before(f.Until) {
		return nil, nil
	}
	var where []string
	var args []any
	if !f.All {
		if f.Channel != "" {
			where, args = append(where, "channel = ?"), append(args, f.Channel)
		}
		if f.Environment != "" {
			where, args = append(where, "environment = ?"), append(args, f.Environment)
		}
		if len(where) == 0 {
			return nil, nil
		}
	}
	query := `SELECT key FROM clusters`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	return clusterIDs(ctx, s, q, query, args...)
}

// FreezeFilter selects a page of freezes, newest first: with Active only
// those in force now.
type FreezeFilter struct {
	Active   bool
	Limit    int
	Continue string
}

// ListFreezes reads one page of freezes, newest first.
func (s *Store) ListFreezes(ctx context.Context, f FreezeFilter) ([]api.Freeze, string, error) {
	var where []string
	var args []any
	if f.Active {
		now := formatTime(s.now())
		where, args = append(where, "since_at <= ?", "until_at > ?"), append(args, now, now)
	}
	if f.Continue != "" {
		before, err := base64.RawURLEncoding.DecodeString(f.Continue)
		if err != nil || !ValidText(string(before)) {
			return nil, "", &api.Problem{Type: api.ProblemTypeBase + "invalid-query-parameter", Status: 400, Title: "Invalid query parameter continue", Field: "continue", Detail: "continue is not a cursor this server issued"}
		}
		where, args = append(where, "key < ?"), append(args, string(before))
	}
	query := `SELECT key, doc FROM freezes`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	rows, err := s.read.QueryContext(ctx, s.rebind(query+` ORDER BY key DESC LIMIT ?`), append(args, f.Limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("listing freezes: %w", err)
	}
	defer rows.Close()
	freezes, keys := []api.Freeze{}, []string{}
	for rows.Next() {
		var key, doc string
		if err := rows.Scan(&key, &doc); err != nil {
			return nil, "", fmt.Errorf("listing freezes: %w", err)
		}
		var fr api.Freeze
		if err := json.Unmarshal([]byte(doc), &fr); err != nil {
			return nil, "", fmt.Errorf("decoding freeze %q: %w", key, err)
		}
		freezes, keys = append(freezes, fr), append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing freezes: %w", err)
	}
	next := ""
	if len(freezes) > f.Limit {
		freezes = freezes[:f.Limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[f.Limit-1]))
	}
	return freezes, next, nil
}

// CurrentFreezes returns every freeze that has not ended at now, in force
// or still to come, ordered by start: what assignments, schedules and
// promotion gates are made of.
func (s *Store) CurrentFreezes(ctx context.Context, now time.Time) ([]api.Freeze, error) {
	return currentFreezes(ctx, s, s.read, now)
}

func currentFreezes(ctx context.Context, s *Store, q querier, now time.Time) ([]api.Freeze, error) {
	rows, err := q.QueryContext(ctx, s.rebind(`SELECT doc FROM freezes WHERE until_at > ? ORDER BY since_at, key`), formatTime(now))
	if err != nil {
		return nil, fmt.Errorf("reading the freezes: %w", err)
	}
	defer rows.Close()
	var out []api.Freeze
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, fmt.Errorf("reading the freezes: %w", err)
		}
		var f api.Freeze
		if err := json.Unmarshal([]byte(doc), &f); err != nil {
			return nil, fmt.Errorf("decoding a freeze: %w", err)
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// refuseWhileFrozen refuses to delete a channel that a freeze which has not
// ended names: the freeze would cover a channel made again under the name.
func refuseWhileFrozen(ctx context.Context, s *Store, q querier, channel string) error {
	var n int
	err := q.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM freezes WHERE channel = ? AND until_at > ?`), channel, formatTime(s.now())).Scan(&n)
	if err != nil {
		return err
	}
	if n > 0 {
		return &InUseError{Reason: fmt.Sprintf("freezes of the channel are in force or to come (%d); delete them first", n)}
	}
	return nil
}

// schedules fills in each cluster's schedule at the store's now: its
// config items over its account's, the freezes that cover it. One read of
// the accounts and one of the freezes serve the whole page.
func (s *Store) schedules(ctx context.Context, clusters []api.Cluster) error {
	now := s.now()
	freezes, err := s.CurrentFreezes(ctx, now)
	if err != nil {
		return err
	}
	var ids []any
	seen := map[string]bool{}
	for _, c := range clusters {
		if !seen[c.InfrastructureAccount] {
			seen[c.InfrastructureAccount] = true
			ids = append(ids, c.InfrastructureAccount)
		}
	}
	accounts := map[string]map[string]string{}
	if len(ids) == 0 {
		return nil
	}
	err = s.scanDocs(ctx, `SELECT key, doc FROM accounts WHERE key IN `+inList(len(ids)), ids, func(id string, doc []byte) error {
		var a api.InfrastructureAccount
		if err := json.Unmarshal(doc, &a); err != nil {
			return err
		}
		accounts[id] = a.ConfigItems
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the clusters' accounts: %w", err)
	}
	for i := range clusters {
		c := &clusters[i]
		items := api.MergeConfigItems(accounts[c.InfrastructureAccount], c.ConfigItems)
		schedule := api.ScheduleOf(items, c.Channel, c.Environment, freezes, now)
		c.Schedule = &schedule
	}
	return nil
}

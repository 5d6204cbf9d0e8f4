package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// publicationLock is the PostgreSQL advisory lock that orders the writes of
// channel publications across replicas: each reads a publication, decides
// and writes it back, and two at once would lose one of them (a promotion
// recorded on one replica while another reads a new head). SQLite has one
// writer at a time anyway.
const publicationLock = 7364519

func (s *Store) lockPublications(ctx context.Context, tx *sql.Tx) error {
	if s.dialect != postgresDialect {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, publicationLock); err != nil {
		return fmt.Errorf("locking the channel publications: %w", err)
	}
	return nil
}

// ReconcilePublications decides again what every channel publishes, as a
// head read or a channel write does; caravan-central runs it on start, so
// that a registry upgraded from before publications hands out at once the
// heads it handed out before.
func (s *Store) ReconcilePublications(ctx context.Context) error {
	return s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		return s.republish(ctx, tx, n, nil, nil)
	})
}

// republish decides again what the channels that only picks (every one
// when nil) publish, after amend (when given) changed what was stored of
// them, writes what changed, and notes the clusters of the channels whose
// published commit or gate changed: their assignments changed. Over every
// channel it also drops the publications of deleted ones.
func (s *Store) republish(ctx context.Context, tx *sql.Tx, n *notes, only func(api.Channel) bool, amend func(*publication)) error {
	if err := s.lockPublications(ctx, tx); err != nil {
		return err
	}
	// Read inside the transaction and under the lock: what an earlier
	// writer committed is seen.
	chans, err := s.channelsIn(ctx, tx)
	if err != nil {
		return err
	}
	stored, err := s.publicationsIn(ctx, tx)
	if err != nil {
		return err
	}
	now := formatTime(s.now())
	for i, ch := range chans {
		if only != nil && !only(ch) {
			continue
		}
		in := publishInput{Channel: ch, Now: now}
		if i > 0 {
			in.Previous = chans[i-1].Name
		}
		if in.Head, err = s.headIn(ctx, tx, ch.RepositoryURL, ch.Branch); err != nil {
			return err
		}
		cur, found := stored[ch.Name]
		if amend != nil {
			amend(&cur)
		}
		if in.LastPromotion, err = cur.lastPromotion(); err != nil {
			return fmt.Errorf("channel %q: %w", ch.Name, err)
		}
		next := decidePublication(in, cur)
		if found && next == stored[ch.Name] {
			continue
		}
		if err := s.writePublication(ctx, tx, ch.Name, next); err != nil {
			return err
		}
		if !found || next.Commit != stored[ch.Name].Commit || next.Gate != stored[ch.Name].Gate {
			ids, err := clusterIDsWhere(ctx, s, tx, "channel", ch.Name)
			if err != nil {
				return fmt.Errorf("reading the clusters of channel %q: %w", ch.Name, err)
			}
			n.fleetChanged(ids...)
		}
	}
	if only != nil {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM channel_publications WHERE channel NOT IN (SELECT key FROM channels)`); err != nil {
		return fmt.Errorf("dropping the publications of deleted channels: %w", err)
	}
	return nil
}

func (p publication) lastPromotion() (*api.Promotion, error) {
	if p.Promotion == "" {
		return nil, nil
	}
	var out api.Promotion
	if err := json.Unmarshal([]byte(p.Promotion), &out); err != nil {
		return nil, fmt.Errorf("decoding the last promotion: %w", err)
	}
	return &out, nil
}

// channelsIn reads every channel in promotion order, as AllChannels does,
// through q.
func (s *Store) channelsIn(ctx context.Context, q querier) ([]api.Channel, error) {
	var out []api.Channel
	err := s.scanDocsWith(ctx, q, `SELECT key, doc FROM channels ORDER BY position, key`, nil, func(key string, doc []byte) error {
		var c api.Channel
		if err := json.Unmarshal(doc, &c); err != nil {
			return fmt.Errorf("decoding channel %q: %w", key, err)
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the channels: %w", err)
	}
	return out, nil
}

const publicationColumns = `channel, gate, commit_id, published_at, held_commit, held_reason, held_since, promoted_commit, promotion`

func (s *Store) publicationsIn(ctx context.Context, q querier) (map[string]publication, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+publicationColumns+` FROM channel_publications`)
	if err != nil {
		return nil, fmt.Errorf("reading the channel publications: %w", err)
	}
	defer rows.Close()
	out := map[string]publication{}
	for rows.Next() {
		var name string
		var p publication
		var promotion sql.NullString
		if err := rows.Scan(&name, &p.Gate, &p.Commit, &p.PublishedAt, &p.HeldCommit, &p.HeldReason, &p.HeldSince, &p.Promoted, &promotion); err != nil {
			return nil, fmt.Errorf("reading the channel publications: %w", err)
		}
		p.Promotion = promotion.String
		out[name] = p
	}
	return out, rows.Err()
}

func (s *Store) writePublication(ctx context.Context, tx *sql.Tx, channel string, p publication) error {
	promotion := sql.NullString{String: p.Promotion, Valid: p.Promotion != ""}
	_, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO channel_publications (`+publicationColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (channel) DO UPDATE SET gate = excluded.gate, commit_id = excluded.commit_id, published_at = excluded.published_at,
		held_commit = excluded.held_commit, held_reason = excluded.held_reason, held_since = excluded.held_since,
		promoted_commit = excluded.promoted_commit, promotion = excluded.promotion`),
		channel, p.Gate, p.Commit, p.PublishedAt, p.HeldCommit, p.HeldReason, p.HeldSince, p.Promoted, promotion)
	if err != nil {
		return fmt.Errorf("recording what channel %q publishes: %w", channel, err)
	}
	return nil
}

// Publications returns what each channel publishes to its agents, by
// channel name; a channel not decided on yet is missing.
func (s *Store) Publications(ctx context.Context) (map[string]api.ChannelPublication, error) {
	stored, err := s.publicationsIn(ctx, s.read)
	if err != nil {
		return nil, err
	}
	out := make(map[string]api.ChannelPublication, len(stored))
	for name, p := range stored {
		out[name] = p.api()
	}
	return out, nil
}

func (p publication) api() api.ChannelPublication {
	out := api.ChannelPublication{Gate: p.Gate, Commit: p.Commit, PublishedAt: parseStoredTime(p.PublishedAt), Promoted: p.Promoted}
	if p.HeldCommit != "" {
		out.Held = &api.HeldHead{Commit: p.HeldCommit, Reason: p.HeldReason}
		if since := parseStoredTime(p.HeldSince); since != nil {
			out.Held.Since = *since
		}
	}
	return out
}

// parseStoredTime reads a time formatTime wrote; nil for none.
func parseStoredTime(s string) *time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return &t
}

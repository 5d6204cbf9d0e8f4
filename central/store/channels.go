package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// historyBatch bounds the cluster ids of one status history query.
const historyBatch = 500

// ClustersByChannel returns the clusters of one channel, or of every
// channel when channel is empty, keyed by channel, each with its last
// status (nil when it never reported) but without its node pools.
func (s *Store) ClustersByChannel(ctx context.Context, channel string) (map[string][]api.Cluster, error) {
	query := `SELECT c.channel, c.doc, s.doc FROM clusters c LEFT JOIN cluster_status s ON s.cluster_id = c.key`
	var args []any
	if channel != "" {
		query, args = query+` WHERE c.channel = ?`, append(args, channel)
	}
	rows, err := s.read.QueryContext(ctx, s.rebind(query+` ORDER BY c.key`), args...)
	if err != nil {
		return nil, fmt.Errorf("reading the clusters of the channels: %w", err)
	}
	defer rows.Close()
	out := map[string][]api.Cluster{}
	for rows.Next() {
		var ch, doc string
		var status sql.NullString
		if err := rows.Scan(&ch, &doc, &status); err != nil {
			return nil, fmt.Errorf("reading the clusters of the channels: %w", err)
		}
		var c api.Cluster
		if err := json.Unmarshal([]byte(doc), &c); err != nil {
			return nil, fmt.Errorf("decoding a cluster of channel %q: %w", ch, err)
		}
		if status.Valid {
			c.Status = &api.ClusterStatus{}
			if err := json.Unmarshal([]byte(status.String), c.Status); err != nil {
				return nil, fmt.Errorf("decoding the status of cluster %q: %w", c.ID, err)
			}
		}
		out[ch] = append(out[ch], c)
	}
	return out, rows.Err()
}

// StatusHistories returns the kept status history of each cluster, oldest
// first, in a few queries however many clusters there are.
func (s *Store) StatusHistories(ctx context.Context, clusterIDs []string) (map[string][]api.StatusHistoryEntry, error) {
	out := map[string][]api.StatusHistoryEntry{}
	for start := 0; start < len(clusterIDs); start += historyBatch {
		batch := clusterIDs[start:min(start+historyBatch, len(clusterIDs))]
		err := s.scanDocs(ctx, `SELECT cluster_id, doc FROM status_history WHERE cluster_id IN `+inList(len(batch))+` ORDER BY id`, queryArgs(batch), func(id string, doc []byte) error {
			var e api.StatusHistoryEntry
			if err := json.Unmarshal(doc, &e); err != nil {
				return fmt.Errorf("decoding status history of %q: %w", id, err)
			}
			out[id] = append(out[id], e)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("reading status histories: %w", err)
		}
	}
	return out, nil
}

// RecordPromotion writes a promotion into the audit log, as the action
// promote on the channel promoted to, and decides again what that channel
// publishes: a promotion that passed the gate lets its commit through an
// enforced gate, at once when it is the branch head already, else when the
// registry reads it as the head.
func (s *Store) RecordPromotion(ctx context.Context, p api.Promotion, actor string) error {
	doc, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encoding the promotion: %w", err)
	}
	return s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		if err := s.lockPublications(ctx, tx); err != nil {
			return err
		}
		if err := s.audit(ctx, tx, actor, "promote", Channels.resource, p.To, nil, json.RawMessage(doc)); err != nil {
			return err
		}
		return s.republish(ctx, tx, n, func(ch api.Channel) bool { return ch.Name == p.To }, func(cur *publication) {
			cur.Promotion = string(doc)
			if p.PassedGate() {
				cur.Promoted = p.Commit
			}
		})
	})
}

// AllChannels returns every channel, in promotion order.
func (s *Store) AllChannels(ctx context.Context) ([]api.Channel, error) {
	return s.channelsIn(ctx, s.read)
}

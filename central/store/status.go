package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// historyLength bounds the status history kept per cluster.
const historyLength = 200

// PutStatus stores an agent's report. A history entry is added only when
// the phase or a version changed, so heartbeats do not flood the history.
// The phase decommissioned is taken only once the cluster's decommission is
// confirmed (a 409 problem otherwise, and nothing is stored); it then also
// records the cluster's lifecycle_status as decommissioned, audited as the
// change of actor, in the same transaction.
func (s *Store) PutStatus(ctx context.Context, clusterID string, st api.ClusterStatus, actor string) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		if st.Phase == api.PhaseDecommissioned {
			if err := s.finishDecommission(ctx, tx, n, clusterID, st.ReceivedAt, actor); err != nil {
				return err
			}
		}
		var prevDoc sql.NullString
		var exists int
		err := tx.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*), MAX(s.doc) FROM clusters c LEFT JOIN cluster_status s ON s.cluster_id = c.key WHERE c.key = ?`), clusterID).Scan(&exists, &prevDoc)
		if err != nil {
			return fmt.Errorf("reading status of %q: %w", clusterID, err)
		}
		if exists == 0 {
			return fmt.Errorf("cluster %q: %w", clusterID, ErrNotFound)
		}
		_, err = tx.ExecContext(ctx, s.rebind(`INSERT INTO cluster_status (cluster_id, phase, current_version, doc) VALUES (?, ?, ?, ?)
			ON CONFLICT (cluster_id) DO UPDATE SET phase = excluded.phase, current_version = excluded.current_version, doc = excluded.doc`),
			clusterID, st.Phase, st.CurrentVersion, string(doc))
		if err != nil {
			return fmt.Errorf("writing status of %q: %w", clusterID, err)
		}
		if !historyChanged(prevDoc, st) {
			return nil
		}
		return s.appendHistory(ctx, tx, clusterID, st)
	})
}

func historyChanged(prevDoc sql.NullString, st api.ClusterStatus) bool {
	if !prevDoc.Valid {
		return true
	}
	var prev api.ClusterStatus
	if json.Unmarshal([]byte(prevDoc.String), &prev) != nil {
		return true
	}
	return prev.Phase != st.Phase || prev.CurrentVersion != st.CurrentVersion || prev.NextVersion != st.NextVersion
}

func (s *Store) appendHistory(ctx context.Context, tx *sql.Tx, clusterID string, st api.ClusterStatus) error {
	entry := api.StatusHistoryEntry{Time: st.ReceivedAt, CurrentVersion: st.CurrentVersion, NextVersion: st.NextVersion, Phase: st.Phase}
	doc, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO status_history (cluster_id, at, doc) VALUES (?, ?, ?)`), clusterID, formatTime(st.ReceivedAt), string(doc)); err != nil {
		return fmt.Errorf("writing status history of %q: %w", clusterID, err)
	}
	_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM status_history WHERE cluster_id = ? AND id <= (
		SELECT id FROM status_history WHERE cluster_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)`), clusterID, clusterID, historyLength)
	if err != nil {
		return fmt.Errorf("trimming status history of %q: %w", clusterID, err)
	}
	return nil
}

// Status returns a cluster's last report, or ErrNotFound when none came yet.
func (s *Store) Status(ctx context.Context, clusterID string) (api.ClusterStatus, error) {
	var doc string
	err := s.read.QueryRowContext(ctx, s.rebind(`SELECT doc FROM cluster_status WHERE cluster_id = ?`), clusterID).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return api.ClusterStatus{}, fmt.Errorf("status of cluster %q: %w", clusterID, ErrNotFound)
	}
	if err != nil {
		return api.ClusterStatus{}, fmt.Errorf("reading status of %q: %w", clusterID, err)
	}
	var st api.ClusterStatus
	return st, json.Unmarshal([]byte(doc), &st)
}

// StatusHistory returns up to limit history entries of a cluster, newest first.
func (s *Store) StatusHistory(ctx context.Context, clusterID string, limit int) ([]api.StatusHistoryEntry, error) {
	rows, err := s.read.QueryContext(ctx, s.rebind(`SELECT doc FROM status_history WHERE cluster_id = ? ORDER BY id DESC LIMIT ?`), clusterID, limit)
	if err != nil {
		return nil, fmt.Errorf("reading status history of %q: %w", clusterID, err)
	}
	defer rows.Close()
	out := []api.StatusHistoryEntry{}
	for rows.Next() {
		var doc string
		var e api.StatusHistoryEntry
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(doc), &e); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Details adds node pools, status and schedule to clusters, in four
// queries for a whole page.
func (s *Store) Details(ctx context.Context, clusters []api.Cluster) error {
	if len(clusters) == 0 {
		return nil
	}
	ids := make([]any, len(clusters))
	index := map[string]int{}
	for i, c := range clusters {
		ids[i] = c.ID
		index[c.ID] = i
		clusters[i].NodePools = []api.NodePool{}
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
	err := s.scanDocs(ctx, `SELECT parent, doc FROM node_pools WHERE parent IN (`+marks+`) ORDER BY key`, ids, func(id string, doc []byte) error {
		var p api.NodePool
		if err := json.Unmarshal(doc, &p); err != nil {
			return err
		}
		clusters[index[id]].NodePools = append(clusters[index[id]].NodePools, p)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading node pools: %w", err)
	}
	err = s.scanDocs(ctx, `SELECT cluster_id, doc FROM cluster_status WHERE cluster_id IN (`+marks+`)`, ids, func(id string, doc []byte) error {
		st := &api.ClusterStatus{}
		if err := json.Unmarshal(doc, st); err != nil {
			return err
		}
		clusters[index[id]].Status = st
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading cluster status: %w", err)
	}
	return s.schedules(ctx, clusters)
}

func (s *Store) scanDocs(ctx context.Context, query string, args []any, fn func(id string, doc []byte) error) error {
	return s.scanDocsWith(ctx, s.read, query, args, fn)
}

// scanDocsWith is scanDocs through q, a transaction's for one.
func (s *Store) scanDocsWith(ctx context.Context, q querier, query string, args []any, fn func(id string, doc []byte) error) error {
	rows, err := q.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, doc string
		if err := rows.Scan(&id, &doc); err != nil {
			return err
		}
		if err := fn(id, []byte(doc)); err != nil {
			return err
		}
	}
	return rows.Err()
}

// PhaseCounts counts clusters by their last reported phase; clusters that
// never reported count as "unknown".
func (s *Store) PhaseCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.read.QueryContext(ctx, `SELECT COALESCE(s.phase, 'unknown'), COUNT(*) FROM clusters c LEFT JOIN cluster_status s ON s.cluster_id = c.key GROUP BY COALESCE(s.phase, 'unknown')`)
	if err != nil {
		return nil, fmt.Errorf("counting clusters by phase: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var phase string
		var n int
		if err := rows.Scan(&phase, &n); err != nil {
			return nil, err
		}
		out[phase] = n
	}
	return out, rows.Err()
}

package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// historyLength bounds the status history kept per cluster.
const historyLength = 200

// PutStatus stores an agent's report. A history entry is added only when
// the phase or a version changed, so heartbeats do not flood the history.
// Reports are written in batches, each cluster's once a transaction:
// those that arrive while a batch is written go together into the next
// (a change answers every agent at once, and each reports).
// The phase decommissioned is taken only once the cluster's decommission is
// confirmed (a 409 problem otherwise, and nothing is stored); it then also
// records the cluster's lifecycle_status as decommissioned, audited as the
// change of actor, in a transaction of its own.
func (s *Store) PutStatus(ctx context.Context, clusterID string, st api.ClusterStatus, actor string) error {
	doc, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w := statusWrite{clusterID: clusterID, st: st, doc: doc, result: make(chan error, 1)}
	if st.Phase == api.PhaseDecommissioned {
		return s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
			if err := s.finishDecommission(ctx, tx, n, clusterID, st.ReceivedAt, actor); err != nil {
				return err
			}
			missing, err := s.writeStatusesIn(ctx, tx, []statusWrite{w})
			if err != nil {
				return err
			}
			return missing[0]
		})
	}
	s.statuses.add(w)
	werr, err := await(ctx, w.result)
	if err != nil {
		return err
	}
	return werr
}

// statusWrite is one report waiting for its batch.
type statusWrite struct {
	clusterID string
	st        api.ClusterStatus
	doc       []byte
	result    chan error
}

// statusPage bounds the reports one transaction writes.
const statusPage = 500

// writeStatuses writes a batch of reports, each cluster's once a
// transaction, a second report of a cluster in a later one, and tells
// each writer how it went.
func (s *Store) writeStatuses(ctx context.Context, writes []statusWrite) {
	for len(writes) > 0 {
		var page, later []statusWrite
		seen := map[string]bool{}
		for _, w := range writes {
			if seen[w.clusterID] || len(page) == statusPage {
				later = append(later, w)
				continue
			}
			seen[w.clusterID] = true
			page = append(page, w)
		}
		// Rows are locked in the order of their clusters, so that two
		// replicas' batches never wait for each other in a cycle.
		slices.SortFunc(page, func(a, b statusWrite) int { return strings.Compare(a.clusterID, b.clusterID) })
		s.stats.StatusBatches.Add(1)
		s.stats.StatusReports.Add(uint64(len(page)))
		var missing []error
		err := s.inTx(ctx, func(tx *sql.Tx, _ *notes) error {
			var err error
			missing, err = s.writeStatusesIn(ctx, tx, page)
			return err
		})
		for i, w := range page {
			if err != nil {
				w.result <- err
				continue
			}
			w.result <- missing[i]
		}
		writes = later
	}
}

// writeStatusesIn writes reports of distinct clusters in tx. It returns,
// for each, ErrNotFound when its cluster does not exist (nothing is
// written of it), and an error that fails them all.
func (s *Store) writeStatusesIn(ctx context.Context, tx *sql.Tx, writes []statusWrite) ([]error, error) {
	ids := make([]any, len(writes))
	for i, w := range writes {
		ids[i] = w.clusterID
	}
	previous := map[string]sql.NullString{}
	rows, err := tx.QueryContext(ctx, s.rebind(`SELECT c.key, s.doc FROM clusters c LEFT JOIN cluster_status s ON s.cluster_id = c.key WHERE c.key IN `+inList(len(ids))), ids...)
	if err != nil {
		return nil, fmt.Errorf("reading statuses: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var doc sql.NullString
		if err := rows.Scan(&id, &doc); err != nil {
			return nil, fmt.Errorf("reading statuses: %w", err)
		}
		previous[id] = doc
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading statuses: %w", err)
	}
	missing := make([]error, len(writes))
	var statusRows, historyRows, changed []any
	for i, w := range writes {
		prev, ok := previous[w.clusterID]
		if !ok {
			missing[i] = fmt.Errorf("cluster %q: %w", w.clusterID, ErrNotFound)
			continue
		}
		statusRows = append(statusRows, w.clusterID, w.st.Phase, w.st.CurrentVersion, string(w.doc))
		if !historyChanged(prev, w.st) {
			continue
		}
		entry, err := json.Marshal(api.StatusHistoryEntry{Time: w.st.ReceivedAt, CurrentVersion: w.st.CurrentVersion, NextVersion: w.st.NextVersion, Phase: w.st.Phase})
		if err != nil {
			return nil, err
		}
		historyRows = append(historyRows, w.clusterID, formatTime(w.st.ReceivedAt), string(entry))
		changed = append(changed, w.clusterID)
	}
	if len(statusRows) == 0 {
		return missing, nil
	}
	_, err = tx.ExecContext(ctx, s.rebind(`INSERT INTO cluster_status (cluster_id, phase, current_version, doc) VALUES `+valueRows(len(statusRows)/4, 4)+`
		ON CONFLICT (cluster_id) DO UPDATE SET phase = excluded.phase, current_version = excluded.current_version, doc = excluded.doc`), statusRows...)
	if err != nil {
		return nil, fmt.Errorf("writing statuses: %w", err)
	}
	if len(changed) == 0 {
		return missing, nil
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO status_history (cluster_id, at, doc) VALUES `+valueRows(len(changed), 3)), historyRows...); err != nil {
		return nil, fmt.Errorf("writing status history: %w", err)
	}
	_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM status_history WHERE id IN (
		SELECT id FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY cluster_id ORDER BY id DESC) AS newer FROM status_history WHERE cluster_id IN `+inList(len(changed))+`) ranked
		WHERE newer > ?)`), append(changed, historyLength)...)
	if err != nil {
		return nil, fmt.Errorf("trimming status history: %w", err)
	}
	return missing, nil
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
	marks := inList(len(ids))
	err := s.scanDocs(ctx, `SELECT parent, doc FROM node_pools WHERE parent IN `+marks+` ORDER BY key`, ids, func(id string, doc []byte) error {
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
	err = s.scanDocs(ctx, `SELECT cluster_id, doc FROM cluster_status WHERE cluster_id IN `+marks, ids, func(id string, doc []byte) error {
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

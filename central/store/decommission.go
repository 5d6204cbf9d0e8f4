package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// A decommission takes two writes besides the lifecycle_status an admin
// sets to decommission-requested: the admin's confirmation, which lets the
// agent delete the cluster stack, and the agent's report of the phase
// decommissioned, which records the cluster as decommissioned. Both read the
// cluster locked inside their transaction, so neither interleaves with the
// other or with a write that moves lifecycle_status elsewhere.

// lockedCluster is a cluster read for a write inside a transaction.
type lockedCluster struct {
	doc      string
	revision int64
	value    api.Cluster
	// lifecycle and confirmed are the columns copied out of the document.
	lifecycle string
	confirmed sql.NullString
}

// lockCluster reads a cluster for a write. On PostgreSQL the row stays
// locked until the transaction ends; SQLite's write transactions are
// serial already (BEGIN IMMEDIATE on the single write connection).
func (s *Store) lockCluster(ctx context.Context, tx *sql.Tx, id string) (lockedCluster, error) {
	query := `SELECT doc, revision, lifecycle_status, decommission_confirmed_at FROM clusters WHERE key = ?`
	if s.dialect == postgresDialect {
		query += ` FOR UPDATE`
	}
	var c lockedCluster
	err := tx.QueryRowContext(ctx, s.rebind(query), id).Scan(&c.doc, &c.revision, &c.lifecycle, &c.confirmed)
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("cluster %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return c, fmt.Errorf("reading cluster %q: %w", id, err)
	}
	if err := json.Unmarshal([]byte(c.doc), &c.value); err != nil {
		return c, fmt.Errorf("decoding cluster %q: %w", id, err)
	}
	return c, nil
}

// rewriteCluster stores v over the locked cluster, audits the change and
// notes the cluster as changed, so that its waiting long-polls answer.
func (s *Store) rewriteCluster(ctx context.Context, tx *sql.Tx, n *notes, old lockedCluster, v api.Cluster, actor string) (Record[api.Cluster], error) {
	doc, err := Clusters.encode(v)
	if err != nil {
		return Record[api.Cluster]{}, err
	}
	sets := []string{"doc = ?", "revision = revision + 1"}
	args := []any{string(doc)}
	for i, value := range Clusters.values(v) {
		sets = append(sets, Clusters.columns[i]+" = ?")
		args = append(args, value)
	}
	args = append(args, v.ID, old.revision)
	res, err := tx.ExecContext(ctx, s.rebind(`UPDATE clusters SET `+strings.Join(sets, ", ")+` WHERE key = ? AND revision = ?`), args...)
	if err != nil {
		return Record[api.Cluster]{}, fmt.Errorf("updating cluster %q: %w", v.ID, constraintError(err))
	}
	if count, _ := res.RowsAffected(); count == 0 {
		return Record[api.Cluster]{}, s.missingOrStale(ctx, tx, Clusters.table, Clusters.resource, v.ID)
	}
	if err := s.audit(ctx, tx, actor, "update", Clusters.resource, v.ID, json.RawMessage(old.doc), json.RawMessage(doc)); err != nil {
		return Record[api.Cluster]{}, err
	}
	n.clusters = append(n.clusters, v.ID)
	return Record[api.Cluster]{Value: v, Revision: old.revision + 1, ETag: etagOf(doc)}, nil
}

// ConfirmDecommission records at as the time an admin confirmed the
// decommission of a cluster whose lifecycle_status is decommission-requested,
// which tells its agent to delete the cluster stack. Confirming again keeps
// the first time and writes nothing. Any other lifecycle_status is a 409.
func (s *Store) ConfirmDecommission(ctx context.Context, id string, at time.Time, actor string) (Record[api.Cluster], error) {
	var rec Record[api.Cluster]
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		old, err := s.lockCluster(ctx, tx, id)
		if err != nil {
			return err
		}
		if old.lifecycle != api.LifecycleDecommissionRequested {
			return &api.Problem{
				Type: api.ProblemDecommissionNotRequested, Status: http.StatusConflict,
				Title: "Decommission not requested", Field: "lifecycle_status",
				Detail: fmt.Sprintf("cluster %q must be in decommission-requested first (its lifecycle_status is %q): "+
					"set it with 'caravan clusters decommission ID', wait until its agent deleted the node pool stacks, then confirm", id, old.lifecycle),
			}
		}
		if old.confirmed.Valid {
			rec = Record[api.Cluster]{Value: old.value, Revision: old.revision, ETag: etagOf([]byte(old.doc))}
			return nil
		}
		v := old.value
		confirmed := at
		v.DecommissionConfirmedAt, v.UpdatedAt = &confirmed, at
		rec, err = s.rewriteCluster(ctx, tx, n, old, v, actor)
		return err
	})
	return rec, err
}

// finishDecommission takes an agent's report of the phase decommissioned:
// allowed only once the decommission is confirmed (409 otherwise), it
// records the lifecycle_status decommissioned, as written by the agent, when
// the cluster is still decommission-requested. A repeated report of a
// cluster already decommissioned changes nothing.
func (s *Store) finishDecommission(ctx context.Context, tx *sql.Tx, n *notes, id string, at time.Time, actor string) error {
	old, err := s.lockCluster(ctx, tx, id)
	if err != nil {
		return err
	}
	if !old.confirmed.Valid {
		return &api.Problem{
			Type: api.ProblemDecommissionNotConfirmed, Status: http.StatusConflict,
			Title: "Decommission not confirmed", Field: "phase",
			Detail: fmt.Sprintf("cluster %q (lifecycle_status %q) reports the phase decommissioned, but its decommission is not confirmed: "+
				"the cluster stack may be deleted only after 'caravan clusters decommission ID --confirm'", id, old.lifecycle),
		}
	}
	switch old.lifecycle {
	case api.LifecycleDecommissioned:
		return nil
	case api.LifecycleDecommissionRequested:
		v := old.value
		v.LifecycleStatus, v.UpdatedAt = api.LifecycleDecommissioned, at
		_, err := s.rewriteCluster(ctx, tx, n, old, v, actor)
		return err
	default:
		// Writes drop the confirmation with any other lifecycle_status, so
		// this is a cluster written around the API; refuse it all the same.
		return &api.Problem{
			Type: api.ProblemDecommissionNotRequested, Status: http.StatusConflict,
			Title: "Decommission not requested", Field: "phase",
			Detail: fmt.Sprintf("cluster %q reports the phase decommissioned, but its lifecycle_status is %q, not decommission-requested", id, old.lifecycle),
		}
	}
}

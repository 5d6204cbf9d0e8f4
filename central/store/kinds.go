package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Accounts are infrastructure accounts; their config items reach every cluster in them.
var Accounts = Kind[api.InfrastructureAccount]{
	table: "accounts", resource: "infrastructure-account", fleetInput: true,
	columns: []string{"environment", "lifecycle_status"},
	values:  func(a api.InfrastructureAccount) []any { return []any{a.Environment, a.LifecycleStatus} },
	affected: func(ctx context.Context, s *Store, q querier, ref Ref) ([]string, error) {
		return clusterIDsWhere(ctx, s, q, "parent", ref.Key)
	},
	beforeDelete: func(ctx context.Context, s *Store, q querier, ref Ref) error {
		return refuseWhileReferenced(ctx, s, q, "parent", ref.Key, "the infrastructure account still holds clusters")
	},
}

// Clusters are stored without their node pools and status, which live apart.
var Clusters = Kind[api.Cluster]{
	table: "clusters", resource: "cluster", hasAssignment: true,
	columns: []string{"channel", "environment", "lifecycle_status", "alias", "decommission_confirmed_at"},
	values: func(c api.Cluster) []any {
		return []any{c.Channel, c.Environment, c.LifecycleStatus, c.Alias, nullableTime(c.DecommissionConfirmedAt)}
	},
	stored: func(c api.Cluster) api.Cluster {
		c.NodePools, c.Status, c.Schedule = nil, nil, nil
		return c
	},
	affected: func(_ context.Context, _ *Store, _ querier, ref Ref) ([]string, error) { return []string{ref.Key}, nil },
	references: func(c api.Cluster, _ Ref) []reference {
		return []reference{
			{table: "accounts", key: c.InfrastructureAccount, field: "infrastructure_account", resource: "infrastructure account"},
			{table: "channels", key: c.Channel, field: "channel", resource: "channel"},
		}
	},
	beforeDelete: func(ctx context.Context, s *Store, q querier, ref Ref) error {
		for _, stmt := range []string{
			`DELETE FROM node_pools WHERE parent = ?`,
			`DELETE FROM blocks WHERE parent = ?`,
			`DELETE FROM cluster_status WHERE cluster_id = ?`,
			`DELETE FROM status_history WHERE cluster_id = ?`,
		} {
			if _, err := q.ExecContext(ctx, s.rebind(stmt), ref.Key); err != nil {
				return fmt.Errorf("deleting what belongs to cluster %q: %w", ref.Key, err)
			}
		}
		return nil
	},
}

// nullableTime is a time column's value: NULL for no time.
func nullableTime(t *time.Time) sql.NullString {
	if t == nil {
		return sql.NullString{}
	}
	return sql.NullString{String: formatTime(*t), Valid: true}
}

// NodePools are keyed "<cluster id>/<pool name>" with the cluster as parent.
var NodePools = Kind[api.NodePool]{
	table: "node_pools", resource: "node-pool",
	values:     func(api.NodePool) []any { return nil },
	affected:   parentCluster,
	references: func(_ api.NodePool, ref Ref) []reference { return ownerCluster(ref) },
	beforeDelete: func(ctx context.Context, s *Store, q querier, ref Ref) error {
		pool := strings.TrimPrefix(ref.Key, ref.Parent+"/")
		var n int
		if err := q.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM blocks WHERE parent = ? AND node_pool = ?`), ref.Parent, pool).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return &InUseError{Reason: fmt.Sprintf("node pool %q is blocked (%d blocks); lift its blocks before deleting it", pool, n)}
		}
		return nil
	},
}

// Channels are the steps of the promotion path.
var Channels = Kind[api.Channel]{
	table: "channels", resource: "channel", fleetInput: true,
	columns: []string{"position"},
	values:  func(c api.Channel) []any { return []any{c.Position} },
	stored: func(c api.Channel) api.Channel {
		c.Head, c.Clusters, c.Publication = nil, nil, nil
		return c
	},
	affected: func(ctx context.Context, s *Store, q querier, ref Ref) ([]string, error) {
		return clusterIDsWhere(ctx, s, q, "channel", ref.Key)
	},
	// A channel's gate, position, branch or existence changes what it
	// and the channel after it publish.
	afterWrite: func(ctx context.Context, s *Store, tx *sql.Tx, n *notes) error {
		return s.republish(ctx, tx, n, nil, nil)
	},
	beforeDelete: func(ctx context.Context, s *Store, q querier, ref Ref) error {
		if err := refuseWhileReferenced(ctx, s, q, "channel", ref.Key, "clusters still follow the channel"); err != nil {
			return err
		}
		return refuseWhileFrozen(ctx, s, q, ref.Key)
	},
}

// Blocks are keyed by their id with the cluster as parent.
var Blocks = Kind[api.Block]{
	table: "blocks", resource: "block",
	columns:  []string{"node_pool"},
	values:   func(b api.Block) []any { return []any{b.NodePool} },
	affected: parentCluster,
	references: func(b api.Block, ref Ref) []reference {
		refs := ownerCluster(ref)
		if b.NodePool != "" {
			refs = append(refs, reference{table: "node_pools", key: NodePoolKey(ref.Parent, b.NodePool), field: "node_pool", resource: "node pool"})
		}
		return refs
	},
}

// NodePoolKey is the storage key of a node pool.
func NodePoolKey(clusterID, pool string) string { return clusterID + "/" + pool }

// BlockKey is the storage key of a block: a block is only ever found
// through the cluster it belongs to.
func BlockKey(clusterID, blockID string) string { return clusterID + "/" + blockID }

func ownerCluster(ref Ref) []reference {
	return []reference{{table: "clusters", key: ref.Parent, resource: "cluster"}}
}

// CreateCluster stores a cluster with the node pools it came with, in one transaction.
func CreateCluster(ctx context.Context, s *Store, c api.Cluster, actor string) (Record[api.Cluster], error) {
	var rec Record[api.Cluster]
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		var err error
		rec, err = insert(ctx, s, tx, n, Clusters, Ref{Key: c.ID, Parent: c.InfrastructureAccount}, c, actor)
		if err != nil {
			return err
		}
		for _, p := range c.NodePools {
			ref := Ref{Key: NodePoolKey(c.ID, p.Name), Parent: c.ID}
			if _, err := insert(ctx, s, tx, n, NodePools, ref, p, actor); err != nil {
				return fmt.Errorf("node pool %q: %w", p.Name, err)
			}
		}
		return nil
	})
	return rec, err
}

func parentCluster(_ context.Context, _ *Store, _ querier, ref Ref) ([]string, error) {
	return []string{ref.Parent}, nil
}

func clusterIDsWhere(ctx context.Context, s *Store, q querier, column, value string) ([]string, error) {
	return clusterIDs(ctx, s, q, `SELECT key FROM clusters WHERE `+column+` = ?`, value)
}

// clusterIDs runs a query of cluster keys.
func clusterIDs(ctx context.Context, s *Store, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func refuseWhileReferenced(ctx context.Context, s *Store, q querier, column, value, reason string) error {
	var n int
	if err := q.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM clusters WHERE `+column+` = ?`), value).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return &InUseError{Reason: fmt.Sprintf("%s (%d)", reason, n)}
	}
	return nil
}

package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// Plans are keyed "<cluster id>/<plan id>" with the cluster as parent. A
// plan's creation is audited; the agent's answers are not, like its status.
var Plans = Kind[api.Plan]{
	table: "plans", resource: "plan",
	columns:    []string{"state"},
	values:     func(p api.Plan) []any { return []any{p.State} },
	affected:   parentCluster,
	references: func(_ api.Plan, ref Ref) []reference { return ownerCluster(ref) },
}

const (
	// maxOpenPlans bounds the plans of one cluster that wait for its agent,
	// which answers them one after another.
	maxOpenPlans = 10
	// plansKept bounds the plans kept per cluster; the oldest go first.
	plansKept = 100
)

// PlanKey is the storage key of a plan.
func PlanKey(clusterID, planID string) string { return clusterID + "/" + planID }

// NewPlanID returns a new plan id: 16 hex digits, the first 11 the
// creation time in milliseconds, so that ids sort by age.
func NewPlanID(now time.Time) (string, error) { return newTimeID(now) }

// newTimeID returns 16 hex digits: the first 11 the time in milliseconds,
// the other 5 random, except that ids this process makes within one
// millisecond count up from the first, so that they still sort by age.
func newTimeID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes: %w", err)
	}
	ms, low := uint64(now.UnixMilli()), uint64(binary.BigEndian.Uint32(b[:])&0xfffff)
	lastTimeID.Lock()
	defer lastTimeID.Unlock()
	if ms <= lastTimeID.ms {
		// The same millisecond, or a clock that stepped back: one more than
		// the last id.
		ms, low = lastTimeID.ms, lastTimeID.low+1
		if low > 0xfffff {
			ms, low = ms+1, 0
		}
	}
	lastTimeID.ms, lastTimeID.low = ms, low
	return fmt.Sprintf("%011x%05x", ms, low), nil
}

// lastTimeID is the last id newTimeID made.
var lastTimeID struct {
	sync.Mutex
	ms, low uint64
}

// planKeyAt is the smallest key of a plan of the cluster created at t or later.
func planKeyAt(clusterID string, t time.Time) string {
	return PlanKey(clusterID, fmt.Sprintf("%011x", t.UnixMilli()))
}

// CreatePlan stores a new plan, which joins the cluster's assignment. It
// refuses a plan while maxOpenPlans of the cluster wait for its agent, and
// forgets the cluster's oldest plans beyond plansKept.
func (s *Store) CreatePlan(ctx context.Context, p api.Plan, actor string) (Record[api.Plan], error) {
	var rec Record[api.Plan]
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		var open int
		err := tx.QueryRowContext(ctx, s.rebind(`SELECT COUNT(*) FROM plans WHERE parent = ? AND state IN (?, ?) AND key >= ?`),
			p.ClusterID, api.PlanPending, api.PlanRunning, planKeyAt(p.ClusterID, p.CreatedAt.Add(-api.PlanTimeout))).Scan(&open)
		if err != nil {
			return fmt.Errorf("counting the open plans of %q: %w", p.ClusterID, err)
		}
		if open >= maxOpenPlans {
			return &api.Problem{Status: http.StatusConflict, Title: "Too many open plans",
				Detail: fmt.Sprintf("cluster %q has %d plans its agent has not answered yet; wait for them, they fail by themselves after %s", p.ClusterID, open, api.PlanTimeout)}
		}
		rec, err = insert(ctx, s, tx, n, Plans, Ref{Key: PlanKey(p.ClusterID, p.ID), Parent: p.ClusterID}, p, actor)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.rebind(`DELETE FROM plans WHERE parent = ? AND key <= (
			SELECT key FROM plans WHERE parent = ? ORDER BY key DESC LIMIT 1 OFFSET ?)`), p.ClusterID, p.ClusterID, plansKept)
		if err != nil {
			return fmt.Errorf("forgetting old plans of %q: %w", p.ClusterID, err)
		}
		return nil
	})
	return rec, err
}

// Plan returns a plan of a cluster as it stands now.
func (s *Store) Plan(ctx context.Context, clusterID, planID string) (api.Plan, error) {
	rec, err := Get(ctx, s, Plans, PlanKey(clusterID, planID))
	if err != nil {
		return api.Plan{}, err
	}
	return rec.Value.At(s.now()), nil
}

// ListPlans returns one page of a cluster's plans, newest first, as they stand now.
func (s *Store) ListPlans(ctx context.Context, clusterID string, limit int, cursor string) ([]api.Plan, string, error) {
	query, args := `SELECT key, doc FROM plans WHERE parent = ?`, []any{clusterID}
	if cursor != "" {
		before, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil {
			return nil, "", &api.Problem{Type: api.ProblemTypeBase + "invalid-query-parameter", Status: http.StatusBadRequest,
				Title: "Invalid query parameter continue", Field: "continue", Detail: "continue is not a cursor this server issued"}
		}
		query, args = query+` AND key < ?`, append(args, string(before))
	}
	rows, err := s.read.QueryContext(ctx, s.rebind(query+` ORDER BY key DESC LIMIT ?`), append(args, limit+1)...)
	if err != nil {
		return nil, "", fmt.Errorf("listing the plans of %q: %w", clusterID, err)
	}
	defer rows.Close()
	now := s.now()
	plans, keys := []api.Plan{}, []string{}
	for rows.Next() {
		var key, doc string
		if err := rows.Scan(&key, &doc); err != nil {
			return nil, "", fmt.Errorf("listing the plans of %q: %w", clusterID, err)
		}
		var p api.Plan
		if err := json.Unmarshal([]byte(doc), &p); err != nil {
			return nil, "", fmt.Errorf("decoding plan %q: %w", key, err)
		}
		plans, keys = append(plans, p.At(now)), append(keys, key)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("listing the plans of %q: %w", clusterID, err)
	}
	next := ""
	if len(plans) > limit {
		plans = plans[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(keys[limit-1]))
	}
	return plans, next, nil
}

// ReportPlan takes the agent's answer to a plan. A plan that is done or
// failed, or that waited longer than api.PlanTimeout, takes no more
// answers (409). A final answer takes the plan out of the assignment.
func (s *Store) ReportPlan(ctx context.Context, clusterID, planID string, r api.PlanReport, at time.Time) (api.Plan, error) {
	var out api.Plan
	err := s.inTx(ctx, func(tx *sql.Tx, n *notes) error {
		rec, err := get(ctx, s, tx, Plans, PlanKey(clusterID, planID))
		if err != nil {
			return err
		}
		if current := rec.Value.At(at); current.Final() {
			return &api.Problem{Status: http.StatusConflict, Title: "Plan already ended",
				Detail: fmt.Sprintf("plan %s is %s and takes no more answers", planID, current.State)}
		}
		out = rec.Value
		out.State, out.Result, out.UpdatedAt = r.State, r.Result, at
		doc, err := Plans.encode(out)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.rebind(`UPDATE plans SET doc = ?, state = ?, revision = revision + 1 WHERE key = ? AND revision = ?`),
			string(doc), out.State, PlanKey(clusterID, planID), rec.Revision)
		if err != nil {
			return fmt.Errorf("updating plan %q: %w", planID, err)
		}
		if count, _ := res.RowsAffected(); count == 0 {
			return s.missingOrStale(ctx, tx, Plans.table, Plans.resource, PlanKey(clusterID, planID))
		}
		if out.Final() {
			n.clusters = append(n.clusters, clusterID)
		}
		return nil
	})
	return out, err
}

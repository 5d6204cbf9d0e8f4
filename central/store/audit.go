package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// AuditFilter selects audit entries; Before is the id cursor of the previous page.
type AuditFilter struct {
	ResourceType string
	ResourceID   string
	Actor        string
	Limit        int
	Continue     string
}

// Audit lists audit entries newest first.
func (s *Store) Audit(ctx context.Context, f AuditFilter) ([]api.AuditEntry, string, error) {
	var where []string
	var args []any
	for col, val := range map[string]string{"resource_type": f.ResourceType, "resource_id": f.ResourceID, "actor": f.Actor} {
		if val != "" {
			where, args = append(where, col+" = ?"), append(args, val)
		}
	}
	if f.Continue != "" {
		before, err := strconv.ParseInt(f.Continue, 10, 64)
		if err != nil {
			return nil, "", &api.Problem{Type: api.ProblemTypeBase + "invalid-query-parameter", Status: 400, Title: "Invalid query parameter continue", Field: "continue", Detail: "continue is not a cursor this server issued"}
		}
		where, args = append(where, "id < ?"), append(args, before)
	}
	query := `SELECT id, at, actor, action, resource_type, resource_id, before_doc, after_doc FROM audit`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	query += ` ORDER BY id DESC LIMIT ?`
	args = append(args, f.Limit+1)
	rows, err := s.read.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, "", fmt.Errorf("reading audit log: %w", err)
	}
	defer rows.Close()
	out := []api.AuditEntry{}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("reading audit log: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = strconv.FormatInt(out[f.Limit-1].ID, 10)
	}
	return out, next, nil
}

func scanAudit(rows *sql.Rows) (api.AuditEntry, error) {
	var e api.AuditEntry
	var at string
	var before, after sql.NullString
	if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Action, &e.ResourceType, &e.ResourceID, &before, &after); err != nil {
		return e, fmt.Errorf("reading audit entry: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return e, fmt.Errorf("audit entry %d has a bad time %q: %w", e.ID, at, err)
	}
	e.Time = t
	if before.Valid {
		e.Before = json.RawMessage(before.String)
	}
	if after.Valid {
		e.After = json.RawMessage(after.String)
	}
	return e, nil
}

package api

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/caravan-gitops/caravan/central/auth"
	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// freezeResource serves /api/v1/freezes: created and deleted, never
// changed; every write is audited and wakes the long-polls of the clusters
// the freeze covers.
func freezeResource(s *Server) resource[api.Freeze] {
	return resource[api.Freeze]{
		kind:           store.Freezes,
		pathRef:        keyFromPath("freeze_id"),
		newRef:         func(_ *http.Request, f api.Freeze) store.Ref { return store.Ref{Key: f.ID} },
		conditionalGet: true,
		prepareCreate: func(ctx context.Context, _ *http.Request, f *api.Freeze) error {
			now := s.timestamp()
			id, err := store.NewFreezeID(now)
			if err != nil {
				return err
			}
			f.ID, f.By, f.CreatedAt, f.UpdatedAt = id, principalFrom(ctx).Name, now, now
			if f.Since.IsZero() {
				f.Since = now
			}
			f.Since, f.Until = f.Since.UTC(), f.Until.UTC()
			if err := f.Validate(); err != nil {
				return err
			}
			if !f.Until.After(now) {
				return &api.ValidationError{Errors: []api.FieldError{{Field: "until",
					Detail: "must be in the future, got " + f.Until.Format(time.RFC3339) + " (the registry's time is " + now.Format(time.RFC3339) + ")"}}}
			}
			return nil
		},
	}
}

func (s *Server) freezeRoutes() {
	freezes := freezeResource(s)
	s.route("GET /api/v1/freezes", auth.Read, s.listFreezes)
	s.route("POST /api/v1/freezes", auth.Write, func(w http.ResponseWriter, r *http.Request) {
		createResource(s, w, r, freezes, "/api/v1/freezes")
	})
	s.route("GET /api/v1/freezes/{freeze_id}", auth.Read, func(w http.ResponseWriter, r *http.Request) {
		getResource(w, r, s, freezes)
	})
	s.route("DELETE /api/v1/freezes/{freeze_id}", auth.Write, func(w http.ResponseWriter, r *http.Request) {
		deleteResource(s, w, r, freezes)
	})
}

// listFreezes answers the freezes newest first; ?active=true lists only
// those in force now.
func (s *Server) listFreezes(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	f := store.FreezeFilter{Limit: limit, Continue: q.Get("continue")}
	switch raw := q.Get("active"); raw {
	case "", "false":
	case "true":
		f.Active = true
	default:
		writeError(w, r, queryProblem("active", "must be true or false, got "+strconv.Quote(raw)))
		return
	}
	items, next, err := s.store.ListFreezes(r.Context(), f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.List[api.Freeze]{Items: items, Next: next})
}

package api

import (
	"net/http"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	entries, next, err := s.store.Audit(r.Context(), store.AuditFilter{
		ResourceType: q.Get("resource_type"), ResourceID: q.Get("resource_id"), Actor: q.Get("actor"),
		Limit: limit, Continue: q.Get("continue"),
	})
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.List[api.AuditEntry]{Items: entries, Next: next})
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	f := store.Filter{Equal: map[string]string{}, Limit: limit, Continue: q.Get("continue")}
	if role := q.Get("role"); role != "" {
		f.Equal["role"] = role
	}
	tokens, next, err := s.store.Tokens(r.Context(), f)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.List[api.Token]{Items: tokens, Next: next})
}

// tokenRequest is what a client sends to create a token.
type tokenRequest struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	ClusterID string `json:"cluster_id"`
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req tokenRequest
	if p := decodeBody(r, &req, "application/json"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	if err := api.ValidateToken(req.Name, req.Role, req.ClusterID); err != nil {
		writeError(w, r, err)
		return
	}
	if req.ClusterID != "" {
		if _, err := store.Get(r.Context(), s.store, store.Clusters, req.ClusterID); err != nil {
			writeError(w, r, &api.ValidationError{Errors: []api.FieldError{{Field: "cluster_id", Detail: "no cluster " + req.ClusterID + " exists"}}})
			return
		}
	}
	t, err := s.store.CreateToken(r.Context(), req.Name, req.Role, req.ClusterID, principalFrom(r.Context()).Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/tokens/"+t.ID)
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) getToken(w http.ResponseWriter, r *http.Request) {
	rec, err := s.store.Token(r.Context(), r.PathValue("token_id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, rec.Value)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	if _, err := s.store.RevokeToken(r.Context(), r.PathValue("token_id"), principalFrom(r.Context()).Name); err != nil {
		writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

package api

import (
	"net/http"

	"github.com/caravan-gitops/caravan/pkg/api"
)

// decommissionRequest is the body of POST /api/v1/clusters/{id}/decommission.
type decommissionRequest struct {
	Confirm bool `json:"confirm"`
}

// confirmDecommission lets the agent of a cluster whose lifecycle_status is
// decommission-requested delete the cluster stack: it records when the
// decommission was confirmed (the first time, when confirmed twice), which
// the cluster's assignment carries as decommission_confirmed, and answers
// the cluster.
func (s *Server) confirmDecommission(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.clusterExists(ctx, r); err != nil {
		writeError(w, r, err)
		return
	}
	var req decommissionRequest
	if p := decodeBody(r, &req, "application/json"); p != nil {
		writeProblem(w, r, *p)
		return
	}
	if !req.Confirm {
		writeError(w, r, &api.ValidationError{Errors: []api.FieldError{{Field: "confirm",
			Detail: "must be true: the agent then deletes the cluster stack, which cannot be undone"}}})
		return
	}
	rec, err := s.store.ConfirmDecommission(ctx, r.PathValue("id"), s.timestamp(), principalFrom(ctx).Name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	clusters := []api.Cluster{rec.Value}
	if err := s.store.Details(ctx, clusters); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", rec.ETag)
	writeJSON(w, http.StatusOK, clusters[0])
}

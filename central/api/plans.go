package api

import (
	"net/http"
	"net/url"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// createPlan asks the cluster's agent for a preview of a commit: the plan
// joins the cluster's assignment, which wakes the agent's long-poll.
func (s *Server) createPlan(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.clusterExists(ctx, r); err != nil {
		writeError(w, r, err)
		return
	}
	var req api.PlanRequest
	if !readValid(w, r, &req) {
		return
	}
	now := s.timestamp()
	id, err := store.NewPlanID(now)
	if err != nil {
		writeError(w, r, err)
		return
	}
	plan := api.Plan{ID: id, ClusterID: r.PathValue("id"), Commit: req.Commit, State: api.PlanPending,
		RequestedBy: principalFrom(ctx).Name, CreatedAt: now, UpdatedAt: now}
	if _, err := s.store.CreatePlan(ctx, plan, plan.RequestedBy); err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/api/v1/clusters/"+url.PathEscape(plan.ClusterID)+"/plans/"+plan.ID)
	writeJSON(w, http.StatusCreated, plan)
}

func (s *Server) listPlans(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	limit, err := parseLimit(r.URL.Query())
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.clusterExists(ctx, r); err != nil {
		writeError(w, r, err)
		return
	}
	plans, next, err := s.store.ListPlans(ctx, r.PathValue("id"), limit, r.URL.Query().Get("continue"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.List[api.Plan]{Items: plans, Next: next})
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	plan, err := s.store.Plan(r.Context(), r.PathValue("id"), r.PathValue("plan_id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

// reportPlan takes the agent's answer: running when it starts on the plan,
// then done or failed with the result.
func (s *Server) reportPlan(w http.ResponseWriter, r *http.Request) {
	var report api.PlanReport
	if !readValid(w, r, &report) {
		return
	}
	report.Result.Normalize()
	plan, err := s.store.ReportPlan(r.Context(), r.PathValue("id"), r.PathValue("plan_id"), report, s.timestamp())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

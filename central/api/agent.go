package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caravan-gitops/caravan/central/store"
	"github.com/caravan-gitops/caravan/pkg/api"
)

// getAssignment answers an agent's poll. With ?wait it holds the request
// until this cluster's assignment differs from If-None-Match, the wait runs
// out (304), or the server shuts down (304).
func (s *Server) getAssignment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	wait, p := s.parseWait(r.URL.Query().Get("wait"))
	if p != nil {
		writeProblem(w, r, *p)
		return
	}
	ifNoneMatch := r.Header.Get("If-None-Match")
	deadline := time.Now().Add(wait)
	hub := s.store.Hub()
	var changed <-chan struct{}
	for {
		a, err := s.store.Assignment(r.Context(), id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		if ifNoneMatch == "" || !etagMatches(ifNoneMatch, a.ETag) {
			w.Header().Set(api.RegistryTimeHeader, s.registryTime())
			writeAssignment(w, a)
			return
		}
		remaining := time.Until(deadline)
		if wait == 0 || remaining <= 0 {
			s.notModified(w, a)
			return
		}
		if changed == nil {
			tokenID := principalFrom(r.Context()).TokenID
			if !s.waiting.acquire(tokenID) {
				w.Header().Set("Retry-After", "10")
				writeProblem(w, r, problem(http.StatusServiceUnavailable, "Too many waiting polls", "",
					"too many long-polls wait already, of this token or in all; retry later, or poll without wait"))
				return
			}
			if s.park(w, r, id, a.ETag, deadline) {
				return
			}
			defer s.waiting.release(tokenID)
			// Watch only a cluster known to exist, then read again: a change
			// between the first read and the watch is not missed.
			changed = hub.Watch(id)
			continue
		}
		if !a.ChangesAt.IsZero() {
			remaining = min(remaining, time.Until(a.ChangesAt)+time.Millisecond)
		}
		if !s.await(r, changed, remaining) {
			s.notModified(w, a)
			return
		}
		changed = hub.Watch(id)
	}
}

// registryTime is the registry's clock as RegistryTimeHeader carries it,
// read when an assignment answer is written: after a long wait too.
func (s *Server) registryTime() string { return s.now().UTC().Format(time.RFC3339Nano) }

func (s *Server) notModified(w http.ResponseWriter, a store.Assignment) {
	w.Header().Set("ETag", a.ETag)
	w.Header().Set(api.RegistryTimeHeader, s.registryTime())
	w.WriteHeader(http.StatusNotModified)
}

// newline ends an assignment's body. The cached body is shared by every
// answer of it, so it is copied, never appended to.
var newline = []byte{'\n'}

func writeAssignment(w http.ResponseWriter, a store.Assignment) {
	w.Header().Set("ETag", a.ETag)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(slices.Concat(a.Body, newline))
}

// await waits for changed or the timeout; it reports false when the request
// or the server is ending and the poll must answer now.
func (s *Server) await(r *http.Request, changed <-chan struct{}, timeout time.Duration) bool {
	s.metrics.waiting.Inc()
	defer s.metrics.waiting.Dec()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-changed:
		return true
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

func (s *Server) parseWait(raw string) (time.Duration, *api.Problem) {
	if raw == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 || d > s.maxWait {
		p := problem(http.StatusBadRequest, "Invalid query parameter wait", "wait",
			"wait must be a duration from 0s to "+s.maxWait.String()+", such as 60s; got "+raw)
		return 0, &p
	}
	return d, nil
}

func (s *Server) putStatus(w http.ResponseWriter, r *http.Request) {
	var st api.ClusterStatus
	if !readValid(w, r, &st) {
		return
	}
	st.ReceivedAt = s.timestamp()
	if st.NodePools == nil {
		st.NodePools = []api.NodePoolProgress{}
	}
	if st.Problems == nil {
		st.Problems = []api.StatusProblem{}
	}
	if err := s.store.PutStatus(r.Context(), r.PathValue("id"), st, principalFrom(r.Context()).Name); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.store.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) getStatusHistory(w http.ResponseWriter, r *http.Request) {
	limit, err := parseLimit(r.URL.Query())
	if err != nil {
		writeError(w, r, err)
		return
	}
	if err := s.clusterExists(r.Context(), r); err != nil {
		writeError(w, r, err)
		return
	}
	h, err := s.store.StatusHistory(r.Context(), r.PathValue("id"), limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.List[api.StatusHistoryEntry]{Items: h})
}

func sortChannels(cs []api.Channel) {
	slices.SortStableFunc(cs, func(a, b api.Channel) int {
		if a.Position != b.Position {
			return a.Position - b.Position
		}
		return strings.Compare(a.Name, b.Name)
	})
}

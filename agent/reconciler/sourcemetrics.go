package reconciler

import "github.com/prometheus/client_golang/prometheus"

// SourceMetrics tell how the agent learns of new commits: from the
// registry's assignment, or by listing its branch itself.
type SourceMetrics struct {
	listings prometheus.Counter
	heldBack prometheus.Counter
}

// NewSourceMetrics registers the metrics with reg; a nil reg keeps them
// unregistered.
func NewSourceMetrics(reg prometheus.Registerer) *SourceMetrics {
	m := &SourceMetrics{
		listings: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_git_ref_listings_total",
			Help: "Listings of the config repo's branch heads the agent made itself (git ls-remote), to learn of a new commit: only while the registry names no head in the assignment or cannot be reached, at most every git_poll_interval."}),
		heldBack: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_unpublished_heads_total",
			Help: "Branch heads the agent listed while the registry could not be reached and did not take, because the channel's promotion gate is enforced and only the registry publishes promoted heads."}),
	}
	if reg != nil {
		reg.MustRegister(m.listings, m.heldBack)
	}
	return m
}

// WithSourceMetrics makes the reconciler count into m.
func (r *Reconciler) WithSourceMetrics(m *SourceMetrics) *Reconciler {
	r.sourceMetrics = m
	return r
}

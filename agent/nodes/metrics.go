package nodes

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the roll's Prometheus metrics.
type Metrics struct {
	evictions     *prometheus.CounterVec
	forced        prometheus.Counter
	waits         *prometheus.CounterVec
	drainDuration prometheus.Histogram
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caravan_agent_evictions_total",
			Help: "Eviction requests of drained pods, by result: evicted, refused (by a PodDisruptionBudget), throttled (by the API server)."}, []string{"result"}),
		forced: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_forced_deletions_total",
			Help: "Pods deleted after their PodDisruptionBudget refused the eviction, when every rule of the drain SLA allowed it."}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caravan_agent_force_waits_total",
			Help: "Refused evictions not yet forced, by the drain SLA rule that held the force back."}, []string{"rule"}),
		drainDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caravan_agent_drain_duration_seconds",
			Help: "Time from a node's selection to the end of its drain.", Buckets: prometheus.ExponentialBuckets(10, 3, 10)}),
	}
	reg.MustRegister(m.evictions, m.forced, m.waits, m.drainDuration)
	return m
}

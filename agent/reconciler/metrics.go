package reconciler

import (
	"time"

	"github.com/caravan-gitops/caravan/agent/drift"
	"github.com/caravan-gitops/caravan/agent/nodes"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus metrics.
type Metrics struct {
	duration       prometheus.Histogram
	lastApplied    prometheus.Gauge
	applied        prometheus.Counter
	pruned         prometheus.Counter
	problems       prometheus.Gauge
	registryErrors prometheus.Counter
	stacks         *prometheus.CounterVec
	nodes          *nodes.Metrics
	drift          *drift.Metrics
}

// Drift are the metrics of drift correction.
func (m *Metrics) Drift() *drift.Metrics { return m.drift }

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "caravan_agent_reconcile_duration_seconds",
			Help: "Duration of one reconcile.", Buckets: []float64{0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900}}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{Name: "caravan_agent_last_applied_timestamp_seconds",
			Help: "When a version was last applied and became healthy."}),
		applied: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_objects_applied_total",
			Help: "Objects version applies sent to the API server (created or configured); an unchanged object costs no request and is not counted."}),
		pruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_objects_pruned_total",
			Help: "Objects pruned because they left the config."}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{Name: "caravan_agent_problems",
			Help: "Problems the agent reports now."}),
		registryErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "caravan_agent_registry_errors_total",
			Help: "Assignment polls that could not reach the registry."}),
		stacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caravan_agent_stack_operations_total",
			Help: "CloudFormation stack operations by action (create, update, delete) and result (succeeded, failed)."}, []string{"action", "result"}),
	}
	reg.MustRegister(m.duration, m.lastApplied, m.applied, m.pruned, m.problems, m.registryErrors, m.stacks)
	m.nodes = nodes.NewMetrics(reg)
	m.drift = drift.NewMetrics(reg)
	return m
}

func (m *Metrics) record(o *outcome, now time.Time) {
	if o.changes != nil && o.changes.Applied != nil {
		m.applied.Add(float64(len(o.changes.Applied.Entries)))
	}
	if o.changes != nil && o.changes.Pruned != nil {
		m.pruned.Add(float64(len(o.changes.Pruned.Entries)))
	}
	if o.appliedNow {
		m.lastApplied.Set(float64(now.Unix()))
	}
	m.problems.Set(float64(len(o.status.Problems)))
}

// stackOperation counts one stack operation.
func (m *Metrics) stackOperation(action string, err error) {
	result := "succeeded"
	if err != nil {
		result = "failed"
	}
	m.stacks.WithLabelValues(action, result).Inc()
}

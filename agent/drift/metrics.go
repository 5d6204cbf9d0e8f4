package drift

import "github.com/prometheus/client_golang/prometheus"

// Metrics are drift correction's Prometheus metrics.
type Metrics struct {
	detected  *prometheus.CounterVec
	corrected *prometheus.CounterVec
	fights    prometheus.Gauge
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		detected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caravan_agent_drift_detected_total",
			Help: "Managed objects found changed or deleted by someone other than Caravan, by kind."}, []string{"kind"}),
		corrected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "caravan_agent_drift_corrected_total",
			Help: "Drifted objects Caravan re-applied or re-created, by kind."}, []string{"kind"}),
		fights: prometheus.NewGauge(prometheus.GaugeOpts{Name: "caravan_agent_drift_fights",
			Help: "Objects Caravan stopped correcting because another field manager keeps changing them back."}),
	}
	reg.MustRegister(m.detected, m.corrected, m.fights)
	return m
}

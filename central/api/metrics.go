package api

import (
	"context"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caravan-gitops/caravan/central/store"
)

type metrics struct {
	requests  *prometheus.CounterVec
	durations *prometheus.HistogramVec
	waiting   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, st *store.Store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "caravan_central_http_requests_total", Help: "HTTP requests by route, method and status code.",
		}, []string{"route", "method", "code"}),
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "caravan_central_http_request_duration_seconds", Help: "HTTP request durations by route and method, long-polls included.",
			Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300},
		}, []string{"route", "method"}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "caravan_central_long_polls_waiting", Help: "Assignment long-polls waiting for a change.",
		}),
	}
	stats := st.Stats()
	counter := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(m.requests, m.durations, m.waiting, &phaseCollector{store: st},
		counter("caravan_central_cluster_input_reads_total",
			"Reads from the database of clusters' own assignment inputs the cache lacked; one reads every cluster asked for while the one before ran.", &stats.InputBatches),
		counter("caravan_central_cluster_inputs_read_total", "Clusters whose own assignment inputs were read from the database.", &stats.InputClusters),
		counter("caravan_central_fleet_input_reads_total",
			"Reads from the database of the assignment inputs clusters share (accounts, channels, publications, freezes), after one of them changed.", &stats.FleetReads),
		counter("caravan_central_status_write_transactions_total",
			"Transactions that wrote agents' status reports; one writes every report that arrived while the one before ran.", &stats.StatusBatches),
		counter("caravan_central_status_reports_written_total", "Agents' status reports written.", &stats.StatusReports))
	return m
}

func (m *metrics) observe(route, method string, code int, elapsed time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(code)).Inc()
	m.durations.WithLabelValues(route, method).Observe(elapsed.Seconds())
}

// phaseCollector counts clusters by phase at scrape time, from the database,
// so every replica reports the same fleet-wide figure.
type phaseCollector struct{ store *store.Store }

var clustersByPhase = prometheus.NewDesc("caravan_central_clusters", "Clusters by their last reported phase.", []string{"phase"}, nil)

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- clustersByPhase }

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	counts, err := c.store.PhaseCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(clustersByPhase, err)
		return
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(clustersByPhase, prometheus.GaugeValue, float64(n), phase)
	}
}

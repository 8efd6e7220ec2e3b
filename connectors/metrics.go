package connectors

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the connectors' Prometheus metrics (docs/metrics.md).
type Metrics struct {
	Deliveries  *prometheus.CounterVec
	Duration    *prometheus.HistogramVec
	BreakerOpen *prometheus.GaugeVec
}

// NewMetrics creates the connector metrics and registers them with reg
// (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "kairos", Subsystem: "connector", Name: "deliveries_total",
			Help: "Offer deliveries by connector and outcome (delivered, failed, expired, retried)."}, []string{"connector", "outcome"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "kairos", Subsystem: "connector", Name: "delivery_duration_seconds",
			Help: "From taking an offer to its outcome, retries included.", Buckets: prometheus.ExponentialBucketsRange(0.001, 120, 20)}, []string{"connector"}),
		BreakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "kairos", Subsystem: "connector", Name: "breaker_open",
			Help: "1 while the connector's circuit breaker is open."}, []string{"connector"}),
	}
	if reg != nil {
		reg.MustRegister(m.Deliveries, m.Duration, m.BreakerOpen)
	}
	return m
}

// Init pre-creates a connector's series.
func (m *Metrics) Init(name string) {
	for _, o := range []string{OutcomeDelivered, OutcomeFailed, OutcomeExpired, OutcomeRetried} {
		m.Deliveries.WithLabelValues(name, o)
	}
	m.Duration.WithLabelValues(name)
	m.BreakerOpen.WithLabelValues(name)
}

package engine

import (
	"runtime"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics (docs/metrics.md). Labels
// are bounded: event types named by rules (others are "other"), rule ids,
// channels and dead-letter reasons. Never a customer id.
type Metrics struct {
	// evals feeds RuleEvals (ruleevals.go).
	evals *evalTally

	Events         *prometheus.CounterVec
	Invalid        *prometheus.CounterVec
	Duplicates     prometheus.Counter
	RuleEvals      *prometheus.CounterVec
	RuleMatches    *prometheus.CounterVec
	RuleErrors     *prometheus.CounterVec
	Offers         *prometheus.CounterVec
	BatchSize      prometheus.Histogram
	BatchDuration  prometheus.Histogram
	ArrivalToOffer prometheus.Histogram
	// ArrivalToDecision and EventTimeToDecision time every decision made for
	// an event (emitted, suppressed or deferred), to its commit.
	ArrivalToDecision   prometheus.Histogram
	EventTimeToDecision prometheus.Histogram
	EventTimeToOffer    prometheus.Histogram
	Applied             prometheus.Gauge
	PublishRetries      prometheus.Counter
	RulesLoaded         prometheus.Gauge
	Ready               prometheus.Gauge
	Suppressed          *prometheus.CounterVec
	Decisions           *prometheus.CounterVec
	Deferred            prometheus.Counter
	BudgetRemaining     *prometheus.GaugeVec
	Conversions         *prometheus.CounterVec
	BatchDuplicates     prometheus.Counter
	BatchEvents         *prometheus.CounterVec
	BatchLastSuccess    *prometheus.GaugeVec
	// RulesReloads counts rule reloads by result, "success" or "failure"
	// (both pre-created): increment it once per reload attempt.
	RulesReloads *prometheus.CounterVec
	// HTTPRequests counts HTTP requests by route pattern and status code
	// (engine/http.go).
	HTTPRequests *prometheus.CounterVec
	// BuildInfo is 1, labelled with the binary's version.
	BuildInfo *prometheus.GaugeVec

	// Cluster mode (docs/scaling.md).
	ClusterPartitions      prometheus.Gauge
	ClusterTakeovers       *prometheus.CounterVec
	ClusterTakeoverSeconds prometheus.Histogram
	ClusterFenced          prometheus.Counter
	ChangelogCommitSeconds prometheus.Histogram
	BudgetConflicts        prometheus.Counter
}

// Results of a rules reload, the values of RulesReloads' label.
const (
	ReloadSuccess = "success"
	ReloadFailure = "failure"
)

// NewMetrics creates the engine metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "kairos", "engine"
	latency := prometheus.ExponentialBucketsRange(0.0001, 10, 24)
	m := &Metrics{
		evals: &evalTally{every: time.Second},
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "events_total",
			Help: "Events applied, by event type (types no rule names are counted as \"other\")."}, []string{"type"}),
		Invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "dead_letters_total",
			Help: "Messages sent to the dead-letter stream, by reason."}, []string{"reason"}),
		Duplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "duplicate_deliveries_total",
			Help: "Redelivered events that were already applied and were only acknowledged."}),
		RuleEvals: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_evaluations_total",
			Help: "Rule evaluations, by rule."}, []string{"rule"}),
		RuleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_matches_total",
			Help: "Rule evaluations whose condition held, by rule."}, []string{"rule"}),
		RuleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "rule_errors_total",
			Help: "Rule evaluations that failed, by rule."}, []string{"rule"}),
		Offers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "offers_total",
			Help: "Offers emitted, by rule and channel."}, []string{"rule", "channel"}),
		Suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "offers_suppressed_total",
			Help: "Rule matches not sent, by rule, reason and mode (live, or shadow: what a shadow rule would have had suppressed)."}, []string{"rule", "reason", "mode"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "decisions_total",
			Help: "Decisions published, by outcome (emitted, suppressed, deferred) and mode (live, shadow)."}, []string{"outcome", "mode"}),
		Deferred: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "offers_deferred_total",
			Help: "Offers held back by quiet hours to be released later."}),
		BatchDuplicates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "batch", Name: "duplicates_total",
			Help: "Batch events skipped because their id was applied before (a job run again, a list sent twice)."}),
		BatchEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "batch", Name: "events_total",
			Help: "Batch events published by a job."}, []string{"job"}),
		BatchLastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: "batch", Name: "last_success_timestamp_seconds",
			Help: "When a job last finished publishing, unix seconds."}, []string{"job"}),
		Conversions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "conversions_total",
			Help: "Conversions attributed to a rule's offers (group treatment) or holdout decisions (group holdout)."}, []string{"rule", "group"}),
		BudgetRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "rule_budget_remaining",
			Help: "Offers a budgeted rule may still issue, by rule and period (total, day); 0 means the rule has stopped."}, []string{"rule", "period"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_size",
			Help: "Events per processed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 14)}),
		BatchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "batch_duration_seconds",
			Help: "Time to process, commit, publish and acknowledge one batch.", Buckets: latency}),
		ArrivalToDecision: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "arrival_to_decision_seconds",
			Help: "Per decision made for an event: from the event's arrival at the engine to the decision being committed.", Buckets: latency}),
		EventTimeToDecision: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "event_time_to_decision_seconds",
			Help: "Per decision made for an event: from the event's ts to the decision being committed.", Buckets: latency}),
		ArrivalToOffer: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "arrival_to_offer_seconds",
			Help: "From an event's arrival at the engine to its offer being stored in the offers stream.", Buckets: latency}),
		EventTimeToOffer: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "event_time_to_offer_seconds",
			Help: "From an event's ts to its offer being stored in the offers stream.", Buckets: latency}),
		Applied: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "applied_sequence",
			Help: "Highest events-stream sequence applied and committed."}),
		PublishRetries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "publish_failures_total",
			Help: "Batches whose offers or dead letters could not be published at the first attempt."}),
		RulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "rules_loaded",
			Help: "Rules loaded (enabled or not)."}),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "ready",
			Help: "1 when streams, consumer, rules and state are ready."}),
		RulesReloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "rules", Name: "reload_total",
			Help: "Rule reloads, by result (success, failure); a failed reload keeps the previous rules."}, []string{"result"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests, by route pattern (\"other\" when none matched) and status code."}, []string{"handler", "code"}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "build_info",
			Help: "Always 1; its labels name the running binary's module version, VCS revision and Go version."}, []string{"version", "revision", "goversion"}),
		ClusterPartitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: "cluster", Name: "partitions_owned",
			Help: "Partitions this instance owns (cluster mode)."}),
		ClusterTakeovers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: "cluster", Name: "takeovers_total",
			Help: "Partition takeovers, by result (ok, error)."}, []string{"result"}),
		ClusterTakeoverSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: "cluster", Name: "takeover_seconds",
			Help: "Time to take a partition over: fence, load its state from the changelog, republish its outbox, start consuming.", Buckets: latency}),
		ClusterFenced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "cluster", Name: "fenced_total",
			Help: "Partitions found taken over by another instance at a commit (the batch runs again without them)."}),
		ChangelogCommitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: "cluster", Name: "changelog_commit_seconds",
			Help: "Time to write a batch to the changelog (cluster mode).", Buckets: latency}),
		BudgetConflicts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: "cluster", Name: "budget_conflicts_total",
			Help: "Commits that found a budget counter moved by another instance (the batch runs again)."}),
	}
	if reg != nil {
		reg.MustRegister(m.ClusterPartitions, m.ClusterTakeovers, m.ClusterTakeoverSeconds, m.ClusterFenced, m.ChangelogCommitSeconds, m.BudgetConflicts)
		reg.MustRegister(m.Events, m.Invalid, m.Duplicates, flushingCollector{m.RuleEvals, m.evals.flush}, m.RuleMatches, m.RuleErrors, m.Offers,
			m.BatchSize, m.BatchDuration, m.ArrivalToOffer, m.EventTimeToOffer, m.ArrivalToDecision, m.EventTimeToDecision, m.Applied, m.PublishRetries, m.RulesLoaded, m.Ready,
			m.Suppressed, m.Decisions, m.Deferred, m.BudgetRemaining, m.RulesReloads, m.HTTPRequests, m.BuildInfo, m.Conversions, m.BatchDuplicates, m.BatchEvents, m.BatchLastSuccess)
	}
	for _, r := range []string{ReloadSuccess, ReloadFailure} {
		m.RulesReloads.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.ClusterTakeovers.WithLabelValues(r)
	}
	m.BuildInfo.WithLabelValues(buildVersion()).Set(1)
	for _, r := range []string{ReasonDecode, ReasonInvalid, ReasonOversize, ReasonEval} {
		m.Invalid.WithLabelValues(r)
	}
	for _, o := range []string{"emitted", "suppressed", "deferred", "converted"} {
		m.Decisions.WithLabelValues(o, "live")
		m.Decisions.WithLabelValues(o, "shadow")
	}
	return m
}

// buildVersion returns the module version, VCS revision and Go version the
// binary was built with ("(devel)" and "unknown" when not stamped, as in a
// build outside a Git checkout).
func buildVersion() (version, revision, goversion string) {
	version, revision, goversion = "(devel)", "unknown", runtime.Version()
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return
	}
	if bi.Main.Version != "" {
		version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != "" {
			revision = s.Value
		}
	}
	return
}

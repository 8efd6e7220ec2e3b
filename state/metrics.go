package state

import (
	"strconv"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics of the store, namespace "kairos", subsystem "state". No metric
// has a customer label.
type Metrics struct {
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	cacheEvictions prometheus.Counter
	commitDuration prometheus.Histogram
	commitBytes    prometheus.Histogram
	commitKeys     prometheus.Counter
	seriesOverflow prometheus.Counter
	l0Stall        prometheus.Counter

	// store is the open Store whose Badger sizes the gauges report.
	store atomic.Pointer[Store]
}

// NewMetrics creates the metrics and registers them with reg (none when
// reg is nil). Pass the result as Options.Metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		cacheHits: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "cache_hits_total",
			Help: "Customer loads served from the cache.",
		}),
		cacheMisses: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "cache_misses_total",
			Help: "Customer loads read from Badger.",
		}),
		cacheEvictions: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "cache_evictions_total",
			Help: "Customers dropped from the cache to keep it within its capacity.",
		}),
		commitDuration: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kairos", Subsystem: "state", Name: "commit_duration_seconds",
			Help:    "Duration of successful batch commits.",
			Buckets: prometheus.ExponentialBucketsRange(100e-6, 1, 12),
		}),
		commitBytes: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "kairos", Subsystem: "state", Name: "commit_bytes",
			Help:    "Encoded keys and values of successful batch commits.",
			Buckets: prometheus.ExponentialBuckets(1<<10, 4, 10), // 1 KiB .. 256 MiB
		}),
		commitKeys: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "commit_keys_total",
			Help: "Keys written or deleted by successful batch commits (the watermark included): Badger's cost per key outweighs a kilobyte of value.",
		}),
		seriesOverflow: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "series_overflow_total",
			Help: "Series entries dropped because a series exceeded MaxSeriesEntries.",
		}),
		l0Stall: f.NewCounter(prometheus.CounterOpts{
			Namespace: "kairos", Subsystem: "state", Name: "l0_stall_seconds_total",
			Help: "Time Badger held a flushed memtable back because level 0 had 15 tables (compaction behind the writes; while the memtables are full, commits wait too). Counts the stalls of more than a second, when each ends: Badger reports no shorter ones.",
		}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "kairos", Subsystem: "state", Name: "lsm_size_bytes",
		Help: "Size of Badger's LSM tree, as Badger last measured it.",
	}, func() float64 {
		lsm, _ := m.sizes()
		return float64(lsm)
	})
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "kairos", Subsystem: "state", Name: "vlog_size_bytes",
		Help: "Size of Badger's value log, as Badger last measured it.",
	}, func() float64 {
		_, vlog := m.sizes()
		return float64(vlog)
	})
	if reg != nil {
		reg.MustRegister(levelsCollector{m})
	}
	return m
}

var (
	lsmTablesDesc = prometheus.NewDesc("kairos_state_lsm_tables",
		"Tables in each level of Badger's LSM tree. Level 0 takes the flushed memtables; at 15 tables there, writes stall until compaction catches up.",
		[]string{"level"}, nil)
	lsmLevelBytesDesc = prometheus.NewDesc("kairos_state_lsm_level_bytes",
		"Bytes of the tables in each level of Badger's LSM tree.",
		[]string{"level"}, nil)
)

// levelsCollector reports the shape of Badger's LSM tree, read at each
// scrape: the table count of level 0 is the first sign of compaction
// falling behind the writes.
type levelsCollector struct{ m *Metrics }

func (c levelsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lsmTablesDesc
	ch <- lsmLevelBytesDesc
}

func (c levelsCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.m.levels() {
		lv := strconv.Itoa(l.Level)
		ch <- prometheus.MustNewConstMetric(lsmTablesDesc, prometheus.GaugeValue, float64(l.NumTables), lv)
		ch <- prometheus.MustNewConstMetric(lsmLevelBytesDesc, prometheus.GaugeValue, float64(l.Size), lv)
	}
}

// levels returns the LSM levels of the open store, none when it is not
// open (or closing: Badger then panics, and a scrape must not end the
// process).
func (m *Metrics) levels() (out []badger.LevelInfo) {
	defer func() {
		if recover() != nil {
			out = nil
		}
	}()
	if s := m.store.Load(); s != nil {
		return s.db.Levels()
	}
	return nil
}

func (m *Metrics) sizes() (lsm, vlog int64) {
	// Called on the registry's goroutines: a panic there ends the process.
	defer func() {
		if r := recover(); r != nil {
			lsm, vlog = 0, 0
		}
	}()
	if s := m.store.Load(); s != nil {
		return s.Sizes()
	}
	return 0, 0
}

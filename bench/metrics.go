package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// EngineStats are read from the engine's Prometheus /metrics over a run's
// measured time (differences of counters and histogram sums), when the
// bench knows the engine's HTTP address. They say what the engine did with
// the traffic and where a batch's time went.
type EngineStats struct {
	Events float64 `json:"events"`
	// MatchesPerEvent is rule matches over events; EmittedPerEvent and
	// SuppressedPerEvent the contact policy's decisions over events.
	MatchesPerEvent    float64 `json:"matches_per_event"`
	EmittedPerEvent    float64 `json:"emitted_per_event"`
	SuppressedPerEvent float64 `json:"suppressed_per_event"`
	// Batches: their mean size and wall time (decode to acknowledgement),
	// and the mean Badger commit inside them.
	Batches             float64 `json:"batches"`
	BatchSizeMean       float64 `json:"batch_size_mean"`
	BatchMillisMean     float64 `json:"batch_ms_mean"`
	CommitMillisMean    float64 `json:"commit_ms_mean"`
	CommitBytesPerEvent float64 `json:"commit_bytes_per_event"`
	// CommitKeysPerEvent is the keys the commits wrote or deleted, per
	// event: Badger's cost per key outweighs a kilobyte of value.
	CommitKeysPerEvent float64 `json:"commit_keys_per_event"`
	// ChangelogMillisMean is the mean write of a batch to the changelog,
	// before the Badger commit (cluster mode only).
	ChangelogMillisMean float64 `json:"changelog_ms_mean,omitempty"`
	// CacheHitRatio is the share of customer loads the engine's state
	// cache answered without reading Badger (state.cache_customers).
	CacheHitRatio float64 `json:"cache_hit_ratio"`
	// GCCycles counts the engine's garbage collections. GCShare is the
	// collector's share of the engine's busy CPU by the Go runtime's own
	// accounting (collector, user code and scavenger; system calls and
	// page faults are in none), and AssistShare the share of the
	// collector's CPU that goroutines spent in assists: marking they had to
	// do before they could allocate, the batch loop and Badger's writer
	// among them. The runtime totals these when a collection ends: the
	// shares are those of the collections in the interval, zero when there
	// was none or the engine does not export them (before
	// engine.RuntimeCollectors).
	GCCycles    float64 `json:"gc_cycles,omitempty"`
	GCShare     float64 `json:"gc_share,omitempty"`
	AssistShare float64 `json:"gc_assist_share,omitempty"`
	// L0StallSeconds is how long Badger held memtable flushes back on a
	// full level 0 (kairos_state_l0_stall_seconds_total: stalls of more
	// than a second, counted when they end).
	L0StallSeconds float64 `json:"l0_stall_seconds,omitempty"`
}

// metricsSnapshot is the sum of each metric's samples by name, and by
// name{label="value"} for each of their labels.
type metricsSnapshot map[string]float64

// scrapeMetrics reads a Prometheus text exposition.
func scrapeMetrics(ctx context.Context, url string) (metricsSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	m := metricsSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !scraped(line) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		j := strings.IndexByte(series, '{')
		if j < 0 {
			m[series] += v
			continue
		}
		// The sum by name, and by name and each one label, so that a
		// lookup by one label does not depend on the others.
		name := series[:j]
		m[name] += v
		for _, pair := range splitLabels(strings.TrimSuffix(series[j+1:], "}")) {
			m[name+"{"+pair+"}"] += v
		}
	}
	return m, sc.Err()
}

// scraped tells whether scrapeMetrics keeps a sample line: kairos's own
// metrics and the Go runtime's CPU accounting.
func scraped(line string) bool {
	return strings.HasPrefix(line, "kairos_") || strings.HasPrefix(line, "go_cpu_classes_") || strings.HasPrefix(line, "go_gc_cycles_total_")
}

// The runtime/metrics that engineStats reads, as client_golang names them.
const (
	metricGCCycles = "go_gc_cycles_total_gc_cycles_total"
	metricGCCPU    = "go_cpu_classes_gc_total_cpu_seconds_total"
	metricAssist   = "go_cpu_classes_gc_mark_assist_cpu_seconds_total"
	metricUserCPU  = "go_cpu_classes_user_cpu_seconds_total"
	metricScavenge = "go_cpu_classes_scavenge_total_cpu_seconds_total"
)

// engineStats computes the stats of the interval between two snapshots.
func engineStats(a, b metricsSnapshot) *EngineStats {
	if a == nil || b == nil {
		return nil
	}
	d := func(k string) float64 { return b[k] - a[k] }
	s := &EngineStats{Events: d("kairos_engine_events_total"), Batches: d("kairos_engine_batch_size_count")}
	if s.Events <= 0 {
		return nil
	}
	s.MatchesPerEvent = d("kairos_engine_rule_matches_total") / s.Events
	s.EmittedPerEvent = d(`kairos_decisions_total{outcome="emitted"}`) / s.Events
	s.SuppressedPerEvent = d(`kairos_decisions_total{outcome="suppressed"}`) / s.Events
	s.CommitBytesPerEvent = d("kairos_state_commit_bytes_sum") / s.Events
	s.CommitKeysPerEvent = d("kairos_state_commit_keys_total") / s.Events
	s.L0StallSeconds = d("kairos_state_l0_stall_seconds_total")
	if s.Batches > 0 {
		s.BatchSizeMean = d("kairos_engine_batch_size_sum") / s.Batches
		s.BatchMillisMean = 1000 * d("kairos_engine_batch_duration_seconds_sum") / s.Batches
	}
	if n := d("kairos_state_commit_duration_seconds_count"); n > 0 {
		s.CommitMillisMean = 1000 * d("kairos_state_commit_duration_seconds_sum") / n
	}
	if hits, n := d("kairos_state_cache_hits_total"), d("kairos_state_cache_hits_total")+d("kairos_state_cache_misses_total"); n > 0 {
		s.CacheHitRatio = hits / n
	}
	if n := d("kairos_cluster_changelog_commit_seconds_count"); n > 0 {
		s.ChangelogMillisMean = 1000 * d("kairos_cluster_changelog_commit_seconds_sum") / n
	}
	// The runtime totals its CPU classes when a collection ends, so the
	// shares are over the collections of the interval, and there are none
	// without one.
	s.GCCycles = d(metricGCCycles)
	if gc, busy := d(metricGCCPU), d(metricGCCPU)+d(metricUserCPU)+d(metricScavenge); s.GCCycles > 0 && gc > 0 && busy > 0 {
		s.GCShare = gc / busy
		s.AssistShare = d(metricAssist) / gc
	}
	return s
}

// splitLabels splits `a="x",b="y,z"` into its pairs, minding quotes.
func splitLabels(s string) []string {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// mergeSnapshots sums the snapshots of several engine instances; nil when
// there is none or one of them is nil.
func mergeSnapshots(ms []metricsSnapshot) metricsSnapshot {
	if len(ms) == 0 {
		return nil
	}
	if len(ms) == 1 {
		return ms[0]
	}
	sum := metricsSnapshot{}
	for _, m := range ms {
		if m == nil {
			return nil
		}
		for k, v := range m {
			sum[k] += v
		}
	}
	return sum
}

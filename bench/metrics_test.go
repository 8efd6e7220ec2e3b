package bench

import "testing"

func TestEngineStats(t *testing.T) {
	a := metricsSnapshot{"kairos_engine_events_total": 100, "kairos_state_cache_hits_total": 50, "kairos_state_cache_misses_total": 50}
	b := metricsSnapshot{
		"kairos_engine_events_total": 1100, "kairos_engine_rule_matches_total": 500,
		`kairos_decisions_total{outcome="emitted"}`: 200, `kairos_decisions_total{outcome="suppressed"}`: 300,
		"kairos_engine_batch_size_count": 10, "kairos_engine_batch_size_sum": 1000, "kairos_engine_batch_duration_seconds_sum": 0.5,
		"kairos_state_commit_bytes_sum": 1e6, "kairos_state_commit_keys_total": 1500, "kairos_state_cache_hits_total": 800, "kairos_state_cache_misses_total": 300,
		"kairos_state_l0_stall_seconds_total": 2.5,
	}
	s := engineStats(a, b)
	if s == nil || s.Events != 1000 || s.MatchesPerEvent != 0.5 || s.EmittedPerEvent != 0.2 || s.SuppressedPerEvent != 0.3 ||
		s.BatchSizeMean != 100 || s.BatchMillisMean != 50 || s.CommitBytesPerEvent != 1000 || s.CommitKeysPerEvent != 1.5 || s.CacheHitRatio != 0.75 ||
		s.L0StallSeconds != 2.5 {
		t.Errorf("stats %+v", s)
	}
	if s.GCCycles != 0 || s.GCShare != 0 || s.AssistShare != 0 {
		t.Errorf("collector stats without the runtime's metrics: %+v", s)
	}
	// The collector's accounting: 3 collections, 0.5 s of its CPU (0.1 s
	// of it assists) against 4 s of user code and 0.5 s of scavenging.
	b[metricGCCycles], b[metricGCCPU], b[metricAssist], b[metricUserCPU], b[metricScavenge] = 3, 0.5, 0.1, 4, 0.5
	a[metricUserCPU] = 1
	if s := engineStats(a, b); s.GCCycles != 3 || s.GCShare != 0.125 || s.AssistShare != 0.2 {
		t.Errorf("collector stats %+v, want 3 cycles, share 0.125, assists 0.2", s)
	}
	// Without a collection in the interval the runtime's totals are stale.
	b[metricGCCycles] = 0
	if s := engineStats(a, b); s.GCShare != 0 || s.AssistShare != 0 {
		t.Errorf("collector shares without a collection: %+v", s)
	}
	if engineStats(a, a) != nil {
		t.Error("stats of an interval without events")
	}
}

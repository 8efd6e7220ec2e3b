package engine

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/rules"
)

// evalTally feeds kairos_engine_rule_evaluations_total. Every event of a
// type evaluates each rule For(type) (the guards and the index skip the
// program, not the evaluation), so the engine counts events by type per
// batch and adds them to the rules' counters at most once a second and
// before every scrape, instead of adding to thousands of counters per
// event. A scrape therefore always sees every committed batch.
type evalTally struct {
	every time.Duration

	mu     sync.Mutex
	rs     *rules.RuleSet
	ruleM  []*ruleMetrics
	counts map[string]int // events by type since the last flush
	last   time.Time      // of the last flush
}

// reset flushes what is counted for the previous rule set and counts for
// rs, whose counters ruleM holds by rule index, from now on.
func (t *evalTally) reset(rs *rules.RuleSet, ruleM []*ruleMetrics) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked(time.Now())
	t.rs, t.ruleM = rs, ruleM
}

// add counts a committed batch's events by type; it flushes when the last
// flush is a second old.
func (t *evalTally) add(byType map[string]int, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counts == nil {
		t.counts = make(map[string]int, len(byType))
	}
	for typ, n := range byType {
		t.counts[typ] += n
	}
	if now.Sub(t.last) >= t.every {
		t.flushLocked(now)
	}
}

func (t *evalTally) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushLocked(time.Now())
}

func (t *evalTally) flushLocked(now time.Time) {
	t.last = now
	if t.rs == nil {
		clear(t.counts)
		return
	}
	for typ, n := range t.counts {
		for _, r := range t.rs.For(typ) {
			t.ruleM[r.Index].evals.Add(float64(n))
		}
	}
	clear(t.counts)
}

// flushingCollector collects a collector after flushing what is tallied
// for it.
type flushingCollector struct {
	prometheus.Collector
	flush func()
}

func (c flushingCollector) Collect(ch chan<- prometheus.Metric) {
	c.flush()
	c.Collector.Collect(ch)
}

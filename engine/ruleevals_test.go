package engine

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-engine/kairos/rules"
)

// TestRuleEvaluationsAtScrape checks that rule_evaluations_total counts
// each event once for every rule its type triggers, and that a scrape
// sees every batch added before it, flushed or not.
func TestRuleEvaluationsAtScrape(t *testing.T) {
	f, err := rules.ParseFile("r.yaml", []byte(`rules:
  - {id: a, on: [login], when: 'true', offer: {channels: [sms]}}
  - {id: b, on: [login, txn], when: 'true', offer: {channels: [sms]}}
  - {id: c, on: ["*"], when: 'true', offer: {channels: [sms]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Compile([]*rules.File{f}, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.evals.every = time.Hour // only scrapes and resets flush
	ruleM := make([]*ruleMetrics, len(rs.Rules()))
	for _, r := range rs.Rules() {
		ruleM[r.Index] = &ruleMetrics{evals: m.RuleEvals.WithLabelValues(r.ID)}
	}
	m.evals.reset(rs, ruleM)
	now := time.Now()
	m.evals.add(map[string]int{"login": 2, "txn": 1}, now)
	m.evals.add(map[string]int{"page_view": 4, "login": 1}, now)
	want := map[string]float64{"a": 3, "b": 4, "c": 8}
	scrape := func() map[string]float64 {
		got := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "kairos_engine_rule_evaluations_total" {
				continue
			}
			for _, s := range mf.GetMetric() {
				got[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
			}
		}
		return got
	}
	if got := scrape(); len(got) != 3 || got["a"] != want["a"] || got["b"] != want["b"] || got["c"] != want["c"] {
		t.Errorf("at the scrape %v, want %v", got, want)
	}
	// A reload flushes what the old set counted.
	m.evals.add(map[string]int{"txn": 5}, now)
	m.evals.reset(rs, ruleM)
	if got := testutil.ToFloat64(ruleM[1].evals); got != 9 {
		t.Errorf("b after a reset: %v, want 9", got)
	}
}

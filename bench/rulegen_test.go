package bench

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/rules"
)

func TestGenerateRulesLoad(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spec  RuleSpec
		types int
	}{
		{"the default hundred rules over the bench mix", RuleSpec{Seed: 1}, 10},
		{"twenty rules", RuleSpec{Rules: 20, Seed: 2}, 10},
		{"a thousand rules", RuleSpec{Rules: 1000, Seed: 3}, 10},
		{"rules over the demo's five types", RuleSpec{Rules: 50, Types: []string{"login", "page_view", "txn", "transfer", "payroll"}}, 5},
		{"an event type without templates", RuleSpec{Rules: 4, Types: []string{"loan_application"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := WriteRules(dir, tc.spec); err != nil {
				t.Fatal(err)
			}
			rs, err := rules.Load(rules.Options{}, dir)
			if err != nil {
				t.Fatalf("generated rules do not load: %v", err)
			}
			n := tc.spec.Rules
			if n == 0 {
				n = 100
			}
			if got := len(rs.Rules()); got != n {
				t.Fatalf("%d rules loaded, want %d", got, n)
			}
			if got := len(rs.Types()); got != tc.types {
				t.Fatalf("rules cover %d event types %v, want %d", got, rs.Types(), tc.types)
			}
			// Each type triggers 1/types of the rules (round robin).
			for _, typ := range rs.Types() {
				got := len(rs.For(typ))
				if want := n / tc.types; got < want || got > want+1 {
					t.Errorf("type %s triggers %d rules, want about %d", typ, got, want)
				}
			}
			if len(rs.Aggregates()) == 0 {
				t.Error("the rules use no windows")
			}
		})
	}
}

func TestGenerateRulesDeterministic(t *testing.T) {
	a := GenerateRules(RuleSpec{Rules: 200, Seed: 7})
	b := GenerateRules(RuleSpec{Rules: 200, Seed: 7})
	c := GenerateRules(RuleSpec{Rules: 200, Seed: 8})
	if !bytes.Equal(a, b) {
		t.Fatal("the same spec gave different rule files")
	}
	if bytes.Equal(a, c) {
		t.Fatal("different seeds gave the same rule file")
	}
}

func TestGeneratedRulesEvaluateOnBenchTraffic(t *testing.T) {
	dir := t.TempDir()
	if err := WriteRules(dir, RuleSpec{Rules: 300, Seed: 4}); err != nil {
		t.Fatal(err)
	}
	rs, err := rules.Load(rules.Options{}, filepath.Join(dir, "bench-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ev := rs.NewEvaluator()
	g := NewGenerator(Workload{Customers: 100, Seed: 4, Mix: BenchMix})
	w := constWindows(3)
	var matched, evaluated int
	for i := 0; i < 2000; i++ {
		e := g.Next(fixedNow)
		in := &rules.Input{
			Event:   rules.Event{ID: e.ID, CustomerID: e.CustomerID, Type: e.Type, TS: e.TS, Attrs: e.Attrs},
			Profile: g.Profile(i % 100),
			Now:     fixedNow,
			Windows: w,
		}
		if i%10 == 0 {
			in.Profile = map[string]any{} // a customer without a profile
		}
		ms, err := ev.Evaluate(t.Context(), in, nil)
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, e.Type, err)
		}
		evaluated += len(rs.For(e.Type))
		matched += len(ms)
	}
	if matched == 0 || matched == evaluated {
		t.Fatalf("%d of %d evaluations matched; the thresholds should make some match and some not", matched, evaluated)
	}
	t.Logf("%d of %d rule evaluations matched", matched, evaluated)
}

var fixedNow = time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)

// constWindows answers every window aggregate with the same value.
type constWindows float64

func (c constWindows) Value(int) float64 { return float64(c) }

// TestWaveCohorts checks that the waves of a targeted rule set split the
// cohorts: each cohort is in exactly one wave (at most 100 waves), or each
// wave has one cohort (more).
func TestWaveCohorts(t *testing.T) {
	for _, waves := range []int{1, 9, 99, 100, 150} {
		seen := map[string]int{}
		for w := 1; w <= waves; w++ {
			cs := waveCohorts(w, waves)
			if len(cs) == 0 {
				t.Fatalf("%d waves: wave %d targets no cohort", waves, w)
			}
			for _, c := range cs {
				seen[c]++
			}
		}
		if len(seen) != Cohorts {
			t.Errorf("%d waves target %d cohorts, want %d", waves, len(seen), Cohorts)
		}
		for c, n := range seen {
			if waves <= Cohorts && n != 1 {
				t.Errorf("%d waves: cohort %s in %d waves", waves, c, n)
			}
		}
	}
}

// TestRuleAudience checks that targeted rules keep the matches per event
// near those of the general block, and that AudienceAll does not target.
func TestRuleAudience(t *testing.T) {
	matchRate := func(spec RuleSpec) float64 {
		t.Helper()
		dir := t.TempDir()
		if err := WriteRules(dir, spec); err != nil {
			t.Fatal(err)
		}
		rs, err := rules.Load(rules.Options{}, filepath.Join(dir, "bench-rules.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		ev := rs.NewEvaluator()
		g := NewGenerator(Workload{Customers: 1000, Seed: 5, Mix: BenchMix})
		matched := 0
		const events = 3000
		for i := range events {
			e := g.Next(fixedNow)
			in := &rules.Input{
				Event:   rules.Event{ID: e.ID, CustomerID: e.CustomerID, Type: e.Type, TS: e.TS, Attrs: e.Attrs},
				Profile: g.Profile(i % 1000),
				Now:     fixedNow,
				Windows: constWindows(3),
			}
			ms, errs := ev.Evaluate(t.Context(), in, nil)
			if errs != nil {
				t.Fatalf("event %d: %v", i, errs)
			}
			matched += len(ms)
		}
		return float64(matched) / events
	}
	base := matchRate(RuleSpec{Rules: 100, Seed: 1})
	targeted := matchRate(RuleSpec{Rules: 2000, Seed: 1})
	all := matchRate(RuleSpec{Rules: 2000, Seed: 1, Audience: AudienceAll})
	t.Logf("matches per event: 100 rules %.2f, 2000 targeted %.2f, 2000 for all %.2f", base, targeted, all)
	if base == 0 || targeted > 4*base || all < 10*base {
		t.Errorf("matches per event: 100 rules %.2f, 2000 targeted %.2f, 2000 for all %.2f", base, targeted, all)
	}
	if bytes.Contains(GenerateRules(RuleSpec{Rules: 300, Audience: AudienceAll}), []byte("cohort")) {
		t.Error("audience all targets cohorts")
	}
}

package rules

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

type fixedWindows map[int]float64

func (w fixedWindows) Value(i int) float64 {
	if v, ok := w[i]; ok {
		return v
	}
	return math.NaN()
}

func loadGood(t *testing.T) *RuleSet {
	t.Helper()
	rs, err := Load(Options{}, "testdata/good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func aggIndex(t testing.TB, rs *RuleSet, a Aggregate) int {
	t.Helper()
	for i, x := range rs.Aggregates() {
		if x == a {
			return i
		}
	}
	t.Fatalf("aggregate %v not in %v", a, rs.Aggregates())
	return -1
}

func TestEvaluateExampleRule(t *testing.T) {
	rs := loadGood(t)
	login := aggIndex(t, rs, Aggregate{Kind: Count, Type: "login", Window: 24 * time.Hour})
	txnSum := aggIndex(t, rs, Aggregate{Kind: Sum, Type: "txn", Attr: "amount", Window: 30 * 24 * time.Hour})
	ev := NewEvaluatorForTest(rs)
	in := &Input{
		Event:   Event{ID: "e1", CustomerID: "C1", Type: "login", TS: 1_700_000_000_000, Attrs: map[string]any{"channel": "app"}},
		Profile: map[string]any{"tags": []any{"payroll"}, "name": "Ann"},
		Now:     time.UnixMilli(1_700_000_000_100),
	}
	cases := []struct {
		name    string
		windows fixedWindows
		want    bool
	}{
		{"first login with enough payroll fires", fixedWindows{login: 1, txnSum: 20000}, true},
		{"second login does not fire", fixedWindows{login: 2, txnSum: 20000}, false},
		{"too little spend does not fire", fixedWindows{login: 1, txnSum: 9999.99}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in.Windows = c.windows
			m, errs := ev.Evaluate(context.Background(), in, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got := len(m) == 1; got != c.want {
				t.Fatalf("matched=%v, want %v", got, c.want)
			}
			if c.want {
				if m[0].Params["name"] != "Ann" || m[0].Params["rate"] != "3.2%" {
					t.Fatalf("params = %v", m[0].Params)
				}
			}
		})
	}
}

func NewEvaluatorForTest(rs *RuleSet) *Evaluator { return rs.NewEvaluator() }

func TestWindowFunctionsAndErrors(t *testing.T) {
	rs := loadGood(t)
	since := aggIndex(t, rs, Aggregate{Kind: Since, Type: "txn"})
	dist := aggIndex(t, rs, Aggregate{Kind: Distinct, Type: "txn", Attr: "merchant", Window: 7 * 24 * time.Hour})
	avg := aggIndex(t, rs, Aggregate{Kind: Avg, Type: "txn", Attr: "amount", Window: 7 * 24 * time.Hour})
	ev := rs.NewEvaluator()
	base := Input{
		Event:   Event{ID: "e2", CustomerID: "C1", Type: "txn", TS: 1_700_000_000_000, Attrs: map[string]any{"amount": int64(6000)}},
		Profile: map[string]any{"tags": []any{"a", "x", "b"}},
	}
	cases := []struct {
		name      string
		attrs     map[string]any
		windows   fixedWindows
		wantMatch bool
		wantErr   bool
	}{
		{"no previous txn counts as long ago", map[string]any{"amount": int64(6000)}, fixedWindows{since: math.Inf(1), dist: 2, avg: 10}, true, false},
		{"previous txn 30 minutes ago blocks", map[string]any{"amount": 6000.0}, fixedWindows{since: 30 * 60 * 1000, dist: 2, avg: 10}, false, false},
		{"one merchant is not enough", map[string]any{"amount": uint16(6000)}, fixedWindows{since: 2 * 3600 * 1000, dist: 1, avg: 10}, false, false},
		{"small amount does not fire", map[string]any{"amount": int8(5)}, fixedWindows{since: math.Inf(1), dist: 2, avg: 10}, false, false},
		{"missing amount is an evaluation error", map[string]any{}, fixedWindows{since: math.Inf(1), dist: 2, avg: 10}, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base
			in.Event.Attrs = c.attrs
			in.Windows = c.windows
			m, errs := ev.Evaluate(context.Background(), &in, nil)
			if (len(errs) > 0) != c.wantErr {
				t.Fatalf("errs = %v, wantErr %v", errs, c.wantErr)
			}
			if (len(m) == 1) != c.wantMatch {
				t.Fatalf("matches = %v, want match %v", m, c.wantMatch)
			}
			if c.wantMatch {
				tags, _ := m[0].Params["tags"].([]any)
				if len(tags) != 2 || m[0].Params["avg"] != 10.0 {
					t.Fatalf("params = %#v", m[0].Params)
				}
			}
		})
	}
}

func TestRulesIndexedByTypeInPriorityOrder(t *testing.T) {
	f, err := ParseFile("p.yaml", []byte(`rules:
  - {id: low, on: [login], when: "true", offer: {channels: [sms], priority: 1}}
  - {id: high, on: [login], when: "true", offer: {channels: [sms], priority: 9}}
  - {id: any, on: ["*"], when: "true", offer: {channels: [sms], priority: 5}}
  - {id: also-high, on: [login], when: "true", offer: {channels: [sms], priority: 9}}
  - {id: off, on: [login], when: "count('login', '1h') > 0", enabled: false, offer: {channels: [sms], priority: 99}}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile([]*File{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rs.For("login") {
		ids = append(ids, r.ID)
	}
	if got, want := strings.Join(ids, ","), "also-high,high,any,low"; got != want {
		t.Fatalf("login rules = %s, want %s", got, want)
	}
	if got := len(rs.For("other")); got != 1 {
		t.Fatalf("other type gets %d rules, want the wildcard one", got)
	}
	if len(rs.Aggregates()) != 0 {
		t.Fatalf("a disabled rule's aggregates are maintained: %v", rs.Aggregates())
	}
}

func TestCostLimit(t *testing.T) {
	f, err := ParseFile("c.yaml", []byte(`rules:
  - id: heavy
    on: [login]
    when: profile.tags.all(a, profile.tags.all(b, profile.tags.exists(c, a + b + c == "x")))
    offer: {channels: [sms]}
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile([]*File{f}, Options{CostLimit: 100000})
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit 100000") {
		t.Fatalf("got %v", err)
	}
	if !errors.Is(err, ErrCompile) {
		t.Fatalf("%v is not ErrCompile", err)
	}
}

func TestVersionChangesWithDefinition(t *testing.T) {
	parse := func(when string) string {
		f, err := ParseFile("v.yaml", []byte("rules:\n  - {id: r, on: [x], when: '"+when+"', offer: {channels: [sms]}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := Compile([]*File{f}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return rs.Rules()[0].Version
	}
	if parse("true") == parse("false") {
		t.Fatal("different conditions share a version")
	}
	if parse("true") != parse("true") {
		t.Fatal("version is not deterministic")
	}
}

func BenchmarkEvaluate100Rules(b *testing.B)  { benchmarkEvaluate(b, 100) }
func BenchmarkEvaluate1000Rules(b *testing.B) { benchmarkEvaluate(b, 1000) }

// benchmarkEvaluate measures one event against n rules of which about 10%
// are triggered by its type, as in a realistic rule set.
func benchmarkEvaluate(b *testing.B, n int) {
	var sb strings.Builder
	sb.WriteString("rules:\n")
	types := []string{"login", "txn", "page_view", "payroll", "transfer", "profile", "card", "loan", "fx", "bill"}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, `  - id: r%d
    on: [%s]
    when: event.attrs.channel == "app" && "payroll" in profile.tags && count("login", "24h") == %d && sum("txn", "amount", "30d") >= 10000.0
    offer: {channels: [sms], params: {name: "profile.name"}}
`, i, types[i%len(types)], i%3)
	}
	f, err := ParseFile("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	rs, err := Compile([]*File{f}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ev := rs.NewEvaluator()
	w := fixedWindows{}
	for i := range rs.Aggregates() {
		w[i] = 20000
	}
	login := aggIndex(b, rs, Aggregate{Kind: Count, Type: "login", Window: 24 * time.Hour})
	w[login] = 1
	in := &Input{
		Event:   Event{ID: "e1", CustomerID: "C1", Type: "login", TS: 1_700_000_000_000, Attrs: map[string]any{"channel": "app"}},
		Profile: map[string]any{"tags": []any{"payroll"}, "name": "Ann"},
		Now:     time.UnixMilli(1_700_000_000_100),
		Windows: w,
	}
	var dst []Match
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst, _ = ev.Evaluate(context.Background(), in, dst[:0])
	}
	b.ReportMetric(float64(len(rs.For("login"))), "rules/event")
}

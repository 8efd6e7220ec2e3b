package bench

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
)

// The micro-benchmarks of the hot path live beside its code (make bench:
// decoding in engine, window updates and batch commits in state, rule
// evaluation in rules, offer encoding in connectors). These cover what
// kairos bench adds: the load generator's own cost, which bounds the rate
// it can drive, and the generated rule sets, whose evaluation cost and
// memory the rules targets are about.

// BenchmarkGenerateEvent is the load generator's cost per event: draw,
// encode.
func BenchmarkGenerateEvent(b *testing.B) {
	g := NewGenerator(Workload{Customers: 1_000_000, ZipfV: 100, Seed: 1, Mix: BenchMix})
	at := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		ev := g.Next(at)
		if _, err := msgpack.Marshal(&ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOfferEventID is the offers consumer's cost to find an offer's
// event.
func BenchmarkOfferEventID(b *testing.B) {
	o := connectors.Offer{ID: "o-0123456789abcdef01234567", RuleID: "b00001-txn", RuleVersion: "0123456789ab", CustomerID: "C0001234",
		Channel: "sms", Product: "P-TXN-1", Template: "t_txn_0", Params: map[string]any{"name": "Li", "amount": 12000.5},
		Priority: 50, EventID: "1x1a2b3c-4f5g", EventType: "txn", EventTS: 1_795_000_000_000, DecidedAt: 1_795_000_000_010, ExpiresAt: 1_795_086_400_010}
	data, err := connectors.NewEncoder().Encode(nil, &o, connectors.Msgpack)
	if err != nil {
		b.Fatal(err)
	}
	var d driver
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.offerEventID(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecorderRecord(b *testing.B) {
	r := NewRecorder()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		r.Record(time.Duration(500+i%5000) * time.Microsecond)
	}
}

func loadBenchRules(b *testing.B, n int) *rules.RuleSet {
	b.Helper()
	dir := b.TempDir()
	if err := WriteRules(dir, RuleSpec{Rules: n, Seed: 1}); err != nil {
		b.Fatal(err)
	}
	rs, err := rules.Load(rules.Options{}, dir)
	if err != nil {
		b.Fatal(err)
	}
	return rs
}

// BenchmarkEvaluateBenchRules evaluates the generated rule sets on bench
// traffic: each event triggers a tenth of the rules. Unlike the rules
// package's benchmark of one repeated rule, the rules differ in shape.
func BenchmarkEvaluateBenchRules(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			rs := loadBenchRules(b, n)
			ev := rs.NewEvaluator()
			g := NewGenerator(Workload{Customers: 1000, ZipfV: 100, Seed: 1, Mix: BenchMix})
			ins := make([]*rules.Input, 1000)
			for i := range ins {
				e := g.Next(fixedNow)
				ins[i] = &rules.Input{
					Event:   rules.Event{ID: e.ID, CustomerID: e.CustomerID, Type: e.Type, TS: e.TS, Attrs: e.Attrs},
					Profile: g.Profile(i), Now: fixedNow, Windows: constWindows(2),
				}
			}
			var dst []rules.Match
			evaluated := 0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				in := ins[i%len(ins)]
				dst, _ = ev.Evaluate(context.Background(), in, dst[:0])
				evaluated += len(rs.For(in.Event.Type))
			}
			b.ReportMetric(float64(evaluated)/float64(b.N), "rules/event")
		})
	}
}

// BenchmarkRuleSetMemory loads generated rule sets and reports the heap
// they hold per rule (after a GC), the compiled form the engine keeps.
func BenchmarkRuleSetMemory(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			dir := b.TempDir()
			if err := WriteRules(dir, RuleSpec{Rules: n, Seed: 1}); err != nil {
				b.Fatal(err)
			}
			var perRule float64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				rs, err := rules.Load(rules.Options{}, dir)
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perRule = float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				runtime.KeepAlive(rs)
			}
			b.ReportMetric(perRule, "heap-B/rule")
		})
	}
}

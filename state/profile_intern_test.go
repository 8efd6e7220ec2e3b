package state_test

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// bankProfile is a profile like a bank's: a unique name, and fields that
// take few values across customers.
func bankProfile(i int) map[string]any {
	tags := []any{}
	if i%3 == 0 {
		tags = append(tags, strings.Clone("payroll"))
	}
	if i%7 == 0 {
		tags = append(tags, strings.Clone("mortgage"))
	}
	return map[string]any{
		"name":         fmt.Sprintf("Customer %07d", i),
		"segment":      strings.Clone([]string{"mass", "affluent", "private", "youth"}[i%4]),
		"branch":       fmt.Sprintf("BR%03d", i%120),
		"tags":         tags,
		"channel_pref": []any{strings.Clone("app_push"), strings.Clone("sms")},
		"timezone":     strings.Clone("Asia/Shanghai"),
		"cohort":       fmt.Sprintf("K%02d", i%100),
		"age":          int64(20 + i%60),
	}
}

// benchPlan has 30 series, as the generated bench rules do: a count, a
// sum and a distinct count for each of ten event types.
func benchPlan(t testing.TB) *state.Plan {
	var specs []state.AggSpec
	for k := range 10 {
		typ := fmt.Sprint("type", k)
		specs = append(specs,
			state.AggSpec{Kind: state.Count, Type: typ, Window: 24 * time.Hour},
			state.AggSpec{Kind: state.Sum, Type: typ, Attr: "amount", Window: 7 * 24 * time.Hour},
			state.AggSpec{Kind: state.Distinct, Type: typ, Attr: "merchant", Window: 30 * 24 * time.Hour})
	}
	return mustPlan(t, 30*24*time.Hour, specs...)
}

// writeProfiles stores bankProfile(i) for customers 0…n-1, when p is
// not nil three events of two types each, and a ring of the given number
// of decisions, and returns their ids.
func writeProfiles(t testing.TB, s *state.Store, n int, p *state.Plan, decisions int) []string {
	sh, b := s.Shard(0), s.NewBatch()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%07d", i)
		c := load(t, sh, ids[i])
		c.MergeProfile(bankProfile(i))
		if p != nil {
			for e := range 3 {
				c.Apply(p, fmt.Sprint("type", (i+e)%2), t0+int64(i+e), map[string]any{"amount": 100.0, "merchant": fmt.Sprint("m", e)})
			}
		}
		for d := range decisions {
			c.AddDecision(benchDecision(i, d), decisions)
		}
		b.Put(c)
		if i%256 == 255 || i == n-1 {
			commit(t, s, b)
			b.Reset()
		}
	}
	return ids
}

func stringData(v any) *byte { return unsafe.StringData(v.(string)) }

// TestProfileValuesShared checks that customers loaded from Badger share
// the values their profiles have in common, and still read what was
// written.
func TestProfileValuesShared(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1, CacheCustomers: 4096})
	ids := writeProfiles(t, s, 1000, nil, 0)
	s.Invalidate(ids...)
	sh := s.Shard(0)
	a, b := load(t, sh, ids[0]), load(t, sh, ids[4]) // same segment, tags, cohort differs
	for _, k := range []string{"segment", "timezone"} {
		if a.Profile()[k] != b.Profile()[k] || stringData(a.Profile()[k]) != stringData(b.Profile()[k]) {
			t.Errorf("%s: %q and %q not shared", k, a.Profile()[k], b.Profile()[k])
		}
	}
	pa, pb := a.Profile()["channel_pref"].([]any), b.Profile()["channel_pref"].([]any)
	if stringData(pa[1]) != stringData(pb[1]) || &pa[0] == &pb[0] {
		t.Errorf("list elements not shared, or the lists are: %v %v", pa, pb)
	}
	if a.Profile()["cohort"] == b.Profile()["cohort"] || stringData(a.Profile()["name"]) == stringData(b.Profile()["name"]) {
		t.Error("different values came back equal")
	}
	for i, id := range ids {
		got, want := load(t, sh, id).Profile(), bankProfile(i)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s: profile %v, want %v", id, got, want)
		}
	}
}

// BenchmarkCachedCustomer measures what the cache keeps on the heap per
// customer loaded from Badger with a bank-like profile (bankProfile) and
// windows under a plan of 30 series (benchPlan), a few of them with
// entries: objects and bytes, for the collector to mark. With
// decisions=20 each customer also has a ring of 20 decisions, as one the
// engine has made offers to for a while, and gets one more after its
// load (the engine's own path: a decision of the current event).
func BenchmarkCachedCustomer(b *testing.B) {
	for _, decisions := range []int{0, 20} {
		b.Run(fmt.Sprint("decisions=", decisions), func(b *testing.B) { benchCachedCustomer(b, decisions) })
	}
}

func benchCachedCustomer(b *testing.B, decisions int) {
	const n = 10_000
	opts := state.Options{Dir: b.TempDir(), GCInterval: -1, CacheCustomers: 2 * n}
	p := benchPlan(b)
	w, err := state.Open(opts)
	if err != nil {
		b.Fatal(err)
	}
	ids := writeProfiles(b, w, n, p, decisions)
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	var objects, bytes, gcNanos float64
	for b.Loop() {
		// A store of its own each time: recycled customers would keep
		// their arrays from the time before.
		s, err := state.Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		sh := s.Shard(0)
		var m0, m1 runtime.MemStats
		runtime.GC()
		gc0 := timeGC()
		runtime.ReadMemStats(&m0)
		for i, id := range ids {
			c := load(b, sh, id)
			c.Value(p, 0, t0) // aligned to the plan, as an event does
			if decisions > 0 {
				c.AddDecision(benchDecision(i, decisions), decisions)
			}
		}
		runtime.GC()
		gc1 := timeGC()
		runtime.ReadMemStats(&m1)
		objects += float64(m1.HeapObjects) - float64(m0.HeapObjects)
		bytes += float64(m1.HeapAlloc) - float64(m0.HeapAlloc)
		gcNanos += float64(gc1 - gc0)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(objects/float64(b.N)/n, "heap-objects/customer")
	b.ReportMetric(bytes/float64(b.N)/n, "heap-B/customer")
	b.ReportMetric(gcNanos/float64(b.N)/n, "gc-ns/customer")
}

// benchDecision is decision d of customer i, with ids as long as the
// engine's.
func benchDecision(i, d int) state.Decision {
	return state.Decision{TS: t0 + int64(d)*sec, Rule: fmt.Sprint("rule-", d%7), OfferID: fmt.Sprintf("o-%07d-%02d-0123456789abcdef", i, d),
		EventID: fmt.Sprintf("e-%07d-%02d-01234567", i, d), Outcome: "emitted", Reason: "", Channel: "push"}
}

// timeGC returns the shortest of three full collections: the collector's
// work for what is live.
func timeGC() time.Duration {
	best := time.Duration(math.MaxInt64)
	for range 3 {
		t := time.Now()
		runtime.GC()
		best = min(best, time.Since(t))
	}
	return best
}

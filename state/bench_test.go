package state_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// BenchmarkApplyValue is the engine's hot path for one event: a cache-hit
// Load, Apply and five Values. One event per minute against 24h windows
// keeps about 1440 entries per series in steady state.
func BenchmarkApplyValue(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1})
	p := mustPlan(b, 24*time.Hour,
		state.AggSpec{Kind: state.Count, Type: "buy", Window: time.Hour},
		state.AggSpec{Kind: state.Sum, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
		state.AggSpec{Kind: state.Max, Type: "buy", Attr: "amount", Window: time.Hour},
		state.AggSpec{Kind: state.Distinct, Type: "*", Attr: "sku", Window: 24 * time.Hour},
		state.AggSpec{Kind: state.Since, Type: "buy"},
	)
	sh := s.Shard(0)
	attrs := make([]map[string]any, 97)
	for i := range attrs {
		attrs[i] = map[string]any{"amount": float64(i), "sku": fmt.Sprint("sku-", i)}
	}
	ts := t0
	warm := load(b, sh, "alice")
	for i := range 3000 {
		ts += 60 * sec
		warm.Apply(p, "buy", ts, attrs[i%len(attrs)])
	}
	sum := 0.0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ts += 60 * sec
		c, err := sh.Load("alice")
		if err != nil {
			b.Fatal(err)
		}
		c.Apply(p, "buy", ts, attrs[i%len(attrs)])
		for j := range 5 {
			sum += c.Value(p, j, ts)
		}
	}
	if sum == 0 {
		b.Fatal("no values")
	}
}

// BenchmarkCommitBatch commits 256 dirty customers (and a watermark) per
// operation.
func BenchmarkCommitBatch(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1})
	p := mustPlan(b, 24*time.Hour, testSpecs...)
	sh := s.Shard(0)
	batch := s.NewBatch()
	ids := make([]string, 4096)
	for i := range ids {
		ids[i] = fmt.Sprint("customer-", i)
	}
	attrs := map[string]any{"amount": 12.5, "sku": "sku-1"}
	ts := t0
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for range 256 {
			ts += sec
			c, err := sh.Load(ids[n%len(ids)])
			if err != nil {
				b.Fatal(err)
			}
			n++
			c.Apply(p, "buy", ts, attrs)
			batch.Put(c)
		}
		batch.SetApplied(state.Watermark{Stream: "EVENTS", Seq: uint64(n)})
		if err := s.Commit(batch); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
}

// BenchmarkAddContactCount is the contact-policy hot path for one offer on
// a cached customer: a cache-hit Load, AddContact (one every 3h, kept a
// week, so about 56 contacts in steady state) and three CountContacts
// (daily marketing cap, weekly per rule, weekly per channel).
func BenchmarkAddContactCount(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	rules := []string{"welcome", "winback", "upsell"}
	channels := []string{"email", "sms"}
	const week = 7 * 24 * time.Hour
	ts := t0
	warm := load(b, sh, "alice")
	for i := range 1000 {
		ts += 3 * hour
		warm.AddContact(state.Contact{TS: ts, Rule: rules[i%3], Channel: channels[i%2]}, week)
	}
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		ts += 3 * hour
		c, err := sh.Load("alice")
		if err != nil {
			b.Fatal(err)
		}
		c.AddContact(state.Contact{TS: ts, Rule: rules[i%3], Channel: channels[i%2], Kind: uint8(i % 2)}, week)
		n += c.CountContacts(ts-24*hour, 0, "", "")
		n += c.CountContacts(ts-7*24*hour, -1, rules[i%3], "")
		n += c.CountContacts(ts-7*24*hour, -1, "", channels[i%2])
	}
	if n == 0 {
		b.Fatal("no contacts counted")
	}
}

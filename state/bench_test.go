package state_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
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
	benchCommitBatch(b, state.Options{GCInterval: -1})
}

// BenchmarkCommitBatchReplicate is BenchmarkCommitBatch with
// Options.Replicate, without taking the records.
func BenchmarkCommitBatchReplicate(b *testing.B) {
	benchCommitBatch(b, state.Options{GCInterval: -1, Replicate: true})
}

func benchCommitBatch(b *testing.B, opts state.Options) {
	s := statetest.Open(b, opts)
	p := mustPlan(b, 24*time.Hour, testSpecs...)
	sh := s.Shard(0)
	batch := s.NewBatch()
	ids := benchIDs(4096)
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

// BenchmarkCommitLongHistory is BenchmarkCommitBatch for customers with
// long histories: 128 customers with 1,000 to 1,254 events each in their
// 30-day windows (3 entries each) before the timer starts; each op commits
// a batch of one more event for each of them. (The counts differ so that
// the customers do not all rewrite their base chunks in the same batch.)
func BenchmarkCommitLongHistory(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1})
	p := mustPlan(b, 30*24*time.Hour,
		state.AggSpec{Kind: state.Count, Type: "view", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Sum, Type: "buy", Attr: "amount", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Distinct, Type: "*", Attr: "sku", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Since, Type: "buy"})
	sh := s.Shard(0)
	batch := s.NewBatch()
	ids := benchIDs(128)
	attrs := map[string]any{"amount": 12.5, "sku": "sku-1"}
	ts := t0
	// event gives an event to every customer i with 2*i <= round.
	event := func(round int) {
		ts += sec
		for i, id := range ids {
			if 2*i > round {
				continue
			}
			c, err := sh.Load(id)
			if err != nil {
				b.Fatal(err)
			}
			c.Apply(p, "buy", ts, attrs)
			batch.Put(c)
		}
		if err := s.Commit(batch); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	for round := range 1000 + 2*len(ids) {
		event(round)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		event(math.MaxInt)
	}
}

// BenchmarkLoadMissLongHistory is BenchmarkLoadMiss for customers with
// long histories: 2,000 customers with 300 to 555 events (900 to 1,665
// window entries) each, committed one event per batch, so that their
// window records have chunks; a cache of 256 customers makes every load
// read Badger.
func BenchmarkLoadMissLongHistory(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1, CacheCustomers: 256})
	p := mustPlan(b, 30*24*time.Hour,
		state.AggSpec{Kind: state.Count, Type: "view", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Sum, Type: "buy", Attr: "amount", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Distinct, Type: "*", Attr: "sku", Window: 30 * 24 * time.Hour},
		state.AggSpec{Kind: state.Since, Type: "buy"})
	sh := s.Shard(0)
	batch := s.NewBatch()
	const n = 2000
	ids := benchIDs(n)
	attrs := map[string]any{"amount": 12.5, "sku": "sku-1"}
	ts := t0
	for round := range 300 + 255 {
		ts += sec
		for i, id := range ids {
			if round < i%256 {
				continue
			}
			c := load(b, sh, id)
			c.Apply(p, "buy", ts, attrs)
			batch.Put(c)
			if i%100 == 99 { // a batch of whole records fits a transaction
				if err := s.Commit(batch); err != nil {
					b.Fatal(err)
				}
				batch.Reset()
			}
		}
		if err := s.Commit(batch); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	benchLoads(b, s, batch, ids, p, ts)
}

// benchLoads times loads of the ids in a scattered order from shard 0,
// each with a Value at, and commits (nothing) every 256 loads as the
// engine's batches end, which lets the cache drop what it loaded.
func benchLoads(b *testing.B, s *state.Store, batch *state.Batch, ids []string, p *state.Plan, at int64) {
	sh := s.Shard(0)
	sum := 0.0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c, err := sh.Load(ids[(i*7919)%len(ids)])
		if err != nil {
			b.Fatal(err)
		}
		sum += c.Value(p, 1, at)
		if i%256 == 255 {
			if err := s.Commit(batch); err != nil {
				b.Fatal(err)
			}
		}
	}
	if sum == 0 {
		b.Fatal("no values")
	}
}

// BenchmarkCommitDecisions commits one decision for each of 128
// customers that keep their last 20 (filled before the timer starts), as
// the engine does for an event whose rule matched.
func BenchmarkCommitDecisions(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	batch := s.NewBatch()
	ids := benchIDs(128)
	n := 0
	round := func() {
		for _, id := range ids {
			c, err := sh.Load(id)
			if err != nil {
				b.Fatal(err)
			}
			n++
			c.AddDecision(state.Decision{TS: t0 + int64(n), Rule: "card-offer-17", OfferID: fmt.Sprint("o-0123456789abcdef-", n),
				EventID: fmt.Sprint("e-0123456789-", n), Outcome: "suppressed", Reason: "daily cap", Channel: "push"}, 20)
			batch.Put(c)
		}
		if err := s.Commit(batch); err != nil {
			b.Fatal(err)
		}
		batch.Reset()
	}
	for range 20 {
		round()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		round()
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

// BenchmarkReplication is the changelog path for 10k customers with
// windows, a profile and a policy record with deferred offers. Records
// puts them in batches of 256 under Options.Replicate and takes their
// records (what the owner does per commit, the commit left out);
// ImportRecords writes the records into another store (what a new owner
// does), replacing those of the previous iteration.
func BenchmarkReplication(b *testing.B) {
	const customers = 10_000
	p := mustPlan(b, 24*time.Hour, testSpecs...)
	src := statetest.Open(b, state.Options{GCInterval: -1, Replicate: true, CacheCustomers: customers})
	cs := make([]*state.Customer, customers)
	for i := range cs {
		cs[i] = load(b, src.Shard(0), fmt.Sprint("customer-", i))
		fillAll(p, cs[i], i)
	}
	batch := src.NewBatch()
	ids := make([]string, 0, customers)
	recs := make([][]byte, 0, customers)
	size := 0
	for i, c := range cs {
		batch.Put(c)
		if i%256 == 255 || i == len(cs)-1 {
			batch.Records(func(id string, rec []byte) {
				ids = append(ids, id)
				recs = append(recs, bytes.Clone(rec))
				size += len(rec)
			})
			batch.Reset()
		}
	}
	b.Logf("%d records, %d bytes on average", len(recs), size/len(recs))

	b.Run("Records", func(b *testing.B) {
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			for i, c := range cs {
				batch.Put(c)
				if i%256 == 255 || i == len(cs)-1 {
					batch.Records(func(string, []byte) { n++ })
					batch.Reset()
				}
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("ImportRecords", func(b *testing.B) {
		dst := statetest.Open(b, state.Options{GCInterval: -1})
		n := 0
		b.ReportAllocs()
		for b.Loop() {
			i := 0
			done, err := dst.ImportRecords(func() (string, []byte, bool, error) {
				if i == len(recs) {
					return "", nil, false, nil
				}
				i++
				return ids[i-1], recs[i-1], true, nil
			})
			if err != nil || done != len(recs) {
				b.Fatalf("ImportRecords: %d, %v", done, err)
			}
			n += done
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkLoadMiss is the engine's path for a customer not in the decoded
// cache: Load reads the window, profile and policy records from Badger
// and decodes them, and Value realigns the series to the plan. 20,000
// customers with two events, a profile of six fields and one decision
// each; a cache of 1,024 customers, so nearly every Load misses. An empty
// Commit every 256 loads ends the batch, as the engine's does, so that
// evicted customers are recycled.
func BenchmarkLoadMiss(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1, CacheCustomers: 1024})
	p := mustPlan(b, 24*time.Hour, testSpecs...)
	sh := s.Shard(0)
	batch := s.NewBatch()
	const n = 20_000
	ids := benchIDs(n)
	attrs := map[string]any{"amount": 12.5, "sku": "sku-1"}
	for i := range ids {
		c := load(b, sh, ids[i])
		c.MergeProfile(map[string]any{"segment": "mass", "age": int64(30 + i%40), "city": "Lisbon",
			"cohort": fmt.Sprint("K", i%100), "income": 2500.0, "app_user": true})
		c.Apply(p, "buy", t0+int64(i), attrs)
		c.Apply(p, "view", t0+int64(i)+sec, nil)
		c.AddDecision(state.Decision{TS: t0 + int64(i), Rule: "welcome", OfferID: "o-0123456789abcdef01234567",
			EventID: fmt.Sprint("e-", i), Outcome: "emitted", Channel: "push"}, 20)
		batch.Put(c)
		if i%256 == 255 || i == n-1 {
			if err := s.Commit(batch); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	at := t0 + int64(n) + 10*sec
	benchLoads(b, s, batch, ids, p, at)
}

// BenchmarkLoadFirstSeen loads customers that have a profile and nothing
// else, as most of a large population the engine has not met yet, in a
// store of 400,000 profiles where 40,000 other customers have windows and
// policies: one Get finds the profile, two find nothing.
func BenchmarkLoadFirstSeen(b *testing.B) {
	s := statetest.Open(b, state.Options{GCInterval: -1, CacheCustomers: 1024})
	p := mustPlan(b, 24*time.Hour, testSpecs...)
	const n = 400_000
	ids := benchIDs(n)
	i := 0
	if _, err := s.ImportProfiles(func() (state.ProfileRow, error) {
		if i == n {
			return state.ProfileRow{}, io.EOF
		}
		i++
		return state.ProfileRow{ID: ids[i-1], Attrs: map[string]any{"segment": "mass", "age": int64(30 + i%40), "city": "Lisbon"}}, nil
	}, nil); err != nil {
		b.Fatal(err)
	}
	batch := s.NewBatch()
	for i := range n / 10 {
		c := load(b, s.Shard(0), fmt.Sprintf("active-%07d", i))
		c.Apply(p, "view", t0+int64(i), nil)
		c.AddDecision(state.Decision{TS: t0, Rule: "welcome", OfferID: "o", EventID: "e", Outcome: "emitted", Channel: "push"}, 20)
		batch.Put(c)
		if i%256 == 255 {
			commit(b, s, batch)
		}
	}
	commit(b, s, batch)
	sh := s.Shard(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c, err := sh.Load(ids[(i*7919)%n])
		if err != nil || len(c.Profile()) != 3 {
			b.Fatal(c.Profile(), err)
		}
		if i%256 == 255 {
			commit(b, s, batch)
		}
	}
}

// benchIDs returns n customer ids, customer-0000000 on.
func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("customer-%07d", i)
	}
	return ids
}

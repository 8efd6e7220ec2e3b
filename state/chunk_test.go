package state_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// reload loads c again from its shard: from the cache when it is there.
func reload(t *testing.T, c *state.Customer) *state.Customer {
	t.Helper()
	return load(t, state.ShardOf(c), c.ID())
}

// chunkSpecs keep 30 days, so that nothing leaves the windows in the
// tests below.
var chunkSpecs = []state.AggSpec{
	{Kind: state.Count, Type: "view", Window: 30 * 24 * time.Hour},
	{Kind: state.Sum, Type: "buy", Attr: "amount", Window: 30 * 24 * time.Hour},
	{Kind: state.Max, Type: "buy", Attr: "amount", Window: time.Hour},
	{Kind: state.Distinct, Type: "*", Attr: "sku", Window: 30 * 24 * time.Hour},
	{Kind: state.Since, Type: "buy"},
}

// chunkEvent applies event i of a customer's history to c.
func chunkEvent(p *state.Plan, c *state.Customer, i int) {
	ts := t0 + int64(i)*10*sec
	if i%3 == 0 {
		c.Apply(p, "buy", ts, map[string]any{"amount": float64(i%11) + 0.25, "sku": i % 5})
	} else {
		c.Apply(p, "view", ts, map[string]any{"sku": fmt.Sprint("s", i%13)})
	}
}

// checkSame compares c's values with ref's at a few times around at. Both
// are loaded anew, so that neither takes its last event for the one being
// processed (Since leaves that out).
func checkSame(t *testing.T, what string, p *state.Plan, c, ref *state.Customer, at int64) {
	t.Helper()
	c = reload(t, c)
	ref = reload(t, ref)
	for _, ts := range []int64{at, at - hour, at + 10*sec, at - 24*hour} {
		if got, want := values(p, c, ts), values(p, ref, ts); !sameFloats(got, want) {
			t.Fatalf("%s: values at %d:\n got %v\nwant %v", what, ts-t0, got, want)
		}
	}
}

// TestChunksBoundTheWindowRecord commits a customer's events one by one:
// the window record stays small and the chunks few however long the
// history, and a reload (and a reopen) gives the same values as a
// customer that was never written.
func TestChunksBoundTheWindowRecord(t *testing.T) {
	dir := t.TempDir()
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	ref := load(t, statetest.Open(t, state.Options{GCInterval: -1}).Shard(0), "alice")
	b := s.NewBatch()
	const n = 3000
	maxRecord, maxChunks := 0, 0
	for i := range n {
		c := load(t, s.Shard(0), "alice")
		chunkEvent(p, c, i)
		chunkEvent(p, ref, i)
		b.Put(c)
		commit(t, s, b)
		rec, _, err := state.ReadRaw(s, "c/alice")
		if err != nil {
			t.Fatal(err)
		}
		maxRecord = max(maxRecord, len(rec))
		maxChunks = max(maxChunks, len(state.ChunkKeys(s)))
		if i%97 == 0 || i == n-1 {
			s.Invalidate("alice")
			c = load(t, s.Shard(0), "alice")
			checkSame(t, fmt.Sprintf("after event %d and a reload", i), p, c, ref, t0+int64(i)*10*sec)
		}
	}
	// Every event goes into 2 or 3 series: a full window record would
	// hold them all (about 8,000 entries here).
	if maxRecord > 400 {
		t.Errorf("the window record reached %d bytes, want at most 400", maxRecord)
	}
	if maxChunks > 9 {
		t.Errorf("%d chunks at most, want at most 9 (a base and 8 more)", maxChunks)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	c := load(t, s.Shard(0), "alice")
	if state.Chunks(c) == 0 {
		t.Fatal("no chunks after 3000 events")
	}
	checkSame(t, "after a reopen", p, c, ref, t0+(n-1)*10*sec)
}

// chunked returns a store whose customer alice has chunks, and a
// customer of another store that took the same events.
func chunked(t *testing.T, p *state.Plan, opts state.Options, events int) (*state.Store, *state.Customer) {
	t.Helper()
	s := statetest.Open(t, opts)
	ref := load(t, statetest.Open(t, state.Options{GCInterval: -1}).Shard(0), "alice")
	feedChunks(t, s, p, ref, 0, events)
	if len(state.ChunkKeys(s)) == 0 {
		t.Fatal("no chunks written")
	}
	return s, ref
}

// feedChunks gives alice of s and ref chunkEvent from to to-1, a commit
// each.
func feedChunks(t *testing.T, s *state.Store, p *state.Plan, ref *state.Customer, from, to int) {
	t.Helper()
	b := s.NewBatch()
	for i := from; i < to; i++ {
		c := load(t, s.Shard(0), "alice")
		chunkEvent(p, c, i)
		chunkEvent(p, ref, i)
		b.Put(c)
		commit(t, s, b)
	}
}

// TestLateEventReseals sends an event older than sealed entries: the
// window record holds everything again and the chunks go.
func TestLateEventReseals(t *testing.T) {
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	s, ref := chunked(t, p, state.Options{GCInterval: -1}, 100)
	c := load(t, s.Shard(0), "alice")
	late := map[string]any{"amount": 7.5, "sku": "late"}
	c.Apply(p, "buy", t0+5*sec, late)
	ref.Apply(p, "buy", t0+5*sec, late)
	b := s.NewBatch()
	commitResealed(t, s, b, c, "a late event")
	s.Invalidate("alice")
	c = load(t, s.Shard(0), "alice")
	checkSame(t, "after the late event", p, c, ref, t0+99*10*sec)
	// Sealing starts again.
	feedChunks(t, s, p, ref, 100, 200)
	if len(state.ChunkKeys(s)) == 0 {
		t.Error("no chunks after 100 more events")
	}
	s.Invalidate("alice")
	checkSame(t, "after 100 more", p, load(t, s.Shard(0), "alice"), ref, t0+199*10*sec)
}

// commitResealed commits c, which must rewrite all its entries: its
// chunks are replaced by one new one holding them all.
func commitResealed(t *testing.T, s *state.Store, b *state.Batch, c *state.Customer, why string) {
	t.Helper()
	before := state.ChunkKeys(s)
	b.Put(c)
	commit(t, s, b)
	keys := state.ChunkKeys(s)
	if len(keys) != 1 || slices.Contains(before, keys[0]) {
		t.Errorf("chunks %q after %s, want one new chunk instead of %q", keys, why, before)
	}
}

// TestPlanDropReseals drops a series that chunks hold: it does not come
// back when a later plan has it again.
func TestPlanDropReseals(t *testing.T) {
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	s, _ := chunked(t, p, state.Options{GCInterval: -1}, 100)
	noViews := mustPlan(t, 30*24*time.Hour, chunkSpecs[1:]...)
	c := load(t, s.Shard(0), "alice")
	chunkEvent(noViews, c, 100)
	b := s.NewBatch()
	commitResealed(t, s, b, c, "the plan dropped a series")
	s.Invalidate("alice")
	c = load(t, s.Shard(0), "alice")
	if got := c.Value(p, 0, t0+100*10*sec); got != 0 {
		t.Errorf("views counted after the series was dropped: %v, want 0", got)
	}
	if got := c.Value(p, 1, t0+100*10*sec); got == 0 {
		t.Error("the buys' sum went with the views")
	}
}

// TestChunksLeaveWithTheCustomer: erasure, export and import, and a store
// reopened with Options.Replicate leave no chunk behind.
func TestChunksLeaveWithTheCustomer(t *testing.T) {
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	at := t0 + 99*10*sec

	t.Run("DropCustomers", func(t *testing.T) {
		s, _ := chunked(t, p, state.Options{GCInterval: -1}, 100)
		if err := s.DropCustomers([]string{"alice"}); err != nil {
			t.Fatal(err)
		}
		if keys := state.ChunkKeys(s); len(keys) != 0 {
			t.Errorf("chunks %q left after DropCustomers", keys)
		}
	})
	t.Run("DropCustomers of a corrupt record", func(t *testing.T) {
		s, _ := chunked(t, p, state.Options{GCInterval: -1}, 100)
		// A neighbour whose id starts like alice's chunk keys.
		other := "alice\x00b"
		b := s.NewBatch()
		for i := range 100 {
			c := load(t, s.Shard(0), other)
			chunkEvent(p, c, i)
			b.Put(c)
			commit(t, s, b)
		}
		before := len(state.ChunkKeys(s))
		if err := state.WriteRaw(s, "c/alice", []byte{3, 0xff}); err != nil {
			t.Fatal(err)
		}
		if err := s.DropCustomers([]string{"alice"}); err != nil {
			t.Fatal(err)
		}
		for _, k := range state.ChunkKeys(s) {
			if !strings.HasPrefix(k, "w/"+other+"\x00") {
				t.Errorf("chunk %q left after DropCustomers", k)
			}
		}
		if n := len(state.ChunkKeys(s)); n == 0 || n == before {
			t.Errorf("%d chunks after dropping alice, %d before: want the neighbour's only", n, before)
		}
	})
	t.Run("export and import", func(t *testing.T) {
		s, ref := chunked(t, p, state.Options{GCInterval: -1}, 100)
		rec, ok, err := s.ExportCustomer("alice")
		if err != nil || !ok {
			t.Fatalf("ExportCustomer: %v, %v", ok, err)
		}
		dst := statetest.Open(t, state.Options{GCInterval: -1})
		if _, err := dst.ImportRecords(feed([]string{"alice"}, map[string][]byte{"alice": rec})); err != nil {
			t.Fatal(err)
		}
		checkSame(t, "imported", p, load(t, dst.Shard(0), "alice"), ref, at)
		// Imported over itself: the record holds all, the chunks go.
		if _, err := s.ImportRecords(feed([]string{"alice"}, map[string][]byte{"alice": rec})); err != nil {
			t.Fatal(err)
		}
		if keys := state.ChunkKeys(s); len(keys) != 0 {
			t.Errorf("chunks %q left after an import", keys)
		}
		s.Invalidate("alice")
		checkSame(t, "imported over chunks", p, load(t, s.Shard(0), "alice"), ref, at)
	})
	t.Run("Replicate", func(t *testing.T) {
		dir := t.TempDir()
		s, ref := chunked(t, p, state.Options{Dir: dir, GCInterval: -1}, 100)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1, Replicate: true})
		c := load(t, s.Shard(0), "alice")
		chunkEvent(p, c, 100)
		chunkEvent(p, ref, 100)
		b := s.NewBatch()
		b.Put(c)
		commit(t, s, b)
		if keys := state.ChunkKeys(s); len(keys) != 0 {
			t.Errorf("chunks %q left under Replicate", keys)
		}
		s.Invalidate("alice")
		checkSame(t, "under Replicate", p, load(t, s.Shard(0), "alice"), ref, at+10*sec)
	})
}

// TestChunkOfAnEarlierPutInTheBatch puts a customer twice in one batch,
// the first Put sealing a chunk: the chunk is written with the second.
func TestChunkOfAnEarlierPutInTheBatch(t *testing.T) {
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	s := statetest.Open(t, state.Options{GCInterval: -1})
	ref := load(t, statetest.Open(t, state.Options{GCInterval: -1}).Shard(0), "alice")
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	for i := range 20 {
		chunkEvent(p, c, i)
		chunkEvent(p, ref, i)
	}
	b.Put(c)
	if state.Chunks(c) != 1 {
		t.Fatalf("%d chunks after 20 events, want 1", state.Chunks(c))
	}
	chunkEvent(p, c, 20)
	chunkEvent(p, ref, 20)
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("alice")
	checkSame(t, "after two Puts", p, load(t, s.Shard(0), "alice"), ref, t0+20*10*sec)
}

// TestChunksKeepTheCap: the entries the series cap dropped stay dropped
// after a reload, though chunks written before still hold them.
func TestChunksKeepTheCap(t *testing.T) {
	p := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	s := statetest.Open(t, state.Options{GCInterval: -1, MaxSeriesEntries: 50})
	ref := load(t, statetest.Open(t, state.Options{GCInterval: -1, MaxSeriesEntries: 50}).Shard(0), "alice")
	b := s.NewBatch()
	for i := range 400 {
		c := load(t, s.Shard(0), "alice")
		chunkEvent(p, c, i)
		chunkEvent(p, ref, i)
		b.Put(c)
		commit(t, s, b)
		if i%50 == 49 {
			s.Invalidate("alice")
			checkSame(t, fmt.Sprintf("after event %d and a reload", i), p, load(t, s.Shard(0), "alice"), ref, t0+int64(i)*10*sec)
		}
	}
}

// TestChunksRandomHistories runs random histories through a store: events
// mostly in order, some late (some older than sealed entries), commits of
// one or several events, reloads, a plan that drops and brings back a
// series, and reopens; after each step the stored customer's values equal
// those of a customer that was never written.
func TestChunksRandomHistories(t *testing.T) {
	full := mustPlan(t, 30*24*time.Hour, chunkSpecs...)
	noViews := mustPlan(t, 30*24*time.Hour, chunkSpecs[1:]...)
	for seed := range int64(6) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			dir := t.TempDir()
			opts := state.Options{Dir: dir, GCInterval: -1, MaxSeriesEntries: 400}
			s := statetest.Open(t, opts)
			refStore := statetest.Open(t, state.Options{GCInterval: -1, MaxSeriesEntries: 400})
			ref := load(t, refStore.Shard(0), "alice")
			p := full
			ts := t0
			b := s.NewBatch()
			for step := range 1200 {
				c := load(t, s.Shard(0), "alice")
				for range 1 + rng.IntN(3) {
					at := ts + int64(rng.IntN(20))*sec
					ts = max(ts, at)
					if rng.IntN(20) == 0 {
						at -= int64(rng.IntN(3000)) * sec // late, often before sealed entries
					}
					typ := "view"
					if rng.IntN(3) == 0 {
						typ = "buy"
					}
					attrs := map[string]any{"amount": float64(rng.IntN(1000)) / 4, "sku": rng.IntN(40)}
					c.Apply(p, typ, at, attrs)
					ref.Apply(p, typ, at, attrs)
				}
				b.Put(c)
				commit(t, s, b)
				switch rng.IntN(40) {
				case 0:
					s.Invalidate("alice")
				case 1:
					if p == full {
						p = noViews
					} else {
						p = full
					}
				case 2:
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = statetest.Open(t, opts)
					b = s.NewBatch()
				}
				if step%25 == 0 {
					s.Invalidate("alice")
					c = load(t, s.Shard(0), "alice")
					checkSamePlan(t, fmt.Sprint("step ", step), p, c, ref, ts)
				}
			}
			if n := len(state.ChunkKeys(s)); n > 9 {
				t.Errorf("%d chunks at the end, want at most 9", n)
			}
		})
	}
}

// checkSamePlan is checkSame for the aggregates of plan p: both customers
// are aligned to p first.
func checkSamePlan(t *testing.T, what string, p *state.Plan, c, ref *state.Customer, at int64) {
	t.Helper()
	c.Value(p, 0, at)
	ref.Value(p, 0, at)
	checkSame(t, what, p, c, ref, at)
}

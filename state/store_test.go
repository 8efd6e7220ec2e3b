package state_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// metricValue returns the value of a counter, gauge or the sample count of
// a histogram registered in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func load(t testing.TB, sh *state.Shard, id string) *state.Customer {
	t.Helper()
	c, err := sh.Load(id)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func commit(t testing.TB, s *state.Store, b *state.Batch) {
	t.Helper()
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
}

var testSpecs = []state.AggSpec{
	{Kind: state.Count, Type: "view", Window: time.Hour},
	{Kind: state.Sum, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
	{Kind: state.Max, Type: "buy", Attr: "amount", Window: time.Hour},
	{Kind: state.Distinct, Type: "*", Attr: "sku", Window: 24 * time.Hour},
	{Kind: state.Since, Type: "buy"},
	{Kind: state.Avg, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
	{Kind: state.Min, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
}

// applySome applies a mix of events to c, some out of order.
func applySome(p *state.Plan, c *state.Customer, n int) {
	for i := range n {
		ts := t0 + int64(i)*60*sec
		if i%7 == 3 {
			ts -= 30 * 60 * sec
		}
		if i%3 == 0 {
			c.Apply(p, "buy", ts, map[string]any{"amount": float64(i%11) + 0.25, "sku": i % 5})
		} else {
			c.Apply(p, "view", ts, map[string]any{"sku": fmt.Sprint("s", i%13)})
		}
	}
}

func values(p *state.Plan, c *state.Customer, at int64) []float64 {
	v := make([]float64, p.Len())
	for i := range v {
		v[i] = c.Value(p, i, at)
	}
	return v
}

func sameFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameFloat(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestCommitAndReopen(t *testing.T) {
	dir := t.TempDir()
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})

	if w, err := s.Applied(); err != nil || w != (state.Watermark{}) {
		t.Fatalf("Applied on a new store: %+v, %v; want the zero value", w, err)
	}
	c := load(t, s.Shard(0), "alice")
	if c.ID() != "alice" || len(c.Profile()) != 0 || c.Profile() == nil || c.Dirty() {
		t.Fatalf("unknown customer: id %q profile %v dirty %v; want empty", c.ID(), c.Profile(), c.Dirty())
	}
	applySome(p, c, 500)
	c.MergeProfile(map[string]any{"name": "Alice", "age": 42, "n": 200, "nested": map[string]any{"m": 300}, "vip": true, "tags": []any{"a", "b"}})
	at := t0 + 499*60*sec
	want := values(p, c, at)

	b := s.NewBatch()
	b.Put(c)
	w := state.Watermark{Stream: "EVENTS", StreamCreated: 1_700_000_000_123_456_789, Seq: 12345}
	b.SetApplied(w)
	// The window record, a chunk of its 500 entries, the profile.
	if b.Len() != 3 || !reflect.DeepEqual(b.Customers(), []string{"alice"}) {
		t.Fatalf("batch Len %d Customers %v, want 3 [alice]", b.Len(), b.Customers())
	}
	commit(t, s, b)
	if c.Dirty() {
		t.Error("customer still dirty after Commit")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	got, err := s.Applied()
	if err != nil || got != w {
		t.Errorf("Applied after reopen: %+v, %v; want %+v", got, err, w)
	}
	c = load(t, s.Shard(0), "alice")
	if v := values(p, c, at); !sameFloats(v, want) {
		t.Errorf("values after reopen:\n got %v\nwant %v", v, want)
	}
	// Integers read back as int64 whatever width the encoder chose.
	wantProfile := map[string]any{"name": "Alice", "age": int64(42), "n": int64(200), "nested": map[string]any{"m": int64(300)}, "vip": true, "tags": []any{"a", "b"}}
	if !reflect.DeepEqual(c.Profile(), wantProfile) {
		t.Errorf("profile after reopen: %#v, want %#v", c.Profile(), wantProfile)
	}
	// Window record TTL: longest retention (24h) + 24h, from about now.
	_, expires, err := state.ReadRaw(s, "c/alice")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(int64(expires), 0)); d < 47*time.Hour || d > 48*time.Hour+time.Minute {
		t.Errorf("window record expires in %s, want about 48h", d)
	}
	if _, expires, _ := state.ReadRaw(s, "p/alice"); expires != 0 {
		t.Errorf("profile has a TTL (%d); want none", expires)
	}
}

func TestProfileMergeAndDelete(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	b := s.NewBatch()

	c := load(t, sh, "carol")
	c.MergeProfile(map[string]any{"name": "Carol", "city": "Oslo", "score": 1.5})
	if !c.Dirty() {
		t.Fatal("not dirty after MergeProfile")
	}
	b.Put(c)
	commit(t, s, b)

	c = load(t, sh, "carol")
	c.MergeProfile(map[string]any{"city": nil, "score": 2.5, "absent": nil})
	b.Put(c)
	commit(t, s, b)

	want := map[string]any{"name": "Carol", "score": 2.5}
	if !reflect.DeepEqual(c.Profile(), want) {
		t.Errorf("cached profile: %v, want %v", c.Profile(), want)
	}
	got, ok, err := s.Profile("carol")
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("stored profile: %v %v %v, want %v", got, ok, err, want)
	}
	s.Invalidate("carol")
	if c = load(t, sh, "carol"); !reflect.DeepEqual(c.Profile(), want) {
		t.Errorf("reloaded profile: %v, want %v", c.Profile(), want)
	}

	// Deleting every key deletes the record.
	c.MergeProfile(map[string]any{"name": nil, "score": nil})
	b.Put(c)
	commit(t, s, b)
	if raw, _, _ := state.ReadRaw(s, "p/carol"); raw != nil {
		t.Errorf("p/carol still stored: %x", raw)
	}
	if got, ok, err := s.Profile("carol"); err != nil || ok || got != nil {
		t.Errorf("Profile of a customer without one: %v %v %v, want nil false nil", got, ok, err)
	}
	if got, ok, err := s.Profile("nobody"); err != nil || ok || got != nil {
		t.Errorf("Profile of an unknown customer: %v %v %v, want nil false nil", got, ok, err)
	}
}

func TestOutbox(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	b := s.NewBatch()
	key, val := []byte("0002"), []byte("second")
	b.AddOutbox([]byte("0001"), []byte("first"))
	b.AddOutbox(key, val)
	b.AddOutbox([]byte("0003"), []byte("third"))
	copy(key, "9999") // the batch keeps copies
	copy(val, "XXXXXX")
	b.SetApplied(state.Watermark{Stream: "EVENTS", Seq: 3})
	commit(t, s, b)

	list := func() string {
		t.Helper()
		var sb strings.Builder
		err := s.Outbox(func(k, v []byte) error {
			fmt.Fprintf(&sb, "%s=%s ", k, v)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(sb.String())
	}
	if got, want := list(), "0001=first 0002=second 0003=third"; got != want {
		t.Errorf("outbox: %q, want %q", got, want)
	}

	// Delete published entries and add a new one in one commit.
	b.DeleteOutbox([]byte("0001"))
	b.DeleteOutbox([]byte("0002"))
	b.AddOutbox([]byte("0004"), []byte("fourth"))
	b.SetApplied(state.Watermark{Stream: "EVENTS", Seq: 4})
	if b.Len() != 3 {
		t.Errorf("Len: %d, want 3", b.Len())
	}
	commit(t, s, b)
	if got, want := list(), "0003=third 0004=fourth"; got != want {
		t.Errorf("outbox: %q, want %q", got, want)
	}
	if w, _ := s.Applied(); w.Seq != 4 {
		t.Errorf("watermark seq %d, want 4", w.Seq)
	}

	stop := errors.New("stop")
	n := 0
	err := s.Outbox(func(k, v []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Outbox with a failing fn: %v after %d calls, want stop after 1", err, n)
	}
}

func TestInvalidateForcesReread(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := statetest.Open(t, state.Options{GCInterval: -1, Metrics: state.NewMetrics(reg)})
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})
	sh := s.Shard(0)
	b := s.NewBatch()

	c := load(t, sh, "dave")
	c.Apply(p, "view", t0, nil)
	b.Put(c)
	commit(t, s, b)

	c = load(t, sh, "dave") // hit
	c.Apply(p, "view", t0+1, nil)
	if got := c.Value(p, 0, t0+1); got != 2 {
		t.Fatalf("count %v, want 2", got)
	}
	// As after a failed commit: the uncommitted event is forgotten.
	s.Invalidate("dave")
	c = load(t, sh, "dave") // miss
	if got := c.Value(p, 0, t0+1); got != 1 {
		t.Errorf("count after Invalidate: %v, want the committed 1", got)
	}
	if c.Dirty() {
		t.Error("reloaded customer is dirty")
	}
	if h, m := metricValue(t, reg, "kairos_state_cache_hits_total"), metricValue(t, reg, "kairos_state_cache_misses_total"); h != 1 || m != 2 {
		t.Errorf("hits %v misses %v, want 1 2", h, m)
	}
	if n := metricValue(t, reg, "kairos_state_commit_duration_seconds"); n != 1 {
		t.Errorf("commit_duration_seconds count %v, want 1", n)
	}
	if n := metricValue(t, reg, "kairos_state_commit_bytes"); n != 1 {
		t.Errorf("commit_bytes count %v, want 1", n)
	}
	// One commit of dave's window record.
	if n := metricValue(t, reg, "kairos_state_commit_keys_total"); n != 1 {
		t.Errorf("commit_keys_total %v, want 1", n)
	}
	metricValue(t, reg, "kairos_state_lsm_size_bytes")
	metricValue(t, reg, "kairos_state_vlog_size_bytes")
}

func TestCommitKeepsChangesAfterPutDirty(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})
	sh := s.Shard(0)
	b := s.NewBatch()

	c := load(t, sh, "erin")
	c.Apply(p, "view", t0, nil)
	b.Put(c)
	c.Apply(p, "view", t0+1, nil) // not Put
	commit(t, s, b)
	if !c.Dirty() {
		t.Fatal("a change after Put was marked clean by Commit")
	}
	if c2 := load(t, sh, "erin"); c2 != c {
		t.Error("committed customer not kept in the cache")
	}
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("erin")
	if got := load(t, sh, "erin").Value(p, 0, t0+1); got != 2 {
		t.Errorf("count %v, want 2", got)
	}

	// Put twice in one batch: the last encoding wins, the id is listed once.
	c = load(t, sh, "erin")
	c.Apply(p, "view", t0+2, nil)
	b.Put(c)
	c.Apply(p, "view", t0+3, nil)
	b.Put(c)
	if b.Len() != 1 || len(b.Customers()) != 1 {
		t.Errorf("after two Puts: Len %d Customers %v, want 1 [erin]", b.Len(), b.Customers())
	}
	commit(t, s, b)
	s.Invalidate("erin")
	if got := load(t, sh, "erin").Value(p, 0, t0+3); got != 4 {
		t.Errorf("count %v, want 4", got)
	}

	// Put of a clean customer is a no-op; an empty batch commits.
	b.Put(load(t, sh, "erin"))
	if b.Len() != 0 || len(b.Customers()) != 0 {
		t.Errorf("Put of a clean customer: Len %d", b.Len())
	}
	commit(t, s, b)
}

func TestBatchTooBig(t *testing.T) {
	// A 1 MiB memtable limits a transaction to about 150 KiB.
	opts := state.Options{GCInterval: -1}
	state.SetBadgerOptions(&opts, func(o badger.Options) badger.Options {
		return o.WithMemTableSize(1 << 20).WithValueThreshold(1 << 10)
	})
	s := statetest.Open(t, opts)
	b := s.NewBatch()
	val := bytes.Repeat([]byte("x"), 1000)
	for i := range 300 {
		b.AddOutbox(fmt.Appendf(nil, "%08d", i), val)
	}
	b.SetApplied(state.Watermark{Stream: "EVENTS", Seq: 300})
	err := s.Commit(b)
	if !errors.Is(err, state.ErrBatchTooBig) || !errors.Is(err, badger.ErrTxnTooBig) {
		t.Fatalf("Commit: %v, want ErrBatchTooBig wrapping badger.ErrTxnTooBig", err)
	}
	n := 0
	if err := s.Outbox(func(k, v []byte) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("after a failed commit: %d outbox entries (%v), want 0", n, err)
	}
	if w, _ := s.Applied(); w.Seq != 0 {
		t.Errorf("watermark written by a failed commit: %+v", w)
	}
	b.Reset()
	b.AddOutbox([]byte("small"), val)
	commit(t, s, b)
}

func TestPlanChange(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	b := s.NewBatch()
	views := state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour}
	spent := state.AggSpec{Kind: state.Sum, Type: "buy", Attr: "amount", Window: time.Hour}
	skus := state.AggSpec{Kind: state.Distinct, Type: "buy", Attr: "sku", Window: time.Hour}
	p1 := mustPlan(t, time.Hour, views, spent)
	p2 := mustPlan(t, 2*time.Hour, skus, views) // other order, spent dropped
	p3 := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: 10 * time.Minute}, spent)

	c := load(t, sh, "frank")
	c.Apply(p1, "view", t0, nil)
	c.Apply(p1, "view", t0+30*60*sec, nil)
	c.Apply(p1, "buy", t0+30*60*sec, map[string]any{"amount": 5, "sku": "a"})
	if got := c.Value(p1, 1, t0+30*60*sec); got != 5 {
		t.Fatalf("sum under p1: %v", got)
	}
	if got := c.Value(p2, 1, t0+30*60*sec); got != 2 {
		t.Errorf("count under p2: %v, want the 2 views kept", got)
	}
	if got := c.Value(p2, 0, t0+30*60*sec); got != 0 {
		t.Errorf("distinct under p2: %v, want 0 (new series)", got)
	}
	c.Apply(p2, "buy", t0+31*60*sec, map[string]any{"amount": 7, "sku": "b"})
	if got := c.Value(p2, 0, t0+31*60*sec); got != 1 {
		t.Errorf("distinct under p2: %v, want 1", got)
	}
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("frank")

	c = load(t, sh, "frank")
	if n := state.SeriesCount(c); n != 2 {
		t.Errorf("stored series: %d, want 2 (sum dropped)", n)
	}
	if got := c.Value(p1, 1, t0+31*60*sec); got != 0 {
		t.Errorf("sum back under p1: %v, want 0 (dropped under p2)", got)
	}
	if got := c.Value(p1, 0, t0+31*60*sec); got != 2 {
		t.Errorf("count back under p1: %v, want 2", got)
	}
	// A shorter retention evicts at once.
	if got := c.Value(p3, 0, t0+31*60*sec); got != 1 {
		t.Errorf("count under p3: %v, want 1", got)
	}
	if got := c.Value(p1, 0, t0+31*60*sec); got != 1 {
		t.Errorf("count back under p1 after p3: %v, want 1 (evicted under p3)", got)
	}
}

func TestSmallCache(t *testing.T) {
	for _, shards := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d shards", shards), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			dir := t.TempDir()
			s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1, CacheCustomers: 1, Shards: shards, Metrics: state.NewMetrics(reg)})
			p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour}, state.AggSpec{Kind: state.Sum, Type: "view", Attr: "n", Window: time.Hour})
			ids := []string{"a", "b", "c", "d", "e"}
			want := map[string]float64{}
			b := s.NewBatch()
			for batch := range 4 {
				// Several events per customer in one batch, interleaved, so
				// dirty customers reach the tail of a 1-entry LRU.
				for round := range 3 {
					for i, id := range ids {
						sh := s.Shard(i % shards)
						c := load(t, sh, id)
						ts := t0 + int64(batch*100+round*10+i)
						c.Apply(p, "view", ts, map[string]any{"n": i + 1})
						want[id] += float64(i + 1)
						if got := c.Value(p, 1, ts); got != want[id] {
							t.Fatalf("batch %d round %d %s: sum %v, want %v", batch, round, id, got, want[id])
						}
						b.Put(c)
					}
				}
				commit(t, s, b)
			}
			if metricValue(t, reg, "kairos_state_cache_evictions_total") == 0 {
				t.Error("no evictions with a 1-customer cache")
			}
			for i, id := range ids {
				c := load(t, s.Shard(i%shards), id)
				if got := c.Value(p, 1, t0+1000); got != want[id] {
					t.Errorf("%s: sum %v, want %v", id, got, want[id])
				}
				if got := c.Value(p, 0, t0+1000); got != 12 {
					t.Errorf("%s: count %v, want 12", id, got)
				}
			}
			s.Close()
			s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1, CacheCustomers: 1, Shards: shards})
			for i, id := range ids {
				if got := load(t, s.Shard(i%shards), id).Value(p, 1, t0+1000); got != want[id] {
					t.Errorf("%s after reopen: sum %v, want %v", id, got, want[id])
				}
			}
		})
	}
}

func TestShardsInParallel(t *testing.T) {
	const shards, customers, events = 2, 50, 20
	s := statetest.Open(t, state.Options{GCInterval: -1, Shards: shards, CacheCustomers: 40})
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	b := s.NewBatch()
	for batch := range 3 {
		var wg sync.WaitGroup
		puts := make([][]*state.Customer, shards)
		for w := range shards {
			wg.Go(func() {
				sh := s.Shard(w)
				for e := range events {
					for id := w; id < customers; id += shards {
						c, err := sh.Load(fmt.Sprint("cust-", id))
						if err != nil {
							t.Error(err)
							return
						}
						ts := t0 + int64(batch*events+e)*sec
						c.Apply(p, "buy", ts, map[string]any{"amount": 1, "sku": e})
						c.Value(p, 1, ts)
						puts[w] = append(puts[w], c)
					}
				}
			})
		}
		wg.Wait()
		// The committing goroutine, while no shard is in use.
		for _, cs := range puts {
			for _, c := range cs {
				b.Put(c)
			}
		}
		if len(b.Customers()) != customers {
			t.Fatalf("batch has %d customers, want %d", len(b.Customers()), customers)
		}
		commit(t, s, b)
	}
	s.Invalidate(fmt.Sprint("cust-", 7))
	for id := range customers {
		c := load(t, s.Shard(id%shards), fmt.Sprint("cust-", id))
		if got := c.Value(p, 1, t0+3*events*sec); got != 3*events {
			t.Errorf("cust-%d: sum %v, want %d", id, got, 3*events)
		}
	}
}

func TestClosed(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: time.Millisecond})
	sh := s.Shard(0)
	b := s.NewBatch()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"Close":   s.Close(),
		"Commit":  s.Commit(b),
		"Outbox":  s.Outbox(func(k, v []byte) error { return nil }),
		"Applied": func() error { _, err := s.Applied(); return err }(),
		"Profile": func() error { _, _, err := s.Profile("x"); return err }(),
		"Load":    func() error { _, err := sh.Load("x"); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := state.Open(state.Options{}); err == nil {
		t.Error("Open without Dir succeeded")
	}

	dir := t.TempDir()
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	if raw, _, err := state.ReadRaw(s, "m/schema"); err != nil || !bytes.Equal(raw, []byte{1}) {
		t.Errorf("m/schema: %x %v, want 01", raw, err)
	}
	if err := state.WriteRaw(s, "m/schema", []byte{2}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := state.Open(state.Options{Dir: dir, GCInterval: -1})
	if !errors.Is(err, state.ErrSchema) || !strings.Contains(err.Error(), "schema 2") {
		t.Errorf("Open of a newer schema: %v, want ErrSchema naming schema 2", err)
	}
}

func TestCorruptRecords(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	for key, val := range map[string][]byte{
		"c/bad-window":  {1, 1, 4, 'v'},
		"p/bad-profile": {0xc1},
		"m/applied":     {1, 200},
	} {
		if err := state.WriteRaw(s, key, val); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, err error, key string) {
		t.Helper()
		if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want ErrCorrupt naming %s", what, err, key)
		}
	}
	_, err := s.Shard(0).Load("bad-window")
	check("Load", err, "c/bad-window")
	_, err = s.Shard(0).Load("bad-profile")
	check("Load", err, "p/bad-profile")
	_, _, err = s.Profile("bad-profile")
	check("Profile", err, "p/bad-profile")
	_, err = s.Applied()
	check("Applied", err, "m/applied")
	// A failed load leaves nothing behind.
	if c := load(t, s.Shard(0), "good"); c.ID() != "good" || len(c.Profile()) != 0 {
		t.Errorf("load after failures: %q %v", c.ID(), c.Profile())
	}
}

func TestSinceIsInfWithoutEvents(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Since, Type: "buy"})
	if got := load(t, s.Shard(0), "x").Value(p, 0, t0); !math.IsInf(got, 1) {
		t.Errorf("since on a new customer: %v", got)
	}
}

func TestInMemoryStore(t *testing.T) {
	s, err := state.Open(state.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := mustPlan(t, 24*time.Hour, state.AggSpec{Kind: state.Count, Type: "login", Window: time.Hour})
	c, err := s.Shard(0).Load("C1")
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(p, "login", t0, nil)
	b := s.NewBatch()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	snap, ok, err := s.Snapshot("C1")
	if err != nil || !ok || snap.Value(p, 0, t0) != 1 {
		t.Fatalf("snapshot %v %v %v", snap, ok, err)
	}
}

func TestImportProfilesMergesInBulk(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	c, _ := s.Shard(0).Load("C1")
	c.MergeProfile(map[string]any{"name": "Ann", "segment": "mass"})
	b := s.NewBatch()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	rows := []state.ProfileRow{{ID: "C1", Attrs: map[string]any{"segment": "affluent", "name": nil}}}
	for i := 0; i < 10000; i++ {
		rows = append(rows, state.ProfileRow{ID: fmt.Sprintf("N%05d", i), Attrs: map[string]any{"i": i}})
	}
	k := 0
	calls := 0
	n, err := s.ImportProfiles(func() (state.ProfileRow, error) {
		if k == len(rows) {
			return state.ProfileRow{}, io.EOF
		}
		k++
		return rows[k-1], nil
	}, func(int) { calls++ })
	if err != nil || n != len(rows) || calls < 2 {
		t.Fatalf("imported %d, %d progress calls, %v", n, calls, err)
	}
	p, _, _ := s.Profile("C1")
	if p["segment"] != "affluent" || p["name"] != nil {
		t.Errorf("merged profile %v", p)
	}
	p, _, _ = s.Profile("N09999")
	if p["i"] != int64(9999) {
		t.Errorf("imported profile %v", p)
	}
}

// TestCompactOnClose: a bulk import closed with CompactOnClose leaves no
// table in level 0, and a store closed with it has its tables in one
// level, so the engine that opens it next reads a profile from one table
// and starts without compactions to catch up on.
func TestCompactOnClose(t *testing.T) {
	const n = 20000
	dir := t.TempDir()
	open := func(compact bool) *state.Store {
		t.Helper()
		opts := state.Options{Dir: dir, GCInterval: -1, CompactOnClose: compact}
		// Small memtables, tables and levels: an import fills several.
		state.SetBadgerOptions(&opts, func(o badger.Options) badger.Options {
			return o.WithMemTableSize(1 << 20).WithBaseTableSize(64 << 10).WithBaseLevelSize(256 << 10).
				WithLevelSizeMultiplier(2).WithValueThreshold(1 << 10)
		})
		s, err := state.Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	closeStore := func(s *state.Store) {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Incompressible notes, so that the tables take room.
	note := func(k int) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(strconv.Itoa(k)))) }
	id := func(k int) string { return fmt.Sprintf("C%07d", k) }
	importRange := func(s *state.Store, from, to int) {
		t.Helper()
		k := from
		if _, err := s.ImportProfiles(func() (state.ProfileRow, error) {
			if k == to {
				return state.ProfileRow{}, io.EOF
			}
			k++
			// Out of key order, as a bank's export would be.
			j := from + ((k-from)*7919)%(to-from)
			return state.ProfileRow{ID: id(j), Attrs: map[string]any{"note": note(j)}}, nil
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	levels := func() []int {
		t.Helper()
		s := open(false)
		defer closeStore(s)
		for _, k := range []int{0, n / 2, n - 1} {
			p, ok, err := s.Profile(id(k))
			if err != nil || !ok || p["note"] != note(k) {
				t.Fatalf("profile %s: %v %v %v", id(k), p, ok, err)
			}
		}
		return state.LevelsWithTables(s)
	}

	// An import into an empty store, as the bench's.
	s := open(true)
	importRange(s, 0, n)
	closeStore(s)
	if l := levels(); len(l) == 0 || l[0] == 0 {
		t.Errorf("after an import closed with CompactOnClose: tables in levels %v, want none in level 0", l)
	}

	// A second import closed without it leaves tables in level 0 and
	// below (the control), ...
	s = open(false)
	importRange(s, n, 2*n)
	closeStore(s)
	if l := levels(); len(l) < 2 || l[0] != 0 {
		t.Fatalf("after an import closed without CompactOnClose: tables in levels %v, want level 0 and another (the control)", l)
	}
	// ... which a close with it compacts into one level.
	closeStore(open(true))
	if l := levels(); len(l) != 1 || l[0] == 0 {
		t.Errorf("closed with CompactOnClose: tables in levels %v, want one level below 0", l)
	}
}

// TestScrapeRightAfterOpen: a scrape before Badger first measured its
// value log reads zero sizes (Badger's DB.Size panics then).
func TestScrapeRightAfterOpen(t *testing.T) {
	for i := range 5 {
		reg := prometheus.NewRegistry()
		s, err := state.Open(state.Options{Dir: filepath.Join(t.TempDir(), fmt.Sprint(i)), Metrics: state.NewMetrics(reg)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		s.Sizes()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCompressionChangesBetweenOpens writes tables under one compression
// and reads them under another: Badger records each table's own.
func TestCompressionChangesBetweenOpens(t *testing.T) {
	dir := t.TempDir()
	rows := func(n int) func() (state.ProfileRow, error) {
		i := 0
		return func() (state.ProfileRow, error) {
			if i == n {
				return state.ProfileRow{}, io.EOF
			}
			i++
			return state.ProfileRow{ID: fmt.Sprintf("C%05d", i), Attrs: map[string]any{"segment": "mass", "n": int64(i)}}, nil
		}
	}
	for _, comp := range []string{state.CompressionNone, state.CompressionZSTD, state.CompressionSnappy} {
		s, err := state.Open(state.Options{Dir: dir, GCInterval: -1, Compression: comp})
		if err != nil {
			t.Fatal(err)
		}
		// Every open reads what the earlier ones wrote, then adds its own.
		c, ok, err := s.Snapshot("C00007")
		if err != nil || (comp != state.CompressionNone && (!ok || c.Profile()["n"] != int64(7))) {
			t.Fatalf("%s: C00007 %v %v %v", comp, c, ok, err)
		}
		if _, err := s.ImportProfiles(rows(2000), nil); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := state.Open(state.Options{Dir: dir, GCInterval: -1, Compression: "lz4"}); err == nil || !strings.Contains(err.Error(), "compression") {
		t.Errorf("compression lz4: %v, want an error", err)
	}
}

// TestMissAfterCommitReadsIt: the cache misses of a batch share a read
// transaction; a miss after a Commit must see what it wrote.
func TestMissAfterCommitReadsIt(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1, CacheCustomers: 1})
	sh := s.Shard(0)
	b := s.NewBatch()
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})

	load(t, sh, "a") // the batch's first miss
	c := load(t, sh, "b")
	c.Apply(p, "view", t0, nil)
	b.Put(c)
	commit(t, s, b)

	load(t, sh, "c") // evicts b
	if got := load(t, sh, "b").Value(p, 0, t0); got != 1 {
		t.Errorf("b read back after the commit: %v views, want 1", got)
	}
}

// TestLSMLevelMetrics: the level gauges follow Badger's tree, and a closed
// store reports none.
func TestLSMLevelMetrics(t *testing.T) {
	dir := t.TempDir()
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})
	s, err := state.Open(state.Options{Dir: dir, GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch()
	c := load(t, s.Shard(0), "erin")
	c.Apply(p, "view", t0, nil)
	b.Put(c)
	commit(t, s, b)
	if err := s.Close(); err != nil { // flushes the memtable: one table in level 0
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	s, err = state.Open(state.Options{Dir: dir, GCInterval: -1, Metrics: state.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	levels := func() (tables, bytes map[string]float64) {
		t.Helper()
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		tables, bytes = map[string]float64{}, map[string]float64{}
		for _, mf := range mfs {
			into := map[string]map[string]float64{"kairos_state_lsm_tables": tables, "kairos_state_lsm_level_bytes": bytes}[mf.GetName()]
			if into == nil {
				continue
			}
			for _, m := range mf.GetMetric() {
				into[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			}
		}
		return tables, bytes
	}
	tables, bytes := levels()
	if len(tables) != 7 || len(bytes) != 7 {
		t.Fatalf("levels reported: tables %v, bytes %v; want Badger's 7", tables, bytes)
	}
	if tables["0"] != 1 || bytes["0"] <= 0 {
		t.Errorf("level 0: %v tables of %v bytes, want the one flushed table", tables["0"], bytes["0"])
	}
	for l := 1; l < 7; l++ {
		if lv := fmt.Sprint(l); tables[lv] != 0 || bytes[lv] != 0 {
			t.Errorf("level %s: %v tables of %v bytes, want none", lv, tables[lv], bytes[lv])
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if tables, _ := levels(); len(tables) != 0 {
		t.Errorf("a closed store reports levels %v", tables)
	}
}

// TestL0StallCounted: when level 0 is full and compaction does not empty
// it, Badger holds the next flushed memtable back; a stall of more than a
// second is a warning in the log and counts in
// kairos_state_l0_stall_seconds_total once it ends. No compactor runs here,
// so the stall lasts until Close. Badger times the stall on the wall clock
// and reports none shorter than a second, so the test waits that long.
func TestL0StallCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	opts := state.Options{Dir: t.TempDir(), GCInterval: -1, Metrics: state.NewMetrics(reg),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	state.SetBadgerOptions(&opts, func(o badger.Options) badger.Options {
		return o.WithNumCompactors(0).WithNumLevelZeroTables(1).WithNumLevelZeroTablesStall(2).
			WithMemTableSize(1 << 20).WithValueThreshold(32 << 10)
	})
	s, err := state.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	// Four and a half memtables of values: two fill level 0, the third is
	// held back, the fourth waits behind it (a write finds a memtable full
	// only when it comes to it).
	value := bytes.Repeat([]byte("v"), 16<<10)
	for i := range 4*64 + 32 {
		if err := state.WriteRaw(s, fmt.Sprintf("x/%04d", i), value); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); state.L0Tables(s) < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("level 0 has %d tables, want 2", state.L0Tables(s))
		}
	}
	time.Sleep(1500 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, reg, "kairos_state_l0_stall_seconds_total"); v < 1 {
		t.Errorf("kairos_state_l0_stall_seconds_total = %v, want the stall's 1.5 s or more", v)
	}
	if !strings.Contains(logs.String(), "level 0 of the state was full") {
		t.Errorf("no warning of the stall in the log:\n%s", logs.String())
	}
}

// lockedBuffer is a bytes.Buffer for a logger that Badger's goroutines
// write to while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

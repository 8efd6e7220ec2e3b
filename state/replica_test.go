package state_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// fillAll gives c windows, a profile and some of every policy part, with
// deferred offers (so due index keys) that depend on i.
func fillAll(p *state.Plan, c *state.Customer, i int) {
	applySome(p, c, 20+i%7)
	c.MergeProfile(map[string]any{"name": fmt.Sprint("customer ", i), "n": i, "vip": i%2 == 0})
	c.AddContact(state.Contact{TS: t0 + int64(i)*sec, Rule: "welcome", Channel: "email", OfferID: fmt.Sprint("offer-", i)}, 24*time.Hour)
	c.AddRuleTotal("welcome", 1)
	c.AddDeferred(state.Deferred{ID: fmt.Sprint("d-", i), Release: t0 + int64(i%5)*hour, Expires: t0 + 10*hour, Data: []byte{byte(i)}})
	c.AddDeferred(state.Deferred{ID: "common", Release: t0 + 2*hour, Expires: t0 + 10*hour})
	c.AddDecision(state.Decision{TS: t0 + int64(i)*sec, Rule: "welcome", OfferID: fmt.Sprint("offer-", i), EventID: fmt.Sprint("evt-", i), Outcome: "emitted", Channel: "email"}, 5)
	c.AddExposure(state.Exposure{TS: t0, Rule: "welcome", OfferID: fmt.Sprint("offer-", i), Data: []byte("x")}, 0)
	c.Seen("buy", t0)
}

// records puts the customers' changes into b under a Replicate store,
// commits, and returns their records, checking them against
// ExportCustomer.
func records(t testing.TB, s *state.Store, b *state.Batch, cs ...*state.Customer) map[string][]byte {
	t.Helper()
	for _, c := range cs {
		b.Put(c)
	}
	out := map[string][]byte{}
	b.Records(func(id string, rec []byte) {
		if _, dup := out[id]; dup {
			t.Errorf("two records of %q", id)
		}
		out[id] = bytes.Clone(rec)
	})
	commit(t, s, b)
	for id, rec := range out {
		got, ok, err := s.ExportCustomer(id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok && len(rec) > 5 || !bytes.Equal(got, rec) && ok {
			t.Errorf("ExportCustomer(%q) after the commit:\n%q (%v)\nwant the batch record\n%q", id, got, ok, rec)
		}
	}
	return out
}

// importAll imports the records in id order.
func importAll(t testing.TB, s *state.Store, recs map[string][]byte) {
	t.Helper()
	ids := make([]string, 0, len(recs))
	for id := range recs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	n, err := s.ImportRecords(feed(ids, recs))
	if err != nil || n != len(ids) {
		t.Fatalf("ImportRecords: %d of %d, %v", n, len(ids), err)
	}
}

func feed(ids []string, recs map[string][]byte) func() (string, []byte, bool, error) {
	i := 0
	return func() (string, []byte, bool, error) {
		if i == len(ids) {
			return "", nil, false, nil
		}
		i++
		return ids[i-1], recs[ids[i-1]], true, nil
	}
}

// customerIDs lists ScanCustomerIDs.
func customerIDs(t testing.TB, s *state.Store) []string {
	t.Helper()
	var ids []string
	if err := s.ScanCustomerIDs(func(id string) error {
		ids = append(ids, id)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// sameCustomer compares the committed state of id in two stores.
func sameCustomer(t *testing.T, p *state.Plan, a, b *state.Store, id string) {
	t.Helper()
	sa, oka, err := a.Snapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	sb, okb, err := b.Snapshot(id)
	if err != nil {
		t.Fatal(err)
	}
	if oka != okb {
		t.Fatalf("%s stored: %v in one store, %v in the other", id, oka, okb)
	}
	if !oka {
		return
	}
	at := t0 + 40*60*sec
	if va, vb := values(p, sa, at), values(p, sb, at); !sameFloats(va, vb) {
		t.Errorf("%s: values %v, want %v", id, vb, va)
	}
	if !reflect.DeepEqual(sa.Profile(), sb.Profile()) {
		t.Errorf("%s: profile %v, want %v", id, sb.Profile(), sa.Profile())
	}
	for _, part := range []struct {
		name string
		a, b any
	}{
		{"contacts", sa.Contacts(), sb.Contacts()},
		{"deferred", sa.Deferred(), sb.Deferred()},
		{"decisions", sa.Decisions(), sb.Decisions()},
		{"exposures", sa.Exposures(), sb.Exposures()},
		{"last seen", sa.LastSeen(), sb.LastSeen()},
		{"total", sa.RuleTotal("welcome"), sb.RuleTotal("welcome")},
	} {
		if !reflect.DeepEqual(part.a, part.b) {
			t.Errorf("%s: %s %+v, want %+v", id, part.name, part.b, part.a)
		}
	}
	pa, _, _ := a.Profile(id)
	pb, _, _ := b.Profile(id)
	if !reflect.DeepEqual(pa, pb) {
		t.Errorf("%s: Profile %v, want %v", id, pb, pa)
	}
	ra, _, _ := a.ExportCustomer(id)
	rb, _, _ := b.ExportCustomer(id)
	if !bytes.Equal(ra, rb) {
		t.Errorf("%s: exported record differs:\n%q\nwant\n%q", id, rb, ra)
	}
}

func TestReplicationRoundTrip(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	src := statetest.Open(t, state.Options{GCInterval: -1, Shards: 2, Replicate: true})
	b := src.NewBatch()
	log := map[string][]byte{} // the changelog: last record per customer

	var cs []*state.Customer
	for i := range 20 {
		c := load(t, src.Shard(i%2), fmt.Sprint("customer-", i))
		fillAll(p, c, i)
		cs = append(cs, c)
	}
	profileOnly := load(t, src.Shard(0), "profile-only")
	profileOnly.MergeProfile(map[string]any{"x": "y"})
	policyOnly := load(t, src.Shard(1), "policy-only")
	policyOnly.AddDeferred(state.Deferred{ID: "p", Release: t0})
	windowsOnly := load(t, src.Shard(0), "windows-only")
	applySome(p, windowsOnly, 30)
	cs = append(cs, profileOnly, policyOnly, windowsOnly)
	for id, rec := range records(t, src, b, cs...) {
		log[id] = rec
	}

	// Later batches change one part only; each record is still whole.
	c := load(t, src.Shard(0), "customer-0")
	c.AddContact(state.Contact{TS: t0 + hour, Rule: "winback", Channel: "sms"}, 24*time.Hour)
	c.RemoveDeferred("common")
	c2 := load(t, src.Shard(1), "customer-1")
	c2.MergeProfile(map[string]any{"name": nil})
	c3 := load(t, src.Shard(0), "customer-2")
	c3.Apply(p, "view", t0+45*60*sec, map[string]any{"sku": "new"})
	recs := records(t, src, b, c, c2, c3)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for id, rec := range recs {
		if len(rec) < 100 {
			t.Errorf("record of %s has %d bytes; want the whole customer", id, len(rec))
		}
		log[id] = rec
	}

	dst := statetest.Open(t, state.Options{GCInterval: -1})
	importAll(t, dst, log)
	for id := range log {
		sameCustomer(t, p, src, dst, id)
	}
	if got, want := due(t, dst), due(t, src); !reflect.DeepEqual(got, want) {
		t.Errorf("due index:\n got %+v\nwant %+v", got, want)
	}
	if got, want := customerIDs(t, dst), customerIDs(t, src); !slices.Equal(got, want) {
		t.Errorf("customers %v, want %v", got, want)
	}
	// The window record keeps its expiry.
	_, ea, _ := state.ReadRaw(src, "c/customer-3")
	_, eb, _ := state.ReadRaw(dst, "c/customer-3")
	if ea == 0 || ea != eb {
		t.Errorf("window record expires at %d, want %d", eb, ea)
	}
	// Importing the same records again changes nothing.
	importAll(t, dst, log)
	if got, want := due(t, dst), due(t, src); !reflect.DeepEqual(got, want) {
		t.Errorf("due index after a second import:\n got %+v\nwant %+v", got, want)
	}
}

func TestImportReplacesCustomer(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	src := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	dst := statetest.Open(t, state.Options{GCInterval: -1})

	// In dst, alice has offers o1 and o2, bob o9; alice is cached.
	bd := dst.NewBatch()
	alice := load(t, dst.Shard(0), "alice")
	alice.AddDeferred(state.Deferred{ID: "o1", Release: t0 + hour})
	alice.AddDeferred(state.Deferred{ID: "o2", Release: t0 + 2*hour})
	alice.MergeProfile(map[string]any{"old": true})
	applySome(p, alice, 10)
	bob := load(t, dst.Shard(0), "bob")
	bob.AddDeferred(state.Deferred{ID: "o9", Release: t0})
	bd.Put(alice)
	bd.Put(bob)
	commit(t, dst, bd)

	// In src, alice has o2 at another release, and o3; no windows.
	bs := src.NewBatch()
	a := load(t, src.Shard(0), "alice")
	a.AddDeferred(state.Deferred{ID: "o2", Release: t0 + 5*hour})
	a.AddDeferred(state.Deferred{ID: "o3", Release: t0 + 3*hour})
	a.MergeProfile(map[string]any{"new": true})
	recs := records(t, src, bs, a)

	importAll(t, dst, recs)
	want := []state.DueEntry{
		{Customer: "bob", OfferID: "o9", Release: t0},
		{Customer: "alice", OfferID: "o3", Release: t0 + 3*hour},
		{Customer: "alice", OfferID: "o2", Release: t0 + 5*hour},
	}
	if got := due(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("due index %+v, want %+v", got, want)
	}
	sameCustomer(t, p, src, dst, "alice")
	if raw, _, _ := state.ReadRaw(dst, "c/alice"); raw != nil {
		t.Error("alice's windows survived an import without them")
	}
	// The cache was dropped: a Load sees the import.
	c := load(t, dst.Shard(0), "alice")
	if got := deferredIDs(c); !slices.Equal(got, []string{"o3", "o2"}) || c.Profile()["old"] != nil {
		t.Errorf("loaded after import: deferred %v profile %v", got, c.Profile())
	}

	// A later record of the same customer in one import wins.
	a.RemoveDeferred("o3")
	a.AddDeferred(state.Deferred{ID: "o4", Release: t0 + 4*hour})
	later := records(t, src, bs, a)
	n, err := dst.ImportRecords(feed([]string{"alice", "alice", "alice"}, map[string][]byte{"alice": nil}))
	if n != 3 || err != nil {
		t.Fatalf("ImportRecords: %d, %v", n, err)
	}
	seq := [][]byte{recs["alice"], later["alice"]}
	n, err = dst.ImportRecords(func() (string, []byte, bool, error) {
		if len(seq) == 0 {
			return "", nil, false, nil
		}
		r := seq[0]
		seq = seq[1:]
		return "alice", r, true, nil
	})
	if n != 2 || err != nil {
		t.Fatalf("ImportRecords: %d, %v", n, err)
	}
	want = []state.DueEntry{
		{Customer: "bob", OfferID: "o9", Release: t0},
		{Customer: "alice", OfferID: "o4", Release: t0 + 4*hour},
		{Customer: "alice", OfferID: "o2", Release: t0 + 5*hour},
	}
	if got := due(t, dst); !reflect.DeepEqual(got, want) {
		t.Errorf("due index after two records of alice %+v, want %+v", got, want)
	}
	sameCustomer(t, p, src, dst, "alice")
}

func TestImportDeletesCustomer(t *testing.T) {
	tests := []struct {
		name string
		rec  []byte
	}{
		{"a nil record", nil},
		{"a record without parts", []byte{1, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPlan(t, 24*time.Hour, testSpecs...)
			s := statetest.Open(t, state.Options{GCInterval: -1})
			b := s.NewBatch()
			for _, id := range []string{"alice", "bob"} {
				c := load(t, s.Shard(0), id)
				fillAll(p, c, len(id))
				b.Put(c)
			}
			commit(t, s, b)
			n, err := s.ImportRecords(feed([]string{"alice"}, map[string][]byte{"alice": tt.rec}))
			if n != 1 || err != nil {
				t.Fatalf("ImportRecords: %d, %v", n, err)
			}
			if _, ok, _ := s.Snapshot("alice"); ok {
				t.Error("alice still stored")
			}
			for _, e := range due(t, s) {
				if e.Customer == "alice" {
					t.Errorf("due index key of alice left: %+v", e)
				}
			}
			if got := customerIDs(t, s); !slices.Equal(got, []string{"bob"}) {
				t.Errorf("customers %v, want [bob]", got)
			}
			if c := load(t, s.Shard(0), "alice"); len(c.Deferred()) != 0 || len(c.Profile()) != 0 {
				t.Errorf("alice loads with %v %v", c.Deferred(), c.Profile())
			}
		})
	}
}

func TestImportRejectsCorruptRecords(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	src := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	b := src.NewBatch()
	c := load(t, src.Shard(0), "victim")
	fillAll(p, c, 1)
	good := records(t, src, b, c)["victim"]

	// The window record starts after the version, the expiry and its
	// length.
	_, n1 := binary.Uvarint(good[1:])
	_, n2 := binary.Uvarint(good[1+n1:])
	win := 1 + n1 + n2
	if good[0] != 1 || good[win] != 2 {
		t.Fatalf("unexpected record layout %q", good[:win+1])
	}
	mutate := func(f func(r []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name string
		id   string
		rec  []byte
		err  string
	}{
		{"an unknown version", "victim", mutate(func(r []byte) []byte { r[0] = 2; return r }), "unknown replication record version 2"},
		{"a truncated record", "victim", good[:len(good)-3], "policy record at byte"},
		{"a trailing byte", "victim", append(bytes.Clone(good), 0), "1 trailing bytes"},
		{"a corrupt window record", "victim", mutate(func(r []byte) []byte { r[win] = 7; return r }), "window record: state: corrupt record: unknown window record version 7"},
		{"a corrupt policy record", "victim", mutate(func(r []byte) []byte { r[len(r)-1] = 0xff; return r }), "policy record"},
		{"a record without a customer id", "", good, "no customer id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := statetest.Open(t, state.Options{GCInterval: -1})
			bd := dst.NewBatch()
			v := load(t, dst.Shard(0), "victim")
			v.AddDeferred(state.Deferred{ID: "mine", Release: t0})
			v.MergeProfile(map[string]any{"keep": 1})
			bd.Put(v)
			commit(t, dst, bd)
			before, _, _ := dst.ExportCustomer("victim")
			dueBefore := due(t, dst)

			ids := []string{"first", tt.id, "last"}
			seq := [][]byte{good, tt.rec, good}
			n, err := dst.ImportRecords(func() (string, []byte, bool, error) {
				if len(ids) == 0 {
					return "", nil, false, nil
				}
				id, rec := ids[0], seq[0]
				ids, seq = ids[1:], seq[1:]
				return id, rec, true, nil
			})
			if n != 1 || !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ImportRecords: %d, %v; want 1 and ErrCorrupt with %q", n, err, tt.err)
			}
			if tt.id != "" && !strings.Contains(err.Error(), `customer "victim"`) {
				t.Errorf("error %q does not name the customer", err)
			}
			if after, _, _ := dst.ExportCustomer("victim"); !bytes.Equal(after, before) {
				t.Error("the customer of the corrupt record changed")
			}
			if got := customerIDs(t, dst); !slices.Equal(got, []string{"first", "victim"}) {
				t.Errorf("customers %v, want [first victim]", got)
			}
			var wantDue []state.DueEntry
			for _, e := range due(t, src) {
				e.Customer = "first"
				wantDue = append(wantDue, e)
			}
			wantDue = append(wantDue, dueBefore...)
			slices.SortFunc(wantDue, func(a, b state.DueEntry) int { return int(a.Release - b.Release) })
			if got := due(t, dst); !reflect.DeepEqual(got, wantDue) {
				t.Errorf("due index %+v, want %+v", got, wantDue)
			}
		})
	}
}

func TestImportOverCorruptStoredPolicy(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	c.AddDeferred(state.Deferred{ID: "stale", Release: t0})
	b.Put(c)
	d := load(t, s.Shard(0), "bob")
	d.AddDeferred(state.Deferred{ID: "kept", Release: t0})
	b.Put(d)
	commit(t, s, b)
	if err := state.WriteRaw(s, "k/alice", []byte{1, 5}); err != nil {
		t.Fatal(err)
	}
	src := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	bs := src.NewBatch()
	a := load(t, src.Shard(0), "alice")
	a.AddDeferred(state.Deferred{ID: "fresh", Release: t0 + hour})
	importAll(t, s, records(t, src, bs, a))
	want := []state.DueEntry{{Customer: "bob", OfferID: "kept", Release: t0}, {Customer: "alice", OfferID: "fresh", Release: t0 + hour}}
	if got := due(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("due index %+v, want %+v", got, want)
	}
	if err := s.DropCustomers([]string{"bob"}); err != nil {
		t.Fatal(err)
	}
}

func TestImportSplitsTransactions(t *testing.T) {
	// A 1 MiB memtable limits a transaction to about 150 KiB.
	opts := state.Options{GCInterval: -1, Replicate: true}
	state.SetBadgerOptions(&opts, func(o badger.Options) badger.Options {
		return o.WithMemTableSize(1 << 20).WithValueThreshold(1 << 10)
	})
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	src := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	b := src.NewBatch()
	recs := map[string][]byte{}
	for i := range 1000 {
		c := load(t, src.Shard(0), fmt.Sprintf("c%04d", i))
		fillAll(p, c, i)
		b.Put(c)
		if i%100 == 99 {
			b.Records(func(id string, rec []byte) { recs[id] = bytes.Clone(rec) })
			commit(t, src, b)
		}
	}
	dst := statetest.Open(t, opts)
	importAll(t, dst, recs)
	if got, want := due(t, dst), due(t, src); !reflect.DeepEqual(got, want) {
		t.Errorf("due index: %d keys, want %d", len(got), len(want))
	}
	for _, id := range []string{"c0000", "c0499", "c0999"} {
		sameCustomer(t, p, src, dst, id)
	}

	// One customer bigger than a transaction is refused whole.
	big := load(t, src.Shard(0), "big")
	for i := range 3000 {
		big.AddDeferred(state.Deferred{ID: fmt.Sprint("offer-", i), Release: t0})
	}
	rec := records(t, src, b, big)
	n, err := dst.ImportRecords(feed([]string{"big"}, rec))
	if n != 0 || !errors.Is(err, state.ErrBatchTooBig) || !strings.Contains(err.Error(), `"big"`) {
		t.Errorf("ImportRecords of a huge customer: %d, %v; want ErrBatchTooBig naming it", n, err)
	}
}

func TestDropCustomers(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	s := statetest.Open(t, state.Options{GCInterval: -1, Shards: 2})
	b := s.NewBatch()
	for i := range 6 {
		c := load(t, s.Shard(i%2), fmt.Sprint("c", i))
		fillAll(p, c, i)
		b.Put(c)
	}
	b.MarkSeen("evt-1", time.Hour)
	b.SetCounter("budget", 3)
	commit(t, s, b)
	if c := load(t, s.Shard(1), "c1"); len(c.Deferred()) == 0 {
		t.Fatal("c1 not cached with its offers")
	}

	if err := s.DropCustomers([]string{"c1", "c4", "unknown"}); err != nil {
		t.Fatal(err)
	}
	if got, want := customerIDs(t, s), []string{"c0", "c2", "c3", "c5"}; !slices.Equal(got, want) {
		t.Errorf("customers %v, want %v", got, want)
	}
	checkDueConsistent(t, s, map[string]int{"c0": 0, "c1": 1, "c2": 0, "c3": 1, "c4": 0, "c5": 1})
	for _, e := range due(t, s) {
		if e.Customer == "c1" || e.Customer == "c4" {
			t.Errorf("due index key of a dropped customer: %+v", e)
		}
	}
	if c := load(t, s.Shard(1), "c1"); len(c.Deferred()) != 0 || len(c.Profile()) != 0 {
		t.Errorf("c1 loads with data (from the cache?): %v %v", c.Deferred(), c.Profile())
	}
	if ok, _ := s.Seen("evt-1"); !ok {
		t.Error("a seen marker was dropped")
	}
	if n, _ := s.Counters(""); n["budget"] != 3 {
		t.Errorf("counters %v", n)
	}
	if err := s.DropCustomers(nil); err != nil {
		t.Error(err)
	}
}

func TestScanCustomerIDs(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	for _, kv := range []string{"c/b", "c/d", "p/a", "p/b", "p/e", "k/b", "k/c", "k/e", "k/f", "q/x", "n/a", "o/z", "s/y"} {
		if err := state.WriteRaw(s, kv, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := customerIDs(t, s), []string{"a", "b", "c", "d", "e", "f"}; !slices.Equal(got, want) {
		t.Errorf("ids %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err := s.ScanCustomerIDs(func(string) error {
		if n++; n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("stopping scan: %d calls, %v", n, err)
	}
}

func TestMarkSeenUntil(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	b := s.NewBatch()
	future := time.Now().Add(90 * time.Minute)
	b.MarkSeenUntil("restored", future)
	b.MarkSeenUntil("past", time.Now().Add(-time.Second))
	b.MarkSeenUntil("now", time.Now())
	if b.Len() != 1 {
		t.Fatalf("batch Len %d, want 1 (expired markers write nothing)", b.Len())
	}
	b.MarkSeen("fresh", time.Hour)
	b.MarkSeen("forever", 0)
	commit(t, s, b)

	_, expires, _ := state.ReadRaw(s, "s/restored")
	want := uint64(future.Unix())
	if future.Nanosecond() > 0 {
		want++
	}
	if expires != want {
		t.Errorf("restored marker expires at %d, want %d (rounded up)", expires, want)
	}
	for key, want := range map[string]bool{"restored": true, "fresh": true, "forever": true, "past": false, "now": false} {
		if ok, err := s.Seen(key); ok != want || err != nil {
			t.Errorf("Seen(%q): %v %v, want %v", key, ok, err, want)
		}
	}

	// ScanSeen gives what MarkSeenUntil restores in another store.
	other := statetest.Open(t, state.Options{GCInterval: -1})
	bo := other.NewBatch()
	var keys []string
	err := s.ScanSeen(func(key string, at time.Time) error {
		keys = append(keys, key)
		if key == "forever" {
			if !at.IsZero() {
				t.Errorf("marker without TTL expires at %v", at)
			}
			bo.MarkSeen(key, 0)
			return nil
		}
		bo.MarkSeenUntil(key, at)
		return nil
	})
	if err != nil || !slices.Equal(keys, []string{"forever", "fresh", "restored"}) {
		t.Fatalf("ScanSeen: %v, %v", keys, err)
	}
	commit(t, other, bo)
	for _, key := range keys {
		_, ea, _ := state.ReadRaw(s, "s/"+key)
		_, eb, _ := state.ReadRaw(other, "s/"+key)
		if ea != eb {
			t.Errorf("%s expires at %d, want %d", key, eb, ea)
		}
	}
}

func TestReplicatePutWritesWholeCustomer(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	off := statetest.Open(t, state.Options{GCInterval: -1})
	on := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})

	// The same changes give the same stored bytes with and without the
	// option; with it, Put writes every record.
	var expires uint64
	for _, s := range []*state.Store{off, on} {
		b := s.NewBatch()
		c := load(t, s.Shard(0), "alice")
		fillAll(p, c, 3)
		b.Put(c)
		commit(t, s, b)
		c.AddContact(state.Contact{TS: t0 + hour, Rule: "r"}, 0)
		b.Put(c)
		want := 1
		if s == on {
			want = 3
			_, expires, _ = state.ReadRaw(s, "c/alice")
		}
		if b.Len() != want {
			t.Errorf("Replicate %v: a policy change writes %d keys, want %d", s == on, b.Len(), want)
		}
		commit(t, s, b)
	}
	// Without the option the window record's entries are in chunks.
	a, _ := state.FullWindow(off, "alice")
	if b, _, _ := state.ReadRaw(on, "c/alice"); !bytes.Equal(a, b) {
		t.Errorf("c/alice differs with Replicate")
	}
	for _, key := range []string{"p/alice", "k/alice"} {
		a, _, _ := state.ReadRaw(off, key)
		b, _, _ := state.ReadRaw(on, key)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs with Replicate", key)
		}
	}
	// Rewriting unchanged windows keeps their expiry, also after a reload.
	if _, e, _ := state.ReadRaw(on, "c/alice"); e != expires || e == 0 {
		t.Errorf("window record expires at %d, want %d as before", e, expires)
	}
	on.Invalidate("alice")
	b := on.NewBatch()
	c := load(t, on.Shard(0), "alice")
	c.AddRuleTotal("r", 1)
	records(t, on, b, c)
	if _, e, _ := state.ReadRaw(on, "c/alice"); e != expires {
		t.Errorf("after a reload the window record expires at %d, want %d", e, expires)
	}

	// Without the option, Records is a programming error.
	defer func() {
		if recover() == nil {
			t.Error("Records without Replicate did not panic")
		}
	}()
	off.NewBatch().Records(func(string, []byte) {})
}

func TestReplicateRecordOfRepeatedPut(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	s := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	fillAll(p, c, 1)
	b.Put(c)
	c.AddDeferred(state.Deferred{ID: "second", Release: t0})
	recs := records(t, s, b, c)
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	dst := statetest.Open(t, state.Options{GCInterval: -1})
	importAll(t, dst, recs)
	sameCustomer(t, p, s, dst, "alice")
	if got := deferredIDs(load(t, dst.Shard(0), "alice")); !slices.Contains(got, "second") {
		t.Errorf("deferred %v: the second Put is missing", got)
	}
}

func TestReplicateUnencodableProfileKeepsStored(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	c.MergeProfile(map[string]any{"name": "Alice"})
	records(t, s, b, c)
	stored, _, _ := state.ReadRaw(s, "p/alice")

	c.MergeProfile(map[string]any{"bad": make(chan int)})
	c.AddRuleTotal("r", 1)
	recs := records(t, s, b, c)
	if got, _, _ := state.ReadRaw(s, "p/alice"); !bytes.Equal(got, stored) {
		t.Error("the stored profile changed")
	}
	dst := statetest.Open(t, state.Options{GCInterval: -1})
	importAll(t, dst, recs)
	if got, _, _ := dst.Profile("alice"); got["name"] != "Alice" || len(got) != 1 {
		t.Errorf("imported profile %v", got)
	}
	if snap, _, _ := dst.Snapshot("alice"); snap.RuleTotal("r") != 1 {
		t.Error("the policy of the same Put is missing")
	}
}

func TestReplicationOnClosedStore(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	s.Close()
	if _, err := s.ImportRecords(feed(nil, nil)); !errors.Is(err, state.ErrClosed) {
		t.Errorf("ImportRecords: %v", err)
	}
	if _, _, err := s.ExportCustomer("a"); !errors.Is(err, state.ErrClosed) {
		t.Errorf("ExportCustomer: %v", err)
	}
	if err := s.DropCustomers([]string{"a"}); !errors.Is(err, state.ErrClosed) {
		t.Errorf("DropCustomers: %v", err)
	}
	if err := s.ScanCustomerIDs(func(string) error { return nil }); !errors.Is(err, state.ErrClosed) {
		t.Errorf("ScanCustomerIDs: %v", err)
	}
	if err := s.ScanSeen(func(string, time.Time) error { return nil }); !errors.Is(err, state.ErrClosed) {
		t.Errorf("ScanSeen: %v", err)
	}
}

func TestReplicatePutAgainDeletesRecords(t *testing.T) {
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})
	for _, replicate := range []bool{false, true} {
		t.Run(fmt.Sprint("Replicate ", replicate), func(t *testing.T) {
			s := statetest.Open(t, state.Options{GCInterval: -1, Replicate: replicate})
			b := s.NewBatch()
			c := load(t, s.Shard(0), "alice")
			c.MergeProfile(map[string]any{"x": 1})
			c.AddDeferred(state.Deferred{ID: "o", Release: t0})
			c.Apply(p, "view", t0, nil)
			b.Put(c)
			commit(t, s, b)

			// Emptied in a first Put, changed again in a second one.
			c.MergeProfile(map[string]any{"x": nil})
			c.RemoveDeferred("o")
			b.Put(c)
			c.Apply(p, "view", t0+time.Hour.Milliseconds(), nil) // evicts the first
			b.Put(c)
			commit(t, s, b)
			for _, key := range []string{"p/alice", "k/alice"} {
				if raw, _, _ := state.ReadRaw(s, key); raw != nil {
					t.Errorf("%s still stored", key)
				}
			}
			if len(due(t, s)) != 0 {
				t.Errorf("due index %+v", due(t, s))
			}
		})
	}
}

// TestUnencodableProfileKeepsThePolicyChange: without Replicate too, a
// profile msgpack cannot encode is skipped, not the rest of the Put.
func TestUnencodableProfileKeepsThePolicyChange(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	c.MergeProfile(map[string]any{"name": "Alice"})
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	c = load(t, s.Shard(0), "alice")
	c.MergeProfile(map[string]any{"bad": make(chan int)})
	c.AddRuleTotal("r", 1)
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	s.Invalidate("alice")
	snap, _, _ := s.Snapshot("alice")
	if snap.RuleTotal("r") != 1 {
		t.Error("the policy change of the same Put was lost")
	}
	if got, _, _ := s.Profile("alice"); got["name"] != "Alice" || len(got) != 1 {
		t.Errorf("profile %v", got)
	}
}

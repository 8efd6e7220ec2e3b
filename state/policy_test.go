package state_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

func contactTimes(c *state.Customer) []int64 {
	var ts []int64
	for _, ct := range c.Contacts() {
		ts = append(ts, ct.TS)
	}
	return ts
}

func TestAddContact(t *testing.T) {
	type add struct {
		ts        int64
		rule      string
		retention time.Duration
	}
	tests := []struct {
		name  string
		adds  []add
		want  []int64
		rules []string // when set, the rules in order
		dirty bool
	}{
		{
			name:  "contacts in time order are appended",
			adds:  []add{{t0, "a", time.Hour}, {t0 + sec, "b", time.Hour}, {t0 + 2*sec, "c", time.Hour}},
			want:  []int64{t0, t0 + sec, t0 + 2*sec},
			dirty: true,
		},
		{
			name:  "an older contact goes in place",
			adds:  []add{{t0, "a", time.Hour}, {t0 + 10*sec, "b", time.Hour}, {t0 + 5*sec, "c", time.Hour}, {t0 - sec, "d", time.Hour}},
			want:  []int64{t0 - sec, t0, t0 + 5*sec, t0 + 10*sec},
			rules: []string{"d", "a", "c", "b"},
			dirty: true,
		},
		{
			name:  "contacts with equal times keep the order they came in",
			adds:  []add{{t0, "a", 0}, {t0 + sec, "b", 0}, {t0, "c", 0}, {t0 + sec, "d", 0}},
			want:  []int64{t0, t0, t0 + sec, t0 + sec},
			rules: []string{"a", "c", "b", "d"},
			dirty: true,
		},
		{
			name:  "retention drops a contact exactly retention old and keeps one a millisecond younger",
			adds:  []add{{t0, "a", time.Hour}, {t0 + 1, "b", time.Hour}, {t0 + hour, "c", time.Hour}},
			want:  []int64{t0 + 1, t0 + hour},
			dirty: true,
		},
		{
			name:  "a contact older than retention is not added",
			adds:  []add{{t0 + 2*hour, "a", time.Hour}, {t0 + hour, "late", time.Hour}},
			want:  []int64{t0 + 2*hour},
			dirty: true,
		},
		{
			name:  "a shorter retention on a later call drops more",
			adds:  []add{{t0, "a", 24 * time.Hour}, {t0 + hour, "b", 24 * time.Hour}, {t0 + 2*hour, "c", 90 * time.Minute}},
			want:  []int64{t0 + hour, t0 + 2*hour},
			dirty: true,
		},
		{
			name:  "zero retention keeps everything",
			adds:  []add{{t0 - 1000*hour, "a", 0}, {t0, "b", 0}, {t0 - 2000*hour, "c", 0}},
			want:  []int64{t0 - 2000*hour, t0 - 1000*hour, t0},
			dirty: true,
		},
		{
			name:  "negative retention keeps everything",
			adds:  []add{{t0 - 1000*hour, "a", -time.Hour}, {t0, "b", -time.Hour}},
			want:  []int64{t0 - 1000*hour, t0},
			dirty: true,
		},
		{
			name:  "a sub-millisecond retention counts as one millisecond",
			adds:  []add{{t0, "a", time.Nanosecond}, {t0, "b", time.Nanosecond}, {t0 + 1, "c", time.Nanosecond}},
			want:  []int64{t0 + 1},
			dirty: true,
		},
		{
			name: "no contacts",
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := statetest.Open(t, state.Options{GCInterval: -1})
			c := load(t, s.Shard(0), "alice")
			for _, a := range tt.adds {
				c.AddContact(state.Contact{TS: a.ts, Rule: a.rule, Channel: "email"}, a.retention)
			}
			if got := contactTimes(c); !slices.Equal(got, tt.want) {
				t.Errorf("contact times %v, want %v", got, tt.want)
			}
			if tt.rules != nil {
				var rules []string
				for _, ct := range c.Contacts() {
					rules = append(rules, ct.Rule)
				}
				if !slices.Equal(rules, tt.rules) {
					t.Errorf("rules %v, want %v", rules, tt.rules)
				}
			}
			if c.Dirty() != tt.dirty {
				t.Errorf("dirty %v, want %v", c.Dirty(), tt.dirty)
			}
			// What is kept is what is committed.
			b := s.NewBatch()
			b.Put(c)
			commit(t, s, b)
			s.Invalidate("alice")
			if got := contactTimes(load(t, s.Shard(0), "alice")); !slices.Equal(got, tt.want) {
				t.Errorf("reloaded contact times %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContactsCappedAtMaxSeriesEntries(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1, MaxSeriesEntries: 3})
	c := load(t, s.Shard(0), "alice")
	for i := range 5 {
		c.AddContact(state.Contact{TS: t0 + int64(i)}, 0)
	}
	if got, want := contactTimes(c), []int64{t0 + 2, t0 + 3, t0 + 4}; !slices.Equal(got, want) {
		t.Errorf("contact times %v, want the newest %v", got, want)
	}
}

func TestCountContacts(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	c := load(t, s.Shard(0), "alice")
	for _, ct := range []state.Contact{
		{TS: t0, Rule: "welcome", Channel: "email", Kind: 0},
		{TS: t0 + hour, Rule: "winback", Channel: "sms", Kind: 0},
		{TS: t0 + 2*hour, Rule: "welcome", Channel: "sms", Kind: 1},
		{TS: t0 + 2*hour, Rule: "upsell", Channel: "email", Kind: 2},
		{TS: t0 + 3*hour, Rule: "welcome", Channel: "email", Kind: 0},
	} {
		c.AddContact(ct, 7*24*time.Hour)
	}
	tests := []struct {
		name    string
		since   int64
		kind    int
		rule    string
		channel string
		want    int
	}{
		{"everything", t0 - 1, -1, "", "", 5},
		{"a contact exactly at since is excluded", t0, -1, "", "", 4},
		{"two contacts at since are both excluded", t0 + 2*hour, -1, "", "", 1},
		{"a millisecond before includes them", t0 + 2*hour - 1, -1, "", "", 3},
		{"nothing after the newest", t0 + 3*hour, -1, "", "", 0},
		{"far in the past", -1 << 62, -1, "", "", 5},
		{"by kind", t0 - 1, 0, "", "", 3},
		{"by a kind nobody has", t0 - 1, 7, "", "", 0},
		{"by rule", t0 - 1, -1, "welcome", "", 3},
		{"by channel", t0 - 1, -1, "", "sms", 2},
		{"by rule and channel", t0 - 1, -1, "welcome", "email", 2},
		{"by kind, rule and channel", t0, 0, "welcome", "email", 1},
		{"by an unknown rule", t0 - 1, -1, "nope", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.CountContacts(tt.since, tt.kind, tt.rule, tt.channel); got != tt.want {
				t.Errorf("CountContacts(%d, %d, %q, %q) = %d, want %d", tt.since-t0, tt.kind, tt.rule, tt.channel, got, tt.want)
			}
		})
	}
	if n := load(t, s.Shard(0), "nobody").CountContacts(0, -1, "", ""); n != 0 {
		t.Errorf("a new customer has %d contacts", n)
	}
}

func TestAddContactCountDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	c := load(t, sh, "alice")
	ts := t0
	add := func() {
		ts += 3 * hour
		c, _ = sh.Load("alice")
		c.AddContact(state.Contact{TS: ts, Rule: "welcome", Channel: "email"}, 7*24*time.Hour)
		c.CountContacts(ts-24*hour, 0, "", "")
		c.CountContacts(ts-7*24*hour, -1, "welcome", "")
		c.CountContacts(ts-7*24*hour, -1, "", "email")
	}
	for range 200 {
		add()
	}
	if n := testing.AllocsPerRun(1000, add); n != 0 {
		t.Errorf("%v allocations per AddContact and 3 CountContacts, want 0", n)
	}
}

func TestRuleTotal(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	b := s.NewBatch()
	c := load(t, sh, "alice")
	if c.RuleTotal("welcome") != 0 {
		t.Fatal("a new customer has a total")
	}
	c.AddRuleTotal("welcome", 1)
	c.AddRuleTotal("welcome", 2)
	c.AddRuleTotal("upsell", 5)
	c.AddRuleTotal("aaa", -1)
	if got := []int64{c.RuleTotal("welcome"), c.RuleTotal("upsell"), c.RuleTotal("aaa"), c.RuleTotal("other")}; !slices.Equal(got, []int64{3, 5, -1, 0}) {
		t.Errorf("totals %v, want [3 5 -1 0]", got)
	}
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("alice")
	c = load(t, sh, "alice")
	if c.RuleTotal("welcome") != 3 || c.RuleTotal("upsell") != 5 {
		t.Errorf("reloaded totals %d %d, want 3 5", c.RuleTotal("welcome"), c.RuleTotal("upsell"))
	}
	c.AddRuleTotal("other", 0)
	if c.Dirty() {
		t.Error("adding 0 dirtied the customer")
	}
	// Totals that reach 0 are removed; with nothing else left the record
	// is deleted.
	c.AddRuleTotal("welcome", -3)
	c.AddRuleTotal("upsell", -5)
	c.AddRuleTotal("aaa", 1)
	if c.RuleTotal("welcome") != 0 || !c.Dirty() {
		t.Errorf("total %d dirty %v, want 0 true", c.RuleTotal("welcome"), c.Dirty())
	}
	b.Put(c)
	commit(t, s, b)
	if raw, _, _ := state.ReadRaw(s, "k/alice"); raw != nil {
		t.Errorf("k/alice still stored: %x", raw)
	}
}

// due lists the whole due index.
func due(t testing.TB, s *state.Store) []state.DueEntry {
	t.Helper()
	es, err := s.DueDeferred(1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func deferredIDs(c *state.Customer) []string {
	var ids []string
	for _, d := range c.Deferred() {
		ids = append(ids, d.ID)
	}
	return ids
}

func TestDeferred(t *testing.T) {
	dir := t.TempDir()
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1, Shards: 2})
	b := s.NewBatch()
	alice := load(t, s.Shard(0), "alice")
	bob := load(t, s.Shard(1), "bob")

	data := []byte("payload")
	alice.AddDeferred(state.Deferred{ID: "o2", Release: t0 + 2*hour, Expires: t0 + 10*hour, Data: data})
	alice.AddDeferred(state.Deferred{ID: "o1", Release: t0 + 2*hour, Expires: t0 + 10*hour})
	alice.AddDeferred(state.Deferred{ID: "o3", Release: t0 + hour, Expires: t0 + 10*hour})
	copy(data, "XXXXXXX") // AddDeferred keeps a copy
	bob.AddDeferred(state.Deferred{ID: "o9", Release: t0 + hour, Expires: t0 + 10*hour})
	bob.AddDeferred(state.Deferred{ID: "gone", Release: t0, Expires: t0 + 10*hour})
	if !bob.RemoveDeferred("gone") || bob.RemoveDeferred("gone") {
		t.Error("RemoveDeferred: want true once, then false")
	}
	if got, want := deferredIDs(alice), []string{"o3", "o1", "o2"}; !slices.Equal(got, want) {
		t.Errorf("alice's deferred %v, want %v (by release, then id)", got, want)
	}
	if d := alice.Deferred()[2]; string(d.Data) != "payload" {
		t.Errorf("data %q, want the copy %q", d.Data, "payload")
	}
	if len(due(t, s)) != 0 {
		t.Error("due index written before Commit")
	}
	b.Put(alice)
	b.Put(bob)
	commit(t, s, b)

	want := []state.DueEntry{
		{Customer: "alice", OfferID: "o3", Release: t0 + hour},
		{Customer: "bob", OfferID: "o9", Release: t0 + hour},
		{Customer: "alice", OfferID: "o1", Release: t0 + 2*hour},
		{Customer: "alice", OfferID: "o2", Release: t0 + 2*hour},
	}
	if got := due(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("due index %+v, want %+v", got, want)
	}
	dueTests := []struct {
		name  string
		now   int64
		limit int
		want  []state.DueEntry
	}{
		{"before the first release", t0 + hour - 1, 10, nil},
		{"a release exactly now is due", t0 + hour, 10, want[:2]},
		{"the limit cuts in release order", t0 + 3*hour, 3, want[:3]},
		{"everything", t0 + 3*hour, 10, want},
		{"a limit of 0", t0 + 3*hour, 0, nil},
	}
	for _, tt := range dueTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.DueDeferred(tt.now, tt.limit)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DueDeferred: %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}

	// Only bob's: alice's entries are passed over, not counted.
	if got, err := s.DueDeferredOf(t0+3*hour, 1, func(c string) bool { return c == "bob" }); err != nil || !reflect.DeepEqual(got, want[1:2]) {
		t.Errorf("DueDeferredOf bob: %+v, %v; want %+v", got, err, want[1:2])
	}

	// Replace one with a new release, remove another, add a third.
	alice = load(t, s.Shard(0), "alice")
	alice.AddDeferred(state.Deferred{ID: "o1", Release: t0 + 5*hour, Expires: t0 + 10*hour, Data: []byte("new")})
	alice.RemoveDeferred("o3")
	alice.AddDeferred(state.Deferred{ID: "o4", Release: t0 - hour, Expires: t0 + 10*hour})
	b.Put(alice)
	commit(t, s, b)
	want = []state.DueEntry{
		{Customer: "alice", OfferID: "o4", Release: t0 - hour},
		{Customer: "bob", OfferID: "o9", Release: t0 + hour},
		{Customer: "alice", OfferID: "o2", Release: t0 + 2*hour},
		{Customer: "alice", OfferID: "o1", Release: t0 + 5*hour},
	}
	if got := due(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("due index after changes %+v, want %+v", got, want)
	}

	// Reopen: the deferred offers and the index are as committed.
	s.Close()
	s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1, Shards: 2})
	if got := due(t, s); !reflect.DeepEqual(got, want) {
		t.Errorf("due index after reopen %+v, want %+v", got, want)
	}
	alice = load(t, s.Shard(0), "alice")
	if got, wantIDs := deferredIDs(alice), []string{"o4", "o2", "o1"}; !slices.Equal(got, wantIDs) {
		t.Errorf("alice's deferred after reopen %v, want %v", got, wantIDs)
	}
	if d := alice.Deferred()[2]; string(d.Data) != "new" || d.Expires != t0+10*hour {
		t.Errorf("replaced offer after reopen: %+v", d)
	}

	// Release them all, as the engine does.
	for _, e := range due(t, s) {
		sh := s.Shard(map[string]int{"alice": 0, "bob": 1}[e.Customer])
		c := load(t, sh, e.Customer)
		if !c.RemoveDeferred(e.OfferID) {
			t.Errorf("%s has no deferred offer %s", e.Customer, e.OfferID)
		}
		b.Put(c)
	}
	commit(t, s, b)
	if got := due(t, s); len(got) != 0 {
		t.Errorf("due index after releasing all: %+v", got)
	}
	for _, key := range []string{"k/alice", "k/bob"} {
		if raw, _, _ := state.ReadRaw(s, key); raw != nil {
			t.Errorf("%s still stored: %x", key, raw)
		}
	}
}

func TestDueIndexWithinOneBatch(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *state.Customer, b *state.Batch)
		want   []string // offer ids in the index
	}{
		{
			name: "an offer added and removed before Put leaves no index entry",
			change: func(c *state.Customer, b *state.Batch) {
				c.AddDeferred(state.Deferred{ID: "x", Release: t0})
				c.RemoveDeferred("x")
				c.AddContact(state.Contact{TS: t0}, 0)
				b.Put(c)
			},
			want: []string{"kept"},
		},
		{
			name: "the last Put of a batch wins",
			change: func(c *state.Customer, b *state.Batch) {
				c.AddDeferred(state.Deferred{ID: "x", Release: t0})
				b.Put(c)
				c.RemoveDeferred("kept")
				b.Put(c)
			},
			want: []string{"x"},
		},
		{
			name: "a change after Put is not committed, and the next Put catches up",
			change: func(c *state.Customer, b *state.Batch) {
				c.AddDeferred(state.Deferred{ID: "x", Release: t0})
				b.Put(c)
				c.RemoveDeferred("x")
				c.RemoveDeferred("kept")
			},
			want: []string{"x", "kept"},
		},
		{
			name: "replacing an offer with the same release changes nothing in the index",
			change: func(c *state.Customer, b *state.Batch) {
				c.AddDeferred(state.Deferred{ID: "kept", Release: t0 + hour, Data: []byte("v2")})
				b.Put(c)
			},
			want: []string{"kept"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := statetest.Open(t, state.Options{GCInterval: -1})
			sh := s.Shard(0)
			b := s.NewBatch()
			c := load(t, sh, "alice")
			c.AddDeferred(state.Deferred{ID: "kept", Release: t0 + hour})
			b.Put(c)
			commit(t, s, b)

			c = load(t, sh, "alice")
			tt.change(c, b)
			commit(t, s, b)
			var got []string
			for _, e := range due(t, s) {
				got = append(got, e.OfferID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("index %v, want %v", got, tt.want)
			}
			// A further Put always brings the index in line with the
			// customer.
			c = load(t, sh, "alice")
			b.Put(c)
			commit(t, s, b)
			checkDueConsistent(t, s, map[string]int{"alice": 0})
		})
	}
}

// checkDueConsistent checks that the due index lists exactly the stored
// deferred offers of the customers, which are in the given shards.
func checkDueConsistent(t *testing.T, s *state.Store, customers map[string]int) {
	t.Helper()
	var want []state.DueEntry
	for id := range customers {
		snap, ok, err := s.Snapshot(id)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		for _, d := range snap.Deferred() {
			want = append(want, state.DueEntry{Customer: id, OfferID: d.ID, Release: d.Release})
		}
	}
	slices.SortFunc(want, func(a, b state.DueEntry) int {
		if a.Release != b.Release {
			return int(a.Release - b.Release)
		}
		return strings.Compare(a.Customer+"\x00"+a.OfferID, b.Customer+"\x00"+b.OfferID)
	})
	if got := due(t, s); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
		t.Errorf("due index %+v, want the stored offers %+v", got, want)
	}
}

func TestDueIndexAfterFailedCommit(t *testing.T) {
	// A 1 MiB memtable limits a transaction to about 150 KiB.
	opts := state.Options{GCInterval: -1}
	state.SetBadgerOptions(&opts, func(o badger.Options) badger.Options {
		return o.WithMemTableSize(1 << 20).WithValueThreshold(1 << 10)
	})
	s := statetest.Open(t, opts)
	sh := s.Shard(0)
	b := s.NewBatch()

	c := load(t, sh, "alice")
	c.AddDeferred(state.Deferred{ID: "committed", Release: t0})
	b.Put(c)
	commit(t, s, b)

	c = load(t, sh, "alice")
	c.RemoveDeferred("committed")
	c.AddDeferred(state.Deferred{ID: "lost", Release: t0 + hour})
	b.Put(c)
	val := bytes.Repeat([]byte("x"), 1000)
	for i := range 300 {
		b.AddOutbox(fmt.Appendf(nil, "%08d", i), val)
	}
	if err := s.Commit(b); !errors.Is(err, state.ErrBatchTooBig) {
		t.Fatalf("Commit: %v, want ErrBatchTooBig", err)
	}
	s.Invalidate(b.Customers()...)
	b.Reset()

	c = load(t, sh, "alice")
	if got := deferredIDs(c); !slices.Equal(got, []string{"committed"}) {
		t.Errorf("deferred after a failed commit: %v, want [committed]", got)
	}
	checkDueConsistent(t, s, map[string]int{"alice": 0})

	// Try again in a batch that fits.
	c.RemoveDeferred("committed")
	c.AddDeferred(state.Deferred{ID: "retried", Release: t0 + hour})
	b.Put(c)
	commit(t, s, b)
	if got := due(t, s); len(got) != 1 || got[0].OfferID != "retried" {
		t.Errorf("due index after the retry: %+v, want only retried", got)
	}
	checkDueConsistent(t, s, map[string]int{"alice": 0})
}

func TestCustomerIDWithNULIsNotIndexed(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	b := s.NewBatch()
	c := load(t, s.Shard(0), "a\x00b")
	c.AddDeferred(state.Deferred{ID: "o", Release: t0})
	b.Put(c)
	commit(t, s, b)
	if got := due(t, s); len(got) != 0 {
		t.Errorf("due index %+v, want none", got)
	}
	s.Invalidate("a\x00b")
	if got := deferredIDs(load(t, s.Shard(0), "a\x00b")); !slices.Equal(got, []string{"o"}) {
		t.Errorf("deferred %v, want [o] stored all the same", got)
	}
}

func TestDecisions(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	b := s.NewBatch()
	c := load(t, sh, "alice")
	dec := func(i int) state.Decision {
		return state.Decision{TS: t0 + int64(i), Rule: "welcome", OfferID: fmt.Sprint("offer-", i), EventID: fmt.Sprint("evt-", i), Outcome: "emitted", Reason: "", Channel: "email"}
	}
	ids := func(c *state.Customer) []string {
		var out []string
		for _, d := range c.Decisions() {
			out = append(out, d.OfferID)
		}
		return out
	}
	steps := []struct {
		name string
		i    int
		keep int
		want []string
	}{
		{"the first is kept", 1, 3, []string{"offer-1"}},
		{"up to keep are kept", 2, 3, []string{"offer-1", "offer-2"}},
		{"keep reached", 3, 3, []string{"offer-1", "offer-2", "offer-3"}},
		{"beyond keep the oldest goes", 4, 3, []string{"offer-2", "offer-3", "offer-4"}},
		{"a smaller keep drops more", 5, 2, []string{"offer-4", "offer-5"}},
		{"a larger keep grows again", 6, 5, []string{"offer-4", "offer-5", "offer-6"}},
		{"keep 0 keeps none", 7, 0, nil},
		{"after keep 0 the ring starts over", 8, 1, []string{"offer-8"}},
	}
	for _, st := range steps {
		c.AddDecision(dec(st.i), st.keep)
		if got := ids(c); !slices.Equal(got, st.want) {
			t.Errorf("%s: %v, want %v", st.name, got, st.want)
		}
	}
	for i := 9; i < 200; i++ {
		c.AddDecision(dec(i), 4)
	}
	want := []state.Decision{dec(196), dec(197), dec(198), dec(199)}
	if !reflect.DeepEqual(c.Decisions(), want) {
		t.Errorf("decisions %+v, want %+v", c.Decisions(), want)
	}
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("alice")
	if got := load(t, sh, "alice").Decisions(); !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded decisions %+v, want %+v", got, want)
	}
}

// TestDecisionsKeepEveryField: decisions are kept encoded; every field
// comes back as it was added, in the cache and reloaded, whatever its
// length or bytes.
func TestDecisionsKeepEveryField(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	c := load(t, sh, "alice")
	want := []state.Decision{
		{TS: -5, Rule: "", OfferID: "", EventID: "", Outcome: "", Reason: "", Channel: ""},
		{TS: math.MaxInt64, Rule: strings.Repeat("r", 300), OfferID: strings.Repeat("o", 70000), EventID: "e\x00\xff", Outcome: "emitted", Reason: "cap_day", Channel: "sms"},
		{TS: t0, Rule: "welcome", OfferID: "o-1", EventID: "e-1", Outcome: "suppressed", Reason: "quiet hours ⏰", Channel: "push"},
	}
	for _, d := range want {
		c.AddDecision(d, 3)
	}
	if got := c.Decisions(); !reflect.DeepEqual(got, want) {
		t.Fatalf("decisions %+v, want %+v", got, want)
	}
	b := s.NewBatch()
	b.Put(c)
	commit(t, s, b)
	s.Invalidate("alice")
	if got := load(t, sh, "alice").Decisions(); !reflect.DeepEqual(got, want) {
		t.Errorf("reloaded decisions %+v, want %+v", got, want)
	}
}

func TestCounters(t *testing.T) {
	dir := t.TempDir()
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	b := s.NewBatch()
	b.SetCounter("budget/welcome/2024-06-01", 3)
	b.SetCounter("budget/upsell/2024-06-01", -7)
	b.SetCounter("budget/welcome/2024-06-02", 1)
	b.SetCounter("other", 1<<40)
	b.SetCounter("zero", 0)
	b.SetCounter("twice", 1)
	b.SetCounter("twice", 2)
	commit(t, s, b)

	tests := []struct {
		name   string
		prefix string
		want   map[string]int64
	}{
		{"all counters", "", map[string]int64{"budget/welcome/2024-06-01": 3, "budget/upsell/2024-06-01": -7, "budget/welcome/2024-06-02": 1, "other": 1 << 40, "twice": 2}},
		{"by prefix", "budget/welcome/", map[string]int64{"budget/welcome/2024-06-01": 3, "budget/welcome/2024-06-02": 1}},
		{"an unknown prefix", "nope", map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Counters(tt.prefix)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Counters(%q): %v, %v; want %v", tt.prefix, got, err, tt.want)
			}
		})
	}
	if raw, _, _ := state.ReadRaw(s, "n/other"); !bytes.Equal(raw, []byte{0, 0, 1, 0, 0, 0, 0, 0}) {
		t.Errorf("n/other = %x, want 8 big-endian bytes", raw)
	}

	// Setting 0 deletes; the counters survive reopening.
	b.SetCounter("other", 0)
	b.SetCounter("budget/welcome/2024-06-01", 4)
	commit(t, s, b)
	s.Close()
	s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	got, err := s.Counters("")
	want := map[string]int64{"budget/welcome/2024-06-01": 4, "budget/upsell/2024-06-01": -7, "budget/welcome/2024-06-02": 1, "twice": 2}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen: %v, %v; want %v", got, err, want)
	}
	if raw, _, _ := state.ReadRaw(s, "n/other"); raw != nil {
		t.Errorf("n/other still stored: %x", raw)
	}

	if err := state.WriteRaw(s, "n/bad", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Counters(""); !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), "n/bad") {
		t.Errorf("Counters with a bad value: %v, want ErrCorrupt naming n/bad", err)
	}
}

// fillPolicy gives c some of everything.
func fillPolicy(c *state.Customer, i int) {
	c.AddContact(state.Contact{TS: t0 + int64(i)*sec, Rule: "welcome", Channel: "email"}, 24*time.Hour)
	c.AddRuleTotal("welcome", 1)
	c.AddDeferred(state.Deferred{ID: fmt.Sprint("offer-", i%3), Release: t0 + int64(i)*sec, Expires: t0 + hour, Data: []byte{byte(i)}})
	c.AddDecision(state.Decision{TS: t0 + int64(i)*sec, Rule: "welcome", OfferID: fmt.Sprint("offer-", i), Outcome: "emitted"}, 5)
}

func TestPolicySurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	b := s.NewBatch()
	c := load(t, s.Shard(0), "alice")
	applySome(p, c, 50)
	c.MergeProfile(map[string]any{"name": "Alice"})
	for i := range 10 {
		fillPolicy(c, i)
	}
	wantContacts := slices.Clone(c.Contacts())
	wantDeferred := slices.Clone(c.Deferred())
	wantDecisions := slices.Clone(c.Decisions())
	wantValues := values(p, c, t0+49*60*sec)
	b.Put(c)
	commit(t, s, b)
	if _, expires, _ := state.ReadRaw(s, "k/alice"); expires != 0 {
		t.Errorf("the policy record has a TTL (%d); want none", expires)
	}
	s.Close()

	s = statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	c = load(t, s.Shard(0), "alice")
	if !reflect.DeepEqual(c.Contacts(), wantContacts) || !reflect.DeepEqual(c.Deferred(), wantDeferred) || !reflect.DeepEqual(c.Decisions(), wantDecisions) || c.RuleTotal("welcome") != 10 {
		t.Errorf("policy after reopen: %+v %+v %+v %d", c.Contacts(), c.Deferred(), c.Decisions(), c.RuleTotal("welcome"))
	}
	if v := values(p, c, t0+49*60*sec); !sameFloats(v, wantValues) {
		t.Errorf("values after reopen %v, want %v", v, wantValues)
	}
	if c.Profile()["name"] != "Alice" || c.Dirty() {
		t.Errorf("profile %v dirty %v", c.Profile(), c.Dirty())
	}
}

func TestRecordCombinations(t *testing.T) {
	p := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour})
	tests := []struct {
		name     string
		fill     func(c *state.Customer)
		keys     []string // stored afterwards
		contacts int
		views    float64
	}{
		{
			name:     "a customer with only a policy record",
			fill:     func(c *state.Customer) { c.AddContact(state.Contact{TS: t0, Rule: "r"}, 0) },
			keys:     []string{"k/"},
			contacts: 1,
		},
		{
			name:  "a customer with only windows, as written before policy records",
			fill:  func(c *state.Customer) { c.Apply(p, "view", t0, nil) },
			keys:  []string{"c/"},
			views: 1,
		},
		{
			name: "a customer with windows, profile and policy",
			fill: func(c *state.Customer) {
				c.Apply(p, "view", t0, nil)
				c.MergeProfile(map[string]any{"x": 1})
				c.AddContact(state.Contact{TS: t0, Rule: "r"}, 0)
			},
			keys:     []string{"c/", "p/", "k/"},
			contacts: 1,
			views:    1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := statetest.Open(t, state.Options{GCInterval: -1})
			b := s.NewBatch()
			c := load(t, s.Shard(0), "alice")
			tt.fill(c)
			b.Put(c)
			commit(t, s, b)
			for _, prefix := range []string{"c/", "p/", "k/"} {
				raw, _, _ := state.ReadRaw(s, prefix+"alice")
				if stored := raw != nil; stored != slices.Contains(tt.keys, prefix) {
					t.Errorf("%salice stored: %v", prefix, stored)
				}
			}
			s.Invalidate("alice")
			check := func(what string, c *state.Customer) {
				if n := len(c.Contacts()); n != tt.contacts {
					t.Errorf("%s: %d contacts, want %d", what, n, tt.contacts)
				}
				if v := c.Value(p, 0, t0); v != tt.views {
					t.Errorf("%s: %v views, want %v", what, v, tt.views)
				}
			}
			check("Load", load(t, s.Shard(0), "alice"))
			snap, ok, err := s.Snapshot("alice")
			if err != nil || !ok {
				t.Fatalf("Snapshot: %v %v", ok, err)
			}
			check("Snapshot", snap)
		})
	}
}

func TestCorruptPolicyRecord(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	if err := state.WriteRaw(s, "k/bad", []byte{1, 5}); err != nil {
		t.Fatal(err)
	}
	if err := state.WriteRaw(s, "q/short", nil); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error, key string) {
		t.Helper()
		if !errors.Is(err, state.ErrCorrupt) || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v, want ErrCorrupt naming %q", what, err, key)
		}
	}
	_, err := s.Shard(0).Load("bad")
	check("Load", err, "k/bad")
	_, _, err = s.Snapshot("bad")
	check("Snapshot", err, "k/bad")
	_, err = s.DueDeferred(t0, 10)
	check("DueDeferred", err, "q/short")
}

func TestSnapshot(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	sh := s.Shard(0)
	b := s.NewBatch()
	p := mustPlan(t, 24*time.Hour, testSpecs...)

	if c, ok, err := s.Snapshot("nobody"); c != nil || ok || err != nil {
		t.Errorf("Snapshot of an unknown customer: %v %v %v, want nil false nil", c, ok, err)
	}
	c := load(t, sh, "alice")
	applySome(p, c, 30)
	c.MergeProfile(map[string]any{"name": "Alice"})
	fillPolicy(c, 1)
	b.Put(c)
	commit(t, s, b)
	fillPolicy(c, 2) // not committed

	snap, ok, err := s.Snapshot("alice")
	if err != nil || !ok {
		t.Fatalf("Snapshot: %v %v", ok, err)
	}
	if snap == c || snap.ID() != "alice" || snap.Dirty() {
		t.Fatalf("snapshot %p (cached %p) id %q dirty %v", snap, c, snap.ID(), snap.Dirty())
	}
	if len(snap.Contacts()) != 1 || len(snap.Decisions()) != 1 || snap.RuleTotal("welcome") != 1 || len(snap.Deferred()) != 1 {
		t.Errorf("snapshot holds uncommitted state: %+v %+v", snap.Contacts(), snap.Decisions())
	}
	if snap.Profile()["name"] != "Alice" {
		t.Errorf("snapshot profile %v", snap.Profile())
	}
	at := t0 + 29*60*sec
	want := values(p, c, at)
	if got := values(p, snap, at); !sameFloats(got, want) {
		t.Errorf("snapshot values %v, want %v", got, want)
	}
	// Any plan, as for a cached customer.
	other := mustPlan(t, time.Hour, state.AggSpec{Kind: state.Count, Type: "view", Window: time.Minute})
	if got := snap.Value(other, 0, at); got != c.Value(other, 0, at) {
		t.Errorf("snapshot count under another plan: %v, want %v", got, c.Value(other, 0, at))
	}
	// Changing the snapshot changes nothing in the cache.
	snap.AddContact(state.Contact{TS: at, Rule: "x"}, 0)
	if len(c.Contacts()) != 2 {
		t.Errorf("cached contacts %d, want 2", len(c.Contacts()))
	}
}

// TestSnapshotWhileShardInUse reads snapshots on other goroutines while the
// engine's worker and committer use the shard; run with -race.
func TestSnapshotWhileShardInUse(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1, CacheCustomers: 4})
	sh := s.Shard(0)
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	b := s.NewBatch()
	ids := []string{"a", "b", "c", "d", "e", "f"}

	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				snap, ok, err := s.Snapshot(ids[i%len(ids)])
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					snap.Value(p, 3, t0+hour)
					snap.CountContacts(t0, -1, "welcome", "email")
					snap.AddContact(state.Contact{TS: t0, Rule: "mine", Channel: "mine"}, time.Hour)
					snap.AddDecision(state.Decision{Rule: "mine", Outcome: "mine"}, 2)
					_ = snap.Deferred()
				}
			}
		})
	}
	for i := range 300 {
		id := ids[i%len(ids)]
		c := load(t, sh, id)
		c.Apply(p, "buy", t0+int64(i)*sec, map[string]any{"amount": 1, "sku": i})
		fillPolicy(c, i)
		b.Put(c)
		if i%7 == 6 {
			commit(t, s, b)
		}
	}
	commit(t, s, b)
	close(done)
	wg.Wait()
	m := map[string]int{}
	for _, id := range ids {
		m[id] = 0
	}
	checkDueConsistent(t, s, m)
}

func TestPolicyMethodsOnClosedStore(t *testing.T) {
	s := statetest.Open(t, state.Options{GCInterval: -1})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{
		"DueDeferred": func() error { _, err := s.DueDeferred(0, 1); return err }(),
		"Counters":    func() error { _, err := s.Counters(""); return err }(),
		"Snapshot":    func() error { _, _, err := s.Snapshot("x"); return err }(),
	}
	for name, err := range checks {
		if !errors.Is(err, state.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func TestRemoveContactReleasesItsCap(t *testing.T) {
	s := statetest.Open(t, state.Options{})
	c, err := s.Shard(0).Load("C1")
	if err != nil {
		t.Fatal(err)
	}
	c.AddContact(state.Contact{TS: 1000, Rule: "r", Channel: "sms", OfferID: "o-1"}, 0)
	c.AddContact(state.Contact{TS: 2000, Rule: "r", Channel: "sms", OfferID: "o-2"}, 0)
	b := s.NewBatch()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if c.RemoveContact("o-missing") || !c.RemoveContact("o-1") || c.RemoveContact("o-1") {
		t.Fatal("RemoveContact answers wrong")
	}
	if !c.Dirty() || c.CountContacts(0, -1, "", "") != 1 {
		t.Fatalf("after removal: dirty %v, %d contacts", c.Dirty(), c.CountContacts(0, -1, "", ""))
	}
	b.Reset()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	snap, _, err := s.Snapshot("C1")
	if err != nil {
		t.Fatal(err)
	}
	if cs := snap.Contacts(); len(cs) != 1 || cs[0].OfferID != "o-2" {
		t.Fatalf("stored contacts %+v", cs)
	}
}

func TestExposuresRetentionAndConversion(t *testing.T) {
	s := statetest.Open(t, state.Options{})
	c, err := s.Shard(0).Load("C1")
	if err != nil {
		t.Fatal(err)
	}
	day := 24 * time.Hour
	c.AddExposure(state.Exposure{TS: 1 * day.Milliseconds(), Rule: "r", OfferID: "old"}, 7*day)
	c.AddExposure(state.Exposure{TS: 5 * day.Milliseconds(), Rule: "r", OfferID: "held", Holdout: true}, 7*day)
	c.AddExposure(state.Exposure{TS: 9 * day.Milliseconds(), Rule: "r", OfferID: "new", Data: []byte("offer")}, 7*day)
	if xs := c.Exposures(); len(xs) != 2 || xs[0].OfferID != "held" {
		t.Fatalf("retention kept %+v", xs)
	}
	if !c.MarkConverted("new") || c.MarkConverted("new") || c.MarkConverted("old") {
		t.Fatal("MarkConverted answers wrong")
	}
	b := s.NewBatch()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	snap, _, _ := s.Snapshot("C1")
	xs := snap.Exposures()
	if len(xs) != 2 || !xs[0].Holdout || !xs[1].Converted || string(xs[1].Data) != "offer" {
		t.Fatalf("stored exposures %+v", xs)
	}
}

func TestLastSeenDaysAndBatchHelpers(t *testing.T) {
	s := statetest.Open(t, state.Options{})
	c, _ := s.Shard(0).Load("C1")
	day := int64(86_400_000)
	c.Seen("login", 10*day+5)
	b := s.NewBatch()
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	c.Seen("login", 10*day+99) // same day: nothing to write
	if c.Dirty() {
		t.Error("a second event on the same day dirtied the customer")
	}
	c.Seen("login", 11*day)
	c.Seen("txn", 3*day)
	if !c.Dirty() {
		t.Error("a new day did not dirty the customer")
	}
	b.Reset()
	b.Put(c)
	b.MarkSeen("birthday:C1:2026-11-20", time.Hour)
	b.SetWatermark("KAIROS_BATCH", state.Watermark{Stream: "KAIROS_BATCH", Seq: 42})
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	var got []state.SeenDay
	s.ScanLastSeen(func(id string, seen []state.SeenDay) error {
		got = append(got, seen...)
		return nil
	})
	if len(got) != 2 || got[0] != (state.SeenDay{Type: "login", Day: 11}) || got[1].Day != 3 {
		t.Errorf("last seen %+v", got)
	}
	if ok, err := s.Seen("birthday:C1:2026-11-20"); !ok || err != nil {
		t.Errorf("marker: %v %v", ok, err)
	}
	if ok, _ := s.Seen("birthday:C1:2026-11-21"); ok {
		t.Error("an unmarked key is seen")
	}
	if w, err := s.Watermark("KAIROS_BATCH"); err != nil || w.Seq != 42 {
		t.Errorf("watermark %+v %v", w, err)
	}
	c.MergeProfile(map[string]any{"birthday": "1990-02-28", "n": 7})
	b.Reset()
	b.Put(c)
	s.Commit(b)
	n := 0
	s.ScanProfiles(func(id string, p map[string]any) error {
		n++
		if id != "C1" || p["birthday"] != "1990-02-28" || p["n"] != int64(7) {
			t.Errorf("profile %s %v", id, p)
		}
		return nil
	})
	if n != 1 {
		t.Errorf("%d profiles scanned", n)
	}
}

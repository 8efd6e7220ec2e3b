package state_test

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// openScanned opens a store and waits until its filter of the customers
// with records is in use, so that cache misses consult it. read, when
// set, runs in each scan after it read its snapshot's keys. scans gets a
// value after each scan.
func openScanned(t testing.TB, opts state.Options, read func()) (s *state.Store, scans <-chan struct{}) {
	t.Helper()
	done := make(chan struct{}, 16)
	state.SetScanHooks(&opts, read, func() { done <- struct{}{} })
	s = statetest.Open(t, opts)
	<-done
	return s, done
}

// checkPresence fails unless every customer with a window or policy
// record is in the store's filter.
func checkPresence(t testing.TB, s *state.Store) {
	t.Helper()
	if !state.PresenceReady(s) {
		t.Fatal("the filter of customers with records is not in use")
	}
	for _, prefix := range []string{"c/", "k/"} {
		for _, key := range state.Keys(s, prefix) {
			if id := strings.TrimPrefix(key, prefix); !state.MayHave(s, id) {
				t.Errorf("%s is stored but %q is not in the filter", key, id)
			}
		}
	}
}

// TestPresenceSkipsOnlyCustomersWithoutRecords: after a reopen the scan
// finds the customers with windows or policies; a customer with a
// profile only is not in the filter and still loads with it.
func TestPresenceSkipsOnlyCustomersWithoutRecords(t *testing.T) {
	dir := t.TempDir()
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	s := statetest.Open(t, state.Options{Dir: dir, GCInterval: -1})
	b := s.NewBatch()
	want := map[string][]float64{}
	at := t0 + 50*60*sec
	for i := range 100 {
		c := load(t, s.Shard(0), fmt.Sprint("profile-", i))
		c.MergeProfile(map[string]any{"n": i})
		b.Put(c)
		w := load(t, s.Shard(0), fmt.Sprint("windows-", i))
		applySome(p, w, 1+i%40)
		b.Put(w)
		k := load(t, s.Shard(0), fmt.Sprint("policy-", i))
		k.AddDeferred(state.Deferred{ID: "d", Release: t0 + hour, Expires: t0 + 2*hour})
		b.Put(k)
	}
	commit(t, s, b)
	for i := range 100 {
		// Loaded again (a cache hit), a customer has no current event.
		id := fmt.Sprint("windows-", i)
		want[id] = values(p, load(t, s.Shard(0), id), at)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	s, _ = openScanned(t, state.Options{Dir: dir, GCInterval: -1, Metrics: state.NewMetrics(reg)}, nil)
	checkPresence(t, s)
	for i := range 100 {
		id := fmt.Sprint("profile-", i)
		if state.MayHave(s, id) {
			t.Errorf("%s, which has a profile only, is in the filter", id)
		}
		if c := load(t, s.Shard(0), id); !reflect.DeepEqual(c.Profile(), map[string]any{"n": int64(i)}) {
			t.Errorf("%s: profile %v", id, c.Profile())
		}
		w := load(t, s.Shard(0), fmt.Sprint("windows-", i))
		if got := values(p, w, at); !sameFloats(got, want[w.ID()]) {
			t.Errorf("%s: values %v, want %v", w.ID(), got, want[w.ID()])
		}
		if k := load(t, s.Shard(0), fmt.Sprint("policy-", i)); len(k.Deferred()) != 1 {
			t.Errorf("%s: deferred %v", k.ID(), k.Deferred())
		}
	}
	if got := metricValue(t, reg, "kairos_state_cache_misses_profile_only_total"); got != 100 {
		t.Errorf("%v loads read the profile only, want 100", got)
	}
	// A customer written after the scan is added by its commit.
	c := load(t, s.Shard(0), "profile-7")
	applySome(p, c, 3)
	b = s.NewBatch()
	b.Put(c)
	commit(t, s, b)
	wantNew := values(p, load(t, s.Shard(0), "profile-7"), at)
	s.Invalidate("profile-7")
	if got := values(p, load(t, s.Shard(0), "profile-7"), at); !sameFloats(got, wantNew) {
		t.Errorf("profile-7 after its first window: %v, want %v", got, wantNew)
	}
	checkPresence(t, s)
}

// TestPresenceKeepsWritesDuringAScan commits customers after a scan read
// its snapshot and before its filter is in use: the filter must still
// hold them (pending), or their next load would miss their records.
func TestPresenceKeepsWritesDuringAScan(t *testing.T) {
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	read, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() {
		once.Do(func() {
			read <- struct{}{}
			<-release
		})
	}
	done := make(chan struct{}, 4)
	opts := state.Options{GCInterval: -1}
	state.SetScanHooks(&opts, hook, func() { done <- struct{}{} })
	s := statetest.Open(t, opts)
	<-read // the first scan read its (empty) snapshot

	at := t0 + 50*60*sec
	w := load(t, s.Shard(0), "windows")
	applySome(p, w, 10)
	k := load(t, s.Shard(0), "policy")
	k.AddDeferred(state.Deferred{ID: "d", Release: t0 + hour, Expires: t0 + 2*hour})
	b := s.NewBatch()
	b.Put(w)
	b.Put(k)
	commit(t, s, b)
	want := values(p, load(t, s.Shard(0), "windows"), at)
	// And one through the replication path.
	src := statetest.Open(t, state.Options{GCInterval: -1, Replicate: true})
	r := load(t, src.Shard(0), "imported")
	fillAll(p, r, 3)
	importAll(t, s, records(t, src, src.NewBatch(), r))

	close(release)
	<-done
	checkPresence(t, s)
	s.Invalidate("windows", "policy")
	if got := values(p, load(t, s.Shard(0), "windows"), at); !sameFloats(got, want) {
		t.Errorf("windows: values %v, want %v", got, want)
	}
	if got := load(t, s.Shard(0), "policy").Deferred(); len(got) != 1 {
		t.Errorf("policy: deferred %v", got)
	}
	sameCustomer(t, p, src, s, "imported")
}

// TestPresenceGrows writes more customers than the first filter holds:
// a scan builds a larger one, and none is lost on the way.
func TestPresenceGrows(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70,000 customers")
	}
	p := mustPlan(t, 24*time.Hour, testSpecs...)
	dir := t.TempDir()
	s, scans := openScanned(t, state.Options{Dir: dir, GCInterval: -1, CacheCustomers: 1024}, nil)
	b := s.NewBatch()
	const n = 70_000 // the first filter holds 65,536
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("customer-%06d", i)
		c := load(t, s.Shard(0), ids[i])
		c.Apply(p, "view", t0+int64(i), nil)
		b.Put(c)
		if i%1000 == 999 {
			commit(t, s, b)
		}
	}
	commit(t, s, b)
	select {
	case <-scans: // the larger filter is in use
	case <-time.After(time.Minute):
		t.Fatal("no larger filter after a minute")
	}
	checkPresence(t, s)
	// Reloaded from Badger (the cache holds 1,024), each has its entry.
	check := func(s *state.Store) {
		t.Helper()
		for _, i := range []int{0, 1, 65_535, 65_536, n - 1} {
			s.Invalidate(ids[i])
			if v := load(t, s.Shard(0), ids[i]).Value(p, 0, t0+int64(n)); v != 1 {
				t.Errorf("%s: %v views, want 1", ids[i], v)
			}
		}
	}
	check(s)

	// Reopened, the first scan sizes its filter from the tables' key
	// counts: large enough at once.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, _ = openScanned(t, state.Options{Dir: dir, GCInterval: -1, CacheCustomers: 1024}, nil)
	checkPresence(t, s)
	if got := state.PresenceLimit(s); got < n {
		t.Errorf("the first filter after a reopen holds %d customers, want at least %d", got, n)
	}
	check(s)
}

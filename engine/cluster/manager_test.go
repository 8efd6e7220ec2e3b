package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// testEngine plays the engine's side of the Changes protocol.
type testEngine struct {
	mu          sync.Mutex
	owned       map[int]bool
	lost        []int
	holdRelease bool
	held        []Change
	done        chan struct{}
}

func (e *testEngine) run(m *Manager) {
	defer close(e.done)
	for c := range m.Changes() {
		e.mu.Lock()
		switch c.Kind {
		case Acquired:
			if e.owned[c.Partition] {
				panic(fmt.Sprintf("partition %d acquired twice", c.Partition))
			}
			e.owned[c.Partition] = true
		case Release:
			if e.holdRelease {
				e.held = append(e.held, c)
				e.mu.Unlock()
				continue
			}
			delete(e.owned, c.Partition)
		case Lost:
			delete(e.owned, c.Partition)
			e.lost = append(e.lost, c.Partition)
		}
		e.mu.Unlock()
		c.Ack()
	}
}

func (e *testEngine) partitions() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(maps.Keys(e.owned))
}

func (e *testEngine) lostPartitions() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Sorted(slices.Values(e.lost))
}

// releaseHeld acknowledges the Release changes held back.
func (e *testEngine) releaseHeld() {
	e.mu.Lock()
	held := e.held
	e.held, e.holdRelease = nil, false
	for _, c := range held {
		delete(e.owned, c.Partition)
	}
	e.mu.Unlock()
	for _, c := range held {
		c.Ack()
	}
}

// member is a running Manager with its engine.
type member struct {
	m      *Manager
	e      *testEngine
	cancel context.CancelFunc
	runErr chan error
}

// stop ends the manager gracefully and waits for Run and the engine.
func (mb *member) stop(tb testing.TB) {
	tb.Helper()
	mb.cancel()
	if err := <-mb.runErr; err != nil {
		tb.Errorf("%s: Run = %v", mb.m.cfg.Instance, err)
	}
	<-mb.e.done
}

// crash ends the manager as if its process died: nothing is released.
func (mb *member) crash(tb testing.TB) {
	tb.Helper()
	mb.m.crashed.Store(true)
	mb.stop(tb)
}

func startMember(tb testing.TB, js jetstream.JetStream, cfg ManagerConfig, hold bool) *member {
	tb.Helper()
	cfg.JetStream = js
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := NewManager(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mb := &member{m: m, e: &testEngine{owned: map[int]bool{}, done: make(chan struct{}), holdRelease: hold}, cancel: cancel, runErr: make(chan error, 1)}
	go mb.e.run(m)
	go func() { mb.runErr <- m.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		<-mb.e.done
	})
	return mb
}

// leaseChecker watches lease.> from before the managers start and fails
// the test if a lease is ever put by an instance while another holds it.
// It creates the bucket with a history of 64 (the managers accept it: they
// check only the TTL and the partition count): with the production history
// of 1, a delete followed at once by the next owner's create replaces the
// delete before a lagging watcher delivers it, and the watcher would see
// the lease pass from hand to hand.
type leaseChecker struct {
	w        jetstream.KeyWatcher
	done     chan struct{}
	mu       sync.Mutex
	holders  map[string]string
	problems []string
	updates  int
}

func checkLeases(tb testing.TB, js jetstream.JetStream, cfg ManagerConfig) *leaseChecker {
	tb.Helper()
	cfg.JetStream = js
	m, err := NewManager(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx := testCtx(tb, 10*time.Second)
	bc := m.bucketConfig()
	bc.History = 64
	kv, err := js.CreateKeyValue(ctx, bc)
	if err != nil {
		tb.Fatal(err)
	}
	// The watcher lives as long as its context.
	wctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	w, err := kv.Watch(wctx, "lease.>", jetstream.UpdatesOnly())
	if err != nil {
		tb.Fatal(err)
	}
	lc := &leaseChecker{w: w, done: make(chan struct{}), holders: map[string]string{}}
	go func() {
		defer close(lc.done)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			lc.mu.Lock()
			lc.updates++
			key, holder := e.Key(), lc.holders[e.Key()]
			if e.Operation() == jetstream.KeyValuePut {
				if v := string(e.Value()); holder != "" && holder != v {
					lc.problems = append(lc.problems, fmt.Sprintf("%s put by %s at revision %d while held by %s", key, v, e.Revision(), holder))
				}
				lc.holders[key] = string(e.Value())
			} else {
				lc.holders[key] = ""
			}
			lc.mu.Unlock()
		}
	}()
	tb.Cleanup(func() {
		_ = w.Stop()
		cancel()
		<-lc.done
		lc.mu.Lock()
		defer lc.mu.Unlock()
		for _, p := range lc.problems {
			tb.Error(p)
		}
		tb.Logf("lease checker saw %d updates", lc.updates)
	})
	return lc
}

// balanced reports whether the members' engines own every partition
// exactly once, each floor(n/m) or ceil(n/m), and the managers agree.
func balanced(n int, ms ...*member) bool {
	seen := map[int]bool{}
	lo, hi := n/len(ms), (n+len(ms)-1)/len(ms)
	for _, mb := range ms {
		ps := mb.e.partitions()
		if len(ps) < lo || len(ps) > hi || !slices.Equal(ps, mb.m.Owned()) {
			return false
		}
		for _, p := range ps {
			if seen[p] {
				return false
			}
			seen[p] = true
		}
	}
	return len(seen) == n
}

func TestManagerAloneAcquiresEveryPartitionAndReleasesOnStop(t *testing.T) {
	_, _, js := startJS(t)
	cfg := ManagerConfig{Instance: "solo", Partitions: 8, LeaseTTL: 2 * time.Second}
	checkLeases(t, js, cfg)
	mb := startMember(t, js, cfg, false)
	eventually(t, 10*time.Second, "solo owns all 8", func() bool { return balanced(8, mb) })
	if s := mb.m.Stats(); s.Acquired != 8 || s.Owned != 8 || s.Members != 1 {
		t.Errorf("stats %+v", s)
	}
	mb.stop(t)
	if s := mb.m.Stats(); s.Released != 8 {
		t.Errorf("released %d, want 8", s.Released)
	}
	kv, err := js.KeyValue(testCtx(t, 5*time.Second), DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"lease.0", "lease.7", "members.solo"} {
		if _, err := kv.Get(testCtx(t, 5*time.Second), key); !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
			t.Errorf("%s after a graceful stop: %v", key, err)
		}
	}
}

func TestManagerRebalancesOnJoinAndLeave(t *testing.T) {
	_, _, js := startJS(t)
	const n = 32
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: n, LeaseTTL: 2 * time.Second}
	}
	checkLeases(t, js, cfg("checker"))
	a := startMember(t, js, cfg("a"), false)
	b := startMember(t, js, cfg("b"), false)
	c := startMember(t, js, cfg("c"), false)
	eventually(t, 15*time.Second, "3 members balanced", func() bool { return balanced(n, a, b, c) })
	before := map[string][]int{"a": a.e.partitions(), "b": b.e.partitions(), "c": c.e.partitions()}

	d := startMember(t, js, cfg("d"), false)
	eventually(t, 15*time.Second, "4 members balanced", func() bool { return balanced(n, a, b, c, d) })
	moves := len(d.e.partitions())
	for id, mb := range map[string]*member{"a": a, "b": b, "c": c} {
		for _, p := range mb.e.partitions() {
			if !slices.Contains(before[id], p) {
				moves++
			}
		}
	}
	t.Logf("join of a 4th member moved %d partitions", moves)
	if want := Assign([]string{"a", "b", "c", "d"}, n); moves != moved(Assign([]string{"a", "b", "c"}, n), want) {
		t.Errorf("%d partitions moved, Assign moves %d", moves, moved(Assign([]string{"a", "b", "c"}, n), want))
	}

	b.stop(t)
	eventually(t, 15*time.Second, "3 members balanced after a leave", func() bool { return balanced(n, a, c, d) })
	if lost := len(a.e.lostPartitions()) + len(c.e.lostPartitions()) + len(d.e.lostPartitions()); lost != 0 {
		t.Errorf("%d partitions lost during graceful rebalancing", lost)
	}
}

func TestManagerTakesOverFromACrashedInstance(t *testing.T) {
	_, _, js := startJS(t)
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: 8, LeaseTTL: time.Second}
	}
	checkLeases(t, js, cfg("checker"))
	a := startMember(t, js, cfg("a"), false)
	b := startMember(t, js, cfg("b"), false)
	eventually(t, 15*time.Second, "2 members balanced", func() bool { return balanced(8, a, b) })
	a.crash(t)
	start := time.Now()
	eventually(t, 15*time.Second, "b owns all 8", func() bool { return balanced(8, b) })
	t.Logf("b took over the crashed member's partitions after %v (lease TTL 1s)", time.Since(start).Round(10*time.Millisecond))
}

func TestManagerReportsLostLeasesAfterAPause(t *testing.T) {
	_, _, js := startJS(t)
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: 8, LeaseTTL: time.Second}
	}
	checkLeases(t, js, cfg("checker"))
	a := startMember(t, js, cfg("a"), false)
	b := startMember(t, js, cfg("b"), false)
	eventually(t, 15*time.Second, "2 members balanced", func() bool { return balanced(8, a, b) })
	had := a.e.partitions()

	// a stalls (as under SIGSTOP) past its lease: b takes everything.
	resume := make(chan struct{})
	a.m.pauseCh <- resume
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(resume) }) })
	eventually(t, 15*time.Second, "b owns all 8 while a is paused", func() bool {
		return len(b.e.partitions()) == 8 && len(b.m.Owned()) == 8
	})
	if got := a.e.partitions(); !slices.Equal(got, had) {
		t.Fatalf("a's engine changed while paused: %v", got)
	}
	once.Do(func() { close(resume) })
	eventually(t, 10*time.Second, "a reports its leases lost", func() bool { return slices.Equal(a.e.lostPartitions(), had) })
	eventually(t, 15*time.Second, "a rejoins and the members rebalance", func() bool { return balanced(8, a, b) })
}

// TestManagerRestartsAStalledWatcher: a bucket watcher that stops
// delivering without closing (nats.go's can, when a NATS node shuts down)
// is restarted, so that a member that left is still seen leaving.
func TestManagerRestartsAStalledWatcher(t *testing.T) {
	_, _, js := startJS(t)
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: 4, LeaseTTL: time.Second}
	}
	a := startMember(t, js, cfg("a"), false)
	b := startMember(t, js, cfg("b"), false)
	eventually(t, 15*time.Second, "2 members balanced", func() bool { return balanced(4, a, b) })
	a.m.muteWatch.Store(true)
	b.crash(t)
	eventually(t, 15*time.Second, "a owns all 4", func() bool { return balanced(4, a) })
}

func TestManagerRenewsWhileAReleaseIsUnacknowledged(t *testing.T) {
	_, _, js := startJS(t)
	cfg := func(id string) ManagerConfig {
		return ManagerConfig{Instance: id, Partitions: 4, LeaseTTL: time.Second}
	}
	checkLeases(t, js, cfg("checker"))
	a := startMember(t, js, cfg("a"), true)
	eventually(t, 10*time.Second, "a owns all 4", func() bool { return balanced(4, a) })
	b := startMember(t, js, cfg("b"), false)
	eventually(t, 10*time.Second, "a is asked to release 2", func() bool {
		a.e.mu.Lock()
		defer a.e.mu.Unlock()
		return len(a.e.held) == 2
	})
	// Three lease TTLs of renewals pass while the engine holds the Release.
	renewals := a.m.Stats().Renewals
	eventually(t, 15*time.Second, "a renews its leases for 3 TTLs", func() bool { return a.m.Stats().Renewals >= renewals+3*3*5 })
	if got := a.m.Owned(); len(got) != 4 || len(a.e.lostPartitions()) != 0 {
		t.Fatalf("a holds %v (lost %v) with its Release unacknowledged, want all 4", got, a.e.lostPartitions())
	}
	if got := b.e.partitions(); len(got) != 0 {
		t.Fatalf("b acquired %v before a released them", got)
	}
	a.e.releaseHeld()
	eventually(t, 10*time.Second, "balanced once a acknowledges", func() bool { return balanced(4, a, b) })
}

func TestManagerRefusesAMismatchedBucket(t *testing.T) {
	_, _, js := startJS(t)
	checkLeases(t, js, ManagerConfig{Instance: "x", Partitions: 32, LeaseTTL: 2 * time.Second})
	for _, cfg := range []ManagerConfig{
		{Instance: "y", Partitions: 16, LeaseTTL: 2 * time.Second},
		{Instance: "y", Partitions: 32, LeaseTTL: 3 * time.Second},
	} {
		cfg.JetStream = js
		m, err := NewManager(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(testCtx(t, 10*time.Second)); !errors.Is(err, ErrConfigMismatch) {
			t.Errorf("Run with %d partitions, TTL %v = %v, want ErrConfigMismatch", cfg.Partitions, cfg.LeaseTTL, err)
		}
		if _, ok := <-m.Changes(); ok {
			t.Error("Changes not closed")
		}
		if err := m.Run(context.Background()); !errors.Is(err, ErrRunning) {
			t.Errorf("second Run = %v", err)
		}
	}
}

func TestNewManagerChecksItsConfig(t *testing.T) {
	_, _, js := startJS(t)
	for _, c := range []struct {
		name string
		cfg  ManagerConfig
	}{
		{"no JetStream", ManagerConfig{Instance: "a"}},
		{"no instance", ManagerConfig{JetStream: js}},
		{"an instance with a dot", ManagerConfig{JetStream: js, Instance: "a.b"}},
		{"a lease under a second", ManagerConfig{JetStream: js, Instance: "a", LeaseTTL: time.Millisecond}},
		{"negative partitions", ManagerConfig{JetStream: js, Instance: "a", Partitions: -1}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := NewManager(c.cfg); !errors.Is(err, ErrInvalid) {
				t.Fatalf("NewManager = %v, want ErrInvalid", err)
			}
		})
	}
}

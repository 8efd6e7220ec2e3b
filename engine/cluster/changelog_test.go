package cluster

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// newChangelog ensures the changelog stream on js and returns a Changelog.
func newChangelog(tb testing.TB, js jetstream.JetStream, cfg ChangelogConfig) *Changelog {
	tb.Helper()
	cfg.Prefix = "kt"
	if _, err := EnsureChangelog(testCtx(tb, 30*time.Second), js, cfg); err != nil {
		tb.Fatal(err)
	}
	return NewChangelog(js, cfg)
}

func takeover(tb testing.TB, cl *Changelog, instance string, ps ...int) {
	tb.Helper()
	for _, p := range ps {
		if _, err := cl.Takeover(testCtx(tb, 10*time.Second), p, instance); err != nil {
			tb.Fatalf("takeover of %d by %s: %v", p, instance, err)
		}
	}
}

// loadAll returns Load's records of p by kind and key.
func loadAll(tb testing.TB, cl *Changelog, p int) map[string]string {
	tb.Helper()
	got := map[string]string{}
	err := cl.Load(testCtx(tb, 10*time.Second), p, func(kind RecordKind, key string, data []byte, _ time.Duration) error {
		got[string(rune(kind))+":"+key] = string(data)
		return nil
	})
	if err != nil {
		tb.Fatalf("load %d: %v", p, err)
	}
	return got
}

func lastSeq(tb testing.TB, js jetstream.JetStream) uint64 {
	tb.Helper()
	s, err := js.Stream(testCtx(tb, 5*time.Second), DefaultChangelogStream)
	if err != nil {
		tb.Fatal(err)
	}
	return s.CachedInfo().State.LastSeq
}

func TestEnsureChangelogConfiguresTheStream(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 10*time.Second)
	for range 2 { // creating twice updates in place
		s, err := EnsureChangelog(ctx, js, ChangelogConfig{})
		if err != nil {
			t.Fatal(err)
		}
		c := s.CachedInfo().Config
		if c.Name != "KAIROS_CHANGELOG" || !slices.Equal(c.Subjects, []string{"kairos.changelog.>"}) || c.MaxMsgsPerSubject != 1 ||
			!c.AllowAtomicPublish || !c.AllowMsgTTL || !c.AllowDirect || c.Storage != jetstream.FileStorage || c.Replicas != 1 {
			t.Fatalf("stream config %+v", c)
		}
	}
}

func TestCommitStoresConsecutiveSequences(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	takeover(t, cl, "a", 0, 1)
	ctx := testCtx(t, 10*time.Second)
	c := &Commit{
		Marks:    []Mark{{Partition: 1, Data: []byte("m1")}, {Partition: 0, Data: []byte("m0")}},
		Counters: []CounterUpdate{{Name: "rule.welcome", Value: 3}},
		Records: []Record{
			{Partition: 0, Kind: CustomerRecord, Key: "c-1", Data: []byte("r1")},
			{Partition: 1, Kind: SeenRecord, Key: "ev.9", Data: []byte("s"), TTL: time.Hour},
		},
	}
	before := lastSeq(t, js)
	if err := cl.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Seq != before+5 || lastSeq(t, js) != c.Seq {
		t.Fatalf("commit seq %d, stream last %d, before %d", c.Seq, lastSeq(t, js), before)
	}
	s, _ := js.Stream(ctx, DefaultChangelogStream)
	want := []string{"kt.changelog.1.mark", "kt.changelog.0.mark", "kt.changelog.g.rule_welcome", "kt.changelog.0.c.c-1", "kt.changelog.1.s.=ZXYuOQ"}
	want[2] = cl.CounterSubject("rule.welcome")
	for i, subj := range want {
		m, err := s.GetMsg(ctx, c.Seq-4+uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != subj {
			t.Errorf("message %d of the batch is %s, want %s", i, m.Subject, subj)
		}
	}
	if seq, ok := cl.Fence(1); !ok || seq != c.Seq-4 {
		t.Errorf("fence of 1 = %d, %v; want %d", seq, ok, c.Seq-4)
	}
	if seq, ok := cl.Fence(0); !ok || seq != c.Seq-3 {
		t.Errorf("fence of 0 = %d, %v; want %d", seq, ok, c.Seq-3)
	}
	if c.Counters[0].Seq != c.Seq-2 {
		t.Errorf("counter seq %d, want %d", c.Counters[0].Seq, c.Seq-2)
	}
	if v, seq, err := cl.Counter(ctx, "rule.welcome"); err != nil || v != 3 || seq != c.Seq-2 {
		t.Errorf("Counter = %d, %d, %v", v, seq, err)
	}
	// The next commit expects the new fences.
	if err := cl.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}, {Partition: 1}}}); err != nil {
		t.Fatal(err)
	}
}

func TestCommitIsFencedAfterTakeover(t *testing.T) {
	_, _, js := startJS(t)
	a := newChangelog(t, js, ChangelogConfig{})
	b := NewChangelog(js, a.cfg)
	ctx := testCtx(t, 10*time.Second)
	takeover(t, a, "a", 3, 4)
	if err := a.Commit(ctx, &Commit{
		Marks:   []Mark{{Partition: 3, Data: []byte("wm=10")}, {Partition: 4, Data: []byte("wm=20")}},
		Records: []Record{{Partition: 3, Kind: CustomerRecord, Key: "x", Data: []byte("1")}},
	}); err != nil {
		t.Fatal(err)
	}
	mark, err := b.Takeover(ctx, 3, "b")
	if err != nil || string(mark) != "wm=10" {
		t.Fatalf("takeover by b = %q, %v; want the mark a wrote", mark, err)
	}
	before := lastSeq(t, js)

	// A's next commit touching 3 fails whole, naming 3, and stores nothing.
	err = a.Commit(ctx, &Commit{
		Marks:   []Mark{{Partition: 4, Data: []byte("wm=21")}, {Partition: 3, Data: []byte("wm=11")}},
		Records: []Record{{Partition: 4, Kind: CustomerRecord, Key: "y", Data: []byte("2")}, {Partition: 3, Kind: CustomerRecord, Key: "x", Data: []byte("stale")}},
	})
	var fe *FencedError
	if !errors.As(err, &fe) || !errors.Is(err, ErrFenced) || !slices.Equal(fe.Partitions, []int{3}) {
		t.Fatalf("commit by the former owner = %v, want ErrFenced on [3]", err)
	}
	if got := lastSeq(t, js); got != before {
		t.Fatalf("a fenced commit stored %d messages", got-before)
	}
	// Once fenced, a's commits on 3 fail without a round trip; 4 goes on.
	if err := a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 3}}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("second commit by the former owner = %v", err)
	}
	if err := a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 4, Data: []byte("wm=21")}}}); err != nil {
		t.Fatalf("commit on the partition a still owns: %v", err)
	}
	// B commits, and loads what a committed before the takeover.
	if err := b.Commit(ctx, &Commit{Marks: []Mark{{Partition: 3, Data: []byte("wm=12")}},
		Records: []Record{{Partition: 3, Kind: CustomerRecord, Key: "z", Data: []byte("3")}}}); err != nil {
		t.Fatal(err)
	}
	if got := loadAll(t, b, 3); !maps.Equal(got, map[string]string{"c:x": "1", "c:z": "3"}) {
		t.Fatalf("load = %v", got)
	}
	// A loading 3 finds it fenced too.
	a.Forget(3)
	takeoverSeq, _ := b.Fence(3)
	a.setFence(3, &fence{seq: takeoverSeq - 2, epoch: 1, owner: "a"})
	if err := a.Load(ctx, 3, func(RecordKind, string, []byte, time.Duration) error { return nil }); !errors.Is(err, ErrFenced) {
		t.Fatalf("load by the former owner = %v", err)
	}
	a.Forget(3)
	if err := a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 3}}}); !errors.Is(err, ErrNotTakenOver) {
		t.Fatalf("commit after Forget = %v", err)
	}
}

func TestCounterConflicts(t *testing.T) {
	_, _, js := startJS(t)
	a := newChangelog(t, js, ChangelogConfig{})
	b := NewChangelog(js, a.cfg)
	ctx := testCtx(t, 10*time.Second)
	takeover(t, a, "a", 0)
	takeover(t, b, "b", 1)
	// Both read the absent budget and spend from it.
	ca := &Commit{Marks: []Mark{{Partition: 0}}, Counters: []CounterUpdate{{Name: "budget", Value: 5}, {Name: "other", Value: 1}}}
	cb := &Commit{Marks: []Mark{{Partition: 1}}, Counters: []CounterUpdate{{Name: "budget", Value: 7}}}
	if err := a.Commit(ctx, ca); err != nil {
		t.Fatal(err)
	}
	err := b.Commit(ctx, cb)
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || !slices.Equal(ce.Counters, []string{"budget"}) {
		t.Fatalf("second spender = %v, want a conflict on budget", err)
	}
	// B re-reads and retries.
	v, seq, err := b.Counter(ctx, "budget")
	if err != nil || v != 5 {
		t.Fatalf("Counter = %d, %v", v, err)
	}
	cb.Counters[0].Value, cb.Counters[0].Expect = v+7, seq
	if err := b.Commit(ctx, cb); err != nil {
		t.Fatal(err)
	}
	// A's counter seq is stale now; with the seq its commit returned for
	// "other" it goes on.
	err = a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}}, Counters: []CounterUpdate{{Name: "budget", Value: 6, Expect: ca.Counters[0].Seq}, {Name: "other", Value: 2, Expect: ca.Counters[1].Seq}}})
	if !errors.As(err, &ce) || !slices.Equal(ce.Counters, []string{"budget"}) {
		t.Fatalf("stale spender = %v", err)
	}
	if err := a.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}}, Counters: []CounterUpdate{{Name: "other", Value: 2, Expect: ca.Counters[1].Seq}}}); err != nil {
		t.Fatal(err)
	}
	all, err := a.Counters(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["budget"].Value != 12 || all["other"].Value != 2 {
		t.Fatalf("Counters = %v", all)
	}
	if some, err := a.Counters(ctx, "bud"); err != nil || len(some) != 1 || some["budget"].Seq != cb.Counters[0].Seq {
		t.Fatalf("Counters(bud) = %v, %v", some, err)
	}
}

// TestConcurrentSpendersConverge has writers race on one counter with
// CAS retries; no increment is lost.
func TestConcurrentSpendersConverge(t *testing.T) {
	_, _, js := startJS(t)
	base := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 30*time.Second)
	const writers, spends = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		cl := NewChangelog(js, base.cfg)
		takeover(t, cl, "w"+strconv.Itoa(w), w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range spends {
				for {
					v, seq, err := cl.Counter(ctx, "budget")
					if err != nil {
						errs <- err
						return
					}
					err = cl.Commit(ctx, &Commit{Marks: []Mark{{Partition: w}}, Counters: []CounterUpdate{{Name: "budget", Value: v + 1, Expect: seq}}})
					if err == nil {
						break
					}
					if !errors.Is(err, ErrConflict) {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if v, _, err := base.Counter(ctx, "budget"); err != nil || v != writers*spends {
		t.Fatalf("budget = %d, %v; want %d", v, err, writers*spends)
	}
}

func TestTakeoverRace(t *testing.T) {
	_, _, js := startJS(t)
	base := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 30*time.Second)
	takeover(t, base, "first", 7)
	if err := base.Commit(ctx, &Commit{Marks: []Mark{{Partition: 7, Data: []byte("state")}}}); err != nil {
		t.Fatal(err)
	}
	const racers = 6
	cls := make([]*Changelog, racers)
	marks := make([][]byte, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range cls {
		cls[i] = NewChangelog(js, base.cfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			marks[i], errs[i] = cls[i].Takeover(ctx, 7, "racer"+strconv.Itoa(i))
		}()
	}
	wg.Wait()
	for i := range cls {
		if errs[i] != nil || string(marks[i]) != "state" {
			t.Fatalf("racer %d: %q, %v", i, marks[i], errs[i])
		}
	}
	// Exactly one racer, the last to write, still owns 7.
	owners := 0
	for i, cl := range cls {
		err := cl.Commit(ctx, &Commit{Marks: []Mark{{Partition: 7, Data: []byte("state")}}})
		switch {
		case err == nil:
			owners++
		case !errors.Is(err, ErrFenced):
			t.Fatalf("racer %d: %v", i, err)
		}
	}
	if owners != 1 {
		t.Fatalf("%d racers can commit to the partition, want 1", owners)
	}
	if err := base.Commit(ctx, &Commit{Marks: []Mark{{Partition: 7}}}); !errors.Is(err, ErrFenced) {
		t.Fatalf("first owner = %v", err)
	}
}

func TestSeenMarkersExpire(t *testing.T) {
	_, nc, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 30*time.Second)
	takeover(t, cl, "a", 2)
	if err := cl.Commit(ctx, &Commit{Marks: []Mark{{Partition: 2}}, Records: []Record{
		{Partition: 2, Kind: SeenRecord, Key: "evt-1", TTL: time.Second},
		{Partition: 2, Kind: SeenRecord, Key: "evt-2", TTL: time.Hour},
		{Partition: 2, Kind: CustomerRecord, Key: "c", Data: []byte("x")},
	}}); err != nil {
		t.Fatal(err)
	}
	ttls := map[string]time.Duration{}
	err := cl.Load(ctx, 2, func(kind RecordKind, key string, _ []byte, left time.Duration) error {
		ttls[string(rune(kind))+":"+key] = left
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := ttls["s:evt-1"]; l <= 0 || l > time.Second {
		t.Errorf("evt-1 has %v left, want (0, 1s]", l)
	}
	if l := ttls["s:evt-2"]; l <= 59*time.Minute || l > time.Hour {
		t.Errorf("evt-2 has %v left", l)
	}
	if l, ok := ttls["c:c"]; !ok || l != 0 {
		t.Errorf("customer record: %v, %v", l, ok)
	}
	// The server removes evt-1 after its TTL.
	subject := cl.RecordSubject(2, SeenRecord, "evt-1")
	eventually(t, 10*time.Second, "evt-1 removed by the server", func() bool {
		m, err := getLast(ctx, nc, cl.msgGet, subject, time.Second)
		return err == nil && m == nil
	})
	if got := loadAll(t, cl, 2); !maps.Equal(got, map[string]string{"s:evt-2": "", "c:c": "x"}) {
		t.Fatalf("load after expiry = %v", got)
	}
}

func TestLoadReturnsTheLatestRecords(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 30*time.Second)
	takeover(t, cl, "a", 0, 1)
	want := map[string]string{}
	for round := range 5 {
		c := &Commit{Marks: []Mark{{Partition: 0}, {Partition: 1}}}
		for k := range 20 {
			key := fmt.Sprintf("cust.%d", k) // encoded: has a dot
			val := fmt.Sprintf("v%d", round)
			switch {
			case k%7 == 0 && round == 4:
				c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: key, Delete: true})
				delete(want, "c:"+key)
			case k%3 == 0 && round > 1:
				// untouched after round 1
			default:
				c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: key, Data: []byte(val)})
				want["c:"+key] = val
			}
		}
		c.Records = append(c.Records, Record{Partition: 1, Kind: CustomerRecord, Key: "other", Data: []byte("p1")})
		if err := cl.Commit(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if got := loadAll(t, cl, 0); !maps.Equal(got, want) {
		t.Fatalf("load = %v\nwant %v", got, want)
	}
	if got := loadAll(t, cl, 9); len(got) != 0 {
		t.Fatalf("load of an empty partition = %v", got)
	}
	stop := errors.New("stop")
	if err := cl.Load(ctx, 0, func(RecordKind, string, []byte, time.Duration) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Load did not return fn's error: %v", err)
	}
}

func TestCommitOfSixHundredMessages(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 30*time.Second)
	takeover(t, cl, "a", 0, 1, 2)
	c := &Commit{Marks: []Mark{{Partition: 0}, {Partition: 1}, {Partition: 2}}}
	for i := range 597 {
		c.Records = append(c.Records, Record{Partition: i % 3, Kind: CustomerRecord, Key: "c" + strconv.Itoa(i), Data: make([]byte, 200)})
	}
	if err := cl.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	n := 0
	for p := range 3 {
		n += len(loadAll(t, cl, p))
	}
	if n != 597 {
		t.Fatalf("loaded %d records, want 597", n)
	}
}

func TestCommitRefusesWhatIsTooLargeOrInvalid(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{MaxBatch: 2000}) // above the server's 1000
	ctx := testCtx(t, 30*time.Second)
	takeover(t, cl, "a", 0)
	before := lastSeq(t, js)
	big := &Commit{Marks: []Mark{{Partition: 0}}}
	for i := range 1000 {
		big.Records = append(big.Records, Record{Partition: 0, Kind: SeenRecord, Key: strconv.Itoa(i)})
	}
	if err := cl.Commit(ctx, big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("1001 messages: %v, want ErrTooLarge from the server", err)
	}
	small := NewChangelog(js, ChangelogConfig{Prefix: "kt", MaxBatch: 10})
	small.fences = cl.fences
	cases := []struct {
		name string
		cl   *Changelog
		c    *Commit
		want error
	}{
		{"more messages than MaxBatch", small, big, ErrTooLarge},
		{"a message over max payload", cl, &Commit{Marks: []Mark{{Partition: 0, Data: make([]byte, 2<<20)}}}, ErrTooLarge},
		{"records without a mark", cl, &Commit{Records: []Record{{Partition: 0, Kind: CustomerRecord, Key: "x"}}}, ErrInvalid},
		{"a record of an unmarked partition", cl, &Commit{Marks: []Mark{{Partition: 0}}, Records: []Record{{Partition: 1, Kind: CustomerRecord, Key: "x"}}}, ErrInvalid},
		{"a record kind that does not exist", cl, &Commit{Marks: []Mark{{Partition: 0}}, Records: []Record{{Partition: 0, Kind: 'x', Key: "x"}}}, ErrInvalid},
		{"a partition marked twice", cl, &Commit{Marks: []Mark{{Partition: 0}, {Partition: 0}}}, ErrInvalid},
		{"a counter updated twice", cl, &Commit{Marks: []Mark{{Partition: 0}}, Counters: []CounterUpdate{{Name: "a"}, {Name: "a"}}}, ErrInvalid},
		{"a partition not taken over", cl, &Commit{Marks: []Mark{{Partition: 5}}}, ErrNotTakenOver},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cl.Commit(ctx, c.c); !errors.Is(err, c.want) {
				t.Fatalf("Commit = %v, want %v", err, c.want)
			}
		})
	}
	if got := lastSeq(t, js); got != before {
		t.Fatalf("refused commits stored %d messages", got-before)
	}
	if err := cl.Commit(ctx, &Commit{}); err != nil {
		t.Fatalf("empty commit: %v", err)
	}
}

// TestCommitWithLostReplyIsNotWrittenTwice stores a batch, then retries it
// as if its reply had been lost: the retry finds it stored.
func TestCommitWithLostReplyIsNotWrittenTwice(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 10*time.Second)
	takeover(t, cl, "a", 0)
	c := &Commit{Marks: []Mark{{Partition: 0, Data: []byte("m")}}, Counters: []CounterUpdate{{Name: "n", Value: 1}},
		Records: []Record{{Partition: 0, Kind: CustomerRecord, Key: "k", Data: []byte("v")}}}
	msgs, _, err := cl.build(c)
	if err != nil {
		t.Fatal(err)
	}
	id := cl.newID()
	ack, err := cl.publish(ctx, id, msgs, 2)
	if err != nil {
		t.Fatal(err)
	}
	c.unknown = []string{id} // the reply was lost
	if err := cl.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Seq != ack.Seq || lastSeq(t, js) != ack.Seq || c.Counters[0].Seq != ack.Seq-1 {
		t.Fatalf("retry of a stored commit: seq %d, counter seq %d, stream last %d; stored at %d", c.Seq, c.Counters[0].Seq, lastSeq(t, js), ack.Seq)
	}
	if seq, _ := cl.Fence(0); seq != ack.Seq-2 {
		t.Fatalf("fence %d, want %d", seq, ack.Seq-2)
	}

	// The same when the retry was sent before the lost one landed: the
	// retry fails its fence check and finds its earlier attempt.
	c2 := &Commit{Marks: []Mark{{Partition: 0, Data: []byte("m2")}}}
	msgs, _, _ = cl.build(c2)
	id = cl.newID()
	if _, err := cl.publish(ctx, id, msgs, 1); err != nil {
		t.Fatal(err)
	}
	c2.unknown = []string{"another-attempt", id}
	before := lastSeq(t, js)
	err = cl.failed(ctx, c2, []fenceRef{{p: 0, seq: ack.Seq - 2, epoch: cl.fences[0].epoch}}, "retry", &jetstream.APIError{ErrorCode: codeWrongLastSeq})
	if err != nil || c2.Seq != before {
		t.Fatalf("classifying the retry = %v, seq %d; want success at %d", err, c2.Seq, before)
	}
}

// TestLostReplyOfACommitWithoutCounters retries, through Commit, a commit
// of marks and records only (most commits touch no budget) whose reply was
// lost: the retry looks in the mark and finds it stored.
func TestLostReplyOfACommitWithoutCounters(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 10*time.Second)
	takeover(t, cl, "a", 0)
	c := &Commit{Marks: []Mark{{Partition: 0, Data: []byte("m")}},
		Records: []Record{{Partition: 0, Kind: CustomerRecord, Key: "k", Data: []byte("v")}}}
	msgs, _, err := cl.build(c)
	if err != nil {
		t.Fatal(err)
	}
	id := cl.newID()
	ack, err := cl.publish(ctx, id, msgs, 1)
	if err != nil {
		t.Fatal(err)
	}
	c.unknown = []string{id} // the reply was lost
	if err := cl.Commit(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.Seq != ack.Seq || lastSeq(t, js) != ack.Seq {
		t.Fatalf("retry of a stored commit: seq %d, stream last %d; stored at %d", c.Seq, lastSeq(t, js), ack.Seq)
	}
}

func TestTakeoverOfAnEmptyPartition(t *testing.T) {
	_, _, js := startJS(t)
	cl := newChangelog(t, js, ChangelogConfig{})
	ctx := testCtx(t, 10*time.Second)
	mark, err := cl.Takeover(ctx, 11, "a")
	if err != nil || mark != nil {
		t.Fatalf("Takeover = %q, %v", mark, err)
	}
	m, err := getLast(ctx, cl.nc, cl.msgGet, cl.MarkSubject(11), time.Second)
	if err != nil || m == nil || m.Header.Get(hdrOwner) != "a" {
		t.Fatalf("takeover mark %+v, %v", m, err)
	}
	if _, err := cl.Takeover(ctx, 11, "bad.id"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad instance: %v", err)
	}
}

// BenchmarkLoad measures Load of a partition of 100k records of 100 bytes.
func BenchmarkLoad(b *testing.B) {
	_, _, js := startJS(b)
	cl := newChangelog(b, js, ChangelogConfig{})
	ctx := testCtx(b, 5*time.Minute)
	takeover(b, cl, "a", 0)
	const records = 100_000
	data := make([]byte, 100)
	for i := 0; i < records; i += 999 {
		c := &Commit{Marks: []Mark{{Partition: 0}}}
		for j := i; j < min(i+999, records); j++ {
			c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: "customer-" + strconv.Itoa(j), Data: data})
		}
		if err := cl.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := cl.Load(ctx, 0, func(RecordKind, string, []byte, time.Duration) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != records {
			b.Fatalf("loaded %d records", n)
		}
	}
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkCommit measures a commit of one mark and 100 records of 100
// bytes.
func BenchmarkCommit(b *testing.B) {
	_, _, js := startJS(b)
	cl := newChangelog(b, js, ChangelogConfig{})
	ctx := testCtx(b, 5*time.Minute)
	takeover(b, cl, "a", 0)
	data := make([]byte, 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := &Commit{Marks: []Mark{{Partition: 0}}}
		for range 100 {
			c.Records = append(c.Records, Record{Partition: 0, Kind: CustomerRecord, Key: "customer-" + strconv.Itoa(i%10000), Data: data})
			i++
		}
		if err := cl.Commit(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
}

func TestCommitToAStreamWithoutAtomicBatches(t *testing.T) {
	_, _, js := startJS(t)
	ctx := testCtx(t, 10*time.Second)
	cfg := ChangelogConfig{Stream: "PLAIN", Prefix: "kt"}
	sc := cfg.StreamConfig()
	sc.AllowAtomicPublish = false
	if _, err := js.CreateStream(ctx, sc); err != nil {
		t.Fatal(err)
	}
	cl := NewChangelog(js, cfg)
	takeover(t, cl, "a", 0)
	if err := cl.Commit(ctx, &Commit{Marks: []Mark{{Partition: 0}}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Commit = %v, want ErrInvalid", err)
	}
}

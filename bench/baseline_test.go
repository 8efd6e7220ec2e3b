package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
)

// natsForTest starts a real nats-server with JetStream on a free port,
// storing under a temporary directory.
func natsForTest(t *testing.T) *nats.Conn {
	t.Helper()
	ns, err := startNATS(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBaselineConsumer(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	nc := natsForTest(t)
	bnc, err := nats.Connect(nc.ConnectedUrl())
	if err != nil {
		t.Fatal(err)
	}
	defer bnc.Close()
	bl, err := StartBaseline(ctx, bnc, BaselineOptions{BatchSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	g := NewGenerator(Workload{Customers: 50, Seed: 1, RunID: "t", Mix: BenchMix})
	sent := map[string]bool{}
	pub := func(m *nats.Msg) {
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 1000; i++ {
		ev := g.Next(time.Now())
		data, _ := Encode(nil, &ev)
		m := nats.NewMsg(ev.Subject(BaselinePrefix))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		pub(m)
		sent[ev.ID] = true
		if i%100 == 0 { // garbage is terminated, not answered
			bad := nats.NewMsg(BaselinePrefix + ".events.login.C0000001")
			bad.Data = []byte{0xc1}
			bad.Header.Set(jetstream.MsgIDHeader, fmt.Sprint("bad", i))
			pub(bad)
		}
	}
	offers, err := js.Stream(ctx, baselineOffers)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "an offer per event", func() bool {
		info, err := offers.Info(ctx)
		return err == nil && info.State.Msgs == 1000
	})
	eventually(t, 10*time.Second, "every event acknowledged", func() bool {
		lag, _, err := lagOf(ctx, js, baselineEvents, baselineDurable)
		return err == nil && lag == 0
	})
	// Each offer names one event sent, once.
	cons, err := offers.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < 1000 {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("after %d offers: %v", len(seen), err)
		}
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if !sent[o.EventID] || seen[o.EventID] {
			t.Fatalf("offer for %q: unknown or twice", o.EventID)
		}
		if m.Headers().Get(jetstream.MsgIDHeader) != o.ID {
			t.Fatalf("offer %s published without its id as Nats-Msg-Id", o.ID)
		}
		seen[o.EventID] = true
	}
	if err := bl.Stop(); err != nil {
		t.Fatal(err)
	}
	deleteBaselineStreams(ctx, js)
	if _, err := js.Stream(ctx, baselineOffers); err == nil {
		t.Fatal("the baseline's streams are still there")
	}
}

// The driver measures a run against the baseline: rate, processed events,
// latency from the schedule, lag and the timeline.
func TestDriverRunAgainstBaseline(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	nc := natsForTest(t)
	bl, err := StartBaseline(ctx, nc, BaselineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer bl.Stop() //nolint:errcheck
	cfg := Config{Launcher: &ChildLauncher{}, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, SLO: time.Second}
	cfg.Defaults()
	js, _ := jetstream.New(nc)
	p := &pointRun{cfg: &cfg, js: js, nc: nc, target: &external{url: nc.ConnectedUrl()}}
	d, err := newDriver(nc, baselineSubjects, Workload{Customers: 1000, Seed: 2, RunID: "drv", Mix: BenchMix}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.startOffers(ctx); err != nil {
		t.Fatal(err)
	}
	defer d.stop()
	r, err := p.run(ctx, d, "baseline", 500)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", r.Latency)
	if r.Sent < 950 || r.Sent > 1050 || r.SentPerSec < 475 || r.SentPerSec > 525 {
		t.Errorf("sent %d (%.0f/s), want about 1000 at 500/s", r.Sent, r.SentPerSec)
	}
	if r.Offers != r.Sent {
		t.Errorf("%d offers measured for %d events sent; the baseline answers every event", r.Offers, r.Sent)
	}
	if r.ProcessedPerSec < 375 || r.ProcessedPerSec > 625 {
		t.Errorf("processed %.0f/s, want about 500", r.ProcessedPerSec)
	}
	l := r.Latency
	if l.Count != r.Offers || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max || l.Max > 2000 {
		t.Errorf("implausible latency %+v", l)
	}
	if !r.Sustained || r.Verdict != verdictOK || r.LagEnd < 0 || len(r.Timeline) < 2 || r.Unmatched != 0 {
		t.Errorf("run %+v", r)
	}
}

func TestOfferEventID(t *testing.T) {
	var d driver
	enc := connectors.NewEncoder()
	o := connectors.Offer{ID: "o-1", RuleID: "r", EventID: "run-7z", Params: map[string]any{"nested": map[string]any{"event_id": "no"}}}
	for _, e := range []connectors.Encoding{connectors.Msgpack, connectors.JSON} {
		b, err := enc.Encode(nil, &o, e)
		if err != nil {
			t.Fatal(err)
		}
		if id, err := d.offerEventID(b); err != nil || id != "run-7z" {
			t.Errorf("%s: event id %q, %v", e, id, err)
		}
	}
	b, _ := msgpack.Marshal(map[string]any{"id": "x"})
	if _, err := d.offerEventID(b); err == nil {
		t.Error("an offer without event_id was read")
	}
}

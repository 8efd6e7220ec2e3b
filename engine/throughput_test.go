package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/examples"
)

// useExampleRules writes the example rules into dir/rules.
func useExampleRules(t testing.TB, dir string) {
	t.Helper()
	data, err := examples.Rules.ReadFile("rules/retail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rd := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rd, "r.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// publishAsync publishes msgs, a thousand at a time, and returns the last
// stream sequence.
func publishAsync(t testing.TB, js jetstream.JetStream, msgs []*nats.Msg) uint64 {
	t.Helper()
	var last uint64
	for start := 0; start < len(msgs); start += 1000 {
		var futures []jetstream.PubAckFuture
		for _, m := range msgs[start:min(start+1000, len(msgs))] {
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case a := <-f.Ok():
				last = max(last, a.Sequence)
			case err := <-f.Err():
				t.Fatal(err)
			}
		}
	}
	return last
}

func syntheticMsgs(t testing.TB, n, customers int, seed uint64) []*nats.Msg {
	t.Helper()
	g := bench.NewGenerator(bench.Workload{Customers: customers, Seed: seed, RunID: "s" + strconv.FormatUint(seed, 10)})
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	msgs := make([]*nats.Msg, 0, n+customers)
	for i := 0; i < customers; i++ {
		ev := g.ProfileEvent(i, base)
		data, _ := bench.Encode(nil, &ev)
		m := nats.NewMsg(ev.Subject("kairos"))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		msgs = append(msgs, m)
	}
	for i := 0; i < n; i++ {
		ev := g.Next(base.Add(time.Duration(i) * 13 * time.Second))
		data, err := bench.Encode(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(ev.Subject("kairos"))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		msgs = append(msgs, m)
	}
	return msgs
}

// TestParallelWorkersDecideLikeOne runs the same traffic through one
// worker and through four, in batches large enough to use the workers in
// parallel, and expects the same offers: per-customer order is kept.
func TestParallelWorkersDecideLikeOne(t *testing.T) {
	msgs := syntheticMsgs(t, 4000, 80, 7)
	offers := func(workers int) map[string]string {
		dir := t.TempDir()
		useExampleRules(t, dir)
		te := startTestEngine(t, dir, func(c *Config) { c.Engine.Workers = workers; c.Engine.BatchSize = 256 })
		te.waitApplied(t, publishAsync(t, te.js, msgs))
		out := map[string]string{}
		for _, o := range te.offers(t) {
			p, _ := json.Marshal(o.Params)
			out[o.ID] = o.RuleID + "|" + o.CustomerID + "|" + o.EventID + "|" + string(p)
		}
		te.stop(t)
		return out
	}
	one, four := offers(1), offers(4)
	if len(one) == 0 {
		t.Fatal("no offers: the comparison proves nothing")
	}
	for id, want := range one {
		if got := four[id]; got != want {
			t.Errorf("offer %s: four workers %q, one worker %q", id, got, want)
		}
	}
	if len(four) != len(one) {
		t.Errorf("four workers made %d offers, one made %d", len(four), len(one))
	}
}

// BenchmarkEngineThroughput measures events/s through the whole engine:
// real embedded nats-server, Badger, the example rules; events pre-published
// to the stream, the clock stopped when the last one is applied.
func BenchmarkEngineThroughput(b *testing.B) {
	dir := b.TempDir()
	useExampleRules(b, dir)
	var cfg Config
	cfg.Data = filepath.Join(dir, "data")
	cfg.Rules.Dir = filepath.Join(dir, "rules")
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "off"
	e, err := New(Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	<-e.Ready()
	nc, err := nats.Connect(e.NATSURL())
	if err != nil {
		b.Fatal(err)
	}
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	msgs := syntheticMsgs(b, b.N, 10000, uint64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	last := publishAsync(b, js, msgs)
	for e.Applied() < last {
		time.Sleep(time.Millisecond) // polling for completion
	}
	b.StopTimer()
	b.ReportMetric(float64(len(msgs))/b.Elapsed().Seconds(), "events/s")
	nc.Close()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}

package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/connectors"
)

// BenchmarkRealtimeUnderBatchLoad measures real-time event→offer latency
// (publish to offer received) at a steady 1,000 events/s, first alone, then
// while the engine works through a backlog of batch events (each making an
// offer too), and reports both p99s and their ratio. Run it with
//
//	go test -run '^$' -bench RealtimeUnderBatchLoad -benchtime 1x ./engine
func BenchmarkRealtimeUnderBatchLoad(b *testing.B) {
	dir := b.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: rt
    kind: service
    on: [login]
    when: "true"
    offer: {channels: [app_push]}
  - id: bd
    kind: service
    on: [birthday]
    when: "true"
    offer: {channels: [sms]}
`), 0o644)
	var cfg Config
	cfg.Data = filepath.Join(dir, "data")
	cfg.Rules.Dir = rd
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "off"
	if v, err := strconv.Atoi(os.Getenv("KAIROS_BENCH_MAX_PER_BATCH")); err == nil {
		cfg.Batch.MaxPerBatch = v
	}
	if v, err := strconv.ParseFloat(os.Getenv("KAIROS_BENCH_CONSUME_RATE"), 64); err == nil {
		cfg.Batch.ConsumeRate = v
	}
	e, err := New(Options{Config: cfg})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	<-e.Ready()
	defer func() { cancel(); <-done }()
	nc, _ := nats.Connect(e.NATSURL())
	defer nc.Close()
	js, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))

	var mu sync.Mutex
	sent := map[string]time.Time{}
	var lat []time.Duration
	sub, _ := nc.Subscribe("kairos.offers.app_push.>", func(m *nats.Msg) {
		o, err := connectors.DecodeOffer(m.Data)
		if err != nil {
			return
		}
		mu.Lock()
		if t0, ok := sent[o.EventID]; ok {
			lat = append(lat, time.Since(t0))
		}
		mu.Unlock()
	})
	defer sub.Unsubscribe()

	phase := func(name string, n int) time.Duration {
		mu.Lock()
		lat = lat[:0]
		mu.Unlock()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; i < n; i++ {
			<-tick.C
			id := fmt.Sprintf("%s-%d", name, i)
			c := fmt.Sprintf("R%d", i%500)
			m := nats.NewMsg("kairos.events.login." + c)
			m.Data = []byte(fmt.Sprintf(`{"id":"%s","customer_id":"%s","type":"login","ts":%d}`, id, c, time.Now().UnixMilli()))
			mu.Lock()
			sent[id] = time.Now()
			mu.Unlock()
			if err := nc.PublishMsg(m); err != nil {
				b.Fatal(err)
			}
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			mu.Lock()
			got := len(lat)
			mu.Unlock()
			if got >= n || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		s := slices.Clone(lat)
		slices.Sort(s)
		return s[len(s)*99/100]
	}
	const rt = 3000
	b.ResetTimer()
	alone := phase("alone", rt)
	// A backlog of batch events, all published before the real-time phase
	// (KAIROS_BENCH_BACKLOG, default 100,000; the engine applies only a
	// few thousand of them during the phase, so a larger one measures the
	// same, with a larger stream).
	backlog := 100_000
	if v, err := strconv.Atoi(os.Getenv("KAIROS_BENCH_BACKLOG")); err == nil && v > 0 {
		backlog = v
	}
	for start := 0; start < backlog; start += 5000 {
		var fs []jetstream.PubAckFuture
		for i := start; i < min(start+5000, backlog); i++ {
			c := fmt.Sprintf("B%d", i)
			m := nats.NewMsg("kairos.batch.birthday." + c)
			m.Data = []byte(fmt.Sprintf(`{"id":"birthday:%s:2026-11-20","customer_id":"%s","type":"birthday","ts":%d}`, c, c, time.Now().UnixMilli()))
			m.Header.Set(jetstream.MsgIDHeader, "birthday:"+c)
			f, err := js.PublishMsgAsync(m)
			if err != nil {
				b.Fatal(err)
			}
			fs = append(fs, f)
		}
		for _, f := range fs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
	}
	under := phase("batch", rt)
	batchDone := e.AppliedBatch()
	b.StopTimer()
	b.ReportMetric(float64(alone.Microseconds())/1000, "p99-ms-alone")
	b.ReportMetric(float64(under.Microseconds())/1000, "p99-ms-under-batch")
	b.ReportMetric(float64(under)/float64(alone), "ratio")
	b.ReportMetric(float64(batchDone), "batch-events-applied-during")
}

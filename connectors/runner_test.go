package connectors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// natsJS starts a real nats-server with JetStream and the three streams a
// connector touches.
func natsJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); ns.Shutdown(); ns.WaitForShutdown() })
	js, _ := jetstream.New(nc)
	for name, subj := range map[string]string{"KAIROS_OFFERS": "kairos.offers.>", "KAIROS_EVENTS": "kairos.events.>", "KAIROS_DLQ": "kairos.dlq.>"} {
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Duplicates: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	return js
}

func publishOffers(t *testing.T, js jetstream.JetStream, n int, expires int64) {
	t.Helper()
	enc := NewEncoder()
	for i := 0; i < n; i++ {
		o := &Offer{ID: fmt.Sprintf("o-%04d", i), RuleID: "r", CustomerID: fmt.Sprintf("C%d", i), Channel: "sms", ExpiresAt: expires}
		data, _ := enc.Encode(nil, o, Msgpack)
		m := nats.NewMsg("kairos.offers.sms." + o.CustomerID)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, o.ID)
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

func streamCount(t *testing.T, js jetstream.JetStream, stream, subject string) int {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// flakyGateway is an HTTP gateway that fails, times out and rate-limits at
// random, and acts on each idempotency key once.
type flakyGateway struct {
	mu       sync.Mutex
	rng      *rand.Rand
	acted    map[string]int // key -> times acted on
	requests []time.Time
	repeats  int
	failAll  atomic.Bool
}

func (g *flakyGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	g.mu.Lock()
	g.requests = append(g.requests, time.Now())
	roll := g.rng.IntN(100)
	g.mu.Unlock()
	if key == "" {
		http.Error(w, "no key", http.StatusBadRequest)
		return
	}
	if g.failAll.Load() {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	switch {
	case roll < 15:
		http.Error(w, "oops", http.StatusInternalServerError)
		return
	case roll < 25:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	g.mu.Lock()
	if g.acted[key] > 0 {
		g.repeats++ // a retry of something already done: answer OK, act once
	} else {
		g.acted[key]++
	}
	g.mu.Unlock()
	if roll < 35 {
		time.Sleep(150 * time.Millisecond) // acted, but the client times out
	}
	w.WriteHeader(http.StatusAccepted)
}

func runRunner(t *testing.T, o RunnerOptions) (stop func()) {
	t.Helper()
	r, err := NewRunner(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

func TestWebhookAgainstAFlakyGateway(t *testing.T) {
	js := natsJS(t)
	gw := &flakyGateway{rng: rand.New(rand.NewPCG(1, 2)), acted: map[string]int{}}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	const n = 300
	publishOffers(t, js, n, 0)
	c, err := NewWebhook(Config{Name: "gw", Type: "webhook", Channel: "sms", Settings: map[string]any{"url": srv.URL + "/send?key=secret", "timeout": "100ms"}})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	const rateLimit = 400.0
	start := time.Now()
	stop := runRunner(t, RunnerOptions{JS: js, Name: "gw", Channel: "sms", Connector: c, Concurrency: 8,
		BackoffBase: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxAttempts: 50, Rate: rateLimit, Burst: 8,
		BreakerFailures: 1000, Metrics: m})
	waitFor(t, "every offer acted on", func() bool { gw.mu.Lock(); defer gw.mu.Unlock(); return len(gw.acted) == n })
	waitFor(t, "every offer_sent event", func() bool { return streamCount(t, js, "KAIROS_EVENTS", "kairos.events.offer_sent.>") == n })
	elapsed := time.Since(start)
	stop()

	gw.mu.Lock()
	defer gw.mu.Unlock()
	for k, times := range gw.acted {
		if times != 1 {
			t.Errorf("%s acted on %d times", k, times)
		}
	}
	if max := rateLimit*elapsed.Seconds() + 8 + 1; float64(len(gw.requests)) > max {
		t.Errorf("%d requests in %v: more than the rate limit allows (%v)", len(gw.requests), elapsed, max)
	}
	if got := testutil.ToFloat64(m.Deliveries.WithLabelValues("gw", OutcomeDelivered)); got != n {
		t.Errorf("delivered counter %v, want %d", got, n)
	}
	if retried := testutil.ToFloat64(m.Deliveries.WithLabelValues("gw", OutcomeRetried)); retried == 0 || gw.repeats == 0 {
		t.Errorf("the gateway's failures were not exercised: %v retries, %d repeats", retried, gw.repeats)
	}
	if dl := streamCount(t, js, "KAIROS_DLQ", "kairos.dlq.>"); dl != 0 {
		t.Errorf("%d dead letters", dl)
	}
	t.Logf("%d offers, %d requests (%d repeats answered idempotently) in %v", n, len(gw.requests), gw.repeats, elapsed)
}

func TestBreakerOpensAndRecovers(t *testing.T) {
	js := natsJS(t)
	gw := &flakyGateway{rng: rand.New(rand.NewPCG(3, 4)), acted: map[string]int{}}
	gw.failAll.Store(true)
	// Only successes from here: a gateway that is down, then healthy.
	gw.rng = rand.New(rand.NewPCG(5, 6))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gw.failAll.Load() {
			gw.mu.Lock()
			gw.requests = append(gw.requests, time.Now())
			gw.mu.Unlock()
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		gw.mu.Lock()
		gw.acted[r.Header.Get("Idempotency-Key")]++
		gw.mu.Unlock()
	}))
	defer srv.Close()
	publishOffers(t, js, 20, 0)
	c, _ := NewWebhook(Config{Name: "gw", Settings: map[string]any{"url": srv.URL}})
	m := NewMetrics(nil)
	stop := runRunner(t, RunnerOptions{JS: js, Name: "gw", Channel: "sms", Connector: c, Concurrency: 4,
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAttempts: 1000,
		BreakerFailures: 5, BreakerCooldown: 300 * time.Millisecond, Metrics: m})
	waitFor(t, "the breaker to open", func() bool { return testutil.ToFloat64(m.BreakerOpen.WithLabelValues("gw")) == 1 })
	gw.mu.Lock()
	before := len(gw.requests)
	gw.mu.Unlock()
	time.Sleep(150 * time.Millisecond) // within the cooldown: no request may go out
	gw.mu.Lock()
	during := len(gw.requests) - before
	gw.mu.Unlock()
	if during > 4 { // requests already in flight when it opened
		t.Errorf("%d requests while the breaker was open", during)
	}
	gw.failAll.Store(false)
	waitFor(t, "recovery", func() bool { gw.mu.Lock(); defer gw.mu.Unlock(); return len(gw.acted) == 20 })
	waitFor(t, "the breaker to close", func() bool { return testutil.ToFloat64(m.BreakerOpen.WithLabelValues("gw")) == 0 })
	stop()
}

func TestPermanentFailuresAndExpiredOffers(t *testing.T) {
	js := natsJS(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such number", http.StatusUnprocessableEntity)
	}))
	defer srv.Close()
	publishOffers(t, js, 3, 0)
	// Expired before delivery: not sent, offer_failed with reason expired.
	enc := NewEncoder()
	data, _ := enc.Encode(nil, &Offer{ID: "o-old", CustomerID: "X", Channel: "sms", ExpiresAt: time.Now().Add(-time.Minute).UnixMilli()}, Msgpack)
	m := nats.NewMsg("kairos.offers.sms.X")
	m.Data = data
	js.PublishMsg(context.Background(), m)
	c, _ := NewWebhook(Config{Name: "gw", Settings: map[string]any{"url": srv.URL}})
	stop := runRunner(t, RunnerOptions{JS: js, Name: "gw", Channel: "sms", Connector: c})
	waitFor(t, "failures", func() bool { return streamCount(t, js, "KAIROS_EVENTS", "kairos.events.offer_failed.>") == 4 })
	stop()
	if dl := streamCount(t, js, "KAIROS_DLQ", "kairos.dlq.delivery"); dl != 3 {
		t.Errorf("%d delivery dead letters, want 3 (the expired offer is not one)", dl)
	}
}

func TestRegistry(t *testing.T) {
	r := Builtin()
	if _, err := r.New(Config{Name: "x", Type: "carrier-pigeon"}); err == nil {
		t.Error("unknown type accepted")
	}
	if _, err := r.New(Config{Name: "x", Type: "webhook", Settings: map[string]any{"url": "ftp://x"}}); err == nil {
		t.Error("bad url accepted")
	}
	if _, err := r.New(Config{Name: "x", Type: "webhook", Settings: map[string]any{"url": "http://x", "retries": 3}}); err == nil {
		t.Error("unknown setting accepted")
	}
	defer func() {
		if recover() == nil {
			t.Error("a duplicate registration did not panic")
		}
	}()
	r.Register("webhook", NewWebhook)
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
)

const testRules = `rules:
  - id: first-login
    on: [login]
    when: event.attrs.channel == "app" && count("login", "24h") == 1 && sum("txn", "amount", "30d") >= 100.0
    offer:
      channels: [app_push, sms]
      product: P1
      template: t1
      priority: 10
      params: { name: "has(profile.name) ? profile.name : 'friend'", logins: "count('login', '24h')" }
      ttl: 1h
  - id: fragile
    on: [txn]
    when: event.attrs.amount / event.attrs.divisor > 1
    offer: { channels: [sms] }
`

// testEngine runs an engine on an embedded nats-server (random port) and a
// Badger directory under dir, and returns a client connection to it.
type testEngine struct {
	e      *Engine
	nc     *nats.Conn
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan error
}

// beforeRun, when a test sets it, runs in startTestEngine between New and
// Run.
var beforeRun func()

func startTestEngine(t *testing.T, dir string, mutate func(*Config)) *testEngine {
	t.Helper()
	return startTestEngineClock(t, dir, mutate, nil)
}

// startTestEngineClock is startTestEngine with the engine's clock injected.
func startTestEngineClock(t *testing.T, dir string, mutate func(*Config), now func() time.Time) *testEngine {
	t.Helper()
	rulesDir := filepath.Join(dir, "rules")
	if _, err := os.Stat(rulesDir); err != nil {
		if err := os.MkdirAll(rulesDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rulesDir, "r.yaml"), []byte(testRules), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cfg Config
	cfg.Data = filepath.Join(dir, "data")
	cfg.Rules.Dir = rulesDir
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Engine.Workers = 2
	if mutate != nil {
		mutate(&cfg)
	}
	var tlog *slog.Logger
	if os.Getenv("KAIROS_TEST_LOG") != "" {
		tlog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e, err := New(Options{Config: cfg, Now: now, Logger: tlog})
	if err != nil {
		t.Fatal(err)
	}
	if beforeRun != nil {
		beforeRun()
	}
	ctx, cancel := context.WithCancel(context.Background())
	te := &testEngine{e: e, cancel: cancel, done: make(chan error, 1)}
	go func() { te.done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-te.done:
		t.Fatalf("engine stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("engine not ready in 30s")
	}
	te.nc, err = nats.Connect(e.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	te.js, _ = jetstream.New(te.nc)
	t.Cleanup(func() { te.stop(t) })
	return te
}

func (te *testEngine) stop(t *testing.T) {
	if te.cancel == nil {
		return
	}
	te.nc.Close()
	te.cancel()
	te.cancel = nil
	if err := <-te.done; err != nil {
		t.Errorf("engine Run: %v", err)
	}
}

type ev struct {
	ID         string         `msgpack:"id" json:"id"`
	CustomerID string         `msgpack:"customer_id" json:"customer_id"`
	Type       string         `msgpack:"type" json:"type"`
	TS         any            `msgpack:"ts" json:"ts"`
	Attrs      map[string]any `msgpack:"attrs" json:"attrs"`
}

// publish publishes raw data on subject and returns its stream sequence.
func (te *testEngine) publish(t *testing.T, subject string, data []byte, hdr nats.Header) uint64 {
	t.Helper()
	m := &nats.Msg{Subject: subject, Data: data, Header: hdr}
	ack, err := te.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func (te *testEngine) publishEvent(t *testing.T, e ev, asJSON bool) uint64 {
	t.Helper()
	var data []byte
	var err error
	if asJSON {
		data, err = json.Marshal(e)
	} else {
		data, err = msgpack.Marshal(e)
	}
	if err != nil {
		t.Fatal(err)
	}
	return te.publish(t, "kairos.events."+e.Type+"."+e.CustomerID, data, nil)
}

// waitApplied polls until the engine has applied seq.
func (te *testEngine) waitApplied(t *testing.T, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for te.e.Applied() < seq {
		if time.Now().After(deadline) {
			t.Fatalf("engine applied %d, want %d", te.e.Applied(), seq)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// streamMsgs reads every message of a stream.
func (te *testEngine) streamMsgs(t *testing.T, stream string) []jetstream.Msg {
	t.Helper()
	ctx := context.Background()
	s, err := te.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := int(info.State.Msgs)
	if n == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < n {
		b, err := c.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range b.Messages() {
			out = append(out, m)
		}
		if b.Error() != nil && !errors.Is(b.Error(), nats.ErrTimeout) {
			t.Fatal(b.Error())
		}
	}
	return out
}

func (te *testEngine) offers(t *testing.T) []*connectors.Offer {
	t.Helper()
	var out []*connectors.Offer
	for _, m := range te.streamMsgs(t, "KAIROS_OFFERS") {
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Headers().Get(jetstream.MsgIDHeader); got != o.ID {
			t.Errorf("offer %s published with Nats-Msg-Id %q", o.ID, got)
		}
		if want := "kairos.offers." + o.Channel + "." + o.CustomerID; m.Subject() != want {
			t.Errorf("offer on %s, want %s", m.Subject(), want)
		}
		out = append(out, o)
	}
	return out
}

func TestOffersFromMsgpackAndJSONEvents(t *testing.T) {
	te := startTestEngine(t, t.TempDir(), nil)
	base := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC).UnixMilli()
	te.publishEvent(t, ev{ID: "p1", CustomerID: "C1", Type: "profile", TS: base, Attrs: map[string]any{"name": "Ann"}}, false)
	te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base + 1000, Attrs: map[string]any{"amount": 150, "divisor": 1000}}, false)
	te.publishEvent(t, ev{ID: "t2", CustomerID: "C2", Type: "txn", TS: base + 1000, Attrs: map[string]any{"amount": 150.5, "divisor": 1000}}, true)
	te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 2000, Attrs: map[string]any{"channel": "app"}}, false)
	// JSON with an RFC 3339 ts.
	te.publishEvent(t, ev{ID: "l2", CustomerID: "C2", Type: "login", TS: time.UnixMilli(base + 2000).Format(time.RFC3339Nano), Attrs: map[string]any{"channel": "app"}}, true)
	// A second login within 24h does not fire.
	seq := te.publishEvent(t, ev{ID: "l3", CustomerID: "C1", Type: "login", TS: base + 3000, Attrs: map[string]any{"channel": "app"}}, false)
	te.waitApplied(t, seq)

	offers := te.offers(t)
	if len(offers) != 2 {
		t.Fatalf("got %d offers, want 2: %+v", len(offers), offers)
	}
	sort.Slice(offers, func(i, j int) bool { return offers[i].CustomerID < offers[j].CustomerID })
	o := offers[0]
	if o.RuleID != "first-login" || o.CustomerID != "C1" || o.Channel != "app_push" || o.Product != "P1" || o.Template != "t1" ||
		o.Priority != 10 || o.EventID != "l1" || o.EventType != "login" || o.EventTS != base+2000 || o.RuleVersion == "" {
		t.Errorf("offer = %+v", o)
	}
	if o.ExpiresAt-o.DecidedAt != time.Hour.Milliseconds() {
		t.Errorf("ttl = %dms", o.ExpiresAt-o.DecidedAt)
	}
	if o.Params["name"] != "Ann" || o.Params["logins"] != int64(1) && o.Params["logins"] != int8(1) {
		t.Errorf("params = %#v", o.Params)
	}
	if offers[1].Params["name"] != "friend" || offers[1].EventID != "l2" {
		t.Errorf("JSON customer's offer = %+v", offers[1])
	}
	if offerID("first-login", "C1", "l1") != o.ID {
		t.Errorf("offer id %s is not the deterministic id", o.ID)
	}
}

func TestBadInputGoesToDeadLetters(t *testing.T) {
	te := startTestEngine(t, t.TempDir(), func(c *Config) { c.Engine.MaxEventBytes = 1024 })
	base := time.Now().UnixMilli()
	mp := func(e ev) []byte { b, _ := msgpack.Marshal(e); return b }
	cases := []struct {
		name, subject string
		data          []byte
		reason        string
	}{
		{"garbage bytes", "kairos.events.login.C1", []byte{0xc1, 0x00, 0xff}, ReasonDecode},
		{"broken JSON", "kairos.events.login.C1", []byte(`{"id": "x",`), ReasonDecode},
		{"missing id", "kairos.events.login.C1", mp(ev{CustomerID: "C1", Type: "login", TS: base}), ReasonInvalid},
		{"customer differs from subject", "kairos.events.login.C1", mp(ev{ID: "a", CustomerID: "C9", Type: "login", TS: base}), ReasonInvalid},
		{"type differs from subject", "kairos.events.txn.C1", mp(ev{ID: "b", CustomerID: "C1", Type: "login", TS: base}), ReasonInvalid},
		{"bad type characters", "kairos.events.Log-In.C1", mp(ev{ID: "c", CustomerID: "C1", Type: "Log-In", TS: base}), ReasonInvalid},
		{"missing ts", "kairos.events.login.C1", mp(ev{ID: "d", CustomerID: "C1", Type: "login"}), ReasonInvalid},
		{"subject without customer", "kairos.events.login", mp(ev{ID: "e", CustomerID: "C1", Type: "login", TS: base}), ReasonInvalid},
		{"oversize", "kairos.events.login.C1", append([]byte("{"), make([]byte, 2000)...), ReasonOversize},
		{"rule evaluation error", "kairos.events.txn.C1", mp(ev{ID: "f", CustomerID: "C1", Type: "txn", TS: base, Attrs: map[string]any{"amount": 5}}), ReasonEval},
	}
	var seq uint64
	for _, c := range cases {
		seq = te.publish(t, c.subject, c.data, nil)
	}
	// A good event after the bad ones is still processed.
	te.publishEvent(t, ev{ID: "g1", CustomerID: "C3", Type: "txn", TS: base, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	seq = te.publishEvent(t, ev{ID: "g2", CustomerID: "C3", Type: "login", TS: base + 1, Attrs: map[string]any{"channel": "app"}}, false)
	te.waitApplied(t, seq)

	dl := te.streamMsgs(t, "KAIROS_DLQ")
	if len(dl) != len(cases) {
		for _, m := range dl {
			t.Log(m.Subject(), m.Headers())
		}
		t.Fatalf("got %d dead letters, want %d", len(dl), len(cases))
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := dl[i]
			if got := m.Headers().Get(HeaderReason); got != c.reason {
				t.Errorf("reason %q, want %q (error %q)", got, c.reason, m.Headers().Get(HeaderError))
			}
			if m.Subject() != "kairos.dlq."+c.reason {
				t.Errorf("subject %s", m.Subject())
			}
			if string(m.Data()) != string(c.data) {
				t.Errorf("payload not the original")
			}
			if m.Headers().Get(HeaderError) == "" || m.Headers().Get(HeaderSubject) != c.subject {
				t.Errorf("headers %v", m.Headers())
			}
		})
	}
	if got := dl[len(dl)-1].Headers().Get(HeaderRule); got != "fragile" {
		t.Errorf("eval dead letter names rule %q", got)
	}
	if n := len(te.offers(t)); n != 1 {
		t.Fatalf("good event after bad ones gave %d offers, want 1", n)
	}
	// One acknowledgement per batch covers the dead letters' terminations
	// and every event before the last.
	info := te.waitAcked(t, seq)
	if info.Config.AckPolicy != jetstream.AckAllPolicy {
		t.Errorf("consumer ack policy %v, want all", info.Config.AckPolicy)
	}
}

// firstLogin publishes a txn and then a login of customer at base that
// fire first-login (one offer), and returns the login's sequence.
func (te *testEngine) firstLogin(t *testing.T, customer string, base int64) uint64 {
	t.Helper()
	te.publishEvent(t, ev{ID: "t-" + customer, CustomerID: customer, Type: "txn", TS: base, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	return te.publishEvent(t, ev{ID: "l-" + customer, CustomerID: customer, Type: "login", TS: base + 1, Attrs: map[string]any{"channel": "app"}}, false)
}

// waitAcked waits until the events consumer has acknowledged every
// delivery up to seq and holds none pending, and returns its info.
func (te *testEngine) waitAcked(t *testing.T, seq uint64) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitFor(t, fmt.Sprintf("the consumer to acknowledge up to %d", seq), func() bool {
		c, err := te.js.Consumer(context.Background(), "KAIROS_EVENTS", "kairos-engine")
		if err != nil {
			t.Fatal(err)
		}
		info = c.CachedInfo()
		return info.AckFloor.Stream >= seq && info.NumAckPending == 0
	})
	return info
}

func TestRestartKeepsWindowsAndDoesNotRepeatOffers(t *testing.T) {
	dir := t.TempDir()
	te := startTestEngine(t, dir, nil)
	base := time.Now().UnixMilli()
	te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	seq := te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 1, Attrs: map[string]any{"channel": "app"}}, false)
	te.waitApplied(t, seq)
	te.stop(t)

	te = startTestEngine(t, dir, nil)
	if te.e.Applied() != seq {
		t.Fatalf("restarted at %d, want %d", te.e.Applied(), seq)
	}
	// Second login within 24h: the window survived the restart.
	seq = te.publishEvent(t, ev{ID: "l2", CustomerID: "C1", Type: "login", TS: base + 2, Attrs: map[string]any{"channel": "app"}}, false)
	// The same event again (a publisher retry with a new message): same offer id if it fired.
	te.waitApplied(t, seq)
	if n := len(te.offers(t)); n != 1 {
		t.Fatalf("got %d offers, want 1", n)
	}
}

// TestExplicitAckConsumerIsMadeAgain: a consumer of an earlier version,
// which acknowledged each event, is made again with AckAll at the
// state's watermark; nothing is applied twice and new events flow.
func TestExplicitAckConsumerIsMadeAgain(t *testing.T) {
	dir := t.TempDir()
	te := startTestEngine(t, dir, nil)
	base := time.Now().UnixMilli()
	seq := te.firstLogin(t, "C1", base)
	te.waitApplied(t, seq)
	te.waitAcked(t, seq)
	ctx := context.Background()
	if err := te.js.DeleteConsumer(ctx, "KAIROS_EVENTS", "kairos-engine"); err != nil {
		t.Fatal(err)
	}
	te.stop(t)

	// The embedded server stops with the engine: run one under another
	// consumer name to make the old consumer while nothing consumes it.
	te = startTestEngine(t, dir, func(c *Config) { c.Consumer.Durable = "kairos-engine-other" })
	old := consumerConfig(&te.e.cfg, te.e.rt, seq) // as this version makes it, but for the policy
	old.Durable, old.AckPolicy = "kairos-engine", jetstream.AckExplicitPolicy
	if _, err := te.js.CreateConsumer(ctx, "KAIROS_EVENTS", old); err != nil {
		t.Fatal(err)
	}
	te.stop(t)

	te = startTestEngine(t, dir, nil)
	seq = te.firstLogin(t, "C2", base)
	te.waitApplied(t, seq)
	if info := te.waitAcked(t, seq); info.Config.AckPolicy != jetstream.AckAllPolicy {
		t.Errorf("consumer ack policy %v, want all", info.Config.AckPolicy)
	}
	if n := len(te.offers(t)); n != 2 {
		t.Errorf("got %d offers, want 2 (one per event, none repeated)", n)
	}
}

func TestConfigErrorsAreAllListed(t *testing.T) {
	var c Config
	c.Defaults()
	c.Rules.Horizon = "ninety days"
	c.Streams.Events.Name = "bad name"
	c.Streams.Offers.Storage = "tape"
	c.Engine.BatchSize = -1
	c.HTTP.Listen = "nowhere"
	c.Log.Level = "loud"
	c.State.Compression = "lz4"
	c.Engine.MemoryLimit = "lots"
	c.State.BlockCache = "tiny"
	c.State.IndexCache = "1KiB"
	err := c.Validate()
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v", err)
	}
	for _, want := range []string{"rules.horizon", "streams.events.name", "streams.offers.storage", "engine.batch_size", "http.listen", "log.level", "state.compression", "engine.memory_limit", "state.block_cache", "state.index_cache"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
}

func TestLoadConfigRejectsUnknownFields(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k.yaml")
	os.WriteFile(p, []byte("engine:\n  batch_size: 10\n  bach_size: 3\nnats:\n  urll: x\n"), 0o644)
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), "bach_size") || !strings.Contains(err.Error(), "urll") {
		t.Fatalf("got %v", err)
	}
}

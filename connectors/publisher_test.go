package connectors

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFlushResendsAnUnansweredMessage: a publish whose acknowledgement is
// lost (as in a reconnect when a NATS node goes down) is never answered;
// Flush sends it again after stallAfter instead of waiting for its whole
// deadline. The loss is injected on a real server: a subscriber stands in
// for a stream that swallows the first copy of each message and
// acknowledges the next.
func TestFlushResendsAnUnansweredMessage(t *testing.T) {
	js := natsJS(t)
	nc := js.Conn()
	var mu sync.Mutex
	seen := map[string]int{}
	sub, err := nc.Subscribe("lost.>", func(m *nats.Msg) {
		id := m.Header.Get(jetstream.MsgIDHeader)
		mu.Lock()
		seen[id]++
		n := seen[id]
		mu.Unlock()
		if n > 1 {
			m.Respond([]byte(`{"stream":"LOST","seq":1,"duplicate":true}`))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	nc.Flush()

	p := NewPublisher(js, nil, 3)
	p.stallAfter = 200 * time.Millisecond
	msg := func(subject, id string) *nats.Msg {
		m := nats.NewMsg(subject)
		m.Data = []byte("x")
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	for _, m := range []*nats.Msg{msg("kairos.offers.sms.C1", "o1"), msg("lost.a", "l1"), msg("kairos.offers.sms.C2", "o2"), msg("lost.b", "l2")} {
		if err := p.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	// Without the re-send, Flush would wait for this deadline and fail.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["l1"] != 2 || seen["l2"] != 2 {
		t.Fatalf("copies of the unanswered messages: %v, want 2 each", seen)
	}
	info, err := js.Stream(ctx, "KAIROS_OFFERS")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n != 2 {
		t.Fatalf("offers stream holds %d messages, want 2", n)
	}
	// A batch whose acknowledgements all come is not sent again.
	if err := p.Publish(msg("kairos.offers.sms.C3", "o3")); err != nil {
		t.Fatal(err)
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 {
		t.Fatalf("seen %v", seen)
	}
}

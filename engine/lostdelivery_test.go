package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// TestLostDeliveryIsConsumedAgain: an event delivered by the engine's
// consumer that never reaches the engine (here another client takes it
// from the consumer and drops it, as a NATS node that goes down with it in
// transit does) is consumed again in order. JetStream sends it again only
// after the ack wait, after later events: by then the watermark has passed
// it, and it must not be taken for applied.
func TestLostDeliveryIsConsumedAgain(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rd, 0o755); err != nil {
		t.Fatal(err)
	}
	rules := "rules:\n  - id: receipt\n    kind: service\n    on: [ping]\n    when: \"true\"\n    offer: {channels: [email]}\n"
	if err := os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	te := startTestEngine(t, dir, func(c *Config) { c.Consumer.AckWait = "1s" })
	ctx := context.Background()
	cons, err := te.js.Consumer(ctx, "KAIROS_EVENTS", "kairos-engine")
	if err != nil {
		t.Fatal(err)
	}
	waiting := func(n int) func() bool {
		return func() bool { info, err := cons.Info(ctx); return err == nil && info.NumWaiting >= n }
	}
	waitFor(t, "the engine's pull", waiting(1))
	// The consumer serves its waiting pulls in turn: this one takes one
	// of the events and never acknowledges it.
	stolen := make(chan uint64, 1)
	go func() {
		b, err := cons.Fetch(1, jetstream.FetchMaxWait(20*time.Second))
		if err != nil {
			stolen <- 0
			return
		}
		for m := range b.Messages() {
			md, _ := m.Metadata()
			stolen <- md.Sequence.Stream
		}
	}()
	waitFor(t, "the other pull", waiting(2))
	for i := range 4 {
		te.publishEvent(t, ev{ID: fmt.Sprintf("p%d", i), CustomerID: fmt.Sprintf("C%d", i), Type: "ping", TS: int64(1_700_000_000_000)}, false)
	}
	if seq := <-stolen; seq == 0 {
		t.Fatal("no event taken from the engine's consumer")
	} else {
		t.Logf("event at sequence %d taken from the engine's consumer", seq)
	}
	waitFor(t, "4 decisions", func() bool { return len(te.decisions(t)) >= 4 })
	if d := te.decisions(t); len(d) != 4 {
		t.Fatalf("decisions: %q", d)
	}
}

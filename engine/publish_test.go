package engine

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStopWhilePublishingKeepsTheOutbox: a batch is committed but its
// offer cannot be published (the offers stream is gone); the engine is
// stopped meanwhile. The stop must not delete the unpublished outbox
// records with the published ones: the next start publishes the offer.
func TestStopWhilePublishingKeepsTheOutbox(t *testing.T) {
	dir := t.TempDir()
	te := startTestEngine(t, dir, nil)
	if err := te.js.DeleteStream(context.Background(), "KAIROS_OFFERS"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UnixMilli()
	te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base, Attrs: map[string]any{"amount": 500, "divisor": 1000}}, false)
	seq := te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 1, Attrs: map[string]any{"channel": "app"}}, false)
	waitFor(t, "a failed publish", func() bool { return testutil.ToFloat64(te.e.metrics.PublishRetries) > 0 })
	if got := te.e.Applied(); got >= seq {
		t.Fatalf("Applied %d before the offer was published", got)
	}
	te.stop(t)

	te = startTestEngine(t, dir, nil) // makes the offers stream again
	if n := len(te.offers(t)); n != 1 {
		t.Fatalf("after the restart: %d offers, want the 1 left in the outbox", n)
	}
}

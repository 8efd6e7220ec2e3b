package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBatchEventsAreAppliedOnceEvenWhenResent(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: happy-birthday
    on: [birthday]
    when: "true"
    offer: {channels: [sms]}
  - id: welcome
    on: [login]
    when: "true"
    offer: {channels: [app_push]}
`), 0o644)
	te := startTestEngine(t, dir, nil)
	ctx := context.Background()
	send := func(msgID string) uint64 {
		m := nats.NewMsg("kairos.batch.birthday.C1")
		m.Data = []byte(`{"id":"birthday:C1:2026-11-20","customer_id":"C1","type":"birthday","ts":1795132800000}`)
		m.Header.Set(jetstream.MsgIDHeader, msgID)
		ack, err := te.js.PublishMsg(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	seq := send("a")
	// The same event again under another message id: the stream keeps it
	// (as it would after its duplicate window), the engine must not.
	seq = send("b")
	deadline := time.Now().Add(20 * time.Second)
	for te.e.AppliedBatch() < seq {
		if time.Now().After(deadline) {
			t.Fatal("batch events not applied")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	// Real-time events still flow.
	te.waitApplied(t, te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: time.Now().UnixMilli()}, false))
	n := map[string]int{}
	for _, o := range te.offers(t) {
		n[o.RuleID]++
	}
	if n["happy-birthday"] != 1 || n["welcome"] != 1 {
		t.Errorf("offers %v", n)
	}
	if got := testutil.ToFloat64(te.e.metrics.BatchDuplicates); got != 1 {
		t.Errorf("kairos_batch_duplicates_total = %v", got)
	}
	// After a restart the applied id is still remembered.
	te.stop(t)
	te = startTestEngine(t, dir, nil)
	seq = send("c")
	deadline = time.Now().Add(20 * time.Second)
	for te.e.AppliedBatch() < seq {
		if time.Now().After(deadline) {
			t.Fatal("batch event not applied after restart")
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
	if o := te.offers(t); len(o) != 2 {
		t.Errorf("%d offers after a restart and a resend, want 2", len(o))
	}
}

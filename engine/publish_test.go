package engine

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-engine/kairos/state"
)

// TestStopWhilePublishingKeepsTheOutbox: a batch is committed but its
// offer cannot be published (the offers stream is gone); the engine is
// stopped meanwhile. The stop must not delete the unpublished outbox
// records with the published ones: the next start publishes the offer.
func TestStopWhilePublishingKeepsTheOutbox(t *testing.T) {
	dir := t.TempDir()
	te, seq := unpublishedOffer(t, dir)
	if got := te.e.Applied(); got >= seq {
		t.Fatalf("Applied %d before the offer was published", got)
	}
	te.stop(t)

	te = startTestEngine(t, dir, nil) // makes the offers stream again
	if n := len(te.offers(t)); n != 1 {
		t.Fatalf("after the restart: %d offers, want the 1 left in the outbox", n)
	}
}

// TestNextBatchIsCommittedWhilePublishing: while a batch cannot be
// published (the offers stream is gone), the next batch is still evaluated
// and committed, and neither is acknowledged; once the stream is back,
// both are published in order, each offer once, and acknowledged. It fails
// if the loop waits for the publishing before it takes the next batch.
func TestNextBatchIsCommittedWhilePublishing(t *testing.T) {
	te := startTestEngine(t, t.TempDir(), nil)
	ctx := context.Background()
	if err := te.js.DeleteStream(ctx, "KAIROS_OFFERS"); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UnixMilli()
	first := te.firstLogin(t, "C1", base)
	waitFor(t, "a failed publish", func() bool { return testutil.ToFloat64(te.e.metrics.PublishRetries) > 0 })
	second := te.firstLogin(t, "C2", base)
	// One batch more may be committed (the loop then waits to hand it
	// over): C2's txn, maybe with its login.
	waitFor(t, "the next batch committed", func() bool {
		w, err := te.e.store.Applied()
		return err == nil && w.Seq > first
	})
	if got := te.e.Applied(); got >= first {
		t.Fatalf("Applied %d: acknowledged before its offer was published", got)
	}

	if _, _, err := ensureStreams(ctx, te.js, &te.e.cfg, te.e.sub); err != nil {
		t.Fatal(err)
	}
	te.waitApplied(t, second)
	te.waitAcked(t, second)
	offers := te.offers(t)
	if len(offers) != 2 || offers[0].CustomerID != "C1" || offers[1].CustomerID != "C2" {
		var got []string
		for _, o := range offers {
			got = append(got, o.CustomerID)
		}
		t.Fatalf("offers for %v, want C1 then C2, once each", got)
	}
}

// TestOutboxOfRecordKeysIsRecovered: an outbox written before pages, one
// key per record, is published by the next start and then deleted. The
// records are those of a real batch (an offer and its decision), rewritten
// the old way.
func TestOutboxOfRecordKeysIsRecovered(t *testing.T) {
	dir := t.TempDir()
	te, _ := unpublishedOffer(t, dir)
	te.stop(t)

	// Each page becomes one version 1 record per key, in page order.
	s := openTestState(t, dir)
	var keys [][]byte
	var recs []*outRecord
	if err := s.Outbox(func(k, v []byte) error {
		if v[0] != outboxPageVersion {
			t.Fatalf("outbox value of version %d, want a page", v[0])
		}
		rs, err := decodeOutValue(v)
		if err != nil {
			return err
		}
		keys, recs = append(keys, slices.Clone(k)), append(recs, rs...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	offers := 0
	for _, r := range recs {
		if r.Stream == "KAIROS_OFFERS" {
			offers++
		}
	}
	if offers != 1 || len(recs) < 2 {
		t.Fatalf("outbox holds %d records, %d offers; want the offer and its decision", len(recs), offers)
	}
	b := s.NewBatch()
	for _, k := range keys {
		b.DeleteOutbox(k)
	}
	for i, r := range recs {
		b.AddOutbox(outboxKey(nil, 1, i), appendOutRecord(nil, r))
	}
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	te = startTestEngine(t, dir, nil)
	got := te.offers(t)
	if len(got) != 1 || got[0].CustomerID != "C1" {
		t.Fatalf("after the restart: %d offers %+v, want C1's", len(got), got)
	}
	n := 0
	if err := te.e.store.Outbox(func(_, _ []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d outbox keys left after the recovery", n)
	}
}

// TestOutboxPagesSplit: a batch whose records exceed maxPageBody takes
// more than one page, in record order, and the next start publishes them
// all.
func TestOutboxPagesSplit(t *testing.T) {
	defer func(n int) { maxPageBody = n }(maxPageBody)
	maxPageBody = 1 // a page per record
	dir := t.TempDir()
	te, _ := unpublishedOffer(t, dir)
	te.stop(t)

	s := openTestState(t, dir)
	var kinds []string
	if err := s.Outbox(func(_, v []byte) error {
		rs, err := decodeOutValue(v)
		if err != nil {
			return err
		}
		if len(rs) != 1 {
			t.Errorf("a page of %d records, want 1", len(rs))
		}
		for _, r := range rs {
			kinds = append(kinds, r.Stream)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The offer, then its decision: the order the batch made them in.
	if len(kinds) != 2 || kinds[0] != "KAIROS_OFFERS" || kinds[1] != "KAIROS_DECISIONS" {
		t.Fatalf("outbox pages hold %v, want the offer's then the decision's", kinds)
	}

	te = startTestEngine(t, dir, nil)
	if got := te.offers(t); len(got) != 1 || got[0].CustomerID != "C1" {
		t.Fatalf("after the restart: %d offers %+v, want C1's", len(got), got)
	}
}

// unpublishedOffer starts an engine in dir whose offers stream is gone and
// sends it C1's first login: the batch with the offer is committed but
// cannot be published. It returns the engine, still running, and the
// login's sequence.
func unpublishedOffer(t *testing.T, dir string) (*testEngine, uint64) {
	t.Helper()
	te := startTestEngine(t, dir, nil)
	if err := te.js.DeleteStream(context.Background(), "KAIROS_OFFERS"); err != nil {
		t.Fatal(err)
	}
	seq := te.firstLogin(t, "C1", time.Now().UnixMilli())
	waitFor(t, "a failed publish", func() bool { return testutil.ToFloat64(te.e.metrics.PublishRetries) > 0 })
	return te, seq
}

// openTestState opens the state of a stopped test engine in dir; the test
// closes it.
func openTestState(t *testing.T, dir string) *state.Store {
	t.Helper()
	s, err := state.Open(state.Options{Dir: filepath.Join(dir, "data", "state"), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

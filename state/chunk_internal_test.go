package state

import (
	"testing"
	"time"
)

const t0 = int64(1_700_000_000_000)

// openAlice opens a store (closed when the test ends) with a 30-day
// count of views, and loads its customer alice.
func openAlice(t *testing.T) (*Store, *Plan, *Customer) {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p, err := NewPlan([]AggSpec{{Kind: Count, Type: "view", Window: 30 * 24 * time.Hour}}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Shard(0).Load("alice")
	if err != nil {
		t.Fatal(err)
	}
	return s, p, c
}

// TestChunkNearExpiryReseals: a chunk in its last day is written again
// with the others, so an active customer keeps entries its TTL would take.
func TestChunkNearExpiryReseals(t *testing.T) {
	s, p, c := openAlice(t)
	b := s.NewBatch()
	for i := range 40 {
		c.Apply(p, "view", t0+int64(i)*1000, nil)
	}
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if len(c.chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(c.chunks))
	}
	c.chunks[0].expires = uint64(time.Now().Add(time.Hour).Unix()) // as if written a month ago
	c.Apply(p, "view", t0+40_000, nil)
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if len(c.chunks) != 1 || c.chunks[0].expires < uint64(time.Now().Add(30*24*time.Hour).Unix()) {
		t.Fatalf("chunks %+v, want one new chunk with a fresh expiry", c.chunks)
	}
	s.Invalidate("alice")
	c, err := s.Shard(0).Load("alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Value(p, 0, t0+40_000); got != 41 {
		t.Errorf("count %v after the reseal, want 41", got)
	}
}

// TestChunkNumbersStartOverBeforeWrapping: a base written past 2^31 is
// chunk 0, and the customer loads.
func TestChunkNumbersStartOverBeforeWrapping(t *testing.T) {
	s, p, c := openAlice(t)
	c.nextChunk = 1<<32 - 1
	b := s.NewBatch()
	for i := range 40 {
		c.Apply(p, "view", t0+int64(i)*1000, nil)
	}
	b.Put(c)
	if err := s.Commit(b); err != nil {
		t.Fatal(err)
	}
	if len(c.chunks) != 1 || c.chunks[0].seq != 0 || !c.chunks[0].base || c.nextChunk != 1 {
		t.Fatalf("chunks %+v, next %d: want base chunk 0, next 1", c.chunks, c.nextChunk)
	}
	s.Invalidate("alice")
	c, err := s.Shard(0).Load("alice")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Value(p, 0, t0+39_000); got != 40 {
		t.Errorf("count %v, want 40", got)
	}
}

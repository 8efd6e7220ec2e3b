package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Chunks: so that an event writes what it adds and not its customer's
// whole history, Put seals the entries of a window record into chunks,
// keys of their own written once. See doc.go ("Chunks").
const (
	// sealEntries is how many entries the window record holds (over
	// all series) before Put seals them into a chunk.
	sealEntries = 32
	// maxSmallChunks is how many chunks besides the base one a customer
	// has before Put rewrites all its sealed entries into a new base.
	maxSmallChunks = 8
)

// prefixChunk is the prefix of chunk keys: w/<id>, NUL, big-endian
// uint32 sequence number.
const prefixChunk = "w/"

// chunkRef is a chunk as its window record lists it.
type chunkRef struct {
	seq     uint32
	expires uint64 // Badger ExpiresAt, Unix seconds
	base    bool   // holds all the entries sealed before it
}

// appendChunkKey appends the key of chunk seq of the customer.
func appendChunkKey(dst []byte, customerID string, seq uint32) []byte {
	dst = append(append(dst, prefixChunk...), customerID...)
	dst = append(dst, 0)
	return binary.BigEndian.AppendUint32(dst, seq)
}

// unsealed returns how many entries of c no chunk holds.
func (c *Customer) unsealed() int {
	n := 0
	for i := range c.series {
		s := &c.series[i]
		n += s.len() - s.sealed
	}
	return n
}

// sealAll marks every live entry sealed.
func (c *Customer) sealAll() {
	for i := range c.series {
		s := &c.series[i]
		s.sealed = s.len()
	}
}

// putWindow adds the writes of c's windows, without Options.Replicate:
// its window record, and when it holds sealEntries entries or more, a
// chunk of them. When the customer has maxSmallChunks chunks besides the
// base, the new chunk is a base holding every live entry and the others
// are deleted. Every chunk key that exists is listed by its customer's
// window record, so that DropCustomers and the next Put find it.
//
// Chunk writes are not dropped by a later Put of the customer in the same
// batch: that Put's window record lists them.
func (b *Batch) putWindow(c *Customer, slot int, now time.Time) {
	exp := windowExpiry(c, now)
	// A chunk's TTL runs from when it was written. Entries are evicted by
	// event time, so an active customer can still have entries of a chunk
	// about to expire (events that lag the clock): in its last day, all
	// are written again.
	soon := uint64(now.Add(ttlSlack).Unix())
	for _, r := range c.chunks {
		if r.expires <= soon {
			c.reseal = true
		}
	}
	if c.reseal || !c.hasEntries() {
		b.deleteChunks(c)
		for i := range c.series {
			c.series[i].sealed = 0
		}
		c.reseal = false
	}
	if c.unsealed() >= sealEntries {
		small := 0
		for _, r := range c.chunks {
			if !r.base {
				small++
			}
		}
		base := small >= maxSmallChunks
		if base {
			b.deleteChunks(c)
		}
		base = base || len(c.chunks) == 0 // it holds all that is sealed
		o := op{kind: opSet, customerSlot: -1, expires: exp}
		o.k0 = len(b.arena)
		b.arena = appendChunkKey(b.arena, c.id, c.nextChunk)
		o.k1, o.v0 = len(b.arena), len(b.arena)
		b.arena = append(b.arena, windowVersion)
		b.arena = appendSeries(b.arena, c, !base)
		o.v1 = len(b.arena)
		b.ops = append(b.ops, o)
		c.chunks = append(c.chunks, chunkRef{seq: c.nextChunk, expires: exp, base: base})
		c.nextChunk++
		c.sealAll()
	}

	o := op{kind: opSet, customerSlot: slot}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixCustomer...), c.id...)
	o.k1, o.v0 = len(b.arena), len(b.arena)
	if len(c.chunks) == 0 {
		b.arena = appendWindow(b.arena, c)
	} else {
		b.arena = appendWindowHead(b.arena, c)
		for _, r := range c.chunks {
			exp = max(exp, r.expires) // the record outlives its chunks
		}
	}
	o.v1 = len(b.arena)
	o.expires = exp
	c.windowExpires, c.storedWindow = exp, true
	b.ops = append(b.ops, o)
}

// deleteChunks adds the deletion of every chunk of c and forgets them.
func (b *Batch) deleteChunks(c *Customer) {
	for _, r := range c.chunks {
		o := op{kind: opDelete, customerSlot: -1}
		o.k0 = len(b.arena)
		b.arena = appendChunkKey(b.arena, c.id, r.seq)
		o.k1, o.v0, o.v1 = len(b.arena), len(b.arena), len(b.arena)
		b.ops = append(b.ops, o)
	}
	clear(c.chunks)
	c.chunks = c.chunks[:0]
}

// readChunks reads the chunks c's window record lists, after
// decodeWindow, and puts their entries before the record's own. A chunk
// Badger has collected (its expiry passed) is left out of the list.
func readChunks(txn *badger.Txn, c *Customer, key []byte, in *interner) ([]byte, error) {
	if len(c.chunks) == 0 {
		return key, nil
	}
	c.beginChunks()
	live := c.chunks[:0]
	for _, r := range c.chunks {
		key = appendChunkKey(key[:0], c.id, r.seq)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err == nil {
			err = item.Value(func(v []byte) error { return decodeSeries(c, v, in, true) })
		}
		if err != nil {
			return key, fmt.Errorf("state: load chunk %d of %q: %w", r.seq, c.id, err)
		}
		live = append(live, r)
	}
	clear(c.chunks[len(live):])
	c.chunks = live
	if err := c.orderChunks(); err != nil {
		return key, fmt.Errorf("state: load %q: %w", c.id, err)
	}
	return key, nil
}

// beginChunks prepares c, just decoded, for the entries of its chunks:
// until orderChunks, sealed holds how many entries each series has from
// the window record.
func (c *Customer) beginChunks() {
	for i := range c.series {
		c.series[i].sealed = len(c.series[i].ts)
	}
}

// orderChunks puts the entries of the chunks, decoded after the window
// record's, before them, checks that every series is in time order, and
// keeps at most maxEntries of each.
func (c *Customer) orderChunks() error {
	for i := range c.series {
		s := &c.series[i]
		own := s.sealed
		rotate(s.ts, own)
		switch s.kind {
		case kindNumber:
			rotate(s.num, own)
		case kindHash:
			rotate(s.hash, own)
		}
		s.sealed = len(s.ts) - own
		for j := 1; j < len(s.ts); j++ {
			if s.ts[j] < s.ts[j-1] {
				return corruptf("chunks out of time order")
			}
		}
		// Chunks keep the entries the cap dropped since they were
		// written: drop them again.
		if over := s.len() - c.maxEntries; c.maxEntries > 0 && over > 0 {
			s.drop(over)
		}
	}
	return nil
}

// rotate moves the first k elements of x to its end.
func rotate[T any](x []T, k int) {
	if k == 0 || k == len(x) {
		return
	}
	slices.Reverse(x[:k])
	slices.Reverse(x[k:])
	slices.Reverse(x)
}

// fullWindow returns the window record, v2, holding every entry of the
// customer whose stored record, read in txn, is v: v itself when it lists
// no chunks.
func fullWindow(txn *badger.Txn, customerID string, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != windowHeadVersion {
		return v, nil
	}
	c := &Customer{id: customerID}
	if err := decodeWindow(c, v, nil); err != nil {
		return nil, err
	}
	if _, err := readChunks(txn, c, nil, nil); err != nil {
		return nil, err
	}
	return appendWindow(nil, c), nil
}

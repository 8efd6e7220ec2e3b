package state

import (
	"encoding/binary"
	"errors"
	"fmt"
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
		if base && c.nextChunk >= 1<<31 {
			// No chunk key is left (those deleted above go first in
			// the transaction), so numbering may start over before it
			// wraps. Only then: a key written again has versions in
			// several LSM levels, and Badger's Get reads every level
			// holding one (loads took 25% longer when every base was
			// chunk 0).
			c.nextChunk = 0
		}
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

// readWindow decodes v, the stored window record of c, into c: with the
// chunks it lists read in txn, their entries first and in order, then the
// record's own. A chunk Badger has collected (its expiry passed) is left
// out of the list. key is scratch. It never panics; on error c's series
// and chunks are left empty.
func readWindow(txn *badger.Txn, c *Customer, v, key []byte, in *interner) ([]byte, error) {
	err := decodeWindowChunks(c, v, in, func(r chunkRef, decode func([]byte) error) (bool, error) {
		key = appendChunkKey(key[:0], c.id, r.seq)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return false, nil
		}
		if err == nil {
			err = item.Value(decode)
		}
		if err != nil {
			return false, fmt.Errorf("chunk %d: %w", r.seq, err)
		}
		return true, nil
	})
	return key, err
}

// decodeWindowChunks is readWindow with the chunks from get, which calls
// decode with the chunk's value and tells whether it was found.
func decodeWindowChunks(c *Customer, v []byte, in *interner, get func(r chunkRef, decode func([]byte) error) (bool, error)) error {
	d := decoder{b: v}
	if version := d.byte("version"); d.err != nil || version != windowHeadVersion {
		return decodeWindow(c, v, in)
	}
	c.clearWindow()
	err := decodeChunkList(c, &d)
	live := c.chunks[:0]
	for _, r := range c.chunks {
		if err != nil {
			break
		}
		var found bool
		found, err = get(r, func(b []byte) error { return decodeChunk(c, b, in) })
		if found && err == nil {
			live = append(live, r)
		}
	}
	if err == nil {
		clear(c.chunks[len(live):])
		c.chunks = live
		// The entries so far are the chunks'; the record's own come after.
		for i := range c.series {
			c.series[i].sealed = len(c.series[i].ts)
		}
		err = decodeSeries(c, &d, windowVersion, in, true)
	}
	if err == nil {
		err = c.checkChunked()
	}
	if err != nil {
		c.clearWindow()
	}
	return err
}

// checkChunked checks that every series of c, its chunks' entries and its
// record's read one after the other, is in time order, and keeps at most
// maxEntries of each.
func (c *Customer) checkChunked() error {
	for i := range c.series {
		s := &c.series[i]
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

// fullWindow returns the window record, v2, holding every entry of the
// customer whose stored record, read in txn, is v: v itself when it lists
// no chunks.
func fullWindow(txn *badger.Txn, customerID string, v []byte) ([]byte, error) {
	if len(v) == 0 || v[0] != windowHeadVersion {
		return v, nil
	}
	c := &Customer{id: customerID}
	if _, err := readWindow(txn, c, v, nil, nil); err != nil {
		return nil, err
	}
	return appendWindow(nil, c), nil
}

package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// ttlSlack is added to the longest retention for the Badger TTL of window
// records: the TTL only collects customers that went quiet, window
// membership is decided by event time.
const ttlSlack = 24 * time.Hour

type opKind uint8

const (
	opSkip opKind = iota // superseded by a later Put of the same customer
	opSet
	opDelete
)

// op is one key write; key and value are offsets into the arena.
type op struct {
	kind         opKind
	k0, k1       int
	v0, v1       int
	expires      uint64 // Badger ExpiresAt, Unix seconds; 0 for none
	customerSlot int    // index in puts, or -1
}

type put struct {
	c   *Customer
	gen uint64
	id  string
	// Under Options.Replicate: the ops of the c/, p/ and k/ records, and
	// the expiry of the window record, for Records.
	win, prof, pol int
	expires        uint64
}

// Batch collects the writes of one atomic Commit: customer records, the
// due index, counters, outbox entries and their deletion, and the applied
// watermark. Encoded keys and values live in an arena reused across
// batches. A Batch is used by one goroutine; Reset it after Commit.
type Batch struct {
	s          *Store
	arena      []byte
	ops        []op
	puts       []put
	ids        []string
	slot       map[string]int // customer id -> index in puts
	applied    Watermark
	hasApplied bool

	enc     *msgpack.Encoder
	entries []badger.Entry
	strs    strTable // policy record string table

	rec []byte // Records scratch
	// err, when set by Put, fails Commit: under Options.Replicate a
	// customer's record could not be made exact.
	err error
}

// NewBatch returns an empty, reusable batch.
func (s *Store) NewBatch() *Batch {
	b := &Batch{s: s, slot: make(map[string]int)}
	b.enc = msgpack.NewEncoder(arenaWriter{b})
	b.enc.UseCompactInts(true)
	b.enc.SetSortMapKeys(true)
	return b
}

// arenaWriter appends to the batch arena.
type arenaWriter struct{ b *Batch }

func (w arenaWriter) Write(p []byte) (int, error) {
	w.b.arena = append(w.b.arena, p...)
	return len(p), nil
}

func (w arenaWriter) WriteByte(c byte) error {
	w.b.arena = append(w.b.arena, c)
	return nil
}

// Put encodes c now: its window record under c/<id> when the windows
// changed, its profile under p/<id> when the profile changed (an empty
// profile deletes the key), and its policy record under k/<id> when the
// policy changed (an empty one deletes the key), together with the due
// index keys q/... of the deferred offers added and removed since the last
// Commit. It is a no-op when c is not dirty. Put again after further
// changes; the last Put of a customer wins. Commit clears the dirty flags.
//
// Under Options.Replicate, Put writes all three records of a dirty
// customer, changed or not (see putAll), so that Records can give its
// whole committed state.
func (b *Batch) Put(c *Customer) {
	if !c.Dirty() {
		return
	}
	slot, again := b.slot[c.id]
	if again {
		for i := range b.ops {
			if b.ops[i].customerSlot == slot {
				b.ops[i].kind = opSkip
			}
		}
		b.puts[slot] = put{c: c, gen: c.gen, id: c.id}
	} else {
		slot = len(b.puts)
		b.slot[c.id] = slot
		b.puts = append(b.puts, put{c: c, gen: c.gen, id: c.id})
		b.ids = append(b.ids, c.id)
	}
	if b.s.opts.Replicate {
		if again {
			// The ops of the first Put, which set the flags, are
			// dropped: assume the keys exist.
			c.storedWindow, c.storedProfile, c.storedPolicy = true, true, true
		}
		b.putAll(c, slot)
		return
	}
	if c.windowDirty {
		b.putWindow(c, slot, time.Now())
	}
	if c.profileDirty {
		o := op{kind: opSet, customerSlot: slot}
		o.k0 = len(b.arena)
		b.arena = append(append(b.arena, prefixProfile...), c.id...)
		o.k1 = len(b.arena)
		o.v0 = o.k1
		if len(c.profile) == 0 {
			o.kind = opDelete
		} else if err := b.enc.Encode(c.profile); err != nil {
			// Only values msgpack cannot encode (channels, funcs) get
			// here; drop what was written and keep the stored profile.
			b.s.log.Error("profile not encodable; keeping the stored profile", "customer", c.id, "err", err)
			b.arena = b.arena[:o.k0]
			o.kind = opSkip
		}
		if o.kind != opSkip {
			o.v1 = len(b.arena)
			c.storedProfile = o.kind == opSet
			b.ops = append(b.ops, o)
		}
	}
	if c.policyDirty {
		b.putPolicy(c, slot)
	}
}

// windowExpiry returns the Badger expiry of a window record of c written
// at now: the longest retention of its plan plus ttlSlack.
func windowExpiry(c *Customer, now time.Time) uint64 {
	var retention int64
	if c.plan != nil {
		retention = c.plan.maxRetention
	}
	return uint64(now.Add(time.Duration(retention)*time.Millisecond + ttlSlack).Unix())
}

// putAll writes, under Options.Replicate, all three records of c whatever
// is dirty, so that the stored records are exactly those Records gives.
//
// The window record keeps its stored expiry unless the windows changed
// (then it gets a new one, as without the option), and is deleted when
// no series has an entry or its expiry has passed. The profile and policy
// records are written as Put writes them when dirty. A profile msgpack
// cannot encode is replaced by the stored one, read back from Badger; if
// that read fails, Commit fails. A key known to be absent is not deleted
// again.
func (b *Batch) putAll(c *Customer, slot int) {
	now := time.Now()
	p := &b.puts[slot]
	// The record holds every entry: the chunks of a store used without
	// the option go.
	b.deleteChunks(c)
	for i := range c.series {
		c.series[i].sealed = 0
	}
	c.reseal = false

	o := op{kind: opSet, customerSlot: slot}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixCustomer...), c.id...)
	o.k1, o.v0 = len(b.arena), len(b.arena)
	if c.windowDirty || c.windowExpires == 0 {
		c.windowExpires = windowExpiry(c, now)
	}
	if !c.hasEntries() || c.windowExpires <= uint64(now.Unix()) {
		o.kind = opDelete
		c.windowExpires = 0
	} else {
		b.arena = appendWindow(b.arena, c)
		o.expires = c.windowExpires
	}
	o.v1 = len(b.arena)
	p.win, p.expires = b.addRecordOp(o, &c.storedWindow), o.expires

	o = op{kind: opSet, customerSlot: slot}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixProfile...), c.id...)
	o.k1, o.v0 = len(b.arena), len(b.arena)
	if len(c.profile) == 0 {
		o.kind = opDelete
	} else if err := b.enc.Encode(c.profile); err != nil {
		b.arena = b.arena[:o.v0]
		b.s.log.Error("profile not encodable; keeping the stored profile", "customer", c.id, "err", err)
		found, rerr := b.appendStored(b.arena[o.k0:o.k1])
		switch {
		case rerr != nil:
			b.err = fmt.Errorf("state: customer %q: read the stored profile: %w", c.id, rerr)
		case !found:
			o.kind = opDelete
		}
	}
	o.v1 = len(b.arena)
	p.prof = b.addRecordOp(o, &c.storedProfile)

	b.putPolicy(c, slot)
}

// addRecordOp adds o, the write of a c/, p/ or k/ record whose key exists
// when *stored, and returns its index; a deletion of an absent key is
// dropped (its bytes too), and the index is then -1.
func (b *Batch) addRecordOp(o op, stored *bool) int {
	if o.kind == opDelete && !*stored {
		b.arena = b.arena[:o.k0]
		return -1
	}
	*stored = o.kind == opSet
	b.ops = append(b.ops, o)
	return len(b.ops) - 1
}

// appendStored appends the stored value of key to the arena.
func (b *Batch) appendStored(key []byte) (found bool, err error) {
	err = b.s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return item.Value(func(v []byte) error {
			b.arena = append(b.arena, v...)
			return nil
		})
	})
	return found, err
}

// putPolicy writes the policy record of c and the due index difference
// between c.due (committed) and the current deferred offers. Under
// Options.Replicate the deletion of an absent record is dropped, and
// b.puts[slot].pol is the index of the op or -1.
func (b *Batch) putPolicy(c *Customer, slot int) {
	o := op{kind: opSet, customerSlot: slot}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixPolicy...), c.id...)
	o.k1 = len(b.arena)
	o.v0 = o.k1
	if c.pol.empty() {
		o.kind = opDelete
	} else {
		b.arena = appendPolicy(b.arena, &c.pol, &b.strs)
	}
	o.v1 = len(b.arena)
	if b.s.opts.Replicate {
		b.puts[slot].pol = b.addRecordOp(o, &c.storedPolicy)
	} else {
		c.storedPolicy = o.kind == opSet
		b.ops = append(b.ops, o)
	}

	c.duePut = dueRefs(c.duePut, c.pol.deferred)
	c.duePending = true
	if strings.IndexByte(c.id, 0) >= 0 {
		// The key could not be split back; such a customer has no due
		// index entries, and every deletion below would be a no-op.
		if len(c.duePut) > 0 {
			b.s.log.Error("customer id contains a NUL byte; its deferred offers are not indexed", "customer", c.id)
		}
		c.duePut = c.duePut[:0]
		return
	}
	// Merge the two sorted lists.
	old, cur := c.due, c.duePut
	for len(old) > 0 || len(cur) > 0 {
		switch {
		case len(cur) == 0 || len(old) > 0 && cmpDueRef(old[0], cur[0]) < 0:
			b.dueOp(opDelete, c.id, old[0], slot)
			old = old[1:]
		case len(old) == 0 || cmpDueRef(old[0], cur[0]) > 0:
			b.dueOp(opSet, c.id, cur[0], slot)
			cur = cur[1:]
		default:
			old, cur = old[1:], cur[1:]
		}
	}
}

func (b *Batch) dueOp(kind opKind, customerID string, r dueRef, slot int) {
	o := op{kind: kind, customerSlot: slot}
	o.k0 = len(b.arena)
	b.arena = appendDueKey(b.arena, r.release, customerID, r.id)
	o.k1 = len(b.arena)
	o.v0, o.v1 = o.k1, o.k1
	b.ops = append(b.ops, o)
}

func cmpDueRef(a, b dueRef) int {
	switch {
	case a.release < b.release:
		return -1
	case a.release > b.release:
		return 1
	}
	return strings.Compare(a.id, b.id)
}

// SetCounter writes v under n/<name> (8-byte big-endian); v == 0 deletes
// the key. The last SetCounter of a name in a batch wins.
func (b *Batch) SetCounter(name string, v int64) {
	o := op{kind: opSet, customerSlot: -1}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixCounter...), name...)
	o.k1 = len(b.arena)
	o.v0 = o.k1
	if v == 0 {
		o.kind = opDelete
	} else {
		b.arena = binary.BigEndian.AppendUint64(b.arena, uint64(v))
	}
	o.v1 = len(b.arena)
	b.ops = append(b.ops, o)
}

// AddOutbox writes value under o/<key>. Both are copied.
func (b *Batch) AddOutbox(key, value []byte) {
	o := op{kind: opSet, customerSlot: -1}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixOutbox...), key...)
	o.k1 = len(b.arena)
	o.v0 = o.k1
	b.arena = append(b.arena, value...)
	o.v1 = len(b.arena)
	b.ops = append(b.ops, o)
}

// DeleteOutbox deletes o/<key>. The key is copied.
func (b *Batch) DeleteOutbox(key []byte) {
	o := op{kind: opDelete, customerSlot: -1}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixOutbox...), key...)
	o.k1 = len(b.arena)
	o.v0, o.v1 = o.k1, o.k1
	b.ops = append(b.ops, o)
}

// SetWatermark stores, in the batch, the watermark of another stream
// than the main one, under m/applied/<name>.
func (b *Batch) SetWatermark(name string, w Watermark) {
	o := op{kind: opSet, customerSlot: -1}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, keyApplied+"/"...), name...)
	o.k1 = len(b.arena)
	o.v0 = o.k1
	b.arena = appendWatermark(b.arena, w)
	o.v1 = len(b.arena)
	b.ops = append(b.ops, o)
}

// MarkSeen stores a marker under s/<key> that expires after ttl (never
// when ttl <= 0): an event id already applied, so that a re-sent batch
// event is skipped even after the stream's duplicate window
// (Store.Seen). The TTL only collects the marker.
func (b *Batch) MarkSeen(key string, ttl time.Duration) {
	var expires uint64
	if ttl > 0 {
		expires = uint64(time.Now().Add(ttl).Unix())
	}
	b.markSeen(key, expires)
}

// MarkSeenUntil stores a marker under s/<key>, like MarkSeen, that
// expires at expiresAt (rounded up to the second, Badger's resolution):
// to restore a marker of another store with its remaining lifetime
// (Store.ScanSeen). An expiresAt not after now writes nothing.
func (b *Batch) MarkSeenUntil(key string, expiresAt time.Time) {
	if !expiresAt.After(time.Now()) {
		return
	}
	secs := expiresAt.Unix()
	if expiresAt.Nanosecond() > 0 {
		secs++
	}
	b.markSeen(key, uint64(secs))
}

func (b *Batch) markSeen(key string, expires uint64) {
	o := op{kind: opSet, customerSlot: -1, expires: expires}
	o.k0 = len(b.arena)
	b.arena = append(append(b.arena, prefixSeen...), key...)
	o.k1 = len(b.arena)
	o.v0, o.v1 = o.k1, o.k1
	b.ops = append(b.ops, o)
}

// SetApplied sets the watermark Commit stores under m/applied.
func (b *Batch) SetApplied(w Watermark) {
	b.applied = w
	b.hasApplied = true
}

// Customers returns the ids of the customers Put in this batch, for
// Invalidate after a failed Commit. The slice is reused by Reset.
func (b *Batch) Customers() []string { return b.ids }

// Len returns the number of key writes and deletions pending, the
// watermark not counted.
func (b *Batch) Len() int {
	n := 0
	for i := range b.ops {
		if b.ops[i].kind != opSkip {
			n++
		}
	}
	return n
}

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.arena = b.arena[:0]
	b.ops = b.ops[:0]
	clear(b.puts)
	b.puts = b.puts[:0]
	clear(b.ids)
	b.ids = b.ids[:0]
	clear(b.slot)
	b.applied, b.hasApplied = Watermark{}, false
	clear(b.entries)
	b.err = nil
}

// Commit writes the batch in one Badger read-write transaction: all of it
// or nothing. On success the dirty flags of the Put customers are cleared
// (unless they changed after Put) and they stay cached. On failure nothing
// was written and the caller calls Invalidate(b.Customers()...). A batch
// that does not fit one transaction fails with ErrBatchTooBig. Commit runs
// while no Shard is in use.
func (s *Store) Commit(b *Batch) error {
	if s.closed.Load() {
		return ErrClosed
	}
	if b.err != nil {
		return b.err
	}
	start := time.Now()
	err := s.commit(b)
	if err != nil {
		return err
	}
	for i := range b.puts {
		p := &b.puts[i]
		if p.c.id != p.id {
			continue
		}
		if p.c.gen == p.gen {
			p.c.windowDirty, p.c.profileDirty, p.c.policyDirty = false, false, false
		}
		if p.c.duePending {
			// The index now holds what Put wrote, whatever changed since.
			p.c.due, p.c.duePut = p.c.duePut, p.c.due[:0]
			p.c.duePending = false
		}
	}
	for _, sh := range s.shards {
		sh.settle()
	}
	if s.metrics != nil {
		s.metrics.commitDuration.Observe(time.Since(start).Seconds())
		s.metrics.commitBytes.Observe(float64(len(b.arena)))
		keys := b.Len()
		if b.hasApplied {
			keys++
		}
		s.metrics.commitKeys.Add(float64(keys))
	}
	return nil
}

func (s *Store) commit(b *Batch) error {
	if b.hasApplied {
		o := op{kind: opSet, customerSlot: -1}
		o.k0 = len(b.arena)
		b.arena = append(b.arena, keyApplied...)
		o.k1 = len(b.arena)
		o.v0 = o.k1
		b.arena = appendWatermark(b.arena, b.applied)
		o.v1 = len(b.arena)
		b.ops = append(b.ops, o)
		// Take the watermark op back out afterwards, so that a retried
		// Commit of the same batch does not write it twice.
		defer func() { b.ops = b.ops[:len(b.ops)-1] }()
	}
	if len(b.ops) == 0 {
		return nil
	}
	if cap(b.entries) < len(b.ops) {
		b.entries = make([]badger.Entry, 0, len(b.ops))
	}
	b.entries = b.entries[:0]
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	for i := range b.ops {
		o := &b.ops[i]
		key := b.arena[o.k0:o.k1:o.k1]
		var err error
		switch o.kind {
		case opSkip:
			continue
		case opDelete:
			err = txn.Delete(key)
		case opSet:
			b.entries = append(b.entries, badger.Entry{Key: key, Value: b.arena[o.v0:o.v1:o.v1]})
			e := &b.entries[len(b.entries)-1]
			e.ExpiresAt = o.expires
			err = txn.SetEntry(e)
		}
		if err != nil {
			return s.commitErr(err, b)
		}
	}
	if err := txn.Commit(); err != nil {
		return s.commitErr(err, b)
	}
	return nil
}

func (s *Store) commitErr(err error, b *Batch) error {
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("%w (%d writes, %d bytes): %w", ErrBatchTooBig, b.Len(), len(b.arena), err)
	}
	return fmt.Errorf("state: commit: %w", err)
}

// decodeProfileBytes decodes a stored profile into m.
func decodeProfileBytes(m map[string]any, v []byte) error {
	return decodeProfileInto(msgpack.NewDecoder(bytes.NewReader(v)), m, nil)
}

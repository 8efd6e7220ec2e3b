package state

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"
)

// Shard is a cache of decoded customers with its own LRU. A Shard is used by
// exactly one goroutine at a time: the engine gives each worker one shard and
// routes a customer always to the same shard. Store.Commit and
// Store.Invalidate also touch the shards, so they run while no shard is in
// use.
//
// A dirty customer is never dropped from the cache before it is committed:
// when it reaches the tail of the LRU it is only unlinked (pinned), so that a
// second event for it in the same batch finds the uncommitted state. Commit
// links it back. Customers evicted during a batch are recycled only at the
// next Commit or Invalidate, since the engine may still hold them.
type Shard struct {
	store    *Store
	metrics  *Metrics
	capacity int

	m          map[string]*Customer
	head, tail *Customer // LRU list, head most recent
	n          int       // linked customers

	pinned  []*Customer // dirty customers unlinked by eviction
	retired []*Customer // evicted, recyclable after the batch
	free    []*Customer // recyclable now

	// txn is the read transaction of the batch's cache misses, opened by
	// the first and discarded by settle (see read).
	txn *badger.Txn

	scratch map[uint64]struct{} // Distinct over large windows
	in      interner            // rule ids, channels, ... of policy records
	pv      profileValues       // profile field names and values
	key     []byte
	dec     *msgpack.Decoder
	rd      bytes.Reader
}

func newShard(s *Store, capacity int) *Shard {
	sh := &Shard{
		store:    s,
		metrics:  s.metrics,
		capacity: capacity,
		m:        make(map[string]*Customer, capacity),
	}
	sh.dec = msgpack.NewDecoder(&sh.rd)
	return sh
}

// Load returns the customer, from the cache or else read from Badger (c/<id>,
// p/<id> and k/<id> in one read transaction). An unknown customer is an empty
// Customer, not an error. A cache hit neither allocates nor locks.
func (sh *Shard) Load(customerID string) (*Customer, error) {
	if sh.store.closed.Load() {
		return nil, ErrClosed
	}
	if c, ok := sh.m[customerID]; ok {
		if sh.metrics != nil {
			sh.metrics.cacheHits.Inc()
		}
		if c.linked {
			sh.unlink(c)
		}
		sh.pushFront(c)
		c.resetCurrent()
		sh.trim()
		return c, nil
	}
	if sh.metrics != nil {
		sh.metrics.cacheMisses.Inc()
	}
	c := sh.alloc()
	c.id = customerID
	if err := sh.read(c); err != nil {
		c.reset()
		sh.free = append(sh.free, c)
		return nil, err
	}
	c.cached = true
	sh.m[customerID] = c
	sh.pushFront(c)
	sh.trim()
	return c, nil
}

// read reads c from Badger. The misses of one batch share a read
// transaction: opening one per miss took the oracle's lock and two
// channel operations of its watermark each time. Nothing writes to Badger
// while a shard is in use, so the batch's first miss sees what every
// other would; settle discards it before the next write.
func (sh *Shard) read(c *Customer) error {
	if sh.txn == nil {
		sh.txn = sh.store.db.NewTransaction(false)
	}
	var err error
	sh.key, _, err = readCustomer(sh.txn, c, sh.key, sh)
	return err
}

// endRead discards the batch's read transaction.
func (sh *Shard) endRead() {
	if sh.txn != nil {
		sh.txn.Discard()
		sh.txn = nil
	}
}

// readCustomer reads the records of c.id in txn into the empty c, with key
// as scratch. sh decodes the profile and interns the series' and the
// policy's strings; nil (Snapshot) allocates instead. found tells whether
// any record exists.
func readCustomer(txn *badger.Txn, c *Customer, key []byte, sh *Shard) (_ []byte, found bool, err error) {
	var in *interner
	if sh != nil {
		in = &sh.in
	}
	// The window record and the chunks it lists. (Txn.Get copies the
	// value, so it stays valid while the chunks are read; the key buffer
	// is reused for theirs.)
	key = append(append(key[:0], prefixCustomer...), c.id...)
	item, err := txn.Get(key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		err = nil
	case err == nil:
		found = true
		c.windowExpires, c.storedWindow = item.ExpiresAt(), true
		err = item.Value(func(v []byte) error {
			var err error
			key, err = readWindow(txn, c, v, key, in)
			return err
		})
	}
	if err != nil {
		return key, found, fmt.Errorf("state: load %q: %w", prefixCustomer+c.id, err)
	}
	for _, prefix := range [...]string{prefixProfile, prefixPolicy} {
		key = append(append(key[:0], prefix...), c.id...)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err == nil {
			found = true
			err = item.Value(func(v []byte) error {
				switch prefix {
				case prefixProfile:
					c.storedProfile = true
					if sh == nil {
						return decodeProfileBytes(c.profile, v)
					}
					return sh.decodeProfile(c.profile, v)
				default:
					c.storedPolicy = true
					if err := decodePolicy(&c.pol, v, in); err != nil {
						return err
					}
					c.due = dueRefs(c.due, c.pol.deferred)
					return nil
				}
			})
		}
		if err != nil {
			return key, found, fmt.Errorf("state: load %q: %w", key, err)
		}
	}
	return key, found, nil
}

// decodeProfile decodes a msgpack map with string keys into m.
func (sh *Shard) decodeProfile(m map[string]any, v []byte) error {
	sh.rd.Reset(v)
	sh.dec.Reset(&sh.rd)
	return decodeProfileInto(sh.dec, m, &sh.pv)
}

// decodeProfileInto decodes a msgpack map with string keys into m,
// interning its names and values with pv when not nil.
func decodeProfileInto(dec *msgpack.Decoder, m map[string]any, pv *profileValues) error {
	n, err := dec.DecodeMapLen()
	if err != nil {
		return corruptf("profile: %v", err)
	}
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			return corruptf("profile key: %v", err)
		}
		v, err := dec.DecodeInterfaceLoose()
		if err != nil {
			return corruptf("profile value: %v", err)
		}
		v = signed(v)
		if pv != nil {
			k, v = pv.intern(k, v)
		}
		m[k] = v
	}
	return nil
}

// signed gives profile values back the types events have: integers as
// int64 (uint64 only beyond its range), floats as float64, nested alike.
// The encoder stores integers compactly, and CEL has no arithmetic
// between int and uint, so 200 must read back as the int it was written as.
func signed(v any) any {
	switch t := v.(type) {
	case uint64:
		if t <= math.MaxInt64 {
			return int64(t)
		}
	case int8:
		return int64(t)
	case int16:
		return int64(t)
	case int32:
		return int64(t)
	case uint8:
		return int64(t)
	case uint16:
		return int64(t)
	case uint32:
		return int64(t)
	case float32:
		return float64(t)
	case []any:
		for i, e := range t {
			t[i] = signed(e)
		}
	case map[string]any:
		for k, e := range t {
			t[k] = signed(e)
		}
	}
	return v
}

// alloc returns a recycled or new empty customer of this shard.
func (sh *Shard) alloc() *Customer {
	if n := len(sh.free); n > 0 {
		c := sh.free[n-1]
		sh.free[n-1] = nil
		sh.free = sh.free[:n-1]
		return c
	}
	return &Customer{
		profile:    make(map[string]any),
		shard:      sh,
		maxEntries: sh.store.opts.MaxSeriesEntries,
	}
}

func (sh *Shard) pushFront(c *Customer) {
	c.prev, c.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = c
	} else {
		sh.tail = c
	}
	sh.head = c
	c.linked = true
	sh.n++
}

func (sh *Shard) unlink(c *Customer) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		sh.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		sh.tail = c.prev
	}
	c.prev, c.next = nil, nil
	c.linked = false
	sh.n--
}

// trim evicts from the tail until the list fits the capacity. Dirty
// customers are pinned (unlinked, kept in the map) instead of dropped.
func (sh *Shard) trim() {
	for sh.n > sh.capacity {
		c := sh.tail
		sh.unlink(c)
		if c.Dirty() {
			if !c.pinned {
				c.pinned = true
				sh.pinned = append(sh.pinned, c)
			}
			continue
		}
		delete(sh.m, c.id)
		c.cached = false
		sh.retired = append(sh.retired, c)
		if sh.metrics != nil {
			sh.metrics.cacheEvictions.Inc()
		}
	}
}

// remove drops c from the cache (Invalidate).
func (sh *Shard) remove(c *Customer) {
	if c.linked {
		sh.unlink(c)
	}
	delete(sh.m, c.id)
	c.cached = false
	sh.retired = append(sh.retired, c)
}

// settle runs between batches (Commit, Invalidate): pinned customers that
// are still cached are linked again, the list is trimmed, and customers
// evicted during the batch become reusable.
func (sh *Shard) settle() {
	sh.endRead()
	for i, c := range sh.pinned {
		sh.pinned[i] = nil
		c.pinned = false
		if c.cached && !c.linked {
			sh.pushFront(c)
		}
	}
	sh.pinned = sh.pinned[:0]
	sh.trim()
	for i, c := range sh.retired {
		sh.retired[i] = nil
		if c.pinned || c.cached || c.Dirty() {
			continue // still referenced by the cache, or changed after eviction
		}
		if len(sh.free) < sh.capacity {
			c.reset()
			sh.free = append(sh.free, c)
		}
	}
	sh.retired = sh.retired[:0]
}

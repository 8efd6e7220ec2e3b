package state

import (
	"bytes"
	"context"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
)

// presence is a Bloom filter of the customers that may have a window
// record (c/) or a policy record (k/). A cache miss of a customer it has
// never seen reads only the profile (p/): the two other Gets would find
// nothing, and in a large store an absent key still costs a search of
// every memtable and a filter check of every level-0 table and level.
// With millions of customers most misses are customers the engine meets
// for the first time, which have a profile and nothing else.
//
// The filter may say yes for a customer without records (a false positive
// costs the two Gets, as without it) but never no for one with a record:
// every write of a c/ or k/ key adds its customer after the write
// committed (Store.commit, replicaWriter.commit, WriteRaw in tests), and
// Open fills the filter from a scan of the keys. Deletions and expiries
// leave their customers in, which is safe.
//
// Open starts the scan in the background: until it ends, reads consult
// Badger as without the filter. Customers added while a scan runs are
// kept in pending and put into the new filter when it is swapped in, so a
// write the scan's snapshot misses is not lost (add runs after its
// commit: either the scan began after the commit and sees it, or pending
// holds it). When the customers added outgrow the filter's size (16 bits
// each), a scan builds one twice as large in the background while the old
// one keeps answering. The scan keeps no list of the keys: it sizes the
// filter from Badger's table key counts and fills it as it reads.
type presence struct {
	seed maphash.Seed
	f    atomic.Pointer[bloom] // nil until the first scan ends

	building atomic.Bool // a scan runs: add also appends to pending
	mu       sync.Mutex
	pending  []uint64
	grow     chan struct{} // wakes the scanner to rebuild (buffered 1)
	counted  int64         // keys the last scan read, and its pending (scanner only)

	// testScanRead and testScanDone, when set, are called by a scan
	// after it read the keys of its snapshot and after it swapped its
	// filter in (tests).
	testScanRead, testScanDone func()
}

// bloom is a blocked Bloom filter: each customer sets 4 bits of one
// 64-bit word, so a lookup reads one cache line.
type bloom struct {
	words []atomic.Uint64
	mask  uint64 // len(words)-1, a power of two minus one
	n     atomic.Int64
	limit int64 // customers at 16 bits each
}

const (
	presenceMinWords  = 1 << 14 // 128 KiB: 65,536 customers at 16 bits each
	presenceBitsPerID = 16
)

func newBloom(customers int64) *bloom {
	words := uint64(presenceMinWords)
	if need := uint64(customers) * presenceBitsPerID / 64; need > words {
		words = 1 << bits.Len64(need-1)
	}
	return &bloom{words: make([]atomic.Uint64, words), mask: words - 1, limit: int64(words * 64 / presenceBitsPerID)}
}

// word returns the word index of h and its 4 bits.
func (b *bloom) word(h uint64) (uint64, uint64) {
	m := uint64(1)<<(h>>40&63) | uint64(1)<<(h>>46&63) | uint64(1)<<(h>>52&63) | uint64(1)<<(h>>58&63)
	return h & b.mask, m
}

// add sets h's bits and tells whether the customer was new to the filter.
func (b *bloom) add(h uint64) bool {
	i, m := b.word(h)
	if b.words[i].Load()&m == m {
		return false
	}
	b.words[i].Or(m)
	return b.n.Add(1) > b.limit
}

func (b *bloom) has(h uint64) bool {
	i, m := b.word(h)
	return b.words[i].Load()&m == m
}

func newPresence() *presence {
	return &presence{seed: maphash.MakeSeed(), grow: make(chan struct{}, 1)}
}

func (p *presence) hash(id []byte) uint64 { return maphash.Bytes(p.seed, id) }

func (p *presence) hashString(id string) uint64 { return maphash.String(p.seed, id) }

// mayHave tells whether customerID may have a c/ or k/ record: true until
// the first scan ended, then false only for customers that have none.
func (p *presence) mayHave(customerID string) bool {
	f := p.f.Load()
	return f == nil || f.has(p.hashString(customerID))
}

// add records that the customer of hash h (hash, hashString) may have a
// c/ or k/ record. It runs after the write committed.
func (p *presence) add(h uint64) {
	if p.building.Load() {
		p.mu.Lock()
		if p.building.Load() {
			// The scan's snapshot may predate the write: the next
			// filter gets h from pending, the current one now.
			p.pending = append(p.pending, h)
			p.mu.Unlock()
			p.addTo(p.f.Load(), h)
			return
		}
		p.mu.Unlock()
	}
	// No scan ran when the write committed, or the next filter is in
	// place: a scan starting now sees the write.
	p.addTo(p.f.Load(), h)
}

func (p *presence) addTo(f *bloom, h uint64) {
	if f != nil && f.add(h) {
		select {
		case p.grow <- struct{}{}:
		default:
		}
	}
}

// run builds the filter from a scan of db, then rebuilds it twice as
// large whenever it fills, until ctx ends. A failed scan leaves the
// current filter (or none: every read consults Badger) and is retried at
// the next growth signal.
func (p *presence) run(ctx context.Context, db *badger.DB, onErr func(error)) {
	for {
		if err := p.scan(ctx, db); err != nil && ctx.Err() == nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.grow:
		}
	}
}

// scan builds a filter from the keys of a snapshot and puts it in use.
// The filter is sized before the scan, from the key counts of Badger's
// tables that may hold c/ or k/ keys (or twice the current filter when
// larger), and filled as the keys are read: no list of the keys is kept,
// so a rebuild at millions of customers needs no memory beyond the two
// filters. A filter the scan overfills (the memtables' keys are not
// counted) asks at once for the next, sized from the keys it read.
func (p *presence) scan(ctx context.Context, db *badger.DB) error {
	size := max(tableKeys(db), 2*p.counted)
	if old := p.f.Load(); old != nil {
		size = max(size, 2*old.limit)
	}
	f := newBloom(size)
	full := false
	p.building.Store(true)
	n := int64(0)
	err := db.View(func(txn *badger.Txn) error {
		for _, prefix := range [...]string{prefixCustomer, prefixPolicy} {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			for it.Rewind(); it.Valid(); it.Next() {
				if n++; n&4095 == 0 && ctx.Err() != nil {
					it.Close()
					return ctx.Err()
				}
				full = f.add(p.hash(it.Item().Key()[len(prefix):])) || full
			}
			it.Close()
		}
		if p.testScanRead != nil {
			p.testScanRead()
		}
		return nil
	})
	p.mu.Lock()
	if err == nil {
		for _, h := range p.pending {
			full = f.add(h) || full
		}
		p.f.Store(f)
		p.counted = n + int64(len(p.pending))
	}
	p.building.Store(false)
	p.pending = nil
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if full {
		select {
		case p.grow <- struct{}{}:
		default:
		}
	}
	if p.testScanDone != nil {
		p.testScanDone()
	}
	return nil
}

// tableKeys returns the keys of Badger's tables whose key range overlaps
// c/ or k/: more than those prefixes hold (other keys of the tables at
// their edges, older versions), none of what the memtables hold.
func tableKeys(db *badger.DB) int64 {
	var n int64
	for _, t := range db.Tables() {
		for _, prefix := range [...]string{prefixCustomer, prefixPolicy} {
			end := []byte{prefix[0], prefix[1] + 1}
			if bytes.Compare(t.Right, []byte(prefix)) >= 0 && bytes.Compare(t.Left, end) < 0 {
				n += int64(t.KeyCount)
				break
			}
		}
	}
	return n
}

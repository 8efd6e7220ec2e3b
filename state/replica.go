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

// Replication: the records of Batch.Records and Store.ExportCustomer, and
// their import. See Replication in doc.go.

// recordVersion is the first byte of a replication record.
const recordVersion = 1

// record is a replication record: the three stored records of a customer
// and the expiry of the window record. The parts alias the bytes the
// record was parsed from; an empty part stands for an absent key.
type record struct {
	expires                 uint64 // Badger ExpiresAt of the window record, Unix s; 0 none
	window, profile, policy []byte
}

// appendRecord appends the replication record r to dst:
//
//	version byte (1)
//	uvarint expiry of the window record, Unix seconds (0: none)
//	uvarint len + window record (c/; 0: none)
//	uvarint len + profile (p/; 0: none)
//	uvarint len + policy record (k/; 0: none)
func appendRecord(dst []byte, r *record) []byte {
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, r.expires)
	dst = binary.AppendUvarint(dst, uint64(len(r.window)))
	dst = append(dst, r.window...)
	dst = binary.AppendUvarint(dst, uint64(len(r.profile)))
	dst = append(dst, r.profile...)
	dst = binary.AppendUvarint(dst, uint64(len(r.policy)))
	return append(dst, r.policy...)
}

// parseRecord splits a replication record into its parts without decoding
// them; empty data is a record without parts. It never panics.
func parseRecord(data []byte) (record, error) {
	if len(data) == 0 {
		return record{}, nil
	}
	d := decoder{b: data}
	if v := d.byte("version"); d.err == nil && v != recordVersion {
		return record{}, corruptf("unknown replication record version %d", v)
	}
	r := record{expires: d.uvarint("window expiry")}
	r.window = d.bytes("window record")
	r.profile = d.bytes("profile")
	r.policy = d.bytes("policy record")
	if d.err != nil {
		return record{}, d.err
	}
	if len(d.b) > 0 {
		return record{}, corruptf("%d trailing bytes", len(d.b))
	}
	if r.expires != 0 && len(r.window) == 0 {
		return record{}, corruptf("window expiry without a window record")
	}
	return r, nil
}

// checker decodes the parts of replication records with the decoders of
// Load, to refuse what Load could not read. Its scratch is reused.
type checker struct {
	win  Customer
	pol  policy // the policy of the last record checked
	in   interner
	prof map[string]any
	rd   bytes.Reader
	dec  *msgpack.Decoder
}

func newChecker() *checker {
	ck := &checker{prof: make(map[string]any)}
	ck.dec = msgpack.NewDecoder(&ck.rd)
	return ck
}

// check decodes every part of r; afterwards ck.pol holds its policy.
func (ck *checker) check(r *record) error {
	ck.pol.reset()
	if len(r.window) > 0 {
		if r.window[0] == windowHeadVersion {
			return fmt.Errorf("window record: %w", corruptf("a record listing chunks"))
		}
		if err := decodeWindow(&ck.win, r.window, nil); err != nil {
			return fmt.Errorf("window record: %w", err)
		}
	}
	if len(r.profile) > 0 {
		clear(ck.prof)
		ck.rd.Reset(r.profile)
		ck.dec.Reset(&ck.rd)
		if err := decodeProfileInto(ck.dec, ck.prof, nil); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
		if n := ck.rd.Len(); n > 0 {
			return fmt.Errorf("profile: %w", corruptf("%d trailing bytes", n))
		}
	}
	if len(r.policy) > 0 {
		if err := decodePolicy(&ck.pol, r.policy, &ck.in); err != nil {
			return fmt.Errorf("policy record: %w", err)
		}
	}
	return nil
}

// Records calls fn, for every customer Put in the batch (in the order of
// their first Put), with its replication record: the customer's window,
// profile and policy records exactly as Commit stores them (absent ones
// empty), and the window record's expiry, in the format described under
// Replication in the package documentation. Store.ImportRecords of the
// records reproduces the committed state. rec is valid only during fn.
// Records may be called before or after Commit, until Reset. It panics
// when the store was not opened with Options.Replicate: Put then writes
// only what changed, and no record would be whole.
func (b *Batch) Records(fn func(customerID string, rec []byte)) {
	if !b.s.opts.Replicate {
		panic("state: Batch.Records needs a store opened with Options.Replicate")
	}
	for i := range b.puts {
		p := &b.puts[i]
		r := record{expires: p.expires, window: b.value(p.win), profile: b.value(p.prof), policy: b.value(p.pol)}
		b.rec = appendRecord(b.rec[:0], &r)
		fn(p.id, b.rec)
	}
}

// value returns the value of op i (empty for a deletion, or when i < 0:
// no op).
func (b *Batch) value(i int) []byte {
	if i < 0 {
		return nil
	}
	o := &b.ops[i]
	return b.arena[o.v0:o.v1:o.v1]
}

// ExportCustomer returns the replication record of the customer's
// committed state (c/, p/ and k/ read in one transaction, and the window
// record's expiry), as Batch.Records gives it after the Commit that wrote
// them. ok is false, and rec nil, when nothing is stored for the id. The
// records are not decoded. It only reads Badger and may run on any
// goroutine.
func (s *Store) ExportCustomer(customerID string) (rec []byte, ok bool, err error) {
	if s.closed.Load() {
		return nil, false, ErrClosed
	}
	var r record
	err = s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range [...]string{prefixCustomer, prefixProfile, prefixPolicy} {
			item, err := txn.Get([]byte(prefix + customerID))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			ok = true
			switch prefix {
			case prefixCustomer:
				if v, err = fullWindow(txn, customerID, v); err != nil {
					return err
				}
				r.window, r.expires = v, item.ExpiresAt()
				if len(v) == 0 {
					r.expires = 0
				}
			case prefixProfile:
				r.profile = v
			default:
				r.policy = v
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("state: export customer %q: %w", customerID, err)
	}
	if !ok {
		return nil, false, nil
	}
	return appendRecord(nil, &r), true, nil
}

// ImportRecords writes replication records (Batch.Records,
// ExportCustomer) into the store in bulk. next returns the customer id and
// record of the next one, ok false at the end, or an error that stops the
// import; rec is not used after next is called again.
//
// Each record replaces the customer's c/, p/ and k/ keys (an empty part
// deletes the key; a window expiry already past too), and the due index
// keys of the deferred offers of the replaced k/ record are swapped for
// those of the new one. An empty rec deletes the customer. The window
// record keeps the expiry in the record. Every record is decoded first;
// one that does not decode stops the import with an error wrapping
// ErrCorrupt and naming the customer, and none of it is written. A record
// without a customer id is refused alike.
//
// Records are written in read-write transactions of many customers each,
// never splitting a customer: the first n records (n as returned) are
// written, the others not, also on error. A later record of the same
// customer wins. Importing the same records again changes nothing, so an
// import cut short is completed by running it again. The imported
// customers are dropped from the caches. ImportRecords runs while no
// Shard is in use, like Commit.
func (s *Store) ImportRecords(next func() (customerID string, rec []byte, ok bool, err error)) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	w := s.newReplicaWriter()
	defer w.discard()
	ck := newChecker()
	for {
		id, rec, ok, err := next()
		if err != nil {
			return w.stop(err)
		}
		if !ok {
			break
		}
		if id == "" {
			return w.stop(fmt.Errorf("state: import record %d: %w: no customer id", w.done+w.pending+1, ErrCorrupt))
		}
		r, err := parseRecord(rec)
		if err == nil {
			err = ck.check(&r)
		}
		if err != nil {
			return w.stop(fmt.Errorf("state: import record of customer %q: %w", id, err))
		}
		if err := w.put(id, &r, &ck.pol); err != nil {
			return w.done, err
		}
	}
	if err := w.commit(); err != nil {
		return w.done, err
	}
	return w.done, nil
}

// DropCustomers deletes the customers' c/, p/ and k/ keys and the due
// index keys of their deferred offers, in bulk, and drops them from the
// caches; unknown ids are no error. Seen markers, counters and outbox
// entries belong to no customer and stay. Like ImportRecords it writes
// whole customers in transactions of many, and runs while no Shard is in
// use.
func (s *Store) DropCustomers(ids []string) error {
	if s.closed.Load() {
		return ErrClosed
	}
	w := s.newReplicaWriter()
	defer w.discard()
	var none record
	var empty policy
	for _, id := range ids {
		if err := w.put(id, &none, &empty); err != nil {
			return err
		}
	}
	return w.commit()
}

// ScanCustomerIDs calls fn with the id of every customer that has a
// window, profile or policy record, once each, in id (byte) order,
// without reading values, from one read transaction (a consistent view,
// concurrent with the engine). An error of fn stops the scan and is
// returned.
func (s *Store) ScanCustomerIDs(fn func(id string) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.View(func(txn *badger.Txn) error {
		prefixes := [...]string{prefixCustomer, prefixProfile, prefixPolicy}
		var its [len(prefixes)]*badger.Iterator
		var cur [len(prefixes)][]byte // the id at each iterator; nil when done
		for i, prefix := range prefixes {
			its[i] = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			defer its[i].Close()
			its[i].Rewind()
			if its[i].Valid() {
				cur[i] = its[i].Item().Key()[len(prefix):]
			}
		}
		for {
			var low []byte
			for i := range cur {
				if cur[i] != nil && (low == nil || bytes.Compare(cur[i], low) < 0) {
					low = cur[i]
				}
			}
			if low == nil {
				return nil
			}
			id := string(low)
			for i := range cur {
				if cur[i] == nil || string(cur[i]) != id {
					continue
				}
				its[i].Next()
				cur[i] = nil
				if its[i].Valid() {
					cur[i] = its[i].Item().Key()[len(prefixes[i]):]
				}
			}
			if err := fn(id); err != nil {
				return err
			}
		}
	})
}

// ScanSeen calls fn for every seen marker (Batch.MarkSeen) in key order,
// with the key as given and its expiry (the zero Time when it has none),
// from one read transaction; with Batch.MarkSeenUntil another store can
// restore them. An error of fn stops the scan and is returned.
func (s *Store) ScanSeen(fn func(key string, expiresAt time.Time) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixSeen)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			var at time.Time
			if e := item.ExpiresAt(); e != 0 {
				at = time.Unix(int64(e), 0)
			}
			if err := fn(string(item.Key()[len(prefixSeen):]), at); err != nil {
				return err
			}
		}
		return nil
	})
}

// The writer allocates entries and arena bytes in blocks: Badger keeps
// pointers to both until the transaction ends, so they must not move.
const (
	entryBlock = 1024
	arenaBlock = 256 << 10
)

// replicaWriter writes whole customers in read-write transactions, each
// committed before a customer's writes would take it beyond Badger's
// limits, so that no customer is split across two. The keys and values of
// the open transaction live in arena blocks, reused once it ends.
type replicaWriter struct {
	s                 *Store
	txn               *badger.Txn
	count, size       int64 // of txn, as Badger counts them
	maxCount, maxSize int64
	threshold         int64    // values this long go to the value log
	blocks            [][]byte // arena; blocks[cur] is being filled
	cur               int
	ents              []badger.Entry // never grown: Badger keeps pointers
	ids               []string       // the customers in txn
	done, pending     int            // customers committed, and in txn
	ops               []write        // of the customer being written
	old               policy         // the stored policy record
	win               Customer       // the stored window record's chunk list
	in                interner
	oldDue, newDue    []dueRef
	key               []byte
	now               uint64 // Unix s, taken per transaction
}

// write is a key write of the replicaWriter, a deletion when del.
type write struct {
	key, value []byte
	del        bool
	expires    uint64
}

// alloc returns an empty slice of capacity n from the arena; it stays
// valid until the transaction ends.
func (w *replicaWriter) alloc(n int) []byte {
	if n > arenaBlock/8 {
		return make([]byte, 0, n)
	}
	for {
		if w.cur == len(w.blocks) {
			w.blocks = append(w.blocks, make([]byte, 0, arenaBlock))
		}
		b := w.blocks[w.cur]
		if k := len(b); k+n <= cap(b) {
			w.blocks[w.cur] = b[:k+n]
			return b[k : k : k+n]
		}
		w.cur++
	}
}

func (s *Store) newReplicaWriter() *replicaWriter {
	w := &replicaWriter{s: s, maxCount: s.db.MaxBatchCount(), maxSize: s.db.MaxBatchSize(), threshold: s.db.Opts().ValueThreshold}
	w.begin()
	return w
}

func (w *replicaWriter) begin() {
	w.txn = w.s.db.NewTransaction(true)
	w.count, w.size = 0, 0
	w.now = uint64(time.Now().Unix())
}

// put writes the customer id with the parts of r (checked), pol being
// the decoded r.policy.
func (w *replicaWriter) put(id string, r *record, pol *policy) error {
	clear(w.ops)
	w.ops = w.ops[:0]
	if strings.IndexByte(id, 0) < 0 {
		if err := w.stageDue(id, pol); err != nil {
			return err
		}
	}
	window := r.window
	if r.expires != 0 && r.expires <= w.now {
		window = nil // expired: as if Badger had collected it
	}
	if err := w.stageChunks(id); err != nil {
		return err
	}
	w.stage(prefixCustomer, id, window, r.expires)
	w.stage(prefixProfile, id, r.profile, 0)
	w.stage(prefixPolicy, id, r.policy, 0)

	// Badger counts per write the key, 2 meta bytes, 10 version bytes
	// and the value, or for one in the value log a 12-byte pointer.
	n, est := int64(len(w.ops)), int64(0)
	for i := range w.ops {
		o := &w.ops[i]
		v := int64(len(o.value))
		if v >= w.threshold {
			v = 12
		}
		est += int64(len(o.key)) + v + 12
	}
	if w.count+n >= w.maxCount || w.size+est >= w.maxSize {
		if w.pending == 0 {
			return fmt.Errorf("state: customer %q: %w (%d writes, %d bytes)", id, ErrBatchTooBig, n, est)
		}
		// The commit frees the arena: take the customer's bytes out.
		for i := range w.ops {
			o := &w.ops[i]
			o.key, o.value = bytes.Clone(o.key), bytes.Clone(o.value)
		}
		if err := w.commit(); err != nil {
			return err
		}
	}
	for i := range w.ops {
		o := &w.ops[i]
		var err error
		if o.del {
			err = w.txn.Delete(o.key)
		} else {
			if len(w.ents) == cap(w.ents) {
				w.ents = make([]badger.Entry, 0, entryBlock)
			}
			w.ents = append(w.ents, badger.Entry{Key: o.key, Value: o.value, ExpiresAt: o.expires})
			err = w.txn.SetEntry(&w.ents[len(w.ents)-1])
		}
		if err != nil {
			if errors.Is(err, badger.ErrTxnTooBig) {
				err = fmt.Errorf("%w: %w", ErrBatchTooBig, err)
			}
			return fmt.Errorf("state: write customer %q: %w", id, err)
		}
	}
	w.count += n
	w.size += est
	w.ids = append(w.ids, id)
	w.pending++
	return nil
}

// stage adds the write of prefix+id: value, or a deletion when empty.
func (w *replicaWriter) stage(prefix, id string, value []byte, expires uint64) {
	o := write{key: append(append(w.alloc(len(prefix)+len(id)), prefix...), id...), del: len(value) == 0}
	if !o.del {
		o.value = append(w.alloc(len(value)), value...)
		o.expires = expires
	}
	w.ops = append(w.ops, o)
}

// stageChunks adds the deletion of the chunks the stored window record of
// id lists: the record written instead holds all its entries.
func (w *replicaWriter) stageChunks(id string) error {
	w.key = append(append(w.key[:0], prefixCustomer...), id...)
	item, err := w.txn.Get(w.key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("state: read %q: %w", w.key, err)
	}
	w.win.reset()
	err = item.Value(func(v []byte) error {
		if len(v) == 0 || v[0] != windowHeadVersion {
			return nil
		}
		return decodeWindow(&w.win, v, &w.in)
	})
	switch {
	case errors.Is(err, ErrCorrupt):
		// Its chunks must go all the same (an erasure leaves nothing):
		// find them by a scan of the customer's chunk keys.
		w.s.log.Warn("stored window record corrupt; replacing it, its chunks found by a scan", "customer", id, "err", err)
		return w.stageChunkScan(id)
	case err != nil:
		return fmt.Errorf("state: read %q: %w", w.key, err)
	}
	for _, r := range w.win.chunks {
		o := write{key: appendChunkKey(w.alloc(len(prefixChunk)+len(id)+5), id, r.seq), del: true}
		w.ops = append(w.ops, o)
	}
	w.win.reset()
	return nil
}

// stageChunkScan adds the deletion of every chunk key of id.
func (w *replicaWriter) stageChunkScan(id string) error {
	prefix := appendChunkKey(nil, id, 0)
	prefix = prefix[:len(prefix)-4]
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		// The prefix of a longer id with a NUL in it matches too.
		if k := it.Item().Key(); len(k) == len(prefix)+4 {
			w.ops = append(w.ops, write{key: append(w.alloc(len(k)), k...), del: true})
		}
	}
	return nil
}

// stageDue adds the due index writes that take the customer from the
// deferred offers of its stored policy record to those of pol. When the
// stored record does not decode, the customer's keys are found by a scan
// of the due index.
func (w *replicaWriter) stageDue(id string, pol *policy) error {
	w.key = append(append(w.key[:0], prefixPolicy...), id...)
	w.oldDue = w.oldDue[:0]
	item, err := w.txn.Get(w.key)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return fmt.Errorf("state: read %q: %w", w.key, err)
	default:
		err = item.Value(func(v []byte) error { return decodePolicy(&w.old, v, &w.in) })
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return fmt.Errorf("state: read %q: %w", w.key, err)
		}
		if err != nil {
			w.s.log.Warn("stored policy record corrupt; replacing it, its due index keys found by a scan", "customer", id, "err", err)
			return w.stageDueScan(id, pol)
		}
		w.oldDue = dueRefs(w.oldDue, w.old.deferred)
		w.old.reset()
	}
	w.newDue = dueRefs(w.newDue, pol.deferred)
	old, cur := w.oldDue, w.newDue
	for len(old) > 0 || len(cur) > 0 {
		switch {
		case len(cur) == 0 || len(old) > 0 && cmpDueRef(old[0], cur[0]) < 0:
			w.stageDueKey(true, id, old[0])
			old = old[1:]
		case len(old) == 0 || cmpDueRef(old[0], cur[0]) > 0:
			w.stageDueKey(false, id, cur[0])
			cur = cur[1:]
		default:
			old, cur = old[1:], cur[1:]
		}
	}
	return nil
}

// stageDueScan deletes every due index key of the customer and writes
// those of pol.
func (w *replicaWriter) stageDueScan(id string, pol *policy) error {
	it := w.txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDue)})
	for it.Rewind(); it.Valid(); it.Next() {
		key := it.Item().Key()
		if e, err := parseDueKey(key); err == nil && e.Customer == id {
			w.ops = append(w.ops, write{key: append(w.alloc(len(key)), key...), del: true})
		}
	}
	it.Close()
	for i := range pol.deferred {
		w.stageDueKey(false, id, dueRef{release: pol.deferred[i].Release, id: pol.deferred[i].ID})
	}
	return nil
}

func (w *replicaWriter) stageDueKey(del bool, customerID string, r dueRef) {
	key := appendDueKey(w.alloc(len(prefixDue)+8+len(customerID)+1+len(r.id)), r.release, customerID, r.id)
	w.ops = append(w.ops, write{key: key, del: del})
}

// commit commits the open transaction, drops its customers from the
// caches and opens the next one; the arena is free afterwards. On error
// nothing of it was written.
func (w *replicaWriter) commit() error {
	if w.pending == 0 {
		return nil
	}
	err := w.txn.Commit()
	w.s.Invalidate(w.ids...)
	clear(w.ids)
	w.ids = w.ids[:0]
	for i := range w.blocks {
		w.blocks[i] = w.blocks[i][:0]
	}
	w.cur = 0
	clear(w.ents)
	w.ents = w.ents[:0]
	if err != nil {
		w.pending = 0
		w.txn = nil
		if errors.Is(err, badger.ErrTxnTooBig) {
			err = fmt.Errorf("%w: %w", ErrBatchTooBig, err)
		}
		return fmt.Errorf("state: import commit: %w", err)
	}
	w.done += w.pending
	w.pending = 0
	w.begin()
	return nil
}

// stop commits what is pending, then returns the number of customers
// written and err.
func (w *replicaWriter) stop(err error) (int, error) {
	if cerr := w.commit(); cerr != nil {
		return w.done, errors.Join(err, cerr)
	}
	return w.done, err
}

// discard drops the open transaction, if any.
func (w *replicaWriter) discard() {
	if w.txn != nil {
		w.txn.Discard()
		w.txn = nil
	}
}

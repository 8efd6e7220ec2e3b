package state

import (
	"context"
	"encoding/binary"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/y"
)

// Options configure Open.
type Options struct {
	// Dir is the Badger directory (required).
	Dir string
	// CacheCustomers is the number of customers kept decoded in memory
	// across all shards; default 100_000. Each shard keeps
	// CacheCustomers/Shards (at least 1).
	CacheCustomers int
	// Shards is the number of cache shards (= engine workers); default 1.
	Shards int
	// MaxSeriesEntries is the most entries kept per series per customer;
	// default 10_000. Beyond it the oldest are dropped and
	// series_overflow_total counts them.
	MaxSeriesEntries int
	// SyncWrites makes every Commit fsync (Badger SyncWrites).
	SyncWrites bool
	// Logger receives Badger's warnings and errors and the GC loop's
	// problems; nil discards.
	Logger *slog.Logger
	// Metrics, nil for none.
	Metrics *Metrics
	// GCInterval is the value-log GC period; 0 means 5m, negative disables
	// the GC loop.
	GCInterval time.Duration
	// InMemory keeps everything in memory and nothing on disk (Dir is
	// ignored): for simulations — rule tests and replays — whose state
	// must not outlive them.
	InMemory bool
	// Replicate makes Batch.Put write all the records of a customer it
	// puts, not only the changed ones, so that Batch.Records can give
	// each one's whole committed state for a changelog (see Replication
	// in the package documentation). Off, nothing extra is encoded.
	Replicate bool
	// Compression is how Badger compresses its table blocks: "snappy"
	// (the default), "zstd" or "none". Each table records its own, so a
	// store may change it between opens; tables written before keep
	// theirs until compacted.
	Compression string
	// BlockCacheBytes and IndexCacheBytes size Badger's caches of table
	// blocks and of table indexes and bloom filters; 0 means
	// DefaultBlockCacheBytes and DefaultIndexCacheBytes. Every customer
	// load that misses the decoded-customer cache reads through them.
	BlockCacheBytes, IndexCacheBytes int64
	// CompactOnClose makes Close compact the tables: the levels into the
	// last one that holds data (Badger's Flatten), then level 0, with what
	// the memtables held, into the level below. No table is left in level
	// 0, and only what the memtables held last lies above the last level.
	// It is for a bulk writer (kairos profiles import
	// --data, the bench's import) that hands the store to an engine:
	// without it a profile import leaves overlapping tables in level 0
	// and in the levels above the last, so the engine's reads of a
	// customer not yet seen check every one of them, and its first
	// flushes start compactions that rewrite the imported profiles while
	// it runs. Close takes longer by the compactions: 3.4–3.5 s after an
	// import of 10M profiles into an empty store (docs/bench.md).
	CompactOnClose bool

	// badgerOptions, when set, adjusts the Badger options (tests).
	badgerOptions func(badger.Options) badger.Options
}

// Compressions of Options.Compression.
const (
	CompressionSnappy = "snappy"
	CompressionZSTD   = "zstd"
	CompressionNone   = "none"
)

// CheckCompression tells whether name is a value of Options.Compression
// ("" is the default, snappy).
func CheckCompression(name string) error {
	_, err := compressionType(name)
	return err
}

func compressionType(name string) (options.CompressionType, error) {
	switch name {
	case "", CompressionSnappy:
		return options.Snappy, nil
	case CompressionZSTD:
		return options.ZSTD, nil
	case CompressionNone:
		return options.None, nil
	}
	return 0, fmt.Errorf("compression %q: want snappy, zstd or none", name)
}

// Defaults of Options.
const (
	DefaultCacheCustomers   = 100_000
	DefaultMaxSeriesEntries = 10_000
	// 256 MiB each: at 10M customers they took the engine from 6,789 to
	// 8,871 events/s against 64 and 32 MiB (docs/bench.md).
	DefaultBlockCacheBytes = 256 << 20
	DefaultIndexCacheBytes = 256 << 20
	DefaultGCInterval      = 5 * time.Minute
)

// Store is the Badger-backed state of all customers. Its methods other than
// Shard's are called by the engine's committing goroutine; Commit,
// Invalidate, ImportRecords and DropCustomers run while no Shard is in
// use. Snapshot, DueDeferred, Counters, ExportCustomer, ScanCustomerIDs
// and ScanSeen only read Badger and may run on any goroutine.
type Store struct {
	opts    Options
	db      *badger.DB
	log     *slog.Logger
	metrics *Metrics
	shards  []*Shard
	closed  atomic.Bool

	stopGC context.CancelFunc
	gcDone sync.WaitGroup
}

// Open opens or creates the store in opts.Dir. It refuses a store written
// by a newer schema (ErrSchema).
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" && !opts.InMemory {
		return nil, errors.New("state: Options.Dir is required")
	}
	if opts.CacheCustomers <= 0 {
		opts.CacheCustomers = DefaultCacheCustomers
	}
	if opts.Shards <= 0 {
		opts.Shards = 1
	}
	if opts.MaxSeriesEntries <= 0 {
		opts.MaxSeriesEntries = DefaultMaxSeriesEntries
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = DefaultGCInterval
	}
	if opts.BlockCacheBytes <= 0 {
		opts.BlockCacheBytes = DefaultBlockCacheBytes
	}
	if opts.IndexCacheBytes <= 0 {
		opts.IndexCacheBytes = DefaultIndexCacheBytes
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "state")

	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerLogger{log: log, metrics: opts.Metrics}).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithSyncWrites(opts.SyncWrites).
		WithMemTableSize(32 << 20).
		WithNumMemtables(3).
		WithBlockCacheSize(opts.BlockCacheBytes).
		WithIndexCacheSize(opts.IndexCacheBytes).
		WithNumCompactors(2).
		WithCompactL0OnClose(opts.CompactOnClose)
	ct, err := compressionType(opts.Compression)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	bo = bo.WithCompression(ct)
	if opts.InMemory {
		bo = bo.WithDir("").WithValueDir("").WithInMemory(true).
			WithMemTableSize(16 << 20).WithBlockCacheSize(8 << 20).WithIndexCacheSize(0)
		opts.GCInterval = -1
	}
	if opts.badgerOptions != nil {
		bo = opts.badgerOptions(bo)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", opts.Dir, err)
	}
	if err := checkSchema(db); err != nil {
		db.Close()
		return nil, err
	}
	s := &Store{opts: opts, db: db, log: log, metrics: opts.Metrics}
	per := max(opts.CacheCustomers/opts.Shards, 1)
	s.shards = make([]*Shard, opts.Shards)
	for i := range s.shards {
		s.shards[i] = newShard(s, per)
	}
	if s.metrics != nil {
		s.metrics.store.Store(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.stopGC = cancel
	if opts.GCInterval > 0 {
		s.gcDone.Add(1)
		go s.gcLoop(ctx, opts.GCInterval)
	}
	return s, nil
}

// checkSchema writes m/schema into a new store and refuses a newer one.
func checkSchema(db *badger.DB) error {
	return db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keySchema))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return txn.Set([]byte(keySchema), []byte{schemaVersion})
		}
		if err != nil {
			return fmt.Errorf("state: read %s: %w", keySchema, err)
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			return fmt.Errorf("state: read %s: %w", keySchema, err)
		}
		if len(v) != 1 {
			return fmt.Errorf("state: key %q: %w", keySchema, corruptf("schema record of %d bytes", len(v)))
		}
		if v[0] > schemaVersion {
			return fmt.Errorf("%w: the store has schema %d, this binary supports up to %d", ErrSchema, v[0], schemaVersion)
		}
		return nil
	})
}

// gcLoop runs the value-log GC every interval until ctx ends.
func (s *Store) gcLoop(ctx context.Context, interval time.Duration) {
	defer s.gcDone.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for ctx.Err() == nil {
			err := s.db.RunValueLogGC(0.5)
			if err == nil {
				continue // rewrote a file; try the next
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value log GC failed", "err", err)
			}
			break
		}
	}
}

// Close stops the GC loop and closes Badger, after compacting its tables
// when Options.CompactOnClose is set. A second Close returns ErrClosed.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return ErrClosed
	}
	s.stopGC()
	s.gcDone.Wait()
	for _, sh := range s.shards {
		sh.endRead()
	}
	if s.metrics != nil {
		s.metrics.store.CompareAndSwap(s, nil)
	}
	if s.opts.CompactOnClose && !s.opts.InMemory {
		if err := s.db.Flatten(2); err != nil {
			s.db.Close()
			return fmt.Errorf("state: close: compact: %w", err)
		}
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("state: close: %w", err)
	}
	return nil
}

// Shard returns shard i, 0 <= i < Options.Shards; it panics otherwise.
func (s *Store) Shard(i int) *Shard { return s.shards[i] }

// Applied returns the stored watermark; the zero value when none was
// committed yet.
func (s *Store) Applied() (Watermark, error) { return s.readWatermark(keyApplied) }

// Watermark returns the watermark of a named stream stored by
// Batch.SetWatermark; the zero value when none.
func (s *Store) Watermark(name string) (Watermark, error) {
	return s.readWatermark(keyApplied + "/" + name)
}

// readWatermark reads the watermark stored under key; the zero value when
// none.
func (s *Store) readWatermark(key string) (Watermark, error) {
	if s.closed.Load() {
		return Watermark{}, ErrClosed
	}
	var w Watermark
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			w, err = decodeWatermark(v)
			return err
		})
	})
	if err != nil {
		return Watermark{}, fmt.Errorf("state: read %q: %w", key, err)
	}
	return w, nil
}

// Seen reports whether a marker of Batch.MarkSeen exists for key. It only
// reads Badger and may run on any goroutine.
func (s *Store) Seen(key string) (bool, error) {
	if s.closed.Load() {
		return false, ErrClosed
	}
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get([]byte(prefixSeen + key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// ScanProfiles calls fn for every stored profile, in customer id order,
// from one read transaction (a consistent view, concurrent with the
// engine). Integers come back as int64, like events. fn's map is its own.
func (s *Store) ScanProfiles(fn func(id string, profile map[string]any) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixProfile), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(prefixProfile):])
			m := map[string]any{}
			if err := item.Value(func(v []byte) error { return decodeProfileBytes(m, v) }); err != nil {
				return fmt.Errorf("state: profile %q: %w", id, err)
			}
			if err := fn(id, m); err != nil {
				return err
			}
		}
		return nil
	})
}

// ScanLastSeen calls fn for every customer with a policy record, in
// customer id order, with the last day an event of each type came (the
// slice is valid during the call only).
func (s *Store) ScanLastSeen(fn func(id string, seen []SeenDay) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	var p policy
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixPolicy), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			id := string(item.Key()[len(prefixPolicy):])
			if err := item.Value(func(v []byte) error { return decodePolicy(&p, v, nil) }); err != nil {
				return fmt.Errorf("state: policy %q: %w", id, err)
			}
			if len(p.seen) == 0 {
				continue
			}
			if err := fn(id, p.seen); err != nil {
				return err
			}
		}
		return nil
	})
}

// Invalidate drops the customers from the caches: the next Load reads
// Badger. The engine calls it after a failed Commit with Batch.Customers,
// while no Shard is in use.
func (s *Store) Invalidate(customerIDs ...string) {
	for _, id := range customerIDs {
		for _, sh := range s.shards {
			if c, ok := sh.m[id]; ok {
				sh.remove(c)
			}
		}
	}
	for _, sh := range s.shards {
		sh.settle()
	}
}

// Outbox calls fn for every outbox entry in key order, with the key as
// given to Batch.AddOutbox. The slices are valid only during fn. An error
// of fn stops the iteration and is returned.
func (s *Store) Outbox(fn func(key, value []byte) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixOutbox), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			key := item.Key()[len(prefixOutbox):]
			if err := item.Value(func(v []byte) error { return fn(key, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// Profile reads the stored profile of a customer from Badger (not the
// cache), for inspection. ok is false, and the map nil, when the customer
// has no profile.
func (s *Store) Profile(customerID string) (profile map[string]any, ok bool, err error) {
	if s.closed.Load() {
		return nil, false, ErrClosed
	}
	key := []byte(prefixProfile + customerID)
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			profile = make(map[string]any)
			ok = true
			return decodeProfileBytes(profile, v)
		})
	})
	if err != nil {
		return nil, false, fmt.Errorf("state: read %q: %w", key, err)
	}
	return profile, ok, nil
}

// DueEntry is a deferred offer whose release time has come.
type DueEntry struct {
	Customer, OfferID string
	Release           int64 // unix ms
}

// DueDeferred returns up to limit deferred offers with Release <= now, in
// release order (then customer id, then offer id), from the committed due
// index; none when limit <= 0. The engine then loads those customers
// through their Shard, decides, calls RemoveDeferred, Puts and commits,
// which removes the entries. It reads Badger only and may run on any
// goroutine.
func (s *Store) DueDeferred(now int64, limit int) ([]DueEntry, error) {
	return s.DueDeferredOf(now, limit, nil)
}

// DueDeferredOf is DueDeferred for the customers keep reports true for
// (all when keep is nil): entries of other customers are passed over, not
// counted against limit. In cluster mode the engine keeps the customers of
// the partitions it owns.
func (s *Store) DueDeferredOf(now int64, limit int, keep func(customer string) bool) ([]DueEntry, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []DueEntry
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixDue)})
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			e, err := parseDueKey(it.Item().Key())
			if err != nil {
				return err
			}
			if e.Release > now {
				break
			}
			if keep != nil && !keep(e.Customer) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: read due index: %w", err)
	}
	return out, nil
}

// Counters returns the committed counters (Batch.SetCounter) whose name
// starts with prefix, by name. It reads Badger only and may run on any
// goroutine.
func (s *Store) Counters(prefix string) (map[string]int64, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	out := make(map[string]int64)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixCounter + prefix), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			err := item.Value(func(v []byte) error {
				if len(v) != 8 {
					return corruptf("counter of %d bytes", len(v))
				}
				out[string(item.Key()[len(prefixCounter):])] = int64(binary.BigEndian.Uint64(v))
				return nil
			})
			if err != nil {
				return fmt.Errorf("state: read %q: %w", item.Key(), err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Snapshot reads the customer's committed state (c/, p/ and k/ in one read
// transaction) from Badger into a new Customer that belongs to no shard:
// safe to call from any goroutine while the engine runs, it never touches
// the caches, the shards or the metrics. What is cached but not yet
// committed is not in it. ok is false, and c nil, when nothing is stored
// for the id.
//
// The snapshot belongs to the caller (one goroutine at a time): Profile,
// Value (with any Plan), Contacts, CountContacts, RuleTotal, Deferred and
// Decisions work on it. Do not Put it.
func (s *Store) Snapshot(customerID string) (c *Customer, ok bool, err error) {
	if s.closed.Load() {
		return nil, false, ErrClosed
	}
	c = &Customer{id: customerID, profile: make(map[string]any), maxEntries: s.opts.MaxSeriesEntries}
	err = s.db.View(func(txn *badger.Txn) error {
		var err error
		_, ok, err = readCustomer(txn, c, nil, nil)
		return err
	})
	if err != nil || !ok {
		return nil, false, err
	}
	return c, true, nil
}

// Sizes returns the sizes of Badger's LSM tree and value log in bytes, as
// Badger last measured them (it refreshes them every minute).
// It reads Badger's size metrics itself: DB.Size type-asserts the value
// log's entry without checking it exists, which panics when a scrape
// comes before Badger first measured its value log.
func (s *Store) Sizes() (lsm, vlog int64) {
	opt := s.db.Opts()
	if v, ok := y.LSMSizeGet(opt.MetricsEnabled, opt.Dir).(*expvar.Int); ok {
		lsm = v.Value()
	}
	if v, ok := y.VlogSizeGet(opt.MetricsEnabled, opt.ValueDir).(*expvar.Int); ok {
		vlog = v.Value()
	}
	return lsm, vlog
}

// badgerLogger adapts Badger's logger to slog: errors and warnings pass,
// info and debug are dropped, except Badger's report of a level 0 stall,
// which is a warning and counts in the metrics.
type badgerLogger struct {
	log     *slog.Logger
	metrics *Metrics // nil: none
}

// l0StallFormat is how Badger reports, once it ends, a stall of more than
// a second of its memtable flushes on a full level 0 (levelsController.
// addLevel0Table); its argument is the stall's time.Duration.
const l0StallFormat = "L0 was stalled for %s\n"

func (l badgerLogger) Errorf(f string, args ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(f, args...)), "source", "badger")
}

func (l badgerLogger) Warningf(f string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)), "source", "badger")
}

func (l badgerLogger) Infof(f string, args ...any) {
	if f != l0StallFormat || len(args) != 1 {
		return
	}
	d, ok := args[0].(time.Duration)
	if !ok {
		return
	}
	if l.metrics != nil {
		l.metrics.l0Stall.Add(d.Seconds())
	}
	l.log.Warn("level 0 of the state was full: memtable flushes, then commits, waited for compaction", "stalled", d, "source", "badger")
}

func (badgerLogger) Debugf(string, ...any) {}

// Package state keeps the per-customer state of the Kairos engine — profile
// and sliding-window event history — in Badger, with a decoded in-memory
// cache in front, and commits each engine batch atomically.
//
// # Pipeline
//
// The engine gives each worker one Shard and routes a customer always to the
// same shard. For each event a worker calls Shard.Load, Customer.Apply, then
// Customer.Value for the aggregates its rules need, and Batch.Put. The
// committing goroutine then adds outbox entries, deletions of published
// outbox entries and the applied watermark to the Batch and calls
// Store.Commit: one Badger transaction, so that after kill -9 the store holds
// either all of a batch or none of it, and the watermark says which. Commit
// and Invalidate run while no Shard is in use (between batches). A
// *Customer stays valid until the next Commit or Invalidate.
//
// On a cache hit, Load, Apply and Value neither allocate nor lock.
//
// # Windows
//
// A Plan compiles the aggregates (AggSpec) of the rules. Aggregates share a
// series when they have the same event type, attribute and value kind:
// "none" for Count and Since, "number" for Sum, Min, Max and Avg, "hash" for
// Distinct. A series keeps entries (event time in Unix ms, and a float64 or
// a 64-bit hash) sorted by time; its retention is the longest window of its
// aggregates (for Since, the plan horizon).
//
// Apply adds an event to every series of its type or of type "*". A number
// series takes the attribute only when it is a Go number (int*, uint*,
// float32, float64; NaN is skipped); a hash series takes strings, numbers
// and bools, hashed with FNV-1a (fixed, so stable across restarts) over a
// tag byte and the string bytes, the bool, or the float64 bits of the number
// — so 1 and 1.0 are one value and "1" another (integers beyond 2^53 are
// rounded to float64 first). A none series takes every event. An event goes
// after the entries with an equal timestamp (appending is the common case);
// then entries with ts <= newest-retention are evicted, and an event that
// old is not inserted at all. A series longer than MaxSeriesEntries drops
// its oldest entries, counted by series_overflow_total.
//
// Value(p, i, at) looks at the half-open window (at-W, at] in event time:
// an entry exactly W old is out, one W-1ms old is in. Count and Distinct
// count entries and distinct hashes, Sum adds (0 when empty), Min, Max and
// Avg are NaN when empty. Since is the number of milliseconds from the
// previous event of the type to at, +Inf when there is none within the
// horizon; the event being processed is not its own previous (Apply records
// whether it was inserted, and it is the last entry with ts <= at), so two
// events with the same timestamp give 0 for the second.
//
// Window membership is always decided by event time. Wall-clock time is
// used only for the Badger TTL of window records, which collects customers
// that went quiet.
//
// When the rules are reloaded the engine passes a new Plan. A customer
// re-aligns its series to it on first use: series are matched by identity
// (type, attribute, value kind) and kept, series the new plan does not have
// are dropped (and so not written again), new series start empty. Using the
// same plan as last time costs one pointer comparison.
//
// # Keys
//
//	c/<customer id>  window record, with Badger TTL longest retention + 24h
//	p/<customer id>  profile: msgpack map[string]any (absent when empty)
//	o/<engine key>   outbox entry, opaque value written by the engine
//	m/applied        watermark: version 1, uvarint len + stream name,
//	                 int64 LE stream creation (Unix ns), uint64 LE sequence
//	m/schema         one byte, the schema version (1); Open writes it into a
//	                 new store and refuses a newer one with ErrSchema
//
// The window record is: version byte 1; uvarint series count; per series
// uvarint length + type, uvarint length + attribute, kind byte (1 none,
// 2 number, 3 hash), uvarint entry count n and, when n > 0, a zigzag varint
// first timestamp, n-1 uvarint deltas, then n little-endian float64 values
// or uint64 hashes. The decoder rejects anything else with ErrCorrupt
// naming the key; it never panics.
//
// # Cache
//
// Each shard has an LRU of CacheCustomers/Shards (at least 1) decoded
// customers. Evicted customer structs are recycled between batches. A
// dirty customer is never dropped before it is committed: at the tail of the
// LRU it is only unlinked, so a second event of the same customer within the
// batch still finds its uncommitted state; Commit links it back. After a
// failed Commit the engine calls Invalidate(batch.Customers()...), and the
// next Load reads Badger.
//
// # Badger
//
// Open uses badger.DefaultOptions with: conflict detection off (a single
// writer commits), one version per key, SyncWrites from Options, and modest
// memory for a process that keeps its own decoded cache — 64 MiB memtables,
// 3 of them (default 5), a 64 MiB block cache (default 256 MiB), a 32 MiB
// index cache (default unlimited) and 2 compactors (default 4). A batch may
// hold at most 15% of a memtable (about 9.6 MiB); beyond it Commit returns
// ErrBatchTooBig. Values below 1 MiB stay in the LSM tree, so the value
// log is mostly the write-ahead log; a goroutine runs RunValueLogGC(0.5)
// every GCInterval until it returns ErrNoRewrite, and stops on Close.
package state

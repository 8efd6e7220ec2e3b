// Package state keeps the per-customer state of the Kairos engine — profile,
// sliding-window event history and contact policy — in Badger, with a
// decoded in-memory cache in front, and commits each engine batch
// atomically.
//
// # Pipeline
//
// The engine gives each worker one Shard and routes a customer always to the
// same shard. For each event a worker calls Shard.Load, Customer.Apply, then
// Customer.Value for the aggregates its rules need, and Batch.Put. The
// committing goroutine then adds outbox entries, deletions of published
// outbox entries, counters and the applied watermark to the Batch and calls
// Store.Commit: one Badger transaction, so that after kill -9 the store holds
// either all of a batch or none of it, and the watermark says which. Commit,
// Invalidate, ImportRecords and DropCustomers run while no Shard is in use
// (between batches). A *Customer stays valid until the next of them.
//
// The cache misses of a batch read Badger in one read transaction, opened
// by the first and discarded when the batch ends (Commit, Invalidate):
// nothing writes to Badger while a shard is in use.
//
// On a cache hit, Load, Apply and Value neither allocate nor lock, and
// neither do AddContact and CountContacts once the contact list has
// reached its steady size.
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
// are dropped (and so not written again), and a series of the plan is
// added, empty, when an event first goes into it. Using the same plan as
// last time costs one pointer comparison.
//
// # Chunks
//
// A window record holding every entry of a customer's retention would be
// rewritten whole by each event, and a customer with months of history
// would write kilobytes per event. So Put (without Options.Replicate)
// seals entries into chunks, keys of their own written once:
//
//   - The window record (c/) holds the entries no chunk holds, and lists
//     the chunks. When it holds 32 entries or more (over all series),
//     Put writes them as a new chunk and the record is left with none:
//     an event writes its own entries and on average about 16 others.
//   - A chunk (w/<id>\x00<seq>) is a window record of version 2 with the
//     entries sealed into it, its Badger TTL that of the window record
//     when it was written. The window record's TTL is at least its
//     chunks'.
//   - When a customer has 8 chunks besides its base chunk, the next seal
//     writes a new base holding every live entry and deletes the others:
//     a load reads at most 10 keys, and an entry is written again about
//     once per 256 entries that come after it. Sequence numbers are not
//     reused (a key written again has versions in several LSM levels,
//     which a Get reads), except that a base starts them over from 0
//     once they pass 2^31, before they could wrap.
//   - Load reads the chunks the record lists after it, in the same read
//     transaction, and decodes their entries first, then the record's
//     own: sealed entries are the oldest of each series (a chunk Badger
//     has collected is left out). A load of a customer with chunks costs
//     a Get per chunk: about a fifth more than one record holding
//     everything (BenchmarkLoadMissLongHistory).
//     A customer keeps, per series, how many of its first entries are
//     sealed; eviction from the front lowers it.
//   - An event older than a sealed entry of its series (late), or a new
//     plan dropping a series that chunks hold, makes the next Put write
//     every live entry again and delete the chunks, so that a chunk never
//     holds an entry the customer no longer has in the middle of its
//     series, and a dropped series cannot come back from a chunk. So does
//     a chunk within a day (ttlSlack) of its expiry: entries are evicted
//     by event time and a chunk's TTL runs from when it was written, so a
//     customer whose events lag the clock can still have entries in it;
//     a customer who goes quiet loses its chunks with its record, as
//     before chunks.
//
// Every chunk key is listed by its customer's window record:
// DropCustomers and ImportRecords delete the chunks of the record they
// replace, and Put under Options.Replicate, whose window record holds
// every entry (the changelog carries a customer's whole state),
// deletes the chunks of a store used without it. ExportCustomer gives the
// window record with the chunks' entries in it, version 2, and
// ImportRecords refuses a record listing chunks.
//
// # Contact policy
//
// The engine decides frequency caps, cooldowns, per-rule limits, quiet
// hours and budgets; state stores what those decisions need, in the policy
// record of the customer, committed with the batch like the windows:
//
//   - Contacts: the offers sent (time, rule, channel, kind), in time order,
//     for caps, cooldowns and the contacts()/offers() rule functions.
//     AddContact takes the retention from the engine: contacts with
//     TS <= newest-retention are dropped (retention <= 0 keeps all), and at
//     most MaxSeriesEntries are kept. CountContacts counts those with
//     TS > since — a contact exactly at since is out — by binary search.
//   - Rule totals: the lifetime number of offers per rule (max per
//     customer). A total of 0 is not stored.
//   - Deferred offers: offers held back by quiet hours, by release time,
//     with an expiry and engine-encoded data.
//   - Decisions: a ring of the last decisions, for explain; the engine
//     passes its length. The engine only adds to it, so a cached customer
//     keeps it encoded, as one pointer-free byte array (decisions.go),
//     and Decisions decodes it on demand: 20 decisions as structs of
//     strings were about 5 KB and 120 pointers per cached customer for
//     every mark phase to follow.
//
// Rule ids, channels, outcomes and reasons repeat across customers: each
// shard interns them (at most 4096 strings, then it starts over), so
// decoding a record allocates one string for its other ids and one slice
// for the deferred data, not one per entry. Every change marks the policy
// record dirty; Dirty covers it, and Put writes it when it is.
//
// # Due index
//
// Store.DueDeferred finds the deferred offers whose release has come
// without loading customers: Batch.Put writes a key q/... for each
// deferred offer added since the customer was loaded or last committed,
// and deletes the key of each one removed. Each customer keeps the offers
// the index holds for it (as of its k/ record); Put writes the difference
// and a successful Commit makes it the new state. Invariant: the index
// holds exactly one key per deferred offer of the stored k/ records,
// since it is only ever written in the transaction that writes the k/
// record. A failed Commit writes neither; after Invalidate the customer
// is read back with the offers the index holds. Customer ids containing a
// NUL byte cannot be told apart in an index key: their offers are stored
// but not indexed (and an error is logged).
//
// # Counters
//
// Batch.SetCounter sets a named int64 (per-rule budgets) in the same
// transaction; 0 deletes it. Store.Counters reads them by name prefix.
//
// # Snapshot
//
// Store.Snapshot reads c/, p/ and k/ of a customer in one read
// transaction into a new Customer of no shard: it sees the last commit,
// not what a shard holds uncommitted, and touches no cache, shard,
// interner or metric, so it is safe on any goroutine while the engine
// runs. The snapshot belongs to the caller. DueDeferred and Counters also
// only read Badger.
//
// # Replication
//
// In scale-out mode customers are partitioned, each partition has one
// owner at a time, the engine writes every commit of the owner to a
// changelog compacted by customer, and a new owner loads the partition
// from it. The NATS side is the engine's; state makes the records and
// takes them back.
//
// With Options.Replicate, Batch.Put of a dirty customer writes all three of
// its records, changed or not, and Batch.Records gives for each customer
// Put one replication record holding exactly what Commit stores for it.
// Windows are written as the cache holds them (realigned to the current
// plan): with a new expiry (longest retention + 24h) when they changed, as
// without the option, else with the stored one; a window record without
// entries, or whose expiry has passed, is deleted instead. An empty
// profile or policy deletes its key, as always; a key the customer is
// known not to have is not deleted again. A profile msgpack cannot encode
// is replaced by the stored one. Without the option Put writes only what
// changed, nothing extra is encoded, and Records panics.
//
// A replication record (version 1) is:
//
//	byte 0     version, 1
//	uvarint    Badger expiry of the window record, Unix seconds; 0 when
//	           it has none or there is no window record
//	uvarint n  length of the window record (c/), then its n bytes
//	uvarint n  length of the profile (p/), then its n bytes
//	uvarint n  length of the policy record (k/), then its n bytes
//
// and nothing after. A part of length 0 stands for an absent key; the
// others are the stored values byte for byte, in the formats under Keys.
// An empty record, or one without parts, is a customer with nothing
// stored. A new format would take a new version byte; ImportRecords
// refuses versions it does not know.
//
// Store.ImportRecords writes records in bulk: read-write transactions of
// many customers each, committed before one would exceed Badger's limits,
// never splitting a customer. A record replaces the customer's c/, p/ and
// k/ keys (a part of length 0 deletes the key; an empty record deletes the
// customer) and swaps the due index keys of the deferred offers of the
// replaced k/ record for those of the new one, in the same transaction,
// so that the due index invariant holds after an import (the keys of a
// replaced k/ record that does not decode are found by a scan of the
// index). The window record keeps the expiry in the record; one already
// past is not written. Every part is decoded first, with the decoders of
// Load and a msgpack decoding of the profile: a record that does not
// decode, or has no customer id, stops the import with ErrCorrupt naming
// the customer, and nothing of it is written; the records before it are.
// Importing the same records again changes nothing, so an import cut
// short is completed by running it again. Store.ExportCustomer gives the
// record of a customer's committed state, the very bytes Records gave at
// the Commit that wrote it: for the first snapshot of a partition.
//
// Store.ScanCustomerIDs lists, once each and in id order, the customers
// with any of c/, p/ and k/, reading no values, so that the engine finds
// those of partitions it no longer owns; Store.DropCustomers deletes
// them — c/, p/, k/ and their due index keys — in bulk. Seen markers (s/)
// belong to no customer: Store.ScanSeen lists them with their expiry, and
// Batch.MarkSeenUntil writes one with a given expiry (nothing when it has
// passed), so that a new owner restores them with the time they have
// left. Counters, outbox entries and watermarks are not replicated here.
//
// ImportRecords and DropCustomers run, like Commit, while no Shard is in
// use, and drop the customers they write from the caches, as Invalidate
// does. ExportCustomer, ScanCustomerIDs and ScanSeen only read Badger and
// may run on any goroutine while the engine runs.
//
// # Keys
//
//	c/<customer id>  window record, with Badger TTL longest retention + 24h
//	w/<customer id>\x00<seq>
//	                 chunk of window entries, seq a 4-byte big-endian
//	                 sequence number per customer; TTL as c/ when written
//	p/<customer id>  profile: msgpack map[string]any (absent when empty)
//	k/<customer id>  policy record, no TTL (absent when empty)
//	q/<release><customer id>\x00<offer id>
//	                 due index of deferred offers, empty value; release
//	                 is 8 bytes big-endian with the sign bit flipped, so
//	                 keys sort by release (then customer and offer id)
//	n/<name>         counter, int64 as 8 bytes big-endian (absent when 0)
//	s/<key>          seen marker (Batch.MarkSeen), empty value, Badger TTL
//	o/<engine key>   outbox entry, opaque value written by the engine
//	m/applied        watermark: version 1, uvarint len + stream name,
//	                 int64 LE stream creation (Unix ns), uint64 LE sequence
//	m/schema         one byte, the schema version (1); Open writes it into a
//	                 new store and refuses a newer one with ErrSchema
//
// The k/, q/ and n/ keys came later within schema 1: a store written
// before has none of them, and its customers load with an empty policy.
//
// The window record is: version byte 2; uvarint series count, then, when
// not 0, a zigzag varint base timestamp (the first of the first series);
// per series with entries (empty ones are left out) uvarint length +
// type, uvarint length + attribute, kind byte (1 none, 2 number, 3 hash),
// for a number series a value mode byte (0 float64, 1 integers, 2 cents),
// uvarint entry count n, a zigzag varint first timestamp minus the base,
// n-1 uvarint deltas, then n values: little-endian float64, or zigzag
// varints of the value (mode 1) or of the value times 100 (mode 2), or
// little-endian uint64 hashes. A mode other than 0 is written only when
// every value of the series comes back bit for bit. Version 1 (each
// series with entries or not, the first timestamp absolute, always
// float64) is still read; a record is rewritten in version 2 when the
// customer's windows next change. The decoder rejects anything else with
// ErrCorrupt naming the key; it never panics.
//
// A window record that lists chunks is of version 3: version byte 3,
// uvarint the next chunk's sequence number, uvarint chunk count, per chunk
// (oldest first) uvarint sequence number (below the next), uvarint Badger
// expiry (Unix seconds) and a flags byte (1: a base chunk), then as
// version 2 from the series count on. Chunks are version 2 records. A
// record without chunks is written in version 2, as before chunks, so a
// store written before them reads as it was.
//
// The policy record is: version byte 1; a string table (uvarint count,
// then uvarint length + bytes each) of the rule ids, channels, outcomes
// and reasons, referred to below by uvarint index; uvarint length + the
// concatenated deferred ids, decision offer ids and event ids; uvarint
// length + the concatenated deferred data; uvarint contact count, per
// contact the time (zigzag varint first, then uvarint deltas), rule,
// channel and kind byte; uvarint total count, per total (sorted by rule)
// the rule and a zigzag varint; uvarint deferred count, per offer (sorted
// by release, then id) the id length, zigzag varint release and expiry,
// and data length; uvarint decision count, per decision (oldest first) a
// zigzag varint time delta to the previous, rule, offer and event id
// lengths, outcome, reason and channel. Its decoder likewise checks every
// count, index, length and order, and never panics.
//
// The k/ record has no TTL: it holds lifetime totals and pending offers.
// Contacts older than the retention are dropped by the next AddContact
// and decisions beyond the ring by the next AddDecision; the record of a
// customer who got no offers for long keeps its last state.
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
// The cached customers are most of the engine's live heap, and the
// collector marks all of it at each cycle, so a cached customer keeps as
// few objects, bytes and pointers as it can. It holds only the series that
// took entries, not one per series of the plan (a slot per plan series,
// two bytes, says where each is); a series holds its entries, kind and
// plan index but not its type and attribute, which are its plan's (a
// customer decoded and not yet aligned keeps the record's names beside its
// series); and the profile's field names and the string values of fields
// that take few values (segment, branch, time zone, tags: at most 1,024
// distinct values per field, 64 fields per shard) are shared by the
// shard's customers (profile_intern.go). BenchmarkCachedCustomer measures
// it: with a bank-like profile and 3 of 30 series with entries, 19.7 heap
// objects and 2.5 KB per cached customer and 1.0 µs of a full collection,
// against 31.8, 5.6 KB and 1.5 µs with every plan series and no sharing.
//
// # Badger
//
// Open uses badger.DefaultOptions with: conflict detection off (a single
// writer commits), one version per key, SyncWrites from Options, and modest
// memory for a process that keeps its own decoded cache — 32 MiB memtables
// (default 64: with 32, the engine spent 10% less CPU per event at 20,000
// events/s, docs/bench.md), 3 of them (default 5), the block and index
// caches of Options and 2 compactors (default 4). A batch may hold at most
// 15% of a memtable (about 4.8 MiB); beyond it Commit returns
// ErrBatchTooBig. Values below 1 MiB stay in the LSM tree, so the value
// log is mostly the write-ahead log; a goroutine runs RunValueLogGC(0.5)
// every GCInterval until it returns ErrNoRewrite, and stops on Close.
package state

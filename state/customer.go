package state

import (
	"math"
)

// Customer is the decoded state of one customer: profile, window series and
// contact policy. It belongs to the Shard that loaded it and is used by that
// shard's goroutine only. A *Customer stays valid until the next
// Store.Commit or Store.Invalidate; after that, Load it again. A customer
// from Store.Snapshot belongs to no shard and to the caller.
type Customer struct {
	id      string
	profile map[string]any
	// plan is the plan series is aligned with; nil after decoding, before
	// the first Apply or Value.
	plan *Plan
	// series are the customer's series: with a plan only those that ever
	// took an entry since the customer was loaded or had one stored, in no
	// particular order, and slot[i] is 1 + the position of plan series i
	// (0: the customer has none). Most customers have a few of the plan's
	// series, and the cache keeps every customer's array for the
	// collector to scan.
	series []series
	slot   []uint16
	// names are the series' types and attributes while plan is nil; with
	// a plan they are the plan's (seriesName).
	names []seriesName
	pol   policy

	// due is the due index as committed: the refs of the deferred offers
	// of the stored k/ record, in key order. Put writes the difference to
	// the current deferred offers and keeps them in duePut; a successful
	// Commit makes duePut the new due.
	due, duePut []dueRef
	duePending  bool

	// chunks are the chunks of the stored window record, oldest first,
	// and nextChunk the sequence number of the next (see chunk.go). The
	// first sealed entries of each series are theirs.
	chunks    []chunkRef
	nextChunk uint32
	// reseal tells Put to write all entries into the window record again
	// and delete the chunks: an entry went among the sealed ones (a late
	// event), or a series with sealed entries was dropped.
	reseal bool

	// windowExpires is the Badger expiry (Unix seconds, 0 none) of the
	// stored window record, as read or last Put; Put under
	// Options.Replicate keeps it when it rewrites unchanged windows.
	windowExpires uint64
	// stored* tell whether c/, p/ and k/ exist, as read or last Put, so
	// that Put under Options.Replicate deletes no key that is not there.
	storedWindow, storedProfile, storedPolicy bool

	windowDirty, profileDirty, policyDirty bool
	// gen counts changes; Commit clears the dirty flags only when gen has
	// not moved since Put. It is never reset, also not on recycling.
	gen uint64

	shard      *Shard
	maxEntries int

	// Cache bookkeeping (see shard.go).
	prev, next *Customer
	linked     bool // in the shard's LRU list
	cached     bool // in the shard's map
	pinned     bool // in the shard's pinned list
}

// series is one time-ordered list of entries. The live entries are
// ts[off:] (and num[off:] or hash[off:] beside them); evicted entries
// before off are compacted away when the slice is full, so that steady
// state appends do not allocate.
type series struct {
	ts   []int64
	num  []float64 // kindNumber
	hash []uint64  // kindHash
	off  int
	// sealed is how many of the live entries, the first ones, chunks
	// hold; the window record holds the others.
	sealed int
	// cur tells whether the event of the last Apply (at curTs) was inserted
	// into this series; Since excludes it.
	curTs int64
	def   uint16 // its index in the plan, with a plan
	cur   bool
	kind  valueKind
}

// noSeries is what Value reads for a series the customer does not have.
var noSeries series

// seriesName is what identifies a series besides its value kind.
type seriesName struct{ typ, attr string }

// dropNames forgets the record's series names, keeping the array.
func (c *Customer) dropNames() {
	clear(c.names)
	c.names = c.names[:0]
}

// seriesName returns the type and attribute of series i.
func (c *Customer) seriesName(i int) (typ, attr string) {
	if c.plan != nil {
		d := &c.plan.series[c.series[i].def]
		return d.typ, d.attr
	}
	n := &c.names[i]
	return n.typ, n.attr
}

// ID returns the customer id.
func (c *Customer) ID() string { return c.id }

// Profile returns the profile attributes: never nil, empty when the
// customer has none. The caller must not modify the map.
func (c *Customer) Profile() map[string]any { return c.profile }

// MergeProfile sets the keys of attrs in the profile; a nil value deletes
// the key. It marks the profile dirty. The values are kept as given, but
// for strings (also in lists, which change in place) that the shard
// replaces with equal shared copies (profile_intern.go): the caller must
// not modify them afterwards.
func (c *Customer) MergeProfile(attrs map[string]any) {
	for k, v := range attrs {
		if v == nil {
			delete(c.profile, k)
			continue
		}
		if c.shard != nil {
			k, v = c.shard.pv.intern(k, v)
		}
		c.profile[k] = v
	}
	c.profileDirty = true
	c.gen++
}

// Dirty reports whether the customer changed since it was loaded or last
// committed.
func (c *Customer) Dirty() bool { return c.windowDirty || c.profileDirty || c.policyDirty }

// Apply adds the event (type typ at tsMillis, event time in Unix ms) to
// every series of p it belongs to, and marks the customer dirty when a
// series changed (an event no series takes leaves nothing to write).
//
// Number series take attrs[Attr] when it is a Go number (NaN excepted);
// distinct series take strings, numbers and bools; count/since series take
// every event of their type.
func (c *Customer) Apply(p *Plan, typ string, tsMillis int64, attrs map[string]any) {
	if c.plan != p {
		c.realign(p)
	}
	c.resetCurrent()
	changed := false
	dropped := 0
	for i := range p.series {
		d := &p.series[i]
		if d.typ != typ && d.typ != "*" {
			continue
		}
		var v float64
		var h uint64
		switch d.kind {
		case kindNumber:
			f, ok := toFloat(attrs[d.attr])
			if !ok || math.IsNaN(f) {
				continue
			}
			v = f
		case kindHash:
			x, ok := hashValue(attrs[d.attr])
			if !ok {
				continue
			}
			h = x
		}
		s := c.seriesFor(i, d.kind)
		ins, n, resealed := s.insert(tsMillis, v, h, d.retention, c.maxEntries)
		s.cur, s.curTs = ins, tsMillis
		c.reseal = c.reseal || resealed
		dropped += n
		changed = changed || ins || n > 0
	}
	if changed {
		c.windowDirty = true
		c.gen++
	}
	if dropped > 0 && c.shard != nil && c.shard.metrics != nil {
		c.shard.metrics.seriesOverflow.Add(float64(dropped))
	}
}

// Value evaluates aggregate i of p at event time atMillis over the window
// (atMillis-W, atMillis]. Count, Sum and Distinct of an empty window are 0;
// Min, Max and Avg are NaN; Since without a previous event is +Inf.
func (c *Customer) Value(p *Plan, i int, atMillis int64) float64 {
	if c.plan != p {
		c.realign(p)
	}
	s := &noSeries
	if k := c.slot[p.specSeries[i]]; k > 0 {
		s = &c.series[k-1]
	}
	ts := s.ts[s.off:]
	from := atMillis - p.windows[i]
	hi := upperBound(ts, atMillis)
	lo := upperBound(ts[:hi], from)
	switch p.specs[i].Kind {
	case Count:
		return float64(hi - lo)
	case Sum:
		sum := 0.0
		for _, v := range s.num[s.off+lo : s.off+hi] {
			sum += v
		}
		return sum
	case Avg:
		if hi == lo {
			return math.NaN()
		}
		sum := 0.0
		for _, v := range s.num[s.off+lo : s.off+hi] {
			sum += v
		}
		return sum / float64(hi-lo)
	case Min:
		if hi == lo {
			return math.NaN()
		}
		m := math.Inf(1)
		for _, v := range s.num[s.off+lo : s.off+hi] {
			m = min(m, v)
		}
		return m
	case Max:
		if hi == lo {
			return math.NaN()
		}
		m := math.Inf(-1)
		for _, v := range s.num[s.off+lo : s.off+hi] {
			m = max(m, v)
		}
		return m
	case Distinct:
		return float64(c.distinct(s.hash[s.off+lo : s.off+hi]))
	case Since:
		n := hi
		if s.cur && n > 0 && ts[n-1] == s.curTs {
			n-- // the current event is not its own previous
		}
		if n == 0 || ts[n-1] <= from {
			return math.Inf(1)
		}
		return float64(atMillis - ts[n-1])
	}
	return math.NaN()
}

// smallDistinct is the window size up to which distinct counts by
// comparing pairs instead of filling a map.
const smallDistinct = 64

func (c *Customer) distinct(hs []uint64) int {
	if len(hs) <= smallDistinct {
		n := 0
	outer:
		for i, h := range hs {
			for _, g := range hs[:i] {
				if g == h {
					continue outer
				}
			}
			n++
		}
		return n
	}
	var m map[uint64]struct{}
	if c.shard != nil {
		if c.shard.scratch == nil {
			c.shard.scratch = make(map[uint64]struct{}, len(hs))
		}
		m = c.shard.scratch
		clear(m)
	} else {
		m = make(map[uint64]struct{}, len(hs))
	}
	for _, h := range hs {
		m[h] = struct{}{}
	}
	return len(m)
}

// seriesFor returns the customer's series of plan series i (of kind),
// adding it, empty, when the customer has none. The arrays of a series
// dropped earlier are reused.
func (c *Customer) seriesFor(i int, kind valueKind) *series {
	if k := c.slot[i]; k > 0 {
		return &c.series[k-1]
	}
	n := len(c.series)
	if n < cap(c.series) {
		c.series = c.series[:n+1]
	} else {
		c.series = append(c.series, series{})
	}
	s := &c.series[n]
	*s = series{ts: s.ts[:0], num: s.num[:0], hash: s.hash[:0], def: uint16(i), kind: kind}
	c.slot[i] = uint16(n + 1)
	return s
}

// realign makes c's series those of p: series are matched by identity
// (type, attribute, value kind), those p does not have and empty ones are
// dropped (their arrays stay behind the kept ones, for reuse), and
// retention changes apply at once. A customer read from Badger is
// realigned once per load, in place: a recycled customer allocates
// nothing once its arrays are large enough.
func (c *Customer) realign(p *Plan) {
	kept := 0
	for j := range c.series {
		s := &c.series[j]
		typ, attr := c.seriesName(j)
		i := p.seriesIndex(typ, attr, s.kind)
		if i < 0 || s.len() == 0 {
			if s.sealed > 0 {
				c.reseal = true // its chunks still hold it
			}
			continue
		}
		s.def = uint16(i)
		if k := len(s.ts); k > s.off {
			s.evictBefore(s.ts[k-1] - p.series[i].retention)
		}
		if s.len() == 0 {
			continue
		}
		c.series[kept], c.series[j] = c.series[j], c.series[kept] // no two series share an array
		kept++
	}
	c.series = c.series[:kept]
	if cap(c.slot) < len(p.series) {
		c.slot = make([]uint16, len(p.series))
	}
	c.slot = c.slot[:len(p.series)]
	clear(c.slot)
	for j := range c.series {
		c.slot[c.series[j].def] = uint16(j + 1)
	}
	c.plan = p
	c.dropNames()
}

// resetCurrent forgets which event was current (a new event is coming).
func (c *Customer) resetCurrent() {
	for i := range c.series {
		c.series[i].cur = false
	}
}

// reset clears c for reuse by another customer, keeping allocated memory.
func (c *Customer) reset() {
	c.id = ""
	clear(c.profile)
	c.plan = nil
	for i := range c.series {
		s := &c.series[i]
		*s = series{ts: s.ts[:0], num: s.num[:0], hash: s.hash[:0]}
	}
	c.series = c.series[:0]
	c.slot = c.slot[:0]
	c.dropNames()
	c.pol.reset()
	clear(c.due)
	c.due = c.due[:0]
	clear(c.duePut)
	c.duePut, c.duePending = c.duePut[:0], false
	c.windowExpires = 0
	clear(c.chunks)
	c.chunks, c.nextChunk, c.reseal = c.chunks[:0], 0, false
	c.storedWindow, c.storedProfile, c.storedPolicy = false, false, false
	c.windowDirty, c.profileDirty, c.policyDirty = false, false, false
	c.gen++
}

// hasEntries reports whether any series holds an entry.
func (c *Customer) hasEntries() bool {
	for i := range c.series {
		if c.series[i].len() > 0 {
			return true
		}
	}
	return false
}

func (s *series) len() int { return len(s.ts) - s.off }

// insert adds an entry in time order (after entries with an equal ts) and
// evicts what falls out of retention or beyond maxEntries. It reports
// whether the entry is in the series afterwards and how many entries the
// cap dropped.
func (s *series) insert(t int64, v float64, h uint64, retention int64, maxEntries int) (inserted bool, dropped int, resealed bool) {
	n := len(s.ts)
	if n > s.off && t <= s.ts[n-1]-retention {
		return false, 0, false // late beyond retention
	}
	if n == cap(s.ts) && s.off > 0 {
		s.compact()
		n = len(s.ts)
	}
	pos := n
	if n > s.off && t < s.ts[n-1] {
		pos = s.off + upperBound(s.ts[s.off:], t)
	}
	s.ts = append(s.ts, t)
	switch s.kind {
	case kindNumber:
		s.num = append(s.num, v)
	case kindHash:
		s.hash = append(s.hash, h)
	}
	if pos < n {
		copy(s.ts[pos+1:], s.ts[pos:n])
		s.ts[pos] = t
		switch s.kind {
		case kindNumber:
			copy(s.num[pos+1:], s.num[pos:n])
			s.num[pos] = v
		case kindHash:
			copy(s.hash[pos+1:], s.hash[pos:n])
			s.hash[pos] = h
		}
	}
	if pos < s.off+s.sealed {
		resealed = true // a chunk would miss it
		s.sealed++      // it is among the sealed entries until Put
	}
	s.evictBefore(s.ts[len(s.ts)-1] - retention)
	if over := s.len() - maxEntries; over > 0 {
		s.drop(over)
		dropped = over
	}
	inserted = pos >= s.off
	if s.off == len(s.ts) {
		s.clear()
	}
	return inserted, dropped, resealed
}

// evictBefore drops the entries with ts <= cut.
func (s *series) evictBefore(cut int64) {
	if s.off < len(s.ts) && s.ts[s.off] <= cut {
		s.drop(upperBound(s.ts[s.off:], cut))
		if s.off == len(s.ts) {
			s.clear()
		}
	}
}

// drop drops the first k live entries.
func (s *series) drop(k int) {
	s.off += k
	s.sealed = max(s.sealed-k, 0)
}

func (s *series) clear() {
	s.ts, s.num, s.hash, s.off, s.sealed = s.ts[:0], s.num[:0], s.hash[:0], 0, 0
}

// compact moves the live entries to the front of their arrays.
func (s *series) compact() {
	n := copy(s.ts, s.ts[s.off:])
	s.ts = s.ts[:n]
	switch s.kind {
	case kindNumber:
		s.num = s.num[:copy(s.num, s.num[s.off:])]
	case kindHash:
		s.hash = s.hash[:copy(s.hash, s.hash[s.off:])]
	}
	s.off = 0
}

// upperBound returns the number of entries of the ascending ts that are
// <= x (the index of the first entry > x), by binary search.
func upperBound(ts []int64, x int64) int {
	lo, hi := 0, len(ts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if ts[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// toFloat converts any Go integer or float type to float64.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case int64:
		return float64(x), true
	case int:
		return float64(x), true
	case float32:
		return float64(x), true
	case int8:
		return float64(x), true
	case int16:
		return float64(x), true
	case int32:
		return float64(x), true
	case uint:
		return float64(x), true
	case uint8:
		return float64(x), true
	case uint16:
		return float64(x), true
	case uint32:
		return float64(x), true
	case uint64:
		return float64(x), true
	case uintptr:
		return float64(x), true
	}
	return 0, false
}

// FNV-1a, 64 bit.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// Tags keep strings, numbers and bools apart in the hashed form.
const (
	tagString = 's'
	tagNumber = 'n'
	tagBool   = 'b'
)

// hashValue hashes a distinct value in a canonical form with FNV-1a (no
// seed, so hashes are stable across restarts): a tag byte, then the string
// bytes, the bool, or the IEEE-754 bits of the number as float64 (so 1 and
// 1.0 are equal; -0 is 0 and every NaN is one NaN). Other types are not
// counted.
func hashValue(v any) (uint64, bool) {
	h := uint64(fnvOffset)
	switch x := v.(type) {
	case string:
		h = (h ^ tagString) * fnvPrime
		for i := 0; i < len(x); i++ {
			h = (h ^ uint64(x[i])) * fnvPrime
		}
		return h, true
	case bool:
		h = (h ^ tagBool) * fnvPrime
		b := uint64(0)
		if x {
			b = 1
		}
		return (h ^ b) * fnvPrime, true
	}
	f, ok := toFloat(v)
	if !ok {
		return 0, false
	}
	var bits uint64
	switch {
	case f == 0:
		bits = 0
	case math.IsNaN(f):
		bits = 0x7FF8000000000001
	default:
		bits = math.Float64bits(f)
	}
	h = (h ^ tagNumber) * fnvPrime
	for i := 0; i < 8; i++ {
		h = (h ^ (bits & 0xff)) * fnvPrime
		bits >>= 8
	}
	return h, true
}

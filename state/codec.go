package state

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Keys. See doc.go for the layout.
const (
	prefixCustomer = "c/"
	prefixProfile  = "p/"
	prefixOutbox   = "o/"
	prefixPolicy   = "k/"
	prefixDue      = "q/"
	prefixCounter  = "n/"
	prefixSeen     = "s/"
	keyApplied     = "m/applied"
	keySchema      = "m/schema"
)

// schemaVersion is the version of the key layout and record encodings
// written by this package, stored under m/schema.
const schemaVersion = 1

// windowVersion is the first byte of a window record written without
// chunks, and of every chunk; version 1 is read too (see appendWindow).
const windowVersion = 2

// windowHeadVersion is the first byte of a window record that lists
// chunks (see appendWindowHead).
const windowHeadVersion = 3

// watermarkVersion is the first byte of the m/applied record.
const watermarkVersion = 1

// policyVersion is the first byte of a policy record. Version 2 added the
// offer id of each contact, version 3 the exposures, version 4 the last
// day seen per event type; older records still decode (without them).
const policyVersion = 4

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// appendWindow appends the window record of c to dst:
//
//	version byte (2)
//	uvarint series count, then, when it is not 0, zigzag varint base: the
//	first timestamp of the first series; then per series that has
//	entries (an empty one is left out: the plan's series missing from a
//	record start empty when the customer is realigned to the plan):
//	  uvarint len + type bytes, uvarint len + attr bytes, kind byte,
//	  for a number series a value mode byte (below),
//	  uvarint entry count n (> 0),
//	  zigzag varint first ts - base (wrapping), n-1 uvarint deltas to the
//	  previous ts,
//	  then n values: for a number series, by mode, 0: little-endian
//	  float64; 1: zigzag varint of the value, an integer; 2: zigzag
//	  varint of the value times 100, a whole number of cents; for a hash
//	  series (distinct) little-endian uint64.
//
// Mode 1 or 2 is chosen only when every value of the series comes back
// bit for bit (amounts are mostly whole or in cents: 3 bytes instead of
// 8). Version 1, still read, had no base (each first ts absolute) and no
// mode (always float64).
func appendWindow(dst []byte, c *Customer) []byte {
	return appendSeries(append(dst, windowVersion), c, false)
}

// appendWindowHead appends the window record of c that lists its chunks
// (see chunk.go), holding only the entries no chunk holds:
//
//	version byte (3)
//	uvarint the sequence number of the next chunk
//	uvarint chunk count, then per chunk (oldest first): uvarint sequence
//	  number, uvarint Badger expiry (Unix seconds), flags byte (1: a
//	  base chunk, one that holds all the entries sealed before it)
//	then as version 2 from the series count on.
func appendWindowHead(dst []byte, c *Customer) []byte {
	dst = append(dst, windowHeadVersion)
	dst = binary.AppendUvarint(dst, uint64(c.nextChunk))
	dst = binary.AppendUvarint(dst, uint64(len(c.chunks)))
	for _, r := range c.chunks {
		dst = binary.AppendUvarint(dst, uint64(r.seq))
		dst = binary.AppendUvarint(dst, r.expires)
		var flags byte
		if r.base {
			flags = 1
		}
		dst = append(dst, flags)
	}
	return appendSeries(dst, c, true)
}

// appendSeries appends the series part of a window record: of every live
// entry, or when unsealed only of those no chunk holds.
func appendSeries(dst []byte, c *Customer, unsealed bool) []byte {
	first := func(s *series) int {
		if unsealed {
			return s.off + s.sealed
		}
		return s.off
	}
	n := 0
	var base int64
	for i := range c.series {
		if s := &c.series[i]; first(s) < len(s.ts) {
			if n == 0 {
				base = s.ts[first(s)]
			}
			n++
		}
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	if n > 0 {
		dst = binary.AppendVarint(dst, base)
	}
	for i := range c.series {
		s := &c.series[i]
		off := first(s)
		if off == len(s.ts) {
			continue
		}
		typ, attr := c.seriesName(i)
		dst = binary.AppendUvarint(dst, uint64(len(typ)))
		dst = append(dst, typ...)
		dst = binary.AppendUvarint(dst, uint64(len(attr)))
		dst = append(dst, attr...)
		dst = append(dst, byte(s.kind))
		mode := numFloat
		if s.kind == kindNumber {
			mode = numberMode(s.num[off:])
			dst = append(dst, mode)
		}
		ts := s.ts[off:]
		dst = binary.AppendUvarint(dst, uint64(len(ts)))
		dst = binary.AppendVarint(dst, int64(uint64(ts[0])-uint64(base)))
		for j := 1; j < len(ts); j++ {
			dst = binary.AppendUvarint(dst, uint64(ts[j])-uint64(ts[j-1]))
		}
		switch s.kind {
		case kindNumber:
			for _, v := range s.num[off:] {
				switch mode {
				case numInteger:
					dst = binary.AppendVarint(dst, int64(v))
				case numCents:
					dst = binary.AppendVarint(dst, int64(math.Round(v*100)))
				default:
					dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
				}
			}
		case kindHash:
			for _, h := range s.hash[off:] {
				dst = binary.LittleEndian.AppendUint64(dst, h)
			}
		}
	}
	return dst
}

// Value modes of a number series in a window record.
const (
	numFloat   byte = iota // little-endian float64
	numInteger             // zigzag varint
	numCents               // zigzag varint of value*100
)

// maxExact is 2^53: integers up to it are exact in a float64.
const maxExact = 1 << 53

// numberMode returns the most compact mode that gives every value back
// bit for bit: -0, NaN, infinities and fractions other than cents keep
// float64.
func numberMode(vs []float64) byte {
	integers := true
	for _, v := range vs {
		if v == 0 && math.Signbit(v) || !(math.Abs(v) <= maxExact) {
			return numFloat
		}
		if v != math.Trunc(v) {
			integers = false
		}
	}
	if integers {
		return numInteger
	}
	for _, v := range vs {
		if r := math.Round(v * 100); !(math.Abs(r) <= maxExact) || r/100 != v {
			return numFloat
		}
	}
	return numCents
}

// decoder reads a record; every read checks bounds.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = corruptf("%s at byte %d", what, len(d.b))
	}
	d.b = nil
}

// failf records a problem that is not about running out of bytes.
func (d *decoder) failf(format string, args ...any) {
	if d.err == nil {
		d.err = corruptf(format, args...)
	}
	d.b = nil
}

func (d *decoder) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte(what string) byte {
	if len(d.b) < 1 {
		d.fail(what)
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u64(what string) uint64 {
	if len(d.b) < 8 {
		d.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// decodeWindow replaces the series of c with the record in data, reusing
// c's arrays; in, when not nil, interns the series' types and attributes.
// A record of version 3 also gives c its chunk list, and only its own
// entries: readWindow reads the chunks' first. data is not retained. It
// never panics; on error c's series and chunks are left empty.
func decodeWindow(c *Customer, data []byte, in *interner) error {
	c.clearWindow()
	d := decoder{b: data}
	version := d.byte("version")
	if d.err == nil && version == windowHeadVersion {
		version = windowVersion
		d.err = decodeChunkList(c, &d)
	}
	err := d.err
	if err == nil {
		err = decodeSeries(c, &d, version, in, false)
	}
	if err != nil {
		c.clearWindow()
	}
	return err
}

// clearWindow empties c's series and chunk list, keeping their arrays.
func (c *Customer) clearWindow() {
	c.plan = nil
	c.series = c.series[:0]
	c.dropNames()
	clear(c.chunks)
	c.chunks, c.nextChunk = c.chunks[:0], 0
}

// decodeChunkList reads the chunk list of a version 3 record, after its
// version byte, into c.
func decodeChunkList(c *Customer, d *decoder) error {
	next := d.uvarint("next chunk")
	// Every chunk takes at least 3 bytes.
	nc := d.uvarint("chunk count")
	if d.err == nil && (next > math.MaxUint32 || nc > uint64(len(d.b))/3) {
		return corruptf("chunk count %d or next chunk %d out of range", nc, next)
	}
	c.nextChunk = uint32(next)
	for k := uint64(0); k < nc && d.err == nil; k++ {
		seq := d.uvarint("chunk sequence")
		exp := d.uvarint("chunk expiry")
		flags := d.byte("chunk flags")
		if d.err == nil && (seq >= next || flags > 1 || k > 0 && uint32(seq) <= c.chunks[k-1].seq) {
			return corruptf("chunk %d of %d with flags %d, not after the one before", seq, next, flags)
		}
		c.chunks = append(c.chunks, chunkRef{seq: uint32(seq), expires: exp, base: flags == 1})
	}
	return d.err
}

// decodeChunk appends the entries of a chunk (a record of version 1 or 2)
// to c's series of the same type, attribute and kind (a series c lacks is
// added). The caller checks the order (readWindow).
func decodeChunk(c *Customer, data []byte, in *interner) error {
	d := decoder{b: data}
	version := d.byte("version")
	if d.err != nil {
		return d.err
	}
	if version != 1 && version != windowVersion {
		return corruptf("unknown chunk version %d", version)
	}
	return decodeSeries(c, &d, version, in, true)
}

// decodeSeries reads the series part of a window record of the version
// (1 or 2) into c. With chunk, the entries are appended to c's series
// of the same type, attribute and kind (a series c lacks is added), as
// for a chunk.
func decodeSeries(c *Customer, d *decoder, version byte, in *interner, chunk bool) error {
	if version != 1 && version != windowVersion {
		return corruptf("unknown window record version %d", version)
	}
	ns := d.uvarint("series count")
	// Every series takes at least 4 bytes.
	if d.err == nil && ns > uint64(len(d.b))/4 {
		return corruptf("series count %d exceeds record size", ns)
	}
	var base int64
	if version > 1 && ns > 0 {
		base = d.varint("base timestamp")
	}
	for k := uint64(0); k < ns && d.err == nil; k++ {
		typ := d.bytes("series type")
		attr := d.bytes("series attribute")
		kind := valueKind(d.byte("series kind"))
		if d.err == nil && (kind < kindNone || kind > kindHash) {
			return corruptf("unknown series kind %d", kind)
		}
		mode := numFloat
		if version > 1 && kind == kindNumber {
			mode = d.byte("value mode")
			if d.err == nil && mode > numCents {
				return corruptf("unknown value mode %d", mode)
			}
		}
		n := d.uvarint("entry count")
		if d.err != nil {
			break
		}
		var s *series
		for j := range c.series {
			if n := &c.names[j]; c.series[j].kind == kind && n.typ == string(typ) && n.attr == string(attr) {
				if !chunk {
					return corruptf("duplicate series %q %q", typ, attr)
				}
				s = &c.series[j]
			}
		}
		per := uint64(1)
		switch {
		case kind == kindNone:
		case mode == numFloat:
			per += 8
		default:
			per++
		}
		if n > uint64(len(d.b))/per {
			return corruptf("entry count %d exceeds record size", n)
		}
		if s == nil {
			if len(c.series) < cap(c.series) {
				c.series = c.series[:len(c.series)+1]
			} else {
				c.series = append(c.series, series{})
			}
			c.names = append(c.names, seriesName{typ: in.bytes(typ), attr: in.bytes(attr)})
			s = &c.series[len(c.series)-1]
			*s = series{
				kind: kind,
				ts:   s.ts[:0],
				num:  s.num[:0],
				hash: s.hash[:0],
			}
		}
		if n == 0 {
			continue
		}
		t := d.varint("first timestamp")
		if version > 1 {
			t = int64(uint64(base) + uint64(t))
		}
		s.ts = append(s.ts, t)
		for j := uint64(1); j < n && d.err == nil; j++ {
			delta := d.uvarint("timestamp delta")
			if delta > uint64(math.MaxInt64)-uint64(t) {
				return corruptf("timestamp overflow")
			}
			t += int64(delta)
			s.ts = append(s.ts, t)
		}
		for j := uint64(0); j < n && d.err == nil && kind != kindNone; j++ {
			if kind == kindHash {
				s.hash = append(s.hash, d.u64("hash"))
				continue
			}
			var v float64
			switch mode {
			case numInteger:
				v = float64(d.varint("value"))
			case numCents:
				v = float64(d.varint("value")) / 100
			default:
				v = math.Float64frombits(d.u64("value"))
			}
			s.num = append(s.num, v)
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) > 0 {
		return corruptf("%d trailing bytes", len(d.b))
	}
	return nil
}

// Watermark is the position of the last applied message of the source
// stream. StreamCreated (Unix ns) tells a recreated stream of the same name
// apart.
type Watermark struct {
	Stream        string
	StreamCreated int64
	Seq           uint64
}

// appendWatermark encodes w: version byte (1), uvarint len + stream name,
// little-endian int64 StreamCreated, little-endian uint64 Seq.
func appendWatermark(dst []byte, w Watermark) []byte {
	dst = append(dst, watermarkVersion)
	dst = binary.AppendUvarint(dst, uint64(len(w.Stream)))
	dst = append(dst, w.Stream...)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(w.StreamCreated))
	return binary.LittleEndian.AppendUint64(dst, w.Seq)
}

func decodeWatermark(data []byte) (Watermark, error) {
	d := decoder{b: data}
	if v := d.byte("version"); d.err == nil && v != watermarkVersion {
		return Watermark{}, corruptf("unknown watermark version %d", v)
	}
	stream := d.bytes("stream")
	created := d.u64("stream created")
	seq := d.u64("sequence")
	if d.err != nil {
		return Watermark{}, d.err
	}
	if len(d.b) > 0 {
		return Watermark{}, corruptf("%d trailing bytes", len(d.b))
	}
	return Watermark{Stream: string(stream), StreamCreated: int64(created), Seq: seq}, nil
}

// strTable collects the distinct strings of a policy record, in order of
// first use, while encoding. Reused across records.
type strTable struct {
	idx   map[string]uint64
	strs  []string
	names map[string]string // see addBytes
	// dec and decTS are appendPolicy's scratch: the fields and times
	// of the record's decisions (slices of its policy's bytes until
	// the next appendPolicy).
	dec   []decisionFields
	decTS []int64
}

func (t *strTable) reset() {
	clear(t.idx)
	clear(t.strs)
	t.strs = t.strs[:0]
	clear(t.dec)
	t.dec = t.dec[:0]
}

func (t *strTable) add(s string) {
	if t.idx == nil {
		t.idx = make(map[string]uint64)
	}
	if _, ok := t.idx[s]; !ok {
		t.idx[s] = uint64(len(t.strs))
		t.strs = append(t.strs, s)
	}
}

func (t *strTable) appendRef(dst []byte, s string) []byte {
	return binary.AppendUvarint(dst, t.idx[s])
}

// addBytes is add of a string held as bytes. The table keeps the strings
// it made (names) across resets, so a name repeated in every record is
// allocated once; they are the rule ids, channels, outcomes and reasons of
// decisions, a small set, and are forgotten past 4,096.
func (t *strTable) addBytes(b []byte) {
	if _, ok := t.idx[string(b)]; ok {
		return
	}
	s, ok := t.names[string(b)]
	if !ok {
		if t.names == nil || len(t.names) >= 4096 {
			t.names = make(map[string]string)
		}
		s = string(b)
		t.names[s] = s
	}
	t.add(s)
}

func (t *strTable) appendRefBytes(dst []byte, b []byte) []byte {
	return binary.AppendUvarint(dst, t.idx[string(b)])
}

// appendPolicy appends the policy record of p to dst, using t (reset here)
// as scratch:
//
//	version byte (4)
//	uvarint string count, then per string uvarint len + bytes: the
//	  table of rule ids, channels, outcomes and reasons, referred to
//	  below as uvarint indexes ("ref")
//	uvarint len + ids: the contact OfferIDs, the deferred IDs, the
//	  decision OfferIDs and EventIDs, then the exposure OfferIDs,
//	  concatenated in the order they appear below
//	uvarint len + data: the deferred Data, then the exposure Data
//	uvarint contact count, then per contact: TS (the first as a zigzag
//	  varint, then uvarint deltas to the previous), rule ref, channel
//	  ref, kind byte, uvarint OfferID length
//	uvarint total count, then per total (sorted by rule): rule ref,
//	  zigzag varint n (never 0)
//	uvarint deferred count, then per offer (sorted by Release, ID):
//	  uvarint ID length, zigzag varint Release, zigzag varint Expires,
//	  uvarint Data length
//	uvarint decision count, then per decision (oldest first): zigzag
//	  varint TS minus the previous TS (the first minus 0, both modulo
//	  2^64), rule ref, uvarint OfferID length, uvarint EventID length,
//	  outcome ref, reason ref, channel ref
//	uvarint exposure count, then per exposure (in TS order): zigzag
//	  varint TS minus the previous TS, rule ref, uvarint OfferID length,
//	  flags byte (1 holdout, 2 converted), uvarint Data length
//	uvarint seen count, then per type (sorted): type ref, zigzag varint day
//
// The lengths take their bytes from ids and data in turn, which they must
// use up exactly. Decoding then allocates one string for all ids and one
// slice for all data instead of one per entry.
func appendPolicy(dst []byte, p *policy, t *strTable) []byte {
	contacts := p.contacts[p.coff:]
	t.reset()
	for i := range contacts {
		t.add(contacts[i].Rule)
		t.add(contacts[i].Channel)
	}
	for i := range p.totals {
		t.add(p.totals[i].rule)
	}
	// The decisions are read once into t's scratch.
	t.decTS, t.dec = t.decTS[:0], t.dec[:0]
	for i := range p.decAt {
		var f decisionFields
		t.decTS = append(t.decTS, p.decision(i, &f))
		t.dec = append(t.dec, f)
	}
	for i := range t.dec {
		f := &t.dec[i]
		t.addBytes(f[fieldRule])
		t.addBytes(f[fieldOutcome])
		t.addBytes(f[fieldReason])
		t.addBytes(f[fieldChannel])
	}
	for i := range p.exposures {
		t.add(p.exposures[i].Rule)
	}
	for i := range p.seen {
		t.add(p.seen[i].Type)
	}
	dst = append(dst, policyVersion)
	dst = binary.AppendUvarint(dst, uint64(len(t.strs)))
	for _, s := range t.strs {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
		dst = append(dst, s...)
	}

	ids, data := 0, 0
	for i := range contacts {
		ids += len(contacts[i].OfferID)
	}
	for i := range p.deferred {
		ids += len(p.deferred[i].ID)
		data += len(p.deferred[i].Data)
	}
	for i := range t.dec {
		ids += len(t.dec[i][fieldOfferID]) + len(t.dec[i][fieldEventID])
	}
	for i := range p.exposures {
		ids += len(p.exposures[i].OfferID)
		data += len(p.exposures[i].Data)
	}
	dst = binary.AppendUvarint(dst, uint64(ids))
	for i := range contacts {
		dst = append(dst, contacts[i].OfferID...)
	}
	for i := range p.deferred {
		dst = append(dst, p.deferred[i].ID...)
	}
	for i := range t.dec {
		dst = append(append(dst, t.dec[i][fieldOfferID]...), t.dec[i][fieldEventID]...)
	}
	for i := range p.exposures {
		dst = append(dst, p.exposures[i].OfferID...)
	}
	dst = binary.AppendUvarint(dst, uint64(data))
	for i := range p.deferred {
		dst = append(dst, p.deferred[i].Data...)
	}
	for i := range p.exposures {
		dst = append(dst, p.exposures[i].Data...)
	}

	dst = binary.AppendUvarint(dst, uint64(len(contacts)))
	for i := range contacts {
		ct := &contacts[i]
		if i == 0 {
			dst = binary.AppendVarint(dst, ct.TS)
		} else {
			dst = binary.AppendUvarint(dst, uint64(ct.TS)-uint64(contacts[i-1].TS))
		}
		dst = t.appendRef(dst, ct.Rule)
		dst = t.appendRef(dst, ct.Channel)
		dst = append(dst, ct.Kind)
		dst = binary.AppendUvarint(dst, uint64(len(ct.OfferID)))
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.totals)))
	for i := range p.totals {
		dst = t.appendRef(dst, p.totals[i].rule)
		dst = binary.AppendVarint(dst, p.totals[i].n)
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.deferred)))
	for i := range p.deferred {
		d := &p.deferred[i]
		dst = binary.AppendUvarint(dst, uint64(len(d.ID)))
		dst = binary.AppendVarint(dst, d.Release)
		dst = binary.AppendVarint(dst, d.Expires)
		dst = binary.AppendUvarint(dst, uint64(len(d.Data)))
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.decAt)))
	prev := int64(0)
	for i := range t.dec {
		f, ts := &t.dec[i], t.decTS[i]
		dst = binary.AppendVarint(dst, ts-prev)
		prev = ts
		dst = t.appendRefBytes(dst, f[fieldRule])
		dst = binary.AppendUvarint(dst, uint64(len(f[fieldOfferID])))
		dst = binary.AppendUvarint(dst, uint64(len(f[fieldEventID])))
		dst = t.appendRefBytes(dst, f[fieldOutcome])
		dst = t.appendRefBytes(dst, f[fieldReason])
		dst = t.appendRefBytes(dst, f[fieldChannel])
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.exposures)))
	prev = 0
	for i := range p.exposures {
		x := &p.exposures[i]
		dst = binary.AppendVarint(dst, x.TS-prev)
		prev = x.TS
		dst = t.appendRef(dst, x.Rule)
		dst = binary.AppendUvarint(dst, uint64(len(x.OfferID)))
		var flags byte
		if x.Holdout {
			flags |= 1
		}
		if x.Converted {
			flags |= 2
		}
		dst = append(dst, flags)
		dst = binary.AppendUvarint(dst, uint64(len(x.Data)))
	}
	dst = binary.AppendUvarint(dst, uint64(len(p.seen)))
	for i := range p.seen {
		dst = t.appendRef(dst, p.seen[i].Type)
		dst = binary.AppendVarint(dst, int64(p.seen[i].Day))
	}
	return dst
}

// decodePolicy replaces p with the record in data, reusing p's arrays and
// interning the table strings with in (nil: allocate). data is not
// retained. It never panics; on error p is left empty.
func decodePolicy(p *policy, data []byte, in *interner) error {
	p.reset()
	err := decodePolicyInto(p, data, in)
	if err != nil {
		p.reset()
	}
	return err
}

func decodePolicyInto(p *policy, data []byte, in *interner) error {
	d := decoder{b: data}
	version := d.byte("version")
	if d.err == nil && version != 1 && version != policyVersion {
		return corruptf("unknown policy record version %d", version)
	}
	// count reads an element count; every element takes at least min bytes.
	count := func(what string, min uint64) int {
		n := d.uvarint(what)
		if d.err == nil && n > uint64(len(d.b))/min {
			d.failf("%s %d exceeds record size", what, n)
			return 0
		}
		return int(n)
	}
	var tab []string
	if in != nil {
		tab = in.tab[:0]
		defer func() { clear(tab); in.tab = tab[:0] }()
	}
	ns := count("string count", 1)
	for range ns {
		b := d.bytes("string")
		if d.err != nil {
			return d.err
		}
		tab = append(tab, in.bytes(b))
	}
	ref := func(what string) string {
		i := d.uvarint(what)
		if d.err != nil {
			return ""
		}
		if i >= uint64(len(tab)) {
			d.failf("%s %d outside the string table of %d", what, i, len(tab))
			return ""
		}
		return tab[i]
	}
	ids := string(d.bytes("ids"))
	var blob []byte
	if b := d.bytes("data"); len(b) > 0 {
		blob = append([]byte(nil), b...)
	}
	// id and dataOf take the next n bytes of ids and blob.
	id := func(what string) string {
		n := d.uvarint(what)
		if d.err != nil {
			return ""
		}
		if n > uint64(len(ids)) {
			d.failf("%s of %d bytes beyond the %d left", what, n, len(ids))
			return ""
		}
		v := ids[:n]
		ids = ids[n:]
		return v
	}
	dataOf := func(what string) []byte {
		n := d.uvarint(what)
		if d.err != nil || n == 0 {
			return nil
		}
		if n > uint64(len(blob)) {
			d.failf("%s of %d bytes beyond the %d left", what, n, len(blob))
			return nil
		}
		v := blob[:n:n]
		blob = blob[n:]
		return v
	}

	n := count("contact count", 4)
	var ts int64
	for i := 0; i < n && d.err == nil; i++ {
		if i == 0 {
			ts = d.varint("contact timestamp")
		} else {
			delta := d.uvarint("contact timestamp delta")
			if d.err == nil && delta > uint64(math.MaxInt64)-uint64(ts) {
				return corruptf("contact timestamp overflow")
			}
			ts += int64(delta)
		}
		ct := Contact{TS: ts}
		ct.Rule = ref("contact rule")
		ct.Channel = ref("contact channel")
		ct.Kind = d.byte("contact kind")
		if version >= 2 {
			ct.OfferID = id("contact offer id")
		}
		p.contacts = append(p.contacts, ct)
	}

	n = count("total count", 2)
	for i := 0; i < n && d.err == nil; i++ {
		t := ruleTotal{rule: ref("total rule"), n: d.varint("total")}
		if d.err != nil {
			break
		}
		if t.n == 0 {
			return corruptf("total of rule %q is 0", t.rule)
		}
		if i > 0 && strings.Compare(p.totals[i-1].rule, t.rule) >= 0 {
			return corruptf("totals not sorted at %q", t.rule)
		}
		p.totals = append(p.totals, t)
	}

	n = count("deferred count", 4)
	var seen map[string]struct{}
	if n > 16 {
		seen = make(map[string]struct{}, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		df := Deferred{ID: id("deferred id")}
		df.Release = d.varint("deferred release")
		df.Expires = d.varint("deferred expiry")
		df.Data = dataOf("deferred data")
		if d.err != nil {
			break
		}
		if i > 0 && cmpDeferred(p.deferred[i-1], df) >= 0 {
			return corruptf("deferred offers not sorted at %q", df.ID)
		}
		dup := false
		if seen != nil {
			_, dup = seen[df.ID]
			seen[df.ID] = struct{}{}
		} else {
			for j := range p.deferred {
				dup = dup || p.deferred[j].ID == df.ID
			}
		}
		if dup {
			return corruptf("duplicate deferred offer %q", df.ID)
		}
		p.deferred = append(p.deferred, df)
	}

	n = count("decision count", 7)
	p.decs = slices.Grow(p.decs, n*decisionBytes)
	p.decAt = slices.Grow(p.decAt, n)
	ts = 0
	for i := 0; i < n && d.err == nil; i++ {
		ts += d.varint("decision timestamp")
		dc := Decision{TS: ts}
		dc.Rule = ref("decision rule")
		dc.OfferID = id("decision offer id")
		dc.EventID = id("decision event id")
		dc.Outcome = ref("decision outcome")
		dc.Reason = ref("decision reason")
		dc.Channel = ref("decision channel")
		p.decAt = append(p.decAt, uint32(len(p.decs)))
		p.decs = appendDecision(p.decs, &dc)
	}
	if version >= 3 {
		n = count("exposure count", 5)
		ts = 0
		for i := 0; i < n && d.err == nil; i++ {
			ts += d.varint("exposure timestamp")
			x := Exposure{TS: ts}
			x.Rule = ref("exposure rule")
			x.OfferID = id("exposure offer id")
			flags := d.byte("exposure flags")
			if flags > 3 {
				return corruptf("exposure flags %d", flags)
			}
			x.Holdout, x.Converted = flags&1 != 0, flags&2 != 0
			x.Data = dataOf("exposure data")
			if i > 0 && d.err == nil && p.exposures[i-1].TS > x.TS {
				return corruptf("exposures not in time order")
			}
			p.exposures = append(p.exposures, x)
		}
	}
	if version >= 4 {
		n = count("seen count", 2)
		for i := 0; i < n && d.err == nil; i++ {
			sd := SeenDay{Type: ref("seen type")}
			day := d.varint("seen day")
			if d.err != nil {
				break
			}
			if day < math.MinInt32 || day > math.MaxInt32 {
				return corruptf("seen day %d out of range", day)
			}
			sd.Day = int32(day)
			if i > 0 && strings.Compare(p.seen[i-1].Type, sd.Type) >= 0 {
				return corruptf("seen types not sorted at %q", sd.Type)
			}
			p.seen = append(p.seen, sd)
		}
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) > 0 {
		return corruptf("%d trailing bytes", len(d.b))
	}
	if len(ids) > 0 || len(blob) > 0 {
		return corruptf("%d id bytes and %d data bytes unused", len(ids), len(blob))
	}
	return nil
}

// appendDueKey appends the due index key of a deferred offer:
// q/<release><customer id>\x00<offer id>, the release as 8 big-endian bytes
// with the sign bit flipped, so that keys sort by release also across 0.
func appendDueKey(dst []byte, release int64, customerID, offerID string) []byte {
	dst = append(dst, prefixDue...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(release)^(1<<63))
	dst = append(dst, customerID...)
	dst = append(dst, 0)
	return append(dst, offerID...)
}

// parseDueKey splits a due index key (with its prefix) at the first NUL
// after the release.
func parseDueKey(key []byte) (DueEntry, error) {
	rest, ok := bytes.CutPrefix(key, []byte(prefixDue))
	if !ok || len(rest) < 8 {
		return DueEntry{}, corruptf("due index key %q too short", key)
	}
	release := int64(binary.BigEndian.Uint64(rest) ^ (1 << 63))
	cust, offer, ok := strings.Cut(string(rest[8:]), "\x00")
	if !ok {
		return DueEntry{}, corruptf("due index key %q has no NUL separator", key)
	}
	return DueEntry{Customer: cust, OfferID: offer, Release: release}, nil
}

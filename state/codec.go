package state

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Keys. See doc.go for the layout.
const (
	prefixCustomer = "c/"
	prefixProfile  = "p/"
	prefixOutbox   = "o/"
	keyApplied     = "m/applied"
	keySchema      = "m/schema"
)

// schemaVersion is the version of the key layout and record encodings
// written by this package, stored under m/schema.
const schemaVersion = 1

// windowVersion is the first byte of a window record.
const windowVersion = 1

// watermarkVersion is the first byte of the m/applied record.
const watermarkVersion = 1

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// appendWindow appends the window record of c to dst:
//
//	version byte (1)
//	uvarint series count, then per series:
//	  uvarint len + type bytes, uvarint len + attr bytes, kind byte,
//	  uvarint entry count n, and when n > 0:
//	  zigzag varint first ts, n-1 uvarint deltas to the previous ts,
//	  then n little-endian float64 (number) or uint64 hashes (distinct).
func appendWindow(dst []byte, c *Customer) []byte {
	dst = append(dst, windowVersion)
	dst = binary.AppendUvarint(dst, uint64(len(c.series)))
	for i := range c.series {
		s := &c.series[i]
		dst = binary.AppendUvarint(dst, uint64(len(s.typ)))
		dst = append(dst, s.typ...)
		dst = binary.AppendUvarint(dst, uint64(len(s.attr)))
		dst = append(dst, s.attr...)
		dst = append(dst, byte(s.kind))
		ts := s.ts[s.off:]
		dst = binary.AppendUvarint(dst, uint64(len(ts)))
		if len(ts) == 0 {
			continue
		}
		dst = binary.AppendVarint(dst, ts[0])
		for j := 1; j < len(ts); j++ {
			dst = binary.AppendUvarint(dst, uint64(ts[j])-uint64(ts[j-1]))
		}
		switch s.kind {
		case kindNumber:
			for _, v := range s.num[s.off:] {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
			}
		case kindHash:
			for _, h := range s.hash[s.off:] {
				dst = binary.LittleEndian.AppendUint64(dst, h)
			}
		}
	}
	return dst
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
// c's arrays. data is not retained. It never panics; on error c's series
// are left empty.
func decodeWindow(c *Customer, data []byte) error {
	c.plan = nil
	err := decodeSeries(c, data)
	if err != nil {
		c.series = c.series[:0]
	}
	return err
}

func decodeSeries(c *Customer, data []byte) error {
	c.series = c.series[:0]
	d := decoder{b: data}
	if v := d.byte("version"); d.err == nil && v != windowVersion {
		return corruptf("unknown window record version %d", v)
	}
	ns := d.uvarint("series count")
	// Every series takes at least 4 bytes.
	if d.err == nil && ns > uint64(len(d.b))/4 {
		return corruptf("series count %d exceeds record size", ns)
	}
	for k := uint64(0); k < ns && d.err == nil; k++ {
		typ := d.bytes("series type")
		attr := d.bytes("series attribute")
		kind := valueKind(d.byte("series kind"))
		n := d.uvarint("entry count")
		if d.err != nil {
			break
		}
		if kind < kindNone || kind > kindHash {
			return corruptf("unknown series kind %d", kind)
		}
		for j := range c.series {
			o := &c.series[j]
			if o.kind == kind && o.typ == string(typ) && o.attr == string(attr) {
				return corruptf("duplicate series %q %q", typ, attr)
			}
		}
		per := uint64(1)
		if kind != kindNone {
			per += 8
		}
		if n > uint64(len(d.b))/per {
			return corruptf("entry count %d exceeds record size", n)
		}
		if len(c.series) < cap(c.series) {
			c.series = c.series[:len(c.series)+1]
		} else {
			c.series = append(c.series, series{})
		}
		s := &c.series[len(c.series)-1]
		*s = series{
			typ:  string(typ),
			attr: string(attr),
			kind: kind,
			ts:   s.ts[:0],
			num:  s.num[:0],
			hash: s.hash[:0],
		}
		if n == 0 {
			continue
		}
		t := d.varint("first timestamp")
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
			v := d.u64("value")
			if kind == kindNumber {
				s.num = append(s.num, math.Float64frombits(v))
			} else {
				s.hash = append(s.hash, v)
			}
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

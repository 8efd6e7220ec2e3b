package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/compress/s2"

	"github.com/kairos-engine/kairos/rules"
)

// outRecord is one message the engine must publish exactly once: an offer
// or a dead letter. It is stored in the outbox in the same commit as the
// state change that produced it, and published after that commit.
type outRecord struct {
	Stream    string // the stream that stores Subject
	Subject   string
	MsgID     string
	DecidedAt int64    // unix ms; decides how a recovered record is checked
	Header    []string // key, value, key, value...
	Data      []byte

	eventTS int64 // the event's ts, for the latency metric; not stored
	tag     recTag
}

// recTag says what a record counts for in the metrics, which are updated
// only once its batch is committed (a batch may be evaluated twice).
type recTag struct {
	kind      uint8 // tagOffer, tagDecision, tagDeadLetter
	rule      *rules.Rule
	ruleID    string // also for a released offer whose rule is gone
	outcome   string
	reason    string
	channel   string
	fromEvent bool // a decision made for an event (not a release)
	mode      string
}

const (
	tagOffer = iota + 1
	tagDecision
	tagDeadLetter
	tagConversion
)

// The outbox value formats. A version 1 value is one record
// (appendOutRecord). A version 2 value is a page, all the records of one
// batch under one key (appendOutPage):
//
//	byte 0     version, 2
//	uvarint    number of records
//	byte       compression of the rest: 0 none, 1 S2
//	rest       the records, each as uvarint length + version 1 record
//
// One key per batch instead of one per record: each record cost Badger a
// skiplist insert to write it and another to delete it, and its key and
// tombstone went through every flush and compaction; compressed together,
// the records' repeated field names and subjects cost little. Version 1
// values, written before pages, are still read.
const (
	outboxVersion     = 1
	outboxPageVersion = 2

	pagePlain = 0
	pageS2    = 1

	// maxPageBytes bounds a page's decoded size when it is read: pages
	// are written up to maxPageBody plus one record, and a record is at
	// most a NATS message (64 MiB at most), so a larger claim is corrupt.
	maxPageBytes = 256 << 20
)

// maxPageBody is the body size from which a batch's records go on in a
// new page, so that a batch of many records (thousands of events, each
// matching many rules) does not make one value too large to read back.
// A variable for the tests.
var maxPageBody = 4 << 20

var errOutboxCorrupt = errors.New("corrupt outbox record")

// appendOutRecord encodes r after dst.
func appendOutRecord(dst []byte, r *outRecord) []byte {
	dst = append(dst, outboxVersion)
	dst = appendStr(dst, r.Stream)
	dst = appendStr(dst, r.Subject)
	dst = appendStr(dst, r.MsgID)
	dst = binary.AppendVarint(dst, r.DecidedAt)
	dst = binary.AppendUvarint(dst, uint64(len(r.Header)/2))
	for _, h := range r.Header {
		dst = appendStr(dst, h)
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.Data)))
	return append(dst, r.Data...)
}

// appendPageRecord appends rec, a version 1 record, to raw, the body of a
// page being built.
func appendPageRecord(raw, rec []byte) []byte {
	raw = binary.AppendUvarint(raw, uint64(len(rec)))
	return append(raw, rec...)
}

// appendOutPage appends a page of n records whose body, built with
// appendPageRecord, is raw. The body is compressed with S2.
func appendOutPage(dst []byte, n int, raw []byte) []byte {
	dst = append(dst, outboxPageVersion)
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, pageS2)
	dst = slices.Grow(dst, s2.MaxEncodedLen(len(raw)))
	enc := s2.Encode(dst[len(dst):cap(dst)], raw)
	return dst[:len(dst)+len(enc)]
}

// outValueRecords returns the number of records an outbox value holds,
// reading only its head; a value it cannot tell counts as one.
func outValueRecords(v []byte) int {
	if len(v) > 1 && v[0] == outboxPageVersion {
		if n, w := binary.Uvarint(v[1:]); w > 0 && n <= maxPageBytes {
			return int(n)
		}
	}
	return 1
}

// decodeOutValue decodes an outbox value of either version. It never
// panics on arbitrary input.
func decodeOutValue(v []byte) ([]*outRecord, error) {
	if len(v) > 0 && v[0] == outboxVersion {
		r, err := decodeOutRecord(v)
		if err != nil {
			return nil, err
		}
		return []*outRecord{r}, nil
	}
	if len(v) == 0 || v[0] != outboxPageVersion {
		return nil, fmt.Errorf("%w: unknown version", errOutboxCorrupt)
	}
	d := recDecoder{b: v[1:]}
	n := d.uvarint()
	if d.err != nil || len(d.b) == 0 {
		return nil, fmt.Errorf("%w: page head", errOutboxCorrupt)
	}
	comp := d.b[0]
	body := d.b[1:]
	switch comp {
	case pagePlain:
	case pageS2:
		size, err := s2.DecodedLen(body)
		if err != nil || size > maxPageBytes {
			return nil, fmt.Errorf("%w: page body", errOutboxCorrupt)
		}
		if body, err = s2.Decode(make([]byte, size), body); err != nil {
			return nil, fmt.Errorf("%w: page body: %v", errOutboxCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("%w: page compression %d", errOutboxCorrupt, comp)
	}
	// Each record takes at least 2 bytes: a bound before allocating.
	if n > uint64(len(body))/2 {
		return nil, fmt.Errorf("%w: page count", errOutboxCorrupt)
	}
	recs := make([]*outRecord, 0, n)
	d = recDecoder{b: body}
	for range n {
		b := d.raw()
		if d.err != nil {
			return nil, d.err
		}
		r, err := decodeOutRecord(b)
		if err != nil {
			return nil, err
		}
		recs = append(recs, r)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the page's records", errOutboxCorrupt, len(d.b))
	}
	return recs, nil
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decodeOutRecord decodes a record written by appendOutRecord. It never
// panics on arbitrary input.
func decodeOutRecord(b []byte) (*outRecord, error) {
	if len(b) == 0 || b[0] != outboxVersion {
		return nil, fmt.Errorf("%w: unknown version", errOutboxCorrupt)
	}
	d := recDecoder{b: b[1:]}
	r := &outRecord{}
	r.Stream = d.str()
	r.Subject = d.str()
	r.MsgID = d.str()
	r.DecidedAt = d.varint()
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: header count", errOutboxCorrupt)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		r.Header = append(r.Header, d.str(), d.str())
	}
	r.Data = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errOutboxCorrupt, len(d.b))
	}
	return r, nil
}

type recDecoder struct {
	b   []byte
	err error
}

func (d *recDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad length", errOutboxCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *recDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad number", errOutboxCorrupt)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a copy of the next length-prefixed bytes.
func (d *recDecoder) bytes() []byte { return append([]byte(nil), d.raw()...) }

func (d *recDecoder) str() string { return string(d.raw()) }

// raw returns the next length-prefixed bytes, not copied.
func (d *recDecoder) raw() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: truncated", errOutboxCorrupt)
		return nil
	}
	out := d.b[:n:n]
	d.b = d.b[n:]
	return out
}

// outboxKey is the outbox key of the page (in version 1, the record) that
// starts with the i-th record written under the watermark seq: big-endian,
// so keys sort in publish order.
func outboxKey(dst []byte, seq uint64, i int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint32(dst, uint32(i))
}

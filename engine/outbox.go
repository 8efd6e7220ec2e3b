package engine

import (
	"encoding/binary"
	"errors"
	"fmt"

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

const outboxVersion = 1

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

func (d *recDecoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("%w: truncated", errOutboxCorrupt)
		return nil
	}
	out := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return out
}

func (d *recDecoder) str() string { return string(d.bytes()) }

// outboxKey is the outbox key of record i of the batch that ends at seq:
// big-endian, so keys sort in publish order.
func outboxKey(dst []byte, seq uint64, i int) []byte {
	dst = binary.BigEndian.AppendUint64(dst, seq)
	return binary.BigEndian.AppendUint32(dst, uint32(i))
}

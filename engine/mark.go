package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// partMark is what a partition's changelog mark holds (docs/scaling.md):
// the commit token of the owner that wrote it, the watermarks of the
// partition's consumers, and the records of the commit still to publish
// (the partition's outbox). It is written with every commit that touches
// the partition, so the last mark is the partition's position.
type partMark struct {
	// Token identifies the commit that wrote the mark: an instance's
	// random nonce and its commit counter. An instance that finds its own
	// last token in the mark it takes over knows its local state of the
	// partition is current.
	Token markToken
	// Marks are the watermarks, by consumer: "rt" and "bt" (the
	// partition's events and batch events), and on partition 0 also
	// "stray-rt" and "stray-bt" (events on subjects that are not
	// partitioned, which are dead-lettered).
	Marks []namedMark
	// Outbox holds the encoded records (appendOutRecord) of the commit.
	Outbox [][]byte
}

type markToken struct{ Nonce, Seq uint64 }

type namedMark struct {
	Name    string
	Created int64 // the stream's creation time, Unix ns
	Seq     uint64
}

const markVersion = 1

var errMarkCorrupt = errors.New("corrupt partition mark")

// appendPartMark encodes m after dst: version byte 1; the token as two
// uint64 LE; uvarint count of watermarks, each uvarint length + name,
// zigzag varint created, uvarint seq; uvarint count of outbox records,
// each uvarint length + bytes.
func appendPartMark(dst []byte, m *partMark) []byte {
	dst = append(dst, markVersion)
	dst = binary.LittleEndian.AppendUint64(dst, m.Token.Nonce)
	dst = binary.LittleEndian.AppendUint64(dst, m.Token.Seq)
	dst = binary.AppendUvarint(dst, uint64(len(m.Marks)))
	for _, w := range m.Marks {
		dst = appendStr(dst, w.Name)
		dst = binary.AppendVarint(dst, w.Created)
		dst = binary.AppendUvarint(dst, w.Seq)
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.Outbox)))
	for _, r := range m.Outbox {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// decodePartMark decodes a mark written by appendPartMark; an empty mark
// (a partition nobody committed to) is the zero partMark. It never panics
// on arbitrary input.
func decodePartMark(b []byte) (*partMark, error) {
	m := &partMark{}
	if len(b) == 0 {
		return m, nil
	}
	if b[0] != markVersion {
		return nil, fmt.Errorf("%w: unknown version %d", errMarkCorrupt, b[0])
	}
	if len(b) < 17 {
		return nil, fmt.Errorf("%w: truncated token", errMarkCorrupt)
	}
	m.Token = markToken{binary.LittleEndian.Uint64(b[1:9]), binary.LittleEndian.Uint64(b[9:17])}
	d := recDecoder{b: b[17:]}
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: watermark count", errMarkCorrupt)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		m.Marks = append(m.Marks, namedMark{Name: d.str(), Created: d.varint(), Seq: d.uvarint()})
	}
	n = d.uvarint()
	if n > uint64(len(d.b)) {
		return nil, fmt.Errorf("%w: outbox count", errMarkCorrupt)
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		m.Outbox = append(m.Outbox, d.bytes())
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %v", errMarkCorrupt, d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errMarkCorrupt, len(d.b))
	}
	return m, nil
}

// mark returns the watermark named name, or the zero one.
func (m *partMark) mark(name string) namedMark {
	for _, w := range m.Marks {
		if w.Name == name {
			return w
		}
	}
	return namedMark{Name: name}
}

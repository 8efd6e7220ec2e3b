package connectors

import (
	"errors"
	"fmt"
)

// maxNesting is how deep lists and maps may nest in an offer or a
// decision: an event's attrs nest at most 32 levels (the engine refuses
// deeper), and a rule's params may hold them.
const maxNesting = 64

// errClaim is the error of a msgpack header that claims more than the
// data holds.
var errClaim = errors.New("msgpack: a header claims more than the data holds")

// checkMsgpack walks the first msgpack value of b without allocating and
// refuses what the msgpack library would decode at a cost out of
// proportion to b: a list, map, string or extension whose header claims
// more than the rest of b holds (the library sizes a list by its claim, up
// to 16 MB a level), or lists and maps nested deeper than maxNesting.
// Whatever it accepts, the library decodes in memory proportional to b.
func checkMsgpack(b []byte) error {
	_, err := skipValue(b, 0)
	return err
}

// skipValue returns the length of the msgpack value at the start of b.
func skipValue(b []byte, depth int) (int, error) {
	if len(b) == 0 {
		return 0, errClaim
	}
	c := b[0]
	size := func(n int) (int, error) { // a header of 1+n bytes that gives a length
		if len(b) < 1+n {
			return 0, errClaim
		}
		l := 0
		for _, x := range b[1 : 1+n] {
			l = l<<8 | int(x)
		}
		return l, nil
	}
	fixed := func(n int) (int, error) { // a value of 1+n bytes
		if len(b) < 1+n {
			return 0, errClaim
		}
		return 1 + n, nil
	}
	raw := func(hdr, l int) (int, error) { // a header, then l bytes
		if l > len(b)-hdr {
			return 0, errClaim
		}
		return hdr + l, nil
	}
	container := func(hdr, n, per int) (int, error) { // a header, then n*per values
		if depth >= maxNesting {
			return 0, fmt.Errorf("msgpack: lists and maps nest deeper than %d levels", maxNesting)
		}
		if n > (len(b)-hdr)/per { // each value takes a byte at least
			return 0, errClaim
		}
		off := hdr
		for range n * per {
			l, err := skipValue(b[off:], depth+1)
			if err != nil {
				return 0, err
			}
			off += l
		}
		return off, nil
	}
	// A length of width bytes after the code, then extra bytes (an
	// extension's type) and that many bytes, or that many values of per.
	bytesOf := func(width, extra int) (int, error) {
		l, err := size(width)
		if err != nil {
			return 0, err
		}
		return raw(1+width+extra, l)
	}
	valuesOf := func(width, per int) (int, error) {
		n, err := size(width)
		if err != nil {
			return 0, err
		}
		return container(1+width, n, per)
	}
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3: // fixints, nil, bools
		return 1, nil
	case c >= 0x80 && c <= 0x8f:
		return container(1, int(c&0x0f), 2)
	case c >= 0x90 && c <= 0x9f:
		return container(1, int(c&0x0f), 1)
	case c >= 0xa0 && c <= 0xbf:
		return raw(1, int(c&0x1f))
	}
	switch c {
	case 0xc4, 0xd9: // bin8, str8
		return bytesOf(1, 0)
	case 0xc5, 0xda: // bin16, str16
		return bytesOf(2, 0)
	case 0xc6, 0xdb: // bin32, str32
		return bytesOf(4, 0)
	case 0xc7, 0xc8, 0xc9: // ext8, ext16, ext32: length, type, data
		return bytesOf(1<<(c-0xc7), 1)
	case 0xca, 0xce, 0xd2: // float32, uint32, int32
		return fixed(4)
	case 0xcb, 0xcf, 0xd3: // float64, uint64, int64
		return fixed(8)
	case 0xcc, 0xd0: // uint8, int8
		return fixed(1)
	case 0xcd, 0xd1: // uint16, int16
		return fixed(2)
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16: type, data
		return fixed(1 + 1<<(c-0xd4))
	case 0xdc: // array16
		return valuesOf(2, 1)
	case 0xdd: // array32
		return valuesOf(4, 1)
	case 0xde: // map16
		return valuesOf(2, 2)
	case 0xdf: // map32
		return valuesOf(4, 2)
	}
	return 0, fmt.Errorf("msgpack: invalid code %#x", c) // 0xc1
}

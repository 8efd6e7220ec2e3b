package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// FuzzDecodeEvent: no payload may panic the decoder, and a decoded event
// is always valid against its subject.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"id":"e1","customer_id":"C1","type":"login","ts":1700000000000,"attrs":{"channel":"app"}}`), false, "login", "C1")
	f.Add([]byte{0x84, 0xa2, 'i', 'd', 0xa1, 'x', 0xab, 'c', 'u', 's', 't', 'o', 'm', 'e', 'r', '_', 'i', 'd', 0xa2, 'C', '1', 0xa4, 't', 'y', 'p', 'e', 0xa3, 't', 'x', 'n', 0xa2, 't', 's', 0x01}, false, "txn", "C1")
	// attrs {"a": [[...]]}: nested lists, each claiming a million elements.
	f.Add(append([]byte{0x85, 0xa2, 'i', 'd', 0xa1, 'x', 0xab, 'c', 'u', 's', 't', 'o', 'm', 'e', 'r', '_', 'i', 'd', 0xa2, 'C', '1', 0xa4, 't', 'y', 'p', 'e', 0xa3, 't', 'x', 'n', 0xa2, 't', 's', 0x01,
		0xa5, 'a', 't', 't', 'r', 's', 0x81, 0xa1, 'a'}, bytes.Repeat([]byte{0xdd, 0x00, 0x0f, 0x42, 0x40}, 20)...), false, "txn", "C1")
	d := newEventDecoder()
	f.Fuzz(func(t *testing.T, payload []byte, isJSON bool, typ, customer string) {
		var ev Event
		err := d.Decode(payload, isJSON, typ, customer, &ev)
		if err != nil {
			if _, ok := err.(*EventError); !ok {
				t.Fatalf("error %v is not an *EventError", err)
			}
			return
		}
		if ev.ID == "" || ev.CustomerID != customer || ev.Type != typ || !validType(ev.Type) {
			t.Fatalf("decoded an invalid event %+v for %s/%s", ev, typ, customer)
		}
	})
}

// FuzzDecodeOutRecord: no stored bytes may panic the outbox decoder, and
// what decodes survives a re-encoding unchanged.
func FuzzDecodeOutRecord(f *testing.F) {
	f.Add(appendOutRecord(nil, &outRecord{Stream: "KAIROS_OFFERS", Subject: "kairos.offers.sms.C1", MsgID: "o-1", DecidedAt: 1700000000000, Header: []string{"Content-Type", "application/msgpack"}, Data: []byte{1, 2, 3}}))
	f.Add([]byte{outboxVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeOutRecord(b)
		if err != nil {
			return
		}
		again, err := decodeOutRecord(appendOutRecord(nil, r))
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, r) && !(len(r.Data) == 0 && len(again.Data) == 0) {
			t.Fatalf("round trip differs:\n%+v\n%+v", r, again)
		}
	})
}

// FuzzDecodeOutValue: no stored bytes may panic the outbox value decoder
// (a page or a version 1 record), and the records of what decodes make a
// page that decodes to them again.
func FuzzDecodeOutValue(f *testing.F) {
	f.Add(testPage(testOutRecords(3)))
	f.Add(appendOutRecord(nil, testOutRecords(1)[0]))
	f.Add([]byte{outboxPageVersion, 1, pagePlain, 2, 1, 0})
	f.Add([]byte{outboxPageVersion, 0, pageS2, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := decodeOutValue(b)
		if err != nil {
			return
		}
		if n := outValueRecords(b); n != len(recs) {
			t.Fatalf("outValueRecords %d, decoded %d", n, len(recs))
		}
		again, err := decodeOutValue(testPage(recs))
		if err != nil {
			t.Fatalf("a page of the decoded records does not decode: %v", err)
		}
		if len(again) != len(recs) {
			t.Fatalf("round trip: %d records, want %d", len(again), len(recs))
		}
		for i := range recs {
			if !reflect.DeepEqual(again[i], recs[i]) && !(len(recs[i].Data) == 0 && len(again[i].Data) == 0) {
				t.Fatalf("round trip of record %d differs:\n%+v\n%+v", i, recs[i], again[i])
			}
		}
	})
}

// FuzzDecodePartMark: no changelog mark may panic its decoder, and what
// decodes survives a re-encoding unchanged.
func FuzzDecodePartMark(f *testing.F) {
	f.Add(appendPartMark(nil, &partMark{Token: markToken{1, 2}, Marks: []namedMark{{"rt", 17, 42}, {"bt", 18, 0}}, Outbox: [][]byte{{1, 2, 3}, nil}}))
	f.Add([]byte{})
	f.Add([]byte{markVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodePartMark(b)
		if err != nil {
			return
		}
		again, err := decodePartMark(appendPartMark(nil, m))
		if err != nil {
			t.Fatalf("re-encoded mark does not decode: %v", err)
		}
		if len(b) > 0 && !reflect.DeepEqual(normMark(m), normMark(again)) {
			t.Fatalf("round trip changed the mark: %+v != %+v", m, again)
		}
	})
}

// normMark makes empty and nil slices equal for comparison.
func normMark(m *partMark) *partMark {
	c := *m
	if len(c.Marks) == 0 {
		c.Marks = nil
	}
	out := make([][]byte, len(c.Outbox))
	for i, r := range c.Outbox {
		out[i] = append([]byte{}, r...)
	}
	c.Outbox = out
	return &c
}

// TestDecodeEventMsgpackAsLibrary: the msgpack event decoder reads its
// strings, lists and maps itself (no allocation for names and repeated
// values, none for what a list merely claims); it must decode every
// payload as the msgpack library's own decoding did (refDecodeMsgpack):
// the same event, or an error of the same reason. The payloads: 3,000
// generated events, and 30,000 of them mutated (bytes flipped, cut,
// inserted), from a fixed seed.
func TestDecodeEventMsgpackAsLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var value func(depth int) any
	value = func(depth int) any {
		switch k := rng.IntN(10); {
		case k == 0 && depth < 4:
			l := make([]any, rng.IntN(4))
			for i := range l {
				l[i] = value(depth + 1)
			}
			return l
		case k == 1 && depth < 4:
			m := map[string]any{}
			for range rng.IntN(4) {
				m[fmt.Sprint("k", rng.IntN(5))] = value(depth + 1)
			}
			return m
		case k == 2:
			return rng.Float64() * 1000
		case k == 3:
			return rng.Int64N(1<<40) - 1<<39
		case k == 4:
			return uint64(rng.Uint32())
		case k == 5:
			return []byte{byte(rng.IntN(256))}
		case k == 6:
			return nil
		case k == 7:
			return rng.IntN(2) == 0
		}
		return strings.Repeat("s", rng.IntN(40))
	}
	d := newEventDecoder()
	check := func(payload []byte) {
		t.Helper()
		var got, want Event
		gotErr := d.Decode(payload, false, "txn", "C1", &got)
		if claimsLongList(payload) {
			return // the library would allocate for the claim: what decodeList refuses
		}
		// Two refusals are the decoder's own: a list that claims more
		// elements than the payload holds (the library fails later, at the
		// end of the payload or on an element before it), and lists and
		// maps nested deeper than maxAttrDepth.
		var g *EventError
		if errors.As(gotErr, &g) && (strings.Contains(g.Msg, "a list claims") || strings.Contains(g.Msg, "nest deeper than")) {
			return
		}
		wantErr := refDecodeMsgpack(payload, &want)
		if wantErr == nil {
			wantErr = validateEvent(&want, "txn", "C1")
		}
		switch {
		case (gotErr == nil) != (wantErr == nil):
			t.Fatalf("%q: decoder: %v; library: %v", payload, gotErr, wantErr)
		case gotErr != nil:
			var w *EventError
			if g == nil || !errors.As(wantErr, &w) || g.Reason != w.Reason {
				t.Fatalf("%q: decoder: %v; library: %v", payload, gotErr, wantErr)
			}
		case !reflect.DeepEqual(got, want):
			t.Fatalf("%q: decoder:\n%#v\nlibrary:\n%#v", payload, got, want)
		}
	}
	for i := range 3000 {
		attrs := map[string]any{}
		for range rng.IntN(6) {
			attrs[fmt.Sprint("a", rng.IntN(8))] = value(0)
		}
		ev := map[string]any{"id": fmt.Sprint("e", i), "customer_id": "C1", "type": "txn", "ts": int64(1700000000000 + i), "attrs": attrs}
		if rng.IntN(10) == 0 {
			ev["extra"] = value(0)
		}
		p, err := msgpack.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		check(p)
		for range 10 {
			m := bytes.Clone(p)
			switch rng.IntN(3) {
			case 0:
				m[rng.IntN(len(m))] = byte(rng.IntN(256))
			case 1:
				m = m[:rng.IntN(len(m))]
			default:
				at := rng.IntN(len(m))
				m = append(m[:at], append([]byte{byte(rng.IntN(256))}, m[at:]...)...)
			}
			if len(m) > 0 && m[0] != '{' {
				check(m)
			}
		}
	}
}

// claimsLongList tells whether p may hold a msgpack header that claims
// more than p has bytes: a list (the library sizes a list by its claim,
// what decodeList refuses) or any other 16-bit length, or any 32-bit one
// (the library allocates up to a megabyte per such claim, and the
// fuzzer's workers ran out of memory on them). Bytes of strings count
// too, which only skips more inputs.
func claimsLongList(p []byte) bool {
	for i, c := range p {
		switch c {
		case 0xc6, 0xc9, 0xdb, 0xdd, 0xdf: // bin32, ext32, str32, array32, map32
			return true
		case 0xc5, 0xc8, 0xda, 0xdc, 0xde: // bin16, ext16, str16, array16, map16
			if i+2 < len(p) && int(p[i+1])<<8|int(p[i+2]) > len(p) {
				return true
			}
		}
	}
	return false
}

// refDecodeMsgpack is the msgpack decoding of events as it was before the
// decoder read strings itself: every string through the library.
func refDecodeMsgpack(payload []byte, ev *Event) error {
	rd := bytes.NewReader(payload)
	dec := msgpack.NewDecoder(rd)
	dec.UseLooseInterfaceDecoding(true)
	var strMap func(dec *msgpack.Decoder) (map[string]any, error)
	strMap = func(dec *msgpack.Decoder) (map[string]any, error) {
		n, err := dec.DecodeMapLen()
		if err != nil || n < 0 {
			return nil, err
		}
		m := make(map[string]any, min(n, 64))
		for range n {
			k, err := dec.DecodeString()
			if err != nil {
				return nil, invalidErr("attrs: keys must be strings")
			}
			v, err := dec.DecodeInterfaceLoose()
			if err != nil {
				return nil, err
			}
			m[k] = signed(v)
		}
		return m, nil
	}
	dec.SetMapDecoder(func(dec *msgpack.Decoder) (any, error) { return strMap(dec) })
	str := func(field string) (string, error) {
		c, err := dec.PeekCode()
		if err != nil {
			return "", err
		}
		if !msgpcode.IsString(c) && c != msgpcode.Bin8 && c != msgpcode.Bin16 && c != msgpcode.Bin32 {
			return "", invalidErr("%s must be a string", field)
		}
		return dec.DecodeString()
	}
	*ev = Event{}
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return decodeErr("msgpack: the event must be a map")
	}
	var haveTS bool
	for i := range n {
		key, err := dec.DecodeString()
		if err != nil {
			return decodeErr("msgpack: field %d: key is not a string", i)
		}
		switch key {
		case "id", "customer_id", "type":
			var s string
			s, err = str(key)
			switch key {
			case "id":
				ev.ID = s
			case "customer_id":
				ev.CustomerID = s
			default:
				ev.Type = s
			}
		case "ts":
			ev.TS, err = decodeMsgpackTS(dec)
			haveTS = err == nil
		case "attrs":
			var c byte
			if c, err = dec.PeekCode(); err != nil {
				break
			}
			switch {
			case c == msgpcode.Nil:
				err = dec.DecodeNil()
			case !msgpcode.IsFixedMap(c) && c != msgpcode.Map16 && c != msgpcode.Map32:
				err = invalidErr("attrs must be a map")
			default:
				ev.Attrs, err = strMap(dec)
			}
		default:
			err = dec.Skip()
		}
		if err != nil {
			var ee *EventError
			if errors.As(err, &ee) {
				return err
			}
			return decodeErr("msgpack: field %q: %v", key, err)
		}
	}
	if rd.Len() != 0 {
		return decodeErr("msgpack: %d trailing bytes after the event", rd.Len())
	}
	if !haveTS {
		return invalidErr("ts is missing")
	}
	return nil
}

package engine

import (
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestDecodeEventNormalisesNumbers(t *testing.T) {
	d := newEventDecoder()
	mp, _ := msgpack.Marshal(map[string]any{"id": "e", "customer_id": "C1", "type": "txn", "ts": uint64(1700000000000),
		"attrs": map[string]any{"small": uint8(5), "big": uint64(1) << 63, "neg": int16(-3), "f": float32(1.5), "list": []any{uint16(7)}, "nested": map[string]any{"n": uint32(9)}}})
	var ev Event
	if err := d.Decode(mp, false, "txn", "C1", &ev); err != nil {
		t.Fatal(err)
	}
	a := ev.Attrs
	if a["small"] != int64(5) || a["big"] != uint64(1)<<63 || a["neg"] != int64(-3) || a["f"] != float64(1.5) ||
		a["list"].([]any)[0] != int64(7) || a["nested"].(map[string]any)["n"] != int64(9) || ev.TS != 1700000000000 {
		t.Errorf("attrs = %#v, ts = %d", a, ev.TS)
	}
	js, _ := json.Marshal(map[string]any{"id": "e", "customer_id": "C1", "type": "txn", "ts": "2026-11-20T08:00:00+08:00", "attrs": map[string]any{"i": 3, "f": 2.5, "big": 1e300}})
	if err := d.Decode(js, false, "txn", "C1", &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Attrs["i"] != int64(3) || ev.Attrs["f"] != 2.5 || ev.Attrs["big"] != 1e300 || ev.TS != 1795132800000 {
		t.Errorf("json attrs = %#v ts %d", ev.Attrs, ev.TS)
	}
}

func BenchmarkDecodeEventMsgpack(b *testing.B) {
	data, _ := msgpack.Marshal(map[string]any{"id": "ev-000123", "customer_id": "C0001234", "type": "txn", "ts": int64(1700000000000),
		"attrs": map[string]any{"amount": 1234.5, "merchant": "m_travel", "currency": "CNY"}})
	benchmarkDecode(b, data, false)
}

func BenchmarkDecodeEventJSON(b *testing.B) {
	data := []byte(`{"id":"ev-000123","customer_id":"C0001234","type":"txn","ts":1700000000000,"attrs":{"amount":1234.5,"merchant":"m_travel","currency":"CNY"}}`)
	benchmarkDecode(b, data, true)
}

func benchmarkDecode(b *testing.B, data []byte, isJSON bool) {
	d := newEventDecoder()
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		if err := d.Decode(data, isJSON, "txn", "C0001234", &ev); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDecodeNestedListsBounded: a small payload of nested lists, each
// claiming a million elements, is refused without the gigabytes the
// msgpack library would allocate for the claims (1.5 GB for 100 levels in
// 503 bytes); lists and maps nest at most maxAttrDepth levels; a ts that
// is a list is refused before it is decoded.
func TestDecodeNestedListsBounded(t *testing.T) {
	event := func(attrs, ts []byte) []byte {
		p := []byte{0x85}
		for _, kv := range [][2]string{{"id", "e1"}, {"customer_id", "C1"}, {"type", "txn"}} {
			p = append(p, 0xa0|byte(len(kv[0])))
			p = append(p, kv[0]...)
			p = append(p, 0xa0|byte(len(kv[1])))
			p = append(p, kv[1]...)
		}
		p = append(p, 0xa2, 't', 's')
		p = append(p, ts...)
		p = append(p, 0xa5, 'a', 't', 't', 'r', 's')
		return append(p, attrs...)
	}
	ts := []byte{0xcf, 0, 0, 1, 0x8b, 0xcf, 0xe5, 0x68, 0}
	claims := []byte{0x81, 0xa1, 'a'}
	for range 100 {
		claims = append(claims, 0xdd, 0x00, 0x0f, 0x42, 0x40) // a list of 1,000,000
	}
	deep := func(levels int) []byte {
		p := []byte{0x81, 0xa1, 'a'}
		for range levels {
			p = append(p, 0x91) // a list of one
		}
		return append(p, 0x01)
	}
	d := newEventDecoder()
	for _, c := range []struct {
		name    string
		payload []byte
		reason  string
	}{
		{"lists claiming a million elements", event(claims, ts), ReasonDecode},
		{"lists 32 levels deep below the attrs", event(deep(maxAttrDepth-1), ts), ""},
		{"lists 33 levels deep below the attrs", event(deep(maxAttrDepth), ts), ReasonInvalid},
		{"a ts of nested lists", event([]byte{0x80}, claims[3:]), ReasonInvalid},
	} {
		var ev Event
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := d.Decode(c.payload, false, "txn", "C1", &ev)
		runtime.ReadMemStats(&after)
		var ee *EventError
		switch {
		case c.reason == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.reason != "" && (!errors.As(err, &ee) || ee.Reason != c.reason):
			t.Errorf("%s: error %v, want a %s error", c.name, err, c.reason)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: %d bytes allocated for %d bytes of payload", c.name, alloc, len(c.payload))
		}
	}
}

// TestDecodeJSONNestingLimit: a JSON event's attrs nest at most as deep as
// a msgpack event's.
func TestDecodeJSONNestingLimit(t *testing.T) {
	event := func(levels int) []byte {
		return []byte(`{"id":"e1","customer_id":"C1","type":"txn","ts":1700000000000,"attrs":{"a":` +
			strings.Repeat("[", levels) + "1" + strings.Repeat("]", levels) + `}}`)
	}
	d := newEventDecoder()
	var ev Event
	if err := d.Decode(event(maxAttrDepth-1), true, "txn", "C1", &ev); err != nil {
		t.Errorf("%d levels: %v", maxAttrDepth, err)
	}
	var ee *EventError
	if err := d.Decode(event(maxAttrDepth), true, "txn", "C1", &ev); !errors.As(err, &ee) || ee.Reason != ReasonInvalid {
		t.Errorf("%d levels: %v, want an invalid event", maxAttrDepth+1, err)
	}
}

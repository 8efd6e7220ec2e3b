package engine

import (
	"encoding/json"
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

package connectors

import (
	"reflect"
	"testing"
)

func testOffer() *Offer {
	return &Offer{ID: "o-1", RuleID: "r", RuleVersion: "abc", CustomerID: "C1", Channel: "sms", Product: "P", Template: "t",
		Params: map[string]any{"name": "Ann", "n": int64(3), "x": 1.5}, Priority: 80, EventID: "e1", EventType: "login",
		EventTS: 1700000000000, DecidedAt: 1700000000100, ExpiresAt: 1700086400100}
}

func TestOfferRoundTrip(t *testing.T) {
	for _, enc := range []Encoding{Msgpack, JSON} {
		t.Run(enc.String(), func(t *testing.T) {
			e := NewEncoder()
			data, err := e.Encode(nil, testOffer(), enc)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeOffer(data)
			if err != nil {
				t.Fatal(err)
			}
			want := testOffer()
			// Numbers come back in the decoder's types; compare them apart.
			gp, wp := got.Params, want.Params
			got.Params, want.Params = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
			if gp["name"] != "Ann" || toF(gp["n"]) != 3 || toF(gp["x"]) != 1.5 || len(gp) != len(wp) {
				t.Errorf("params %#v", gp)
			}
			again, _ := e.Encode(nil, testOffer(), enc)
			if string(again) != string(data) {
				t.Error("encoding is not deterministic")
			}
		})
	}
}

func toF(v any) float64 {
	switch n := v.(type) {
	case int8:
		return float64(n)
	case int64:
		return float64(n)
	case uint8:
		return float64(n)
	case float64:
		return n
	}
	return -1
}

func TestDecodeOfferRejectsGarbage(t *testing.T) {
	if _, err := DecodeOffer([]byte{0xc1}); err == nil {
		t.Fatal("decoded garbage")
	}
}

func BenchmarkEncodeOfferMsgpack(b *testing.B) {
	e := NewEncoder()
	o := testOffer()
	var buf []byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf, _ = e.Encode(buf[:0], o, Msgpack)
	}
}

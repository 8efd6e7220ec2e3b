package engine

import (
	"reflect"
	"testing"
)

// FuzzDecodeEvent: no payload may panic the decoder, and a decoded event
// is always valid against its subject.
func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"id":"e1","customer_id":"C1","type":"login","ts":1700000000000,"attrs":{"channel":"app"}}`), false, "login", "C1")
	f.Add([]byte{0x84, 0xa2, 'i', 'd', 0xa1, 'x', 0xab, 'c', 'u', 's', 't', 'o', 'm', 'e', 'r', '_', 'i', 'd', 0xa2, 'C', '1', 0xa4, 't', 'y', 'p', 'e', 0xa3, 't', 'x', 'n', 0xa2, 't', 's', 0x01}, false, "txn", "C1")
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

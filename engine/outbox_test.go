package engine

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// testOutRecords makes n offer records with ids that vary as real ones
// do (hashes, scattered customers), so that pages compress as in use.
func testOutRecords(n int) []*outRecord {
	recs := make([]*outRecord, n)
	for i := range recs {
		h := uint64(i+1) * 0x9e3779b97f4a7c15
		customer := fmt.Sprintf("C%07d", h%10_000_000)
		id := fmt.Sprintf("%016x%08x", h, h>>17)
		recs[i] = &outRecord{
			Stream:    "KAIROS_OFFERS",
			Subject:   "kairos.offers.sms." + customer,
			MsgID:     id,
			DecidedAt: 1700000000000 + int64(i),
			Header:    []string{"Content-Type", "application/json", "Kairos-Rule", "payroll-credit-card"},
			Data: []byte(fmt.Sprintf(`{"offer_id":"%s","customer_id":"%s","rule_id":"payroll-credit-card","channel":"sms","kind":"marketing","priority":50,"decided_at":"2026-11-23T07:%02d:%02d.%03dZ","event_id":"e-%x","params":{"amount":%d,"coupon":"C%x"}}`,
				id, customer, i%60, (i/7)%60, i%1000, h>>9, h%5000, h>>40)),
		}
	}
	return recs
}

func testPage(recs []*outRecord) []byte {
	var raw []byte
	for _, r := range recs {
		raw = appendPageRecord(raw, appendOutRecord(nil, r))
	}
	return appendOutPage(nil, len(recs), raw)
}

func TestOutboxPage(t *testing.T) {
	recs := testOutRecords(50)
	page := testPage(recs)
	got, err := decodeOutValue(page)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs) {
		t.Fatalf("page decoded to\n%+v\nwant\n%+v", got, recs)
	}
	if n := outValueRecords(page); n != len(recs) {
		t.Errorf("outValueRecords %d, want %d", n, len(recs))
	}
	plain := 0
	for _, r := range recs {
		plain += len(appendOutRecord(nil, r))
	}
	// The records repeat their field names and subjects: compressed, the
	// page is well under their plain size.
	if len(page)*2 > plain {
		t.Errorf("page of %d bytes for %d bytes of records, want under half", len(page), plain)
	}

	// A version 1 value is one record.
	v1 := appendOutRecord(nil, recs[0])
	if got, err := decodeOutValue(v1); err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], recs[0]) {
		t.Errorf("version 1 value: %+v, %v", got, err)
	}
	if n := outValueRecords(v1); n != 1 {
		t.Errorf("outValueRecords of a version 1 value: %d", n)
	}

	for name, bad := range map[string][]byte{
		"empty":             nil,
		"unknown version":   {9},
		"no head":           {outboxPageVersion},
		"unknown codec":     append([]byte{outboxPageVersion, 1, 7}, appendPageRecord(nil, v1)...),
		"count over body":   append([]byte{outboxPageVersion, 2, pagePlain}, appendPageRecord(nil, v1)...),
		"bytes after":       append(append([]byte{outboxPageVersion, 1, pagePlain}, appendPageRecord(nil, v1)...), 0),
		"truncated record":  append([]byte{outboxPageVersion, 1, pagePlain}, appendPageRecord(nil, v1)[:len(v1)-3]...),
		"corrupt s2":        {outboxPageVersion, 1, pageS2, 0xff, 0xff, 0xff, 0x7f, 1, 2},
		"truncated s2 body": page[:len(page)-5],
	} {
		if _, err := decodeOutValue(bad); !errors.Is(err, errOutboxCorrupt) {
			t.Errorf("%s: err %v, want errOutboxCorrupt", name, err)
		}
	}
	if got, err := decodeOutValue(append([]byte{outboxPageVersion, 1, pagePlain}, appendPageRecord(nil, v1)...)); err != nil || len(got) != 1 {
		t.Errorf("uncompressed page: %+v, %v", got, err)
	}
}

func BenchmarkOutboxPage(b *testing.B) {
	recs := testOutRecords(128)
	var rec, raw, page []byte
	b.ReportAllocs()
	for b.Loop() {
		raw = raw[:0]
		for _, r := range recs {
			rec = appendOutRecord(rec[:0], r)
			raw = appendPageRecord(raw, rec)
		}
		page = appendOutPage(page[:0], len(recs), raw)
	}
	b.ReportMetric(float64(len(page))/float64(len(recs)), "B/record")
}

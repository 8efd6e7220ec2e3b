package batchgen_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

// FuzzReadList checks ReadList never panics, that every event it yields is
// well formed, and that every error is a *ListError. The seed corpus is in
// testdata/fuzz.
func FuzzReadList(f *testing.F) {
	f.Add([]byte("customer_id,a,b\nC1,1,true\nC2,x,\n"), false)
	f.Add([]byte(`{"customer_id":"C1","a":1}`+"\n"), true)
	runAt := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, jsonl bool) {
		format := "csv"
		if jsonl {
			format = "jsonl"
		}
		calls := 0
		n, err := batchgen.ReadList(bytes.NewReader(data), format, "fz", runAt, func(ev batchgen.Event) error {
			calls++
			if ev.ID != "list:fz:"+ev.CustomerID || ev.Type != "list_fz" || ev.TS != runAt.UnixMilli() || ev.Attrs == nil {
				t.Fatalf("bad event %#v", ev)
			}
			if ev.CustomerID == "" || strings.ContainsAny(ev.CustomerID, ".*> \t\r\n") || len(ev.ID) > 256 {
				t.Fatalf("bad customer id %q", ev.CustomerID)
			}
			if _, ok := ev.Attrs["customer_id"]; ok && !jsonl {
				t.Fatalf("customer_id in attrs %#v", ev.Attrs)
			}
			return nil
		})
		if n != calls {
			t.Fatalf("n = %d, calls = %d", n, calls)
		}
		if err != nil {
			var le *batchgen.ListError
			if !errors.As(err, &le) {
				t.Fatalf("error %v is not a *ListError", err)
			}
			if !errors.Is(err, batchgen.ErrList) && !errors.Is(err, batchgen.ErrBadRow) {
				t.Fatalf("error %v is neither ErrList nor ErrBadRow", err)
			}
		}
	})
}

// FuzzBirthday checks the profile generators never panic on any string
// attribute and that a match is consistent.
func FuzzBirthday(f *testing.F) {
	for _, s := range []string{"1990-05-17", "05-17", "--02-29", "2000-02-29T12:00:00+14:00", "x", ""} {
		f.Add(s, "America/Los_Angeles", int64(1778979600), int8(0))
	}
	f.Fuzz(func(t *testing.T, birthday, zone string, sec int64, ahead int8) {
		runAt := time.Unix(sec%(400*365*86400), 0)
		p := map[string]any{"birthday": birthday, "opened_at": birthday, "timezone": zone}
		ev, ok, err := batchgen.Birthday(runAt, time.UTC, int(ahead), "C1", p)
		if ok && (err != nil || !strings.HasPrefix(ev.ID, "birthday:C1:") || ev.Attrs["date"] != ev.ID[len(ev.ID)-10:]) {
			t.Fatalf("bad birthday event %#v, err %v", ev, err)
		}
		checkFixedReason(t, err)
		_, _, err = batchgen.Anniversary(runAt, time.UTC, "C1", p)
		checkFixedReason(t, err)
		_, _, err = batchgen.NewCustomer(runAt, 7, "C1", p)
		checkFixedReason(t, err)
	})
}

// knownReasons are the texts an AttrError may carry: fixed, so that no
// attribute value reaches a log.
var knownReasons = map[string]bool{
	"not a date: want YYYY-MM-DD, MM-DD, an RFC 3339 time or a timestamp": true,
	"not a date: want an RFC 3339 time, YYYY-MM-DD or a timestamp":        true,
	"not a string or a timestamp":                                         true,
	"the zero time":                                                       true,
	"not an IANA time zone name":                                          true,
	"the birth year is after the birthday's year":                         true,
}

func checkFixedReason(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var ae *batchgen.AttrError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an *AttrError", err)
	}
	if !knownReasons[ae.Reason] || err.Error() != `customer "C1": attribute "`+ae.Attr+`": `+ae.Reason {
		t.Fatalf("error %q: not a fixed text", err)
	}
}

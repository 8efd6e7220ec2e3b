package batchgen_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

var listRunAt = time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)

// readAll reads a list and returns its events and the error.
func readAll(t *testing.T, format, campaign, data string) ([]batchgen.Event, int, error) {
	t.Helper()
	var evs []batchgen.Event
	n, err := batchgen.ReadList(strings.NewReader(data), format, campaign, listRunAt, func(ev batchgen.Event) error {
		evs = append(evs, ev)
		return nil
	})
	if n != len(evs) {
		t.Errorf("n = %d, but fn accepted %d events", n, len(evs))
	}
	return evs, n, err
}

// listEv is a wanted list event of campaign spring.
func listEv(customer string, a attrs) batchgen.Event {
	if a == nil {
		a = attrs{}
	}
	return batchgen.Event{ID: "list:spring:" + customer, CustomerID: customer, Type: "list_spring", TS: listRunAt.UnixMilli(), Attrs: a}
}

func TestReadList(t *testing.T) {
	tests := []struct {
		name, format, data string
		want               []batchgen.Event
		wantErr            string // the full error text, "" for none
	}{
		{"CSV with typed values", "csv",
			"customer_id,segment,limit,rate,vip,note,zip\n" +
				"C1,gold,5000,2.5,true,,007\n" +
				"C2,silver,-12,1e3,FALSE,\"hello, world\",12345678901234567890\n",
			[]batchgen.Event{
				listEv("C1", attrs{"segment": "gold", "limit": int64(5000), "rate": 2.5, "vip": true, "zip": "007"}),
				listEv("C2", attrs{"segment": "silver", "limit": int64(-12), "rate": 1000.0, "vip": false, "note": "hello, world", "zip": "12345678901234567890"}),
			}, ""},
		{"CSV numbers that stay strings", "csv",
			"customer_id,a,b,c,d,e,f,g\nC1,+33612345678,.5,1.,0x1F,1e,NaN,Infinity\n",
			[]batchgen.Event{listEv("C1", attrs{"a": "+33612345678", "b": ".5", "c": "1.", "d": "0x1F", "e": "1e", "f": "NaN", "g": "Infinity"})}, ""},
		{"CSV numbers", "csv",
			"customer_id,a,b,c,d,e\nC1,0,-0,0.25,-1.5E-3,9223372036854775807\n",
			[]batchgen.Event{listEv("C1", attrs{"a": int64(0), "b": int64(0), "c": 0.25, "d": -0.0015, "e": int64(9223372036854775807)})}, ""},
		{"CSV with the customer id in another column, CRLF and a byte-order mark", "csv",
			"\ufeffsegment, customer_id \r\ngold,C1\r\n",
			[]batchgen.Event{listEv("C1", attrs{"segment": "gold"})}, ""},
		{"CSV with only a customer id", "csv", "customer_id\nC1\nC2\n",
			[]batchgen.Event{listEv("C1", nil), listEv("C2", nil)}, ""},
		{"CSV header only", "csv", "customer_id,a\n", nil, ""},
		{"CSV blank lines are skipped", "csv", "customer_id,a\n\nC1,x\n\n", []batchgen.Event{listEv("C1", attrs{"a": "x"})}, ""},
		{"CSV quoted cell over two lines keeps line numbers", "csv",
			"customer_id,a\nC1,\"two\nlines\"\nC.2,x\n",
			[]batchgen.Event{listEv("C1", attrs{"a": "two\nlines"})},
			"line 4: customer id contains '.'"},
		{"CSV bad rows are reported and skipped", "csv",
			"customer_id,a\nC1,x\nC2\nC.3,y\n,z\nC 6,z\nC*7,z\nC8,x,extra\nC9,ok\n",
			[]batchgen.Event{listEv("C1", attrs{"a": "x"}), listEv("C9", attrs{"a": "ok"})},
			"line 3: 1 fields, want 2\n" +
				"line 4: customer id contains '.'\n" +
				"line 5: customer id is empty\n" +
				"line 6: customer id contains a space or a control character\n" +
				"line 7: customer id contains a wildcard ('*' or '>')\n" +
				"line 8: 3 fields, want 2"},
		{"CSV customer id too long for the event id", "csv",
			"customer_id\n" + strings.Repeat("x", 250) + "\n", nil,
			"line 2: customer id too long: the event id would exceed 256 bytes"},
		{"CSV empty file", "csv", "", nil, "empty list: no header row"},
		{"CSV without a customer_id column", "csv", "id,a\nC1,x\n", nil, "line 1: header: no customer_id column"},
		{"CSV with a repeated column", "csv", "customer_id,a,a\nC1,x,y\n", nil, "line 1: header: column 3 repeats the name of column 2"},
		{"CSV with an unnamed column", "csv", "customer_id,,a\nC1,x,y\n", nil, "line 1: header: column 2 has no name"},
		{"CSV quoting error stops reading", "csv", "customer_id,a\nC1,x\nC2,\"unterminated\nC3,y\n", []batchgen.Event{listEv("C1", attrs{"a": "x"})},
			"line 3: csv: extraneous or missing \" in quoted-field (at line 4)"},
		{"CSV bare quote stops reading", "csv", "customer_id,a\nC1,O\"Brien\nC2,y\n", nil,
			"line 2: csv: bare \" in non-quoted-field"},

		{"JSONL flat and nested attrs", "jsonl",
			`{"customer_id":"C1","segment":"gold","limit":5000,"rate":2.5,"vip":true,"big":12345678901234567890,"tags":["a",1],"geo":{"n":2},"none":null}` + "\n" +
				`{"customer_id":"C2","attrs":{"segment":"silver","n":3}}` + "\n" +
				"\n   \n" +
				`{"customer_id":"C3"}` + "\r\n" +
				`{"customer_id":"C4","attrs":{"a":1},"other":2}`,
			[]batchgen.Event{
				listEv("C1", attrs{"segment": "gold", "limit": int64(5000), "rate": 2.5, "vip": true, "big": 1.2345678901234567e19,
					"tags": []any{"a", int64(1)}, "geo": map[string]any{"n": int64(2)}, "none": nil}),
				listEv("C2", attrs{"segment": "silver", "n": int64(3)}),
				listEv("C3", nil),
				listEv("C4", attrs{"attrs": map[string]any{"a": int64(1)}, "other": int64(2)}),
			}, ""},
		{"JSONL with a byte-order mark", "jsonl", "\ufeff{\"customer_id\":\"C1\"}\n", []batchgen.Event{listEv("C1", nil)}, ""},
		{"JSONL empty file", "jsonl", "", nil, ""},
		{"JSONL bad rows are reported and skipped", "jsonl",
			"[1,2]\n" +
				"null\n" +
				`{"customer_id":1}` + "\n" +
				`{"x":"C1"}` + "\n" +
				`{"customer_id":"C5"} {"x":1}` + "\n" +
				`{"customer_id":"C6","a":` + "\n" +
				`{"customer_id":"secret.id"}` + "\n" +
				`{"customer_id":"C8"}` + "\n" +
				`{"customer_id":"C9", "a": tru}` + "\n" +
				`{"customer_id":"C10","attrs":"x"}` + "\n",
			[]batchgen.Event{listEv("C8", nil), listEv("C10", attrs{"attrs": "x"})},
			"line 1: not a JSON object\n" +
				"line 2: not a JSON object\n" +
				"line 3: customer_id is not a string\n" +
				"line 4: no customer_id\n" +
				"line 5: data after the JSON object\n" +
				"line 6: invalid JSON\n" +
				"line 7: customer id contains '.'\n" +
				"line 9: invalid JSON (syntax error at byte 30)"},
		{"JSONL a line too long is a bad row", "jsonl",
			`{"customer_id":"C1","a":"` + strings.Repeat("x", batchgen.MaxLineBytes) + `"}` + "\n" + `{"customer_id":"C2"}` + "\n",
			[]batchgen.Event{listEv("C2", nil)}, "line 1: line longer than 1048576 bytes"},
		{"JSONL a long line within the limit", "jsonl",
			`{"customer_id":"C1","a":"` + strings.Repeat("x", 200000) + `"}`,
			[]batchgen.Event{listEv("C1", attrs{"a": strings.Repeat("x", 200000)})}, ""},
		{"ndjson is jsonl", "ndjson", `{"customer_id":"C1"}`, []batchgen.Event{listEv("C1", nil)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, _, err := readAll(t, tt.format, "spring", tt.data)
			if !reflect.DeepEqual(evs, tt.want) {
				t.Errorf("events\n got %#v\nwant %#v", evs, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("no error, want %s", tt.wantErr)
			case err != nil && err.Error() != tt.wantErr:
				t.Errorf("error\n got %s\nwant %s", err, tt.wantErr)
			}
			if err != nil {
				if stopped := errors.Is(err, batchgen.ErrList); stopped != listStops[tt.name] {
					t.Errorf("errors.Is(err, ErrList) = %v: the list was read to the end: %v", stopped, !listStops[tt.name])
				}
				if !errors.Is(err, batchgen.ErrList) && !errors.Is(err, batchgen.ErrBadRow) {
					t.Errorf("error %v is neither ErrList nor ErrBadRow", err)
				}
				if wantID := strings.Contains(tt.wantErr, "customer id"); errors.Is(err, batchgen.ErrCustomerID) != wantID {
					t.Errorf("errors.Is(err, ErrCustomerID) = %v, want %v", !wantID, wantID)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Errorf("error %v quotes a value", err)
				}
			}
		})
	}
}

// listStops names the cases of TestReadList whose error stops reading.
var listStops = map[string]bool{
	"CSV empty file":                   true,
	"CSV without a customer_id column": true,
	"CSV with a repeated column":       true,
	"CSV with an unnamed column":       true,
	"CSV quoting error stops reading":  true,
	"CSV bare quote stops reading":     true,
}

func TestReadListArguments(t *testing.T) {
	for _, tt := range []struct{ name, format, campaign string }{
		{"upper case campaign", "csv", "Spring"},
		{"campaign with a dash", "csv", "spring-sale"},
		{"campaign with a dot", "csv", "spring.sale"},
		{"empty campaign", "csv", ""},
		{"campaign too long", "csv", strings.Repeat("a", 65)},
		{"unknown format", "xml", "spring"},
		{"format in upper case", "CSV", "spring"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			called := false
			n, err := batchgen.ReadList(strings.NewReader("customer_id\nC1\n"), tt.format, tt.campaign, listRunAt, func(batchgen.Event) error {
				called = true
				return nil
			})
			if !errors.Is(err, batchgen.ErrArgument) || n != 0 || called {
				t.Errorf("n=%d called=%v err=%v, want ErrArgument", n, called, err)
			}
		})
	}
	if !batchgen.ValidCampaign("spring_sale_2026") {
		t.Error("spring_sale_2026 is a valid campaign")
	}
}

func TestReadListCallbackErrorStops(t *testing.T) {
	stop := errors.New("publish failed")
	calls := 0
	n, err := batchgen.ReadList(strings.NewReader("customer_id\nC1\nC2\nC3\n"), "csv", "spring", listRunAt, func(batchgen.Event) error {
		if calls++; calls == 2 {
			return stop
		}
		return nil
	})
	if n != 1 || calls != 2 || !errors.Is(err, stop) {
		t.Fatalf("n=%d calls=%d err=%v", n, calls, err)
	}
	if err.Error() != "line 3: publish failed" {
		t.Errorf("error %q", err)
	}
}

func TestReadListStopsAfterTooManyBadRows(t *testing.T) {
	var b strings.Builder
	b.WriteString("customer_id\n")
	for i := range 150 {
		fmt.Fprintf(&b, "bad.%d\n", i)
	}
	b.WriteString("C1\n")
	evs, n, err := readAll(t, "csv", "spring", b.String())
	if n != 0 || len(evs) != 0 {
		t.Errorf("n=%d", n)
	}
	if !errors.Is(err, batchgen.ErrList) {
		t.Errorf("error is not ErrList: reading stopped")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != batchgen.MaxBadRows+1 || lines[len(lines)-1] != "line 101: too many bad rows: stopped" {
		t.Errorf("%d errors, last %q", len(lines), lines[len(lines)-1])
	}
}

func TestReadListNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spring.csv")
	if err := os.WriteFile(path, []byte("customer_id,a\nC1,x\nC.2,y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := batchgen.ReadList(f, "csv", "spring", listRunAt, func(batchgen.Event) error { return nil })
	var le *batchgen.ListError
	if n != 1 || !errors.As(err, &le) || le.File != path || le.Line != 3 {
		t.Fatalf("n=%d err=%v", n, err)
	}
	if want := path + ":3: customer id contains '.'"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, batchgen.ErrCustomerID) || !errors.Is(err, batchgen.ErrBadRow) || errors.Is(err, batchgen.ErrList) {
		t.Errorf("error %v: want ErrCustomerID and ErrBadRow, not ErrList", err)
	}
}

// TestReadListAttrsAreFresh checks each event has its own attrs map, so a
// caller may keep or change them.
func TestReadListAttrsAreFresh(t *testing.T) {
	evs, _, err := readAll(t, "csv", "spring", "customer_id,a\nC1,x\nC2,y\n")
	if err != nil {
		t.Fatal(err)
	}
	evs[0].Attrs["b"] = 1
	if evs[0].Attrs["a"] != "x" || evs[1].Attrs["a"] != "y" || len(evs[1].Attrs) != 1 {
		t.Errorf("attrs shared: %v %v", evs[0].Attrs, evs[1].Attrs)
	}
}

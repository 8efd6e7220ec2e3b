package batchgen_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/batchgen"
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	if name == "" {
		return nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("LoadLocation(%q): %v", name, err)
	}
	return loc
}

// wall parses a "2006-01-02 15:04" wall time in the named zone.
func wall(t testing.TB, s, zone string) time.Time {
	t.Helper()
	loc := mustLoad(t, zone)
	if loc == nil {
		loc = time.UTC
	}
	tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatalf("bad time %q: %v", s, err)
	}
	return tm
}

// dayMs returns the unix milliseconds of a UTC date's start, as the engine
// keeps last-seen days.
func dayMs(t testing.TB, date string) int64 {
	t.Helper()
	tm, err := time.Parse(time.DateOnly, date)
	if err != nil {
		t.Fatal(err)
	}
	return tm.UnixMilli()
}

// result is what a generator returned, for comparison.
type result struct {
	ev  batchgen.Event
	ok  bool
	err error
}

// check compares a generator's result with the wanted id and attrs (no
// match when wantID is empty) or error kind.
func check(t *testing.T, got result, runAt time.Time, customer, typ, wantID string, wantAttrs map[string]any, wantErr error) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(got.err, wantErr) {
			t.Fatalf("error %v, want %v", got.err, wantErr)
		}
		if got.ok {
			t.Errorf("ok with an error")
		}
		return
	}
	if got.err != nil {
		t.Fatalf("unexpected error: %v", got.err)
	}
	if wantID == "" {
		if got.ok {
			t.Fatalf("matched with %+v, want no match", got.ev)
		}
		return
	}
	if !got.ok {
		t.Fatalf("no match, want %s", wantID)
	}
	want := batchgen.Event{ID: wantID, CustomerID: customer, Type: typ, TS: runAt.UnixMilli(), Attrs: wantAttrs}
	if !reflect.DeepEqual(got.ev, want) {
		t.Errorf("event\n got %#v\nwant %#v", got.ev, want)
	}
}

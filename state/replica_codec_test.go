package state

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// seedReplicationRecords are replication records made of real window,
// profile and policy records, and broken variants.
func seedReplicationRecords(tb testing.TB) map[string][]byte {
	windows, policies := seedRecords(tb), seedPolicies(tb)
	profile, err := msgpack.Marshal(map[string]any{"name": "Ann", "age": 42, "tags": []any{"a", "b"}})
	if err != nil {
		tb.Fatal(err)
	}
	// An expiry far in the future, so that imports keep the window.
	const expires = 4_000_000_000
	rec := func(r record) []byte { return appendRecord(nil, &r) }
	out := map[string][]byte{
		"empty":            nil,
		"no-parts":         rec(record{}),
		"full":             rec(record{expires: expires, window: windows["mixed"], profile: profile, policy: policies["full"]}),
		"window-no-expiry": rec(record{window: windows["negative-and-equal-timestamps"]}),
		"profile-only":     rec(record{profile: profile}),
		"policy-only":      rec(record{policy: policies["extremes"]}),
		"expired-window":   rec(record{expires: 1, window: windows["mixed"]}),
		"corrupt-window":   rec(record{expires: expires, window: windows["truncated"]}),
		"corrupt-policy":   rec(record{policy: policies["string-ref-outside-table"]}),
		"corrupt-profile":  rec(record{profile: profile[:len(profile)-2]}),
		"profile-trailing": rec(record{profile: append(slices.Clone(profile), 0xc0)}),
		"expiry-no-window": rec(record{expires: expires}),
	}
	full := out["full"]
	out["truncated"] = full[:len(full)/2]
	out["bad-version"] = append([]byte{9}, full[1:]...)
	out["trailing-byte"] = append(slices.Clone(full), 0)
	return out
}

func TestWriteRecordFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzImportRecord")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, rec := range seedReplicationRecords(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(rec)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestParseRecord(t *testing.T) {
	seeds := seedReplicationRecords(t)
	tests := []struct {
		name string
		err  string // "" for a valid record
	}{
		{"empty", ""},
		{"no-parts", ""},
		{"full", ""},
		{"window-no-expiry", ""},
		{"profile-only", ""},
		{"policy-only", ""},
		{"expired-window", ""},
		{"corrupt-window", "window record: state: corrupt record: "},
		{"corrupt-policy", "policy record: state: corrupt record: "},
		{"corrupt-profile", "profile: state: corrupt record: "},
		{"profile-trailing", "profile: state: corrupt record: 1 trailing bytes"},
		{"expiry-no-window", "state: corrupt record: window expiry without a window record"},
		{"truncated", "state: corrupt record: "},
		{"bad-version", "state: corrupt record: unknown replication record version 9"},
		{"trailing-byte", "state: corrupt record: 1 trailing bytes"},
	}
	ck := newChecker()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseRecord(seeds[tt.name])
			if err == nil {
				err = ck.check(&r)
			}
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.err == "":
			case err == nil:
				t.Fatalf("no error, want %q", tt.err)
			case !errors.Is(err, ErrCorrupt) || !strings.HasPrefix(err.Error(), tt.err):
				t.Fatalf("error %q, want ErrCorrupt starting %q", err, tt.err)
			}
		})
	}
}

// fuzzStore imports the records FuzzImportRecord accepts.
func fuzzStore(tb testing.TB) *Store {
	s, err := Open(Options{InMemory: true, GCInterval: -1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func FuzzImportRecord(f *testing.F) {
	for _, rec := range seedReplicationRecords(f) {
		f.Add(rec)
	}
	s := fuzzStore(f)
	ck := newChecker()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRecord(data)
		if err == nil {
			err = ck.check(&r)
		}
		sent := false
		done, ierr := s.ImportRecords(func() (string, []byte, bool, error) {
			if sent {
				return "", nil, false, nil
			}
			sent = true
			return "c", data, true, nil
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if done != 0 || !errors.Is(ierr, ErrCorrupt) {
				t.Fatalf("ImportRecords of a corrupt record: %d, %v", done, ierr)
			}
			return
		}
		if done != 1 || ierr != nil {
			t.Fatalf("ImportRecords of a valid record: %d, %v", done, ierr)
		}
		// The record re-encodes to one with the same parts.
		enc := appendRecord(nil, &r)
		r2, err := parseRecord(enc)
		if err != nil {
			t.Fatalf("re-encoding does not parse: %v", err)
		}
		if r2.expires != r.expires || !bytes.Equal(r2.window, r.window) || !bytes.Equal(r2.profile, r.profile) || !bytes.Equal(r2.policy, r.policy) {
			t.Fatalf("round trip: %+v, want %+v", r2, r)
		}
		// The store holds it, its due index agrees, and the customer loads.
		if r.expires != 0 && r.expires <= uint64(time.Now().Unix()) {
			r.window, r.expires = nil, 0
		}
		got, ok, err := s.ExportCustomer("c")
		switch {
		case err != nil:
			t.Fatal(err)
		case !ok && (len(r.window) > 0 || len(r.profile) > 0 || len(r.policy) > 0):
			t.Fatal("nothing stored")
		case ok && !bytes.Equal(got, appendRecord(nil, &r)):
			t.Fatalf("stored %q, want %q", got, appendRecord(nil, &r))
		}
		es, err := s.DueDeferred(math.MaxInt64, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != len(ck.pol.deferred) {
			t.Fatalf("%d due index keys for %d deferred offers", len(es), len(ck.pol.deferred))
		}
		if _, _, err := s.Snapshot("c"); err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
	})
}

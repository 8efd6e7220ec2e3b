package state

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// seedPolicies are policy records produced by the Customer methods and
// appendPolicy.
func seedPolicies(tb testing.TB) map[string][]byte {
	const t0 = int64(1_700_000_000_000)
	enc := func(c *Customer) []byte { return appendPolicy(nil, &c.pol, &strTable{}) }
	out := map[string][]byte{}

	out["empty"] = enc(newTestCustomer())

	c := newTestCustomer()
	for i := range 12 {
		ts := t0 + int64(i)*3_600_000
		if i%4 == 3 {
			ts -= 5_000_000 // out of order
		}
		c.AddContact(Contact{TS: ts, Rule: fmt.Sprint("rule-", i%3), Channel: []string{"email", "sms"}[i%2], Kind: uint8(i % 3)}, 7*24*time.Hour)
	}
	out["contacts"] = enc(c)

	c.AddRuleTotal("rule-0", 4)
	c.AddRuleTotal("rule-1", 1)
	c.AddRuleTotal("rule-2", -3)
	c.AddDeferred(Deferred{ID: "offer-b", Release: t0 + 8*3_600_000, Expires: t0 + 24*3_600_000, Data: []byte{0x82, 0xa1, 'x', 1}})
	c.AddDeferred(Deferred{ID: "offer-a", Release: t0 + 8*3_600_000, Expires: t0 + 24*3_600_000})
	c.AddDeferred(Deferred{ID: "offer-c", Release: t0 + 3_600_000, Expires: t0 + 2*3_600_000, Data: []byte("opaque")})
	for i := range 5 {
		c.AddDecision(Decision{
			TS: t0 + int64(i)*1000, Rule: fmt.Sprint("rule-", i%2), OfferID: fmt.Sprint("offer-", i), EventID: fmt.Sprint("evt-", i),
			Outcome: []string{"emitted", "suppressed", "deferred"}[i%3], Reason: []string{"", "cap", "quiet hours"}[i%3], Channel: "email",
		}, 4)
	}
	c.AddExposure(Exposure{TS: t0, Rule: "rule-0", OfferID: "offer-0", Data: []byte{0x81, 0xa1, 'p', 1}}, 0)
	c.AddExposure(Exposure{TS: t0 + 5000, Rule: "rule-1", OfferID: "offer-h", Holdout: true}, 0)
	c.MarkConverted("offer-0")
	c.Seen("login", t0)
	c.Seen("txn", t0-5*86_400_000)
	out["full"] = enc(c)

	c = newTestCustomer()
	c.AddContact(Contact{TS: math.MinInt64, Rule: "", Channel: ""}, 0)
	c.AddContact(Contact{TS: math.MaxInt64, Rule: "ünïcode", Channel: "\x00\xff", Kind: 255}, 0)
	c.AddRuleTotal("big", math.MaxInt64)
	c.AddRuleTotal("small", math.MinInt64)
	c.AddDeferred(Deferred{ID: "", Release: math.MinInt64, Expires: math.MaxInt64, Data: []byte{0}})
	c.AddDecision(Decision{TS: math.MaxInt64}, 3)
	c.AddDecision(Decision{TS: math.MinInt64, Outcome: "emitted"}, 3)
	out["extremes"] = enc(c)

	full := out["full"]
	out["truncated"] = full[:len(full)/2]
	out["bad-version"] = append([]byte{9}, full[1:]...)
	out["trailing-byte"] = append(slices.Clone(full), 0)
	out["string-ref-outside-table"] = []byte{1, 1, 1, 'r', 0, 0, 1, 0, 0, 5, 0, 0, 0, 0}
	return out
}

func TestWritePolicyFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodePolicy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, rec := range seedPolicies(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(rec)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzDecodePolicy(f *testing.F) {
	for _, rec := range seedPolicies(f) {
		f.Add(rec)
	}
	in := &interner{}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newTestCustomer()
		if err := decodePolicy(&c.pol, data, nil); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if !c.pol.empty() {
				t.Fatal("failed decode left a non-empty policy")
			}
			// The interning decoder agrees.
			var p policy
			if err2 := decodePolicy(&p, data, in); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("interning decoder: %v, plain: %v", err2, err)
			}
			return
		}
		checkPolicy(t, &c.pol)
		var interned policy
		if err := decodePolicy(&interned, data, in); err != nil {
			t.Fatalf("interning decoder failed: %v", err)
		}
		if d := diffPolicy(&c.pol, &interned); d != "" {
			t.Fatalf("interning decoder: %s", d)
		}
		enc := appendPolicy(nil, &c.pol, &strTable{})
		c2 := newTestCustomer()
		if err := decodePolicy(&c2.pol, enc, in); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if d := diffPolicy(&c.pol, &c2.pol); d != "" {
			t.Fatalf("round trip: %s", d)
		}
		if enc2 := appendPolicy(nil, &c2.pol, &strTable{}); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding not stable")
		}
		// Use it as the engine would.
		for _, at := range []int64{0, 1_700_000_000_000, math.MaxInt64, math.MinInt64} {
			c.CountContacts(at, -1, "", "")
			c.CountContacts(at, 0, "r", "email")
			c.AddContact(Contact{TS: at, Rule: "r", Channel: "email"}, time.Hour)
			c.AddRuleTotal("r", 1)
			c.AddDeferred(Deferred{ID: "x", Release: at})
			c.AddDecision(Decision{TS: at, Rule: "r"}, 3)
		}
		for _, d := range slices.Clone(c.Deferred()) {
			c.RemoveDeferred(d.ID)
		}
		checkPolicy(t, &c.pol)
		if err := decodePolicy(&c2.pol, appendPolicy(nil, &c.pol, &strTable{}), nil); err != nil {
			t.Fatalf("after use: %v", err)
		}
	})
}

// checkPolicy checks the invariants the methods and the decoder keep.
func checkPolicy(t *testing.T, p *policy) {
	t.Helper()
	cs := p.contacts[p.coff:]
	for i := 1; i < len(cs); i++ {
		if cs[i].TS < cs[i-1].TS {
			t.Fatalf("contacts not sorted at %d", i)
		}
	}
	for i, tt := range p.totals {
		if tt.n == 0 || i > 0 && p.totals[i-1].rule >= tt.rule {
			t.Fatalf("totals: bad entry %d %+v", i, tt)
		}
	}
	seen := map[string]bool{}
	for i, d := range p.deferred {
		if seen[d.ID] || i > 0 && cmpDeferred(p.deferred[i-1], d) >= 0 {
			t.Fatalf("deferred: bad entry %d %q", i, d.ID)
		}
		seen[d.ID] = true
	}
}

// diffPolicy compares the live parts of a and b; nil and empty Data are
// equal.
func diffPolicy(a, b *policy) string {
	if x, y := a.contacts[a.coff:], b.contacts[b.coff:]; !reflect.DeepEqual(slices.Clip(x), slices.Clip(y)) && !(len(x) == 0 && len(y) == 0) {
		return fmt.Sprintf("contacts %+v vs %+v", x, y)
	}
	if !slices.Equal(a.totals, b.totals) {
		return fmt.Sprintf("totals %+v vs %+v", a.totals, b.totals)
	}
	if !slices.EqualFunc(a.deferred, b.deferred, func(x, y Deferred) bool {
		return x.ID == y.ID && x.Release == y.Release && x.Expires == y.Expires && bytes.Equal(x.Data, y.Data)
	}) {
		return fmt.Sprintf("deferred %+v vs %+v", a.deferred, b.deferred)
	}
	if x, y := a.decisions(), b.decisions(); !slices.Equal(x, y) {
		return fmt.Sprintf("decisions %+v vs %+v", x, y)
	}
	if !slices.EqualFunc(a.exposures, b.exposures, func(x, y Exposure) bool {
		return x.TS == y.TS && x.Rule == y.Rule && x.OfferID == y.OfferID && x.Holdout == y.Holdout && x.Converted == y.Converted && bytes.Equal(x.Data, y.Data)
	}) {
		return fmt.Sprintf("exposures %+v vs %+v", a.exposures, b.exposures)
	}
	if !slices.Equal(a.seen, b.seen) {
		return fmt.Sprintf("seen %+v vs %+v", a.seen, b.seen)
	}
	return ""
}

// TestPolicyRoundTrip encodes random policies and decodes them again.
func TestPolicyRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	str := func(n int) string {
		b := make([]byte, r.IntN(n))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	ts := func() int64 {
		switch r.IntN(8) {
		case 0:
			return math.MinInt64 + r.Int64N(10)
		case 1:
			return math.MaxInt64 - r.Int64N(10)
		}
		return r.Int64N(1<<50) - 1<<49
	}
	rules := []string{"a", "b", "", "ccc"}
	in := &interner{}
	for n := range 500 {
		c := newTestCustomer()
		retention := time.Duration(r.IntN(3)) * time.Duration(r.Int64N(int64(30*24*time.Hour)))
		for range r.IntN(40) {
			c.AddContact(Contact{TS: ts(), Rule: rules[r.IntN(len(rules))], Channel: str(3), Kind: uint8(r.IntN(256))}, retention)
		}
		for range r.IntN(6) {
			c.AddRuleTotal(str(4), r.Int64()-math.MaxInt64/2)
		}
		for range r.IntN(25) {
			c.AddDeferred(Deferred{ID: str(3), Release: ts(), Expires: ts(), Data: []byte(str(20))})
		}
		keep := r.IntN(10)
		for range r.IntN(30) {
			c.AddDecision(Decision{TS: ts(), Rule: rules[r.IntN(len(rules))], OfferID: str(8), EventID: str(8), Outcome: str(2), Reason: str(5), Channel: str(2)}, keep)
		}
		for range r.IntN(10) {
			id := str(6)
			c.AddExposure(Exposure{TS: ts(), Rule: rules[r.IntN(len(rules))], OfferID: id, Holdout: r.IntN(2) == 0, Data: []byte(str(12))}, 0)
			if r.IntN(3) == 0 {
				c.MarkConverted(id)
			}
		}
		for range r.IntN(5) {
			c.Seen(rules[r.IntN(len(rules))], ts())
		}
		checkPolicy(t, &c.pol)
		enc := appendPolicy(nil, &c.pol, &strTable{})
		var p policy
		if err := decodePolicy(&p, enc, in); err != nil {
			t.Fatalf("policy %d: %v", n, err)
		}
		if d := diffPolicy(&c.pol, &p); d != "" {
			t.Fatalf("policy %d: %s", n, d)
		}
	}
}

func TestDecodePolicyErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"an empty record", nil, "version"},
		{"an unknown version", []byte{5, 0, 0, 0, 0, 0, 0, 0}, "unknown policy record version 5"},
		{"more strings than bytes", []byte{1, 9, 0}, "string count 9 exceeds record size"},
		{"a string longer than the record", []byte{1, 1, 5, 'a'}, "string"},
		{"ids longer than the record", []byte{1, 0, 3, 'a'}, "ids"},
		{"a missing contact count", []byte{1, 0, 0, 0}, "contact count"},
		{"more contacts than bytes", []byte{1, 0, 0, 0, 2, 0, 0, 0, 0, 0}, "contact count 2 exceeds record size"},
		{"a channel outside the string table", []byte{1, 1, 1, 'r', 0, 0, 1, 0, 0, 5, 0, 0, 0, 0}, "contact channel 5 outside the string table of 1"},
		{"a timestamp overflow", []byte{1, 1, 0, 0, 0, 2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0}, "contact timestamp overflow"},
		{"a zero total", []byte{1, 1, 1, 'r', 0, 0, 0, 1, 0, 0, 0, 0}, "total of rule \"r\" is 0"},
		{"unsorted totals", []byte{1, 2, 1, 'b', 1, 'a', 0, 0, 0, 2, 0, 2, 1, 2, 0, 0}, "totals not sorted at \"a\""},
		{"unsorted deferred offers", []byte{1, 0, 2, 'a', 'b', 0, 0, 0, 2, 1, 4, 0, 0, 1, 2, 0, 0, 0}, "deferred offers not sorted at \"b\""},
		{"a duplicate deferred offer", []byte{1, 0, 2, 'a', 'a', 0, 0, 0, 2, 1, 2, 0, 0, 1, 4, 0, 0, 0}, "duplicate deferred offer \"a\""},
		{"deferred data beyond the data", []byte{1, 0, 1, 'a', 1, 'x', 0, 0, 1, 1, 2, 0, 3, 0}, "deferred data of 3 bytes beyond the 1 left"},
		{"an offer id beyond the ids", []byte{1, 1, 0, 2, 'o', 'e', 0, 0, 0, 0, 1, 2, 0, 5, 1, 0, 0, 0}, "decision offer id of 5 bytes beyond the 2 left"},
		{"a truncated decision", []byte{1, 1, 0, 2, 'o', 'e', 0, 0, 0, 0, 1, 0x80, 0x01, 0, 1, 1, 0, 0}, "decision channel"},
		{"unused ids", []byte{1, 0, 1, 'x', 0, 0, 0, 0, 0}, "1 id bytes and 0 data bytes unused"},
		{"trailing bytes", []byte{1, 0, 0, 0, 0, 0, 0, 0, 7}, "1 trailing bytes"},
		{"an overlong varint", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, "string count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p policy
			err := decodePolicy(&p, tt.data, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrCorrupt with %q", err, tt.want)
			}
		})
	}
}

func TestDueKey(t *testing.T) {
	tests := []struct {
		name    string
		release int64
	}{
		{"a negative release", -1},
		{"release zero", 0},
		{"a usual release", 1_700_000_000_000},
		{"the smallest release", math.MinInt64},
		{"the largest release", math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := appendDueKey(nil, tt.release, "cust", "of\x00fer")
			got, err := parseDueKey(key)
			if want := (DueEntry{Customer: "cust", OfferID: "of\x00fer", Release: tt.release}); err != nil || got != want {
				t.Errorf("parse: %+v, %v; want %+v", got, err, want)
			}
		})
	}
	// Keys sort by release, whatever the ids.
	releases := []int64{math.MinInt64, -1, 0, 1, 1_700_000_000_000, math.MaxInt64}
	for i := 1; i < len(releases); i++ {
		if bytes.Compare(appendDueKey(nil, releases[i-1], "zz", "zz"), appendDueKey(nil, releases[i], "a", "a")) >= 0 {
			t.Errorf("the key of release %d does not sort before that of %d", releases[i-1], releases[i])
		}
	}
	for _, bad := range []string{"q/", "q/1234567", "q/12345678cust", "x/12345678c\x00o"} {
		if _, err := parseDueKey([]byte(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("parse %q: %v, want ErrCorrupt", bad, err)
		}
	}
}

// BenchmarkDecodePolicy decodes a record of 50 contacts over 5 rules and
// 2 channels, 5 totals, 3 deferred offers and 20 decisions into a reused
// policy with an interner, as a cache miss with recycling does. The
// remaining allocations are the unique strings (deferred ids, decision
// offer and event ids) and the deferred data.
func BenchmarkDecodePolicy(b *testing.B) {
	const t0 = int64(1_700_000_000_000)
	c := newTestCustomer()
	for i := range 50 {
		c.AddContact(Contact{TS: t0 + int64(i)*3_000_000, Rule: fmt.Sprint("rule-", i%5), Channel: []string{"email", "push"}[i%2]}, 7*24*time.Hour)
		c.AddRuleTotal(fmt.Sprint("rule-", i%5), 1)
	}
	for i := range 3 {
		c.AddDeferred(Deferred{ID: fmt.Sprint("offer-", i), Release: t0 + int64(i)*1000, Expires: t0 + 1e8, Data: make([]byte, 40)})
	}
	for i := range 20 {
		c.AddDecision(Decision{TS: t0 + int64(i), Rule: fmt.Sprint("rule-", i%5), OfferID: fmt.Sprint("offer-", i), EventID: fmt.Sprint("evt-", i), Outcome: "emitted", Channel: "email"}, 20)
	}
	rec := appendPolicy(nil, &c.pol, &strTable{})
	var p policy
	in := &interner{}
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if err := decodePolicy(&p, rec, in); err != nil {
			b.Fatal(err)
		}
	}
}

func TestInterner(t *testing.T) {
	in := &interner{}
	a := in.bytes([]byte("welcome"))
	b := in.str(strings.Clone("welcome"))
	if unsafe.StringData(a) != unsafe.StringData(b) {
		t.Error("the same rule id was not shared")
	}
	caller := []byte("email")
	e := in.bytes(caller)
	copy(caller, "XXXXX")
	if e != "email" {
		t.Errorf("interned %q changed with the caller's bytes", e)
	}
	for i := range internMax + 10 {
		in.str(strconv.Itoa(i))
	}
	if len(in.m) > internMax {
		t.Errorf("interner holds %d strings, want at most %d", len(in.m), internMax)
	}
	if a != "welcome" {
		t.Errorf("a string handed out before starting over changed: %q", a)
	}
	var none *interner
	if none.str("x") != "x" || none.bytes([]byte("y")) != "y" {
		t.Error("a nil interner does not pass strings through")
	}

	// Two customers decoded with one interner share their rule ids.
	c := newTestCustomer()
	c.AddContact(Contact{TS: 1, Rule: "welcome", Channel: "email"}, 0)
	rec := appendPolicy(nil, &c.pol, &strTable{})
	var p1, p2 policy
	in = &interner{}
	if decodePolicy(&p1, rec, in) != nil || decodePolicy(&p2, rec, in) != nil {
		t.Fatal("decode failed")
	}
	if unsafe.StringData(p1.contacts[0].Rule) != unsafe.StringData(p2.contacts[0].Rule) {
		t.Error("decoded rule ids not shared")
	}
}

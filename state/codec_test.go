package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpora under testdata/fuzz from real encodings")

func newTestCustomer() *Customer {
	return &Customer{profile: map[string]any{}, maxEntries: DefaultMaxSeriesEntries}
}

// seedRecords are window records produced by Apply and appendWindow.
func seedRecords(tb testing.TB) map[string][]byte {
	const t0 = int64(1_700_000_000_000)
	plan := func(h time.Duration, specs ...AggSpec) *Plan {
		p, err := NewPlan(specs, h)
		if err != nil {
			tb.Fatal(err)
		}
		return p
	}
	full := plan(24*time.Hour,
		AggSpec{Kind: Count, Type: "view", Window: time.Hour},
		AggSpec{Kind: Sum, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
		AggSpec{Kind: Distinct, Type: "*", Attr: "sku", Window: 24 * time.Hour},
		AggSpec{Kind: Since, Type: "buy"},
	)
	out := map[string][]byte{}

	c := newTestCustomer()
	out["no-series"] = appendWindow(nil, c)

	c = newTestCustomer()
	c.realign(full)
	out["empty-series"] = appendWindow(nil, c)

	c = newTestCustomer()
	for i := range 20 {
		ts := t0 + int64(i)*61_000
		if i%5 == 4 {
			ts -= 200_000 // out of order
		}
		c.Apply(full, "view", ts, map[string]any{"sku": i % 3})
		c.Apply(full, "buy", ts, map[string]any{"amount": float64(i) / 4, "sku": fmt.Sprint("s", i%4)})
	}
	out["mixed"] = appendWindow(nil, c)

	c = newTestCustomer()
	c.Apply(full, "buy", -5, map[string]any{"amount": -1.5})
	c.Apply(full, "buy", -5, map[string]any{"amount": math.Inf(1)})
	c.Apply(full, "buy", 0, map[string]any{"amount": math.MaxFloat64})
	out["negative-and-equal-timestamps"] = appendWindow(nil, c)

	c = newTestCustomer()
	c.Apply(plan(time.Hour, AggSpec{Kind: Count, Type: "ünïcode/type", Window: time.Hour}), "ünïcode/type", math.MaxInt64-1, nil)
	out["unicode-type-max-ts"] = appendWindow(nil, c)

	c = newTestCustomer()
	for i := range 10 {
		c.Apply(full, "buy", t0+int64(i)*1000, map[string]any{"amount": float64(i), "sku": i})
	}
	c.sealAll()
	c.chunks = []chunkRef{{seq: 0, expires: 1_800_000_000, base: true}, {seq: 2, expires: 1_800_000_100}}
	c.nextChunk = 3
	c.Apply(full, "view", t0+20_000, map[string]any{"sku": "late"})
	out["head-with-chunks"] = appendWindowHead(nil, c)

	mixed := out["mixed"]
	out["truncated"] = mixed[:len(mixed)/2]
	out["bad-version"] = append([]byte{9}, mixed[1:]...)
	out["trailing-byte"] = append(append([]byte(nil), mixed...), 0)
	return out
}

func TestWriteFuzzSeeds(t *testing.T) {
	if !*updateSeeds {
		t.Skip("run with -update-seeds to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeCustomer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, rec := range seedRecords(t) {
		body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(rec)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// fuzzPlan is applied to decoded customers, to show that whatever Badger
// returns, Apply and Value do not panic.
var fuzzPlan = func() *Plan {
	p, err := NewPlan([]AggSpec{
		{Kind: Count, Type: "view", Window: time.Hour},
		{Kind: Sum, Type: "buy", Attr: "amount", Window: 24 * time.Hour},
		{Kind: Min, Type: "buy", Attr: "amount", Window: time.Hour},
		{Kind: Distinct, Type: "*", Attr: "sku", Window: 24 * time.Hour},
		{Kind: Since, Type: "buy"},
	}, 24*time.Hour)
	if err != nil {
		panic(err)
	}
	return p
}()

func FuzzDecodeCustomer(f *testing.F) {
	for _, rec := range seedRecords(f) {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newTestCustomer()
		if err := decodeWindow(c, data, &interner{}); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if len(c.series) != 0 {
				t.Fatalf("failed decode left %d series", len(c.series))
			}
			return
		}
		checkInvariants(t, c)
		enc := appendWindow(nil, c)
		c2 := newTestCustomer()
		if err := decodeWindow(c2, enc, nil); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if d := diffSeries(c, c2); d != "" {
			t.Fatalf("round trip: %s", d)
		}
		if enc2 := appendWindow(nil, c2); string(enc2) != string(enc) {
			t.Fatalf("encoding not stable")
		}
		// Use it as the engine would.
		for _, at := range []int64{0, 1_700_000_000_000, math.MaxInt64, math.MinInt64} {
			for i := range fuzzPlan.Len() {
				c.Value(fuzzPlan, i, at)
			}
			c.Apply(fuzzPlan, "buy", at, map[string]any{"amount": 1, "sku": "x"})
		}
		checkInvariants(t, c)
	})
}

// FuzzDecodeChunk decodes data as the chunks of a window record that
// lists two, as Load does.
func FuzzDecodeChunk(f *testing.F) {
	recs := seedRecords(f)
	for _, rec := range recs {
		f.Add(rec)
	}
	head := recs["head-with-chunks"]
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newTestCustomer()
		err := decodeWindowChunks(c, head, &interner{}, func(r chunkRef, decode func([]byte) error) (bool, error) {
			return true, decode(data)
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			if len(c.series) != 0 || len(c.chunks) != 0 {
				t.Fatalf("failed decode left %d series, %d chunks", len(c.series), len(c.chunks))
			}
			return
		}
		checkInvariants(t, c)
		for _, at := range []int64{0, 1_700_000_000_000, math.MaxInt64, math.MinInt64} {
			for i := range fuzzPlan.Len() {
				c.Value(fuzzPlan, i, at)
			}
			c.Apply(fuzzPlan, "buy", at, map[string]any{"amount": 1, "sku": "x"})
		}
		checkInvariants(t, c)
		// What Put writes decodes.
		for _, enc := range [][]byte{appendWindowHead(nil, c), appendWindow(nil, c)} {
			if err := decodeWindow(newTestCustomer(), enc, nil); err != nil {
				t.Fatalf("re-encoding does not decode: %v", err)
			}
		}
	})
}

func checkInvariants(t *testing.T, c *Customer) {
	t.Helper()
	for i := range c.series {
		s := &c.series[i]
		if s.sealed < 0 || s.sealed > s.len() {
			t.Fatalf("series %d: %d sealed of %d", i, s.sealed, s.len())
		}
		ts := s.ts[s.off:]
		for j := 1; j < len(ts); j++ {
			if ts[j] < ts[j-1] {
				t.Fatalf("series %d not sorted at %d", i, j)
			}
		}
		wantNum, wantHash := 0, 0
		switch s.kind {
		case kindNumber:
			wantNum = len(s.ts)
		case kindHash:
			wantHash = len(s.ts)
		}
		if len(s.num) != wantNum || len(s.hash) != wantHash {
			t.Fatalf("series %d kind %d: %d ts, %d num, %d hash", i, s.kind, len(s.ts), len(s.num), len(s.hash))
		}
	}
}

// diffSeries compares the series of a and b that have entries, floats by
// bits: a window record leaves the empty ones out.
func diffSeries(a, b *Customer) string {
	xs, ys := nonEmptySeries(a), nonEmptySeries(b)
	if len(xs) != len(ys) {
		return fmt.Sprintf("%d series with entries vs %d", len(xs), len(ys))
	}
	for i := range xs {
		x, y := &a.series[xs[i]], &b.series[ys[i]]
		xt, xa := a.seriesName(xs[i])
		yt, ya := b.seriesName(ys[i])
		if xt != yt || xa != ya || x.kind != y.kind {
			return fmt.Sprintf("series %d: %q %q %d vs %q %q %d", i, xt, xa, x.kind, yt, ya, y.kind)
		}
		xts, yts := x.ts[x.off:], y.ts[y.off:]
		if len(xts) != len(yts) {
			return fmt.Sprintf("series %d: %d entries vs %d", i, len(xts), len(yts))
		}
		for j := range xts {
			if xts[j] != yts[j] {
				return fmt.Sprintf("series %d entry %d: ts %d vs %d", i, j, xts[j], yts[j])
			}
			switch x.kind {
			case kindNumber:
				if math.Float64bits(x.num[x.off+j]) != math.Float64bits(y.num[y.off+j]) {
					return fmt.Sprintf("series %d entry %d: value %v vs %v", i, j, x.num[x.off+j], y.num[y.off+j])
				}
			case kindHash:
				if x.hash[x.off+j] != y.hash[y.off+j] {
					return fmt.Sprintf("series %d entry %d: hash %x vs %x", i, j, x.hash[x.off+j], y.hash[y.off+j])
				}
			}
		}
	}
	return ""
}

// nonEmptySeries returns the indexes of c's series that have entries.
func nonEmptySeries(c *Customer) []int {
	var out []int
	for i := range c.series {
		if c.series[i].len() > 0 {
			out = append(out, i)
		}
	}
	return out
}

// addSeries adds series s named typ and attr to c, which has no plan.
func addSeries(c *Customer, typ, attr string, s series) {
	c.series = append(c.series, s)
	c.names = append(c.names, seriesName{typ: typ, attr: attr})
}

// TestWindowRoundTrip encodes random customers and decodes them again.
func TestWindowRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	}
	for n := range 500 {
		c := newTestCustomer()
		for k := range r.IntN(6) {
			typ, attr := str()+strconv.Itoa(k), str()
			s := series{kind: valueKind(1 + r.IntN(3))}
			t := r.Int64() - math.MaxInt64/2
			if r.IntN(4) == 0 {
				t = math.MinInt64 + r.Int64N(10)
			}
			for range r.IntN(50) {
				s.ts = append(s.ts, t)
				switch s.kind {
				case kindNumber:
					s.num = append(s.num, math.Float64frombits(r.Uint64()))
				case kindHash:
					s.hash = append(s.hash, r.Uint64())
				}
				if step := r.Int64N(1 << uint(r.IntN(40))); t <= math.MaxInt64-step {
					t += step
				}
			}
			// Sometimes with evicted entries in front.
			if len(s.ts) > 0 && r.IntN(3) == 0 {
				s.off = r.IntN(len(s.ts))
			}
			addSeries(c, typ, attr, s)
		}
		enc := appendWindow(nil, c)
		d := newTestCustomer()
		if err := decodeWindow(d, enc, nil); err != nil {
			t.Fatalf("customer %d: %v", n, err)
		}
		if diff := diffSeries(c, d); diff != "" {
			t.Fatalf("customer %d: %s", n, diff)
		}
	}
}

func TestDecodeWindowErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"an empty record", nil, "version"},
		{"an unknown version", []byte{4, 0}, "unknown window record version 4"},
		{"v3: a missing chunk count", []byte{3, 1}, "chunk count"},
		{"v3: more chunks than bytes", []byte{3, 9, 5, 0, 0}, "chunk count 5"},
		{"v3: a chunk not before the next", []byte{3, 1, 1, 1, 0, 0, 0}, "chunk 1 of 1"},
		{"v3: unknown chunk flags", []byte{3, 1, 1, 0, 0, 2, 0}, "flags 2"},
		{"v3: a missing series count", []byte{3, 1, 1, 0, 0, 1}, "series count"},
		{"a missing series count", []byte{1}, "series count"},
		{"more series than bytes", []byte{1, 100, 0, 0, 1, 0}, "series count 100 exceeds record size"},
		{"a type longer than the record", []byte{1, 1, 9, 'a', 0, 1, 0}, "series type"},
		{"an unknown series kind", []byte{1, 1, 0, 0, 4, 0}, "unknown series kind 4"},
		{"more entries than bytes", []byte{1, 1, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0}, "entry count 2 exceeds record size"},
		{"a duplicate series", []byte{1, 2, 0, 0, 1, 0, 0, 0, 1, 0}, "duplicate series"},
		{"a truncated value", []byte{1, 1, 0, 0, 2, 1, 0x80, 0x01, 1, 2, 3, 4, 5, 6, 7}, "value"},
		{"a timestamp overflow", append([]byte{1, 1, 0, 0, 1, 2, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, 2), "timestamp overflow"},
		{"trailing bytes", []byte{1, 0, 7}, "1 trailing bytes"},
		{"an overlong varint", []byte{1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, "series count"},
		// Version 2: a base timestamp after the series count, a value mode
		// byte after the kind of a number series.
		{"v2: a missing base", []byte{2, 1}, "series count 1 exceeds record size"},
		{"v2: a truncated base", []byte{2, 1, 0x80, 0, 0, 2, 0, 1}, "series kind"},
		{"v2: an unknown value mode", []byte{2, 1, 0, 0, 0, 2, 3, 1, 0, 0}, "unknown value mode 3"},
		{"v2: a missing value mode", []byte{2, 1, 0, 0, 0, 2}, "value mode"},
		{"v2: more varint entries than bytes", []byte{2, 1, 0, 0, 0, 2, 1, 3, 0, 0, 0}, "entry count 3 exceeds record size"},
		{"v2: a truncated varint value", []byte{2, 1, 0, 0, 0, 2, 1, 1, 0, 0x80}, "value"},
		{"v2: a truncated float value", []byte{2, 1, 0, 0, 0, 2, 0, 1, 0x80, 0x01, 1, 2, 3, 4, 5, 6, 7}, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeWindow(newTestCustomer(), tt.data, nil)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrCorrupt with %q", err, tt.want)
			}
		})
	}
}

func TestWatermarkCodec(t *testing.T) {
	for _, w := range []Watermark{{}, {Stream: "EVENTS", StreamCreated: -1, Seq: math.MaxUint64}, {Stream: strings.Repeat("s", 300), StreamCreated: 1, Seq: 1}} {
		got, err := decodeWatermark(appendWatermark(nil, w))
		if err != nil || got != w {
			t.Errorf("round trip of %+v: %+v, %v", w, got, err)
		}
	}
	enc := appendWatermark(nil, Watermark{Stream: "EVENTS", Seq: 9})
	for i := range len(enc) {
		if _, err := decodeWatermark(enc[:i]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d bytes: %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := decodeWatermark(append(enc, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: %v, want ErrCorrupt", err)
	}
	if _, err := decodeWatermark(append([]byte{2}, enc[1:]...)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 2: %v, want ErrCorrupt", err)
	}
}

// TestHashStable checks the distinct hash against hash/fnv over the
// documented canonical form: it is stored, so it must not change.
func TestHashStable(t *testing.T) {
	fnv64a := func(b []byte) uint64 {
		h := fnv.New64a()
		h.Write(b)
		return h.Sum64()
	}
	num := func(f float64) []byte { return binary.LittleEndian.AppendUint64([]byte{'n'}, math.Float64bits(f)) }
	tests := []struct {
		v    any
		form []byte
	}{
		{"a", []byte("sa")},
		{"", []byte("s")},
		{true, []byte{'b', 1}},
		{false, []byte{'b', 0}},
		{1, num(1)},
		{uint64(1), num(1)},
		{float32(0.5), num(0.5)},
		{math.Copysign(0, -1), num(0)},
		{-7, num(-7)},
	}
	for _, tt := range tests {
		got, ok := hashValue(tt.v)
		if want := fnv64a(tt.form); !ok || got != want {
			t.Errorf("hash(%#v) = %#x, want %#x", tt.v, got, want)
		}
	}
	if got, _ := hashValue("a"); got != 0x08d92f07b57922d9 {
		t.Errorf("hash(\"a\") = %#x changed", got)
	}
	for _, v := range []any{nil, []byte("a"), map[string]any{}, struct{}{}} {
		if _, ok := hashValue(v); ok {
			t.Errorf("hash(%#v) counted", v)
		}
	}
}

// BenchmarkDecodeCustomer decodes a record of four series with 1000 entries
// each into a reused Customer, as a cache miss with recycling does.
func BenchmarkDecodeCustomer(b *testing.B) {
	c := newTestCustomer()
	ts := int64(1_700_000_000_000)
	for i := range 1000 {
		ts += 60_000
		c.Apply(fuzzPlan, "buy", ts, map[string]any{"amount": float64(i % 100), "sku": i % 50})
	}
	rec := appendWindow(nil, c)
	d := newTestCustomer()
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeWindow(d, rec, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWindowRecordLeavesOutEmptySeries: a customer has only the series
// that took entries, a record holds only those with entries, and a
// customer read back and realigned to the plan has the same values for
// every aggregate of the plan.
func TestWindowRecordLeavesOutEmptySeries(t *testing.T) {
	const t0 = int64(1_700_000_000_000)
	c := newTestCustomer()
	c.Apply(fuzzPlan, "buy", t0, map[string]any{"amount": 12.5})
	// buy/amount (number) and buy (none); view and */sku have nothing.
	if got := len(c.series); got != 2 || len(c.slot) != len(fuzzPlan.series) {
		t.Fatalf("applied customer has %d series and %d slots, want 2 and the plan's %d", got, len(c.slot), len(fuzzPlan.series))
	}
	enc := appendWindow(nil, c)
	d := newTestCustomer()
	if err := decodeWindow(d, enc, nil); err != nil {
		t.Fatal(err)
	}
	if got := len(d.series); got != 2 {
		t.Fatalf("record holds %d series, want the 2 with entries", got)
	}
	// Not realigned yet (a customer whose policy alone changed), it
	// writes the same record: the names come from the record.
	if again := appendWindow(nil, d); !bytes.Equal(again, enc) {
		t.Fatalf("a decoded customer re-encodes as %x, want %x", again, enc)
	}
	c.resetCurrent() // as the next Load does
	for i := range fuzzPlan.Len() {
		want, got := c.Value(fuzzPlan, i, t0+1), d.Value(fuzzPlan, i, t0+1)
		if math.Float64bits(want) != math.Float64bits(got) {
			t.Errorf("aggregate %d: %v after the round trip, want %v", i, got, want)
		}
	}
	if got := len(d.series); got != 2 || len(d.slot) != len(fuzzPlan.series) {
		t.Errorf("realigned customer has %d series and %d slots, want 2 and %d", got, len(d.slot), len(fuzzPlan.series))
	}
}

// TestRealignOwnsItsArrays switches a customer of a shard between plans
// that share some series: no two series of the customer share an array
// (also among the dropped ones kept for reuse), entries of series kept
// across plans stay, and once the customer's arrays are large enough a
// realign allocates nothing.
func TestRealignOwnsItsArrays(t *testing.T) {
	const t0 = int64(1_700_000_000_000)
	mk := func(specs ...AggSpec) *Plan {
		p, err := NewPlan(specs, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	views := AggSpec{Kind: Count, Type: "view", Window: time.Hour}
	spent := AggSpec{Kind: Sum, Type: "buy", Attr: "amount", Window: time.Hour}
	skus := AggSpec{Kind: Distinct, Type: "*", Attr: "sku", Window: time.Hour}
	plans := []*Plan{mk(views, spent), mk(skus, views), mk(spent, skus, views), mk(skus)}
	owners := func(c *Customer) map[uintptr]string {
		seen := map[uintptr]string{}
		check := func(where string, i int, p uintptr) {
			if p == 0 {
				return
			}
			name := fmt.Sprintf("%s[%d]", where, i)
			if o, ok := seen[p]; ok {
				t.Fatalf("%s shares an array with %s", name, o)
			}
			seen[p] = name
		}
		for where, ss := range map[string][]series{"series": c.series[:cap(c.series)]} {
			for i := range ss {
				s := &ss[i]
				if cap(s.ts) > 0 {
					check(where+".ts", i, uintptr(unsafe.Pointer(unsafe.SliceData(s.ts[:1]))))
				}
				if cap(s.num) > 0 {
					check(where+".num", i, uintptr(unsafe.Pointer(unsafe.SliceData(s.num[:1]))))
				}
				if cap(s.hash) > 0 {
					check(where+".hash", i, uintptr(unsafe.Pointer(unsafe.SliceData(s.hash[:1]))))
				}
			}
		}
		return seen
	}
	c := newTestCustomer()
	c.shard = &Shard{}
	ts := t0
	for step := range 40 {
		p := plans[step%len(plans)]
		ts += 1000
		c.Apply(p, "buy", ts, map[string]any{"amount": 2.0, "sku": fmt.Sprint("s", step)})
		c.Apply(p, "view", ts, nil)
		owners(c)
	}
	// The last step was under plans[3], which has no views: the view
	// series starts empty under plans[0] and keeps its entry from there.
	c.Apply(plans[0], "view", ts, nil)
	c.realign(plans[2])
	c.realign(plans[1])
	if got := c.Value(plans[1], 1, ts); got != 1 {
		t.Errorf("views after two switches: %v, want 1", got)
	}
	if n := testing.AllocsPerRun(100, func() {
		c.realign(plans[2])
		c.realign(plans[1])
	}); n != 0 {
		t.Errorf("realign allocates %v times", n)
	}
	owners(c)
}

// TestWindowNumberModes: a number series is written as integers or cents
// only when every value comes back bit for bit, and round trips whatever
// the mode.
func TestWindowNumberModes(t *testing.T) {
	const t0 = int64(1_700_000_000_000)
	tests := []struct {
		name string
		vs   []float64
		mode byte
	}{
		{"integers", []float64{0, 1, -1, 250, -1 << 53, 1 << 53}, numInteger},
		{"cents", []float64{0.07, 12345.67, -0.01, 3, 99.99}, numCents},
		{"whole, then cents", []float64{1<<53 - 1, 0.5}, numFloat}, // (2^53-1)*100 is not exact
		{"negative zero", []float64{1, math.Copysign(0, -1)}, numFloat},
		{"next to cents", []float64{math.Nextafter(0.3, 1)}, numFloat},
		{"beyond 2^53", []float64{1<<53 + 2}, numFloat},
		{"infinity", []float64{math.Inf(-1)}, numFloat},
		{"tiny", []float64{1e-9}, numFloat},
		{"huge", []float64{1e300}, numFloat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := numberMode(tt.vs); got != tt.mode {
				t.Errorf("mode %d, want %d", got, tt.mode)
			}
			c := newTestCustomer()
			s := series{kind: kindNumber}
			for i, v := range tt.vs {
				s.ts = append(s.ts, t0+int64(i))
				s.num = append(s.num, v)
			}
			addSeries(c, "buy", "amount", s)
			d := newTestCustomer()
			if err := decodeWindow(d, appendWindow(nil, c), nil); err != nil {
				t.Fatal(err)
			}
			if diff := diffSeries(c, d); diff != "" {
				t.Error(diff)
			}
		})
	}
}

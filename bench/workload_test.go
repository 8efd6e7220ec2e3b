package bench

import (
	"crypto/sha256"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// digest hashes the first n events of g, with sorted map keys.
func digest(t *testing.T, g *Generator, n int) string {
	t.Helper()
	h := sha256.New()
	at := time.UnixMilli(1_795_000_000_000)
	for range n {
		ev := g.Next(at)
		enc := msgpack.GetEncoder()
		enc.Reset(h)
		enc.SetSortMapKeys(true)
		if err := enc.Encode(&ev); err != nil {
			t.Fatal(err)
		}
		msgpack.PutEncoder(enc)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// The default workload is what kairos demo and the engine's tests (the
// kill -9 comparison among them) have always used: the bench's additions
// must not change a single event of it.
func TestDefaultWorkloadUnchanged(t *testing.T) {
	g := NewGenerator(Workload{Customers: 500, Seed: 42, RunID: "golden"})
	// Computed with the generator before the bench's mix and Zipf offset.
	const want = "7a728d26531cc156a86167f8a266f438f72596d4a9c7b39656fa1ca5af9bb37f"
	if got := digest(t, g, 5000); got != want {
		t.Fatalf("the default workload changed: digest %s, want %s", got, want)
	}
}

func TestGeneratorDeterministic(t *testing.T) {
	w := Workload{Customers: 10_000, Seed: 9, ZipfV: 100, Mix: BenchMix, RunID: "d"}
	a, b := digest(t, NewGenerator(w), 3000), digest(t, NewGenerator(w), 3000)
	if a != b {
		t.Fatal("the same workload gave different events")
	}
	w.Seed = 10
	if digest(t, NewGenerator(w), 3000) == a {
		t.Fatal("a different seed gave the same events")
	}
}

func TestZipfSkew(t *testing.T) {
	for _, tc := range []struct {
		name      string
		customers int
		s, v      float64
	}{
		{"the demo's steep head", 10_000, 1.1, 1},
		{"the bench default", 100_000, 1.1, 100},
		{"a steeper exponent", 100_000, 1.5, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewGenerator(Workload{Customers: tc.customers, Skew: tc.s, ZipfV: tc.v, Seed: 3, Mix: BenchMix})
			const n = 200_000
			counts := make([]int, tc.customers)
			for range n {
				counts[customerIndex(g.Next(fixedNow).CustomerID)]++
			}
			top1 := max(1, tc.customers/100)
			var got int
			for _, c := range counts[:top1] {
				got += c
			}
			share, want := float64(got)/n, g.Share(top1)
			if math.Abs(share-want) > 0.02+0.05*want {
				t.Errorf("top 1%% of customers sent %.3f of events, Zipf says %.3f", share, want)
			}
			// Activity falls with the customer's rank.
			if counts[0] <= counts[tc.customers/2] {
				t.Errorf("customer 0 sent %d events, customer %d %d: no skew", counts[0], tc.customers/2, counts[tc.customers/2])
			}
			if first := float64(counts[0]) / n; math.Abs(first-g.Share(1)) > 0.01+0.1*g.Share(1) {
				t.Errorf("the most active customer sent %.4f of events, Zipf says %.4f", first, g.Share(1))
			}
		})
	}
}

func TestMixProportions(t *testing.T) {
	g := NewGenerator(Workload{Customers: 100, Seed: 5, Mix: BenchMix})
	const n = 100_000
	got := map[string]int{}
	for range n {
		ev := g.Next(fixedNow)
		got[ev.Type]++
		if len(ev.Attrs) == 0 {
			t.Fatalf("%s event without attributes", ev.Type)
		}
	}
	total := 0
	for _, m := range BenchMix {
		total += m.Weight
	}
	for _, m := range BenchMix {
		want := float64(m.Weight) / float64(total)
		if share := float64(got[m.Type]) / n; math.Abs(share-want) > 0.01 {
			t.Errorf("%s: %.3f of events, want %.3f", m.Type, share, want)
		}
	}
}

func TestParseMix(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "login=30,txn=70", want: "login=30,txn=70"},
		{in: " login=1 , search=0 ", want: "login=1"},
		{in: FormatMix(BenchMix), want: FormatMix(BenchMix)},
		{in: "login", err: "want type=weight"},
		{in: "login=x", err: "whole number"},
		{in: "teleport=3", err: "unknown event type"},
		{in: "login=1,login=2", err: "given twice"},
		{in: "login=0", err: "no event type"},
	} {
		mix, err := ParseMix(tc.in)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseMix(%q) = %v, want an error with %q", tc.in, err, tc.err)
			}
		case err != nil:
			t.Errorf("ParseMix(%q): %v", tc.in, err)
		case FormatMix(mix) != tc.want:
			t.Errorf("ParseMix(%q) = %s, want %s", tc.in, FormatMix(mix), tc.want)
		}
	}
}

func TestSeqOfEventIDs(t *testing.T) {
	g := NewGenerator(Workload{Customers: 10, Seed: 1, RunID: "run7"})
	for i := uint64(1); i <= 2000; i++ {
		ev := g.Next(fixedNow)
		seq, ok := SeqOf(ev.ID)
		if !ok || seq != i || g.Seq() != i {
			t.Fatalf("SeqOf(%q) = %d, %v; want %d", ev.ID, seq, ok, i)
		}
	}
	if _, ok := SeqOf("profile:run7:C0000001"); ok {
		t.Fatal("a profile event id has a sequence number")
	}
}

func TestParseCount(t *testing.T) {
	for in, want := range map[string]int{"10": 10, "10k": 10_000, "1M": 1_000_000, "10M": 10_000_000, "250K": 250_000} {
		if got, err := ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %d, %v; want %d", in, got, err, want)
		}
		if got := FormatCount(want); got != in && in != "250K" {
			t.Errorf("FormatCount(%d) = %q, want %q", want, got, in)
		}
	}
	for _, in := range []string{"", "0", "-3", "1.5k", "k"} {
		if _, err := ParseCount(in); err == nil {
			t.Errorf("ParseCount(%q) accepted", in)
		}
	}
	sw, err := ParseSweep("customers=10k,1M,10M")
	if err != nil || sw.Dim != "customers" || len(sw.Values) != 3 || sw.Values[2] != 10_000_000 {
		t.Fatalf("ParseSweep: %+v, %v", sw, err)
	}
	if _, err := ParseSweep("colour=1,2"); err == nil {
		t.Fatal("ParseSweep accepted an unknown dimension")
	}
}

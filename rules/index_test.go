package rules

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// indexRuleFile returns n rules on type x: random conditions (guardGen's)
// behind a cohort variant guard on most of them, as large rule sets are.
func (g *guardGen) indexRuleFile(n int) string {
	var b strings.Builder
	b.WriteString(genPrelude)
	for i := range n {
		when := g.when()
		switch g.r.IntN(4) {
		case 0: // no variant guard
		case 1:
			when = fmt.Sprintf(`profile.c == "K%d" && (%s)`, g.r.IntN(12), when)
		case 2:
			when = fmt.Sprintf(`has(profile.c) && profile.c in ["K%d", "K%d"] && %s`, g.r.IntN(12), g.r.IntN(12), when)
		default:
			when = fmt.Sprintf(`%s && event.attrs.p == "P%d"`, when, g.r.IntN(6))
		}
		fmt.Fprintf(&b, "  - {id: r%04d, on: [x], when: '%s', offer: {channels: [sms], priority: %d}}\n",
			i, strings.ReplaceAll(when, "'", "''"), g.r.IntN(5))
	}
	return b.String()
}

// cohortValue is a profile's c or an event's p: mostly a string the rules
// name, sometimes one they do not, absent or of another type.
func (g *guardGen) cohortValue(prefix string, n int) (any, bool) {
	switch g.r.IntN(10) {
	case 0:
		return nil, false
	case 1:
		return int64(g.r.IntN(3)), true
	case 2:
		return prefix + "none", true
	}
	return fmt.Sprintf("%s%d", prefix, g.r.IntN(n)), true
}

// TestIndexDifferential evaluates indexed rule sets with the index and
// guards and without either: matches in order, params and errors must be
// the same, and the index must leave most rules out.
func TestIndexDifferential(t *testing.T) {
	seeds, events := 3, 300
	if testing.Short() {
		seeds, events = 1, 200
	}
	var visited, listed int
	for seed := range uint64(seeds) {
		g := &guardGen{r: rand.New(rand.NewPCG(seed, 0x696e646578))}
		rs, err := compileTB(t, guardOpts, g.indexRuleFile(400))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		ix := rs.indexFor("x")
		if ix == nil {
			t.Fatal("400 rules with variant guards are not indexed")
		}
		with, without := rs.NewEvaluator(), rs.NewEvaluator()
		without.noGuards = true
		for i := range events {
			in := &Input{
				Event:   Event{ID: "e", CustomerID: "C", Type: "x", TS: 1_700_000_000_000, Attrs: g.fields(false)},
				Profile: g.fields(true),
				Now:     time.UnixMilli(1_700_000_000_000),
				Windows: fixedWindows{0: float64(g.r.IntN(3)), 1: float64(g.r.IntN(8))},
			}
			if v, ok := g.cohortValue("K", 14); ok {
				if in.Profile == nil {
					in.Profile = map[string]any{}
				}
				in.Profile["c"] = v
			}
			if v, ok := g.cohortValue("P", 7); ok {
				if in.Event.Attrs == nil {
					in.Event.Attrs = map[string]any{}
				}
				in.Event.Attrs["p"] = v
			}
			ms1, errs1 := with.Evaluate(context.Background(), in, nil)
			ms2, errs2 := without.Evaluate(context.Background(), in, nil)
			if a, b := outcome(ms1, errs1), outcome(ms2, errs2); a != b {
				t.Fatalf("seed %d event %d: attrs %v profile %v\nindexed:\n%s\nevery rule:\n%s", seed, i, in.Event.Attrs, short(in.Profile), a, b)
			}
			cand := make([]uint64, ix.words)
			ix.candidates(cand, in.Event.Attrs, in.Profile)
			for _, w := range cand {
				visited += bits.OnesCount64(w)
			}
			listed += len(rs.For("x"))
		}
	}
	t.Logf("the index visited %d of %d rules", visited, listed)
	if visited > listed/2 {
		t.Errorf("the index visits %d of %d rules: too many to be tested", visited, listed)
	}
}

func TestIndexChoosesTheMostSelectiveKey(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 40 {
		fmt.Fprintf(&b, "  - {id: r%02d, on: [x], when: 'event.attrs.ch == \"app\" && profile.cohort == \"K%d\"', offer: {channels: [sms]}}\n", i, i)
	}
	rs, err := compileTB(t, Options{}, b.String())
	if err != nil {
		t.Fatal(err)
	}
	ix := rs.indexFor("x")
	if ix == nil || len(ix.keys) != 1 || ix.keys[0].key != "cohort" || ix.keys[0].src != srcProfile {
		t.Fatalf("index %+v: want every rule under profile.cohort", ix)
	}
	cand := make([]uint64, ix.words)
	attrs, profile := map[string]any{"ch": "app"}, map[string]any{"cohort": "K7"}
	ix.candidates(cand, attrs, profile)
	if got := nextCandidate(cand, 0); got < 0 || rs.For("x")[got].ID != "r07" || nextCandidate(cand, got+1) != -1 {
		t.Errorf("candidates %b: want r07 alone", cand)
	}
	if n := testing.AllocsPerRun(100, func() { ix.candidates(cand, attrs, profile) }); n != 0 {
		t.Errorf("candidates allocates %v times", n)
	}
	// Without the key every rule is a candidate.
	ix.candidates(cand, attrs, map[string]any{})
	n := 0
	for _, w := range cand {
		n += bits.OnesCount64(w)
	}
	if n != 40 {
		t.Errorf("without profile.cohort %d candidates, want 40", n)
	}
	// Short lists are not indexed.
	small, err := compileTB(t, Options{}, `rules:
  - {id: a, on: [x], when: 'profile.cohort == "K1"', offer: {channels: [sms]}}
`)
	if err != nil {
		t.Fatal(err)
	}
	if small.indexFor("x") != nil {
		t.Error("a one-rule list is indexed")
	}
}

func TestNextCandidate(t *testing.T) {
	bm := []uint64{1<<3 | 1<<63, 0, 1 << 5}
	var got []int
	for pos := nextCandidate(bm, 0); pos >= 0; pos = nextCandidate(bm, pos+1) {
		got = append(got, pos)
	}
	if want := []int{3, 63, 133}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("positions %v, want %v", got, want)
	}
	if nextCandidate(bm, 192) != -1 || nextCandidate(nil, 0) != -1 {
		t.Error("past the end is not -1")
	}
}

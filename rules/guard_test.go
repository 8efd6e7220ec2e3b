package rules

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// compileTB compiles rule file sources for tests, benchmarks and fuzz
// targets.
func compileTB(tb testing.TB, opts Options, srcs ...string) (*RuleSet, error) {
	tb.Helper()
	var files []*File
	for i, src := range srcs {
		f, err := ParseFile(string(rune('a'+i))+".yaml", []byte(src))
		if err != nil {
			return nil, err
		}
		files = append(files, f)
	}
	return Compile(files, opts)
}

// String describes a guard the way a test reads it.
func (g guard) String() string {
	m := "event.attrs"
	if g.src == srcProfile {
		m = "profile"
	}
	switch g.kind {
	case guardHas:
		return "has(" + m + "." + g.key + ")"
	case guardStrEq:
		return fmt.Sprintf("%s.%s == %q", m, g.key, g.str)
	case guardStrNe:
		return fmt.Sprintf("%s.%s != %q", m, g.key, g.str)
	case guardStrIn:
		return fmt.Sprintf("%s.%s in %q", m, g.key, g.strs)
	case guardNum:
		ops := [...]string{opEq: "==", opNe: "!=", opLt: "<", opLe: "<=", opGt: ">", opGe: ">="}
		var n string
		switch g.num.kind {
		case numInt:
			n = strconv.FormatInt(g.num.i, 10)
		case numUint:
			n = strconv.FormatUint(g.num.u, 10) + "u"
		default:
			n = strconv.FormatFloat(g.num.f, 'g', -1, 64) + "d"
		}
		if g.src == srcWindow {
			return fmt.Sprintf("window[%d] %s %s", g.agg, ops[g.op], n)
		}
		return fmt.Sprintf("%s.%s %s %s", m, g.key, ops[g.op], n)
	}
	return "?"
}

func TestGuardExtraction(t *testing.T) {
	cases := []struct {
		name string
		when string
		want []string // the guards of rule r, described
	}{
		{"string equality", `event.attrs.channel == "app"`, []string{`event.attrs.channel == "app"`}},
		{"literal first", `"app" == event.attrs.channel`, []string{`event.attrs.channel == "app"`}},
		{"string inequality", `event.attrs.channel != "app"`, []string{`event.attrs.channel != "app"`}},
		{"index form", `event.attrs["channel"] == "app"`, []string{`event.attrs.channel == "app"`}},
		{"in a list of strings", `event.attrs.page in ["loans", "cards"]`, []string{`event.attrs.page in ["loans" "cards"]`}},
		{"in a string list of the set", `event.attrs.page in pages`, []string{`event.attrs.page in ["loans" "cards"]`}},
		{"numeric thresholds", `event.attrs.amount >= 8000 && event.attrs.amount < 9000.5 && event.attrs.n == 3u`,
			[]string{`event.attrs.amount >= 8000`, `event.attrs.amount < 9000.5d`, `event.attrs.n == 3u`}},
		{"number first flips the operator", `8000 <= event.attrs.amount && 5 > event.attrs.n && -2 != event.attrs.m`,
			[]string{`event.attrs.amount >= 8000`, `event.attrs.n < 5`, `event.attrs.m != -2`}},
		{"has and key in map", `has(event.attrs.x) && "y" in event.attrs && has(profile.segment) && "tags" in profile`,
			[]string{`has(event.attrs.x)`, `has(event.attrs.y)`, `has(profile.segment)`, `has(profile.tags)`}},
		{"profile equality and in", `profile.segment == "gold" && profile["tier"] in ["a"]`,
			[]string{`profile.segment == "gold"`, `profile.tier in ["a"]`}},
		{"nested and flattened, non-guards kept out", `(event.attrs.a == "x" && count("x", "1d") == 1) && (size(profile) > 0 && (event.attrs.b > 1 && true))`,
			[]string{`event.attrs.a == "x"`, `window[0] == 1`, `event.attrs.b > 1`}},
		{"a macro conjunct brings its guards", `is_app && count("x", "1d") == 1`, []string{`event.attrs.channel == "app"`, `has(profile.segment)`, `window[0] == 1`}},
		{"window functions compared with numbers", `2.5 < sum("x", "v", "7d") && distinct("x", "v", "1d") != 3 && since("x") > duration("1h") && count("x", "1d") > event.attrs.n`,
			[]string{`window[2] > 2.5d`, `window[3] != 3`}},
		{"a macro inside a macro", `nested`, []string{`event.attrs.channel == "app"`, `has(profile.segment)`}},
		{"or is not a guard", `event.attrs.a == "x" || event.attrs.b == "y"`, nil},
		{"negation is not a guard", `!(event.attrs.a == "x") && !has(event.attrs.b)`, nil},
		{"macro under negation is not a guard", `!is_app`, nil},
		{"nested call is not a guard", `size(event.attrs.a) == 3 && event.attrs.a.startsWith("x") && int(event.attrs.n) > 3 && double(event.attrs.n) > 3.0`, nil},
		{"deeper reads are not guards", `event.attrs.m.k == "x" && has(event.attrs.m.k) && profile.tags[0] == "x"`, nil},
		{"variable key is not a guard", `event.attrs[event.type] == "x" && event.attrs.a == event.attrs.b`, nil},
		{"string ordering is not a guard", `event.attrs.a < "m"`, nil},
		{"bool and null literals are not guards", `event.attrs.flag == true && event.attrs.x != null`, nil},
		{"lists of other literals are not guards", `event.attrs.n in [1, 2] && event.attrs.a in ["x", event.type] && event.attrs.n in nums`, nil},
		{"event fields are not guards", `event.type == "x" && event.id != ""`, nil},
		{"comprehension is not a guard", `[1, 2].exists(i, event.attrs.a == "x")`, nil},
		{"a comprehension rule keeps guards before the first other conjunct",
			`has(profile.tags) && is_app && profile.tags.exists(t, t == "x") && event.attrs.b == "y"`,
			[]string{`has(profile.tags)`, `event.attrs.channel == "app"`, `has(profile.segment)`}},
		{"a comprehension rule with a non-guard first has none",
			`size(profile) > 0 && event.attrs.b == "y" && [1].all(i, i > 0)`, nil},
		{"a comprehension rule keeps a window guard before it",
			`count("x", "1d") == 1 && event.attrs.b == "y" && [1].all(i, i > 0)`, []string{`window[0] == 1`, `event.attrs.b == "y"`}},
	}
	src := `lists:
  pages: [loans, cards]
  nums: [1, 2]
macros:
  is_app: event.attrs.channel == "app" && has(profile.segment) && count("x", "7d") > 0
  nested: is_app && true
rules:
`
	for i, c := range cases {
		src += fmt.Sprintf("  - {id: r%d, on: [x], when: '%s', offer: {channels: [sms]}}\n", i, strings.ReplaceAll(c.when, "'", "''"))
	}
	rs, err := compileTB(t, Options{}, src)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var got []string
			for _, g := range rs.Rules()[i].guards {
				got = append(got, g.String())
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("when %s\nguards %q\nwant   %q", c.when, got, c.want)
			}
		})
	}
}

func TestGuardIsFalse(t *testing.T) {
	rs, err := compileTB(t, Options{}, `rules:
  - {id: eq, on: [x], when: 'event.attrs.v == "a"', offer: {channels: [sms]}}
  - {id: ge, on: [x], when: 'event.attrs.v >= 10', offer: {channels: [sms]}}
  - {id: lt-double, on: [x], when: 'event.attrs.v < 2.5', offer: {channels: [sms]}}
  - {id: has, on: [x], when: 'has(profile.v)', offer: {channels: [sms]}}
`)
	if err != nil {
		t.Fatal(err)
	}
	g := func(id string) *guard {
		for _, r := range rs.Rules() {
			if r.ID == id {
				return &r.guards[0]
			}
		}
		t.Fatalf("no rule %s", id)
		return nil
	}
	cases := []struct {
		name  string
		guard string
		v     any // the attribute or profile field; absent when nil
		want  bool
	}{
		{"another string", "eq", "b", true},
		{"the string", "eq", "a", false},
		{"absent", "eq", nil, false},
		{"a number against a string", "eq", int64(1), false},
		{"a bool against a string", "eq", true, false},
		{"an int below", "ge", int64(9), true},
		{"an int at", "ge", int64(10), false},
		{"a double below", "ge", 9.99, true},
		{"a uint below", "ge", uint64(9), true},
		{"an int32 below", "ge", int32(9), true},
		{"a float32 below", "ge", float32(9.5), true},
		{"NaN", "ge", math.NaN(), false},
		{"a string", "ge", "9", false},
		{"an int beyond 2^53 against a double", "lt-double", int64(1) << 60, false},
		{"a uint beyond 2^53 against a double", "lt-double", uint64(1) << 60, false},
		{"an int within 2^53 against a double", "lt-double", int64(1) << 52, true},
		{"minus infinity", "lt-double", math.Inf(-1), false},
		{"plus infinity", "lt-double", math.Inf(1), true},
		{"has: absent", "has", nil, true},
		{"has: present", "has", "x", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := map[string]any{}
			if c.v != nil {
				m["v"] = c.v
			}
			if got := g(c.guard).isFalse(m, m, nil); got != c.want {
				t.Errorf("isFalse(%#v) = %v, want %v", c.v, got, c.want)
			}
		})
	}
}

// guardGen draws rule conditions from the guard shapes and from other
// conjuncts, some of which fail, and events and profiles that exercise
// them: missing keys, wrong types, large ints, NaN, infinities.
type guardGen struct {
	r *rand.Rand
}

var (
	genKeys    = []string{"a", "b", "n", "m"}
	genStrings = []string{`"x"`, `"y"`, `""`, `"10"`}
	genNums    = []string{"0", "5", "-3", "10", "2.5", "-0.0", "5u", "0u", "9007199254740993", "9007199254740992.0", "1e300", "-9223372036854775808", "18446744073709551615u"}
	genOps     = []string{"==", "!=", "<", "<=", ">", ">="}
)

func (g *guardGen) pick(s []string) string { return s[g.r.IntN(len(s))] }

// read returns a read of a key of event.attrs or profile.
func (g *guardGen) read() string {
	m := "event.attrs"
	if g.r.IntN(3) == 0 {
		m = "profile"
	}
	k := g.pick(genKeys)
	if g.r.IntN(4) == 0 {
		return m + `["` + k + `"]`
	}
	return m + "." + k
}

func (g *guardGen) guardConjunct() string {
	switch g.r.IntN(8) {
	case 6:
		// A window function against a number: ints for count and
		// distinct, doubles for the others, as CEL types them.
		ints := []string{`count("x", "1d")`, `distinct("x", "v", "1d")`}
		doubles := []string{`sum("x", "v", "7d")`, `avg("x", "v", "30d")`, `max("x", "v", "1d")`}
		call, lit := g.pick(ints), g.pick([]string{"0", "1", "2", "-1", "3"})
		if g.r.IntN(2) == 0 {
			call, lit = g.pick(doubles), g.pick([]string{"0.0", "1.0", "2.5", "-1.0", "3.0"})
		}
		if g.r.IntN(2) == 0 {
			return lit + " " + g.pick(genOps) + " " + call
		}
		return call + " " + g.pick(genOps) + " " + lit
	case 0, 1:
		op := "=="
		if g.r.IntN(3) == 0 {
			op = "!="
		}
		if g.r.IntN(2) == 0 {
			return g.pick(genStrings) + " " + op + " " + g.read()
		}
		return g.read() + " " + op + " " + g.pick(genStrings)
	case 2, 3:
		if g.r.IntN(2) == 0 {
			return g.pick(genNums) + " " + g.pick(genOps) + " " + g.read()
		}
		return g.read() + " " + g.pick(genOps) + " " + g.pick(genNums)
	case 4:
		l := []string{}
		for range g.r.IntN(4) {
			l = append(l, g.pick(genStrings))
		}
		if g.r.IntN(3) == 0 {
			return g.read() + " in strs"
		}
		return g.read() + " in [" + strings.Join(l, ", ") + "]"
	case 5:
		m := "event.attrs"
		if g.r.IntN(2) == 0 {
			m = "profile"
		}
		if g.r.IntN(2) == 0 {
			return `"` + g.pick(genKeys) + `" in ` + m
		}
		return "has(" + m + "." + g.pick(genKeys) + ")"
	}
	return g.pick([]string{"is_x", "nested", "tracked_macro"})
}

// otherConjunct returns a conjunct that is not a guard; many fail on some
// inputs, one iterates.
func (g *guardGen) otherConjunct() string {
	switch g.r.IntN(15) {
	case 0:
		return `count("x", "1d") == 1`
	case 1:
		return `sum("x", "v", "7d") > 3.0`
	case 2:
		return `true`
	case 3:
		return `false`
	case 4:
		return `event.attrs.missing > 1`
	case 5:
		return g.read() + `.startsWith("x")`
	case 6:
		return `size(` + g.read() + `) > 0`
	case 7:
		return g.read() + ` + 1 > 3`
	case 8:
		return `1 / (` + g.read() + ` - 5) > 0`
	case 9:
		return `double(` + g.read() + `) > 2.0`
	case 10:
		return `!(` + g.guardConjunct() + `)`
	case 11:
		return g.guardConjunct() + ` || ` + g.otherConjunct()
	case 12:
		return `profile.l.exists(t, t == "q")`
	case 13:
		return `[1, 2, 3].exists(i, i == ` + g.read() + `)`
	}
	return `plain_macro`
}

func (g *guardGen) when() string {
	n := 1 + g.r.IntN(4)
	parts := make([]string, n)
	for i := range parts {
		if g.r.IntN(3) == 0 {
			parts[i] = g.otherConjunct()
		} else {
			parts[i] = g.guardConjunct()
		}
	}
	// Nest some of the && in parentheses.
	for len(parts) > 1 {
		i := g.r.IntN(len(parts) - 1)
		joined := parts[i] + " && " + parts[i+1]
		if g.r.IntN(2) == 0 {
			joined = "(" + joined + ")"
		}
		parts = append(parts[:i], append([]string{joined}, parts[i+2:]...)...)
	}
	return parts[0]
}

// windows returns window values for the aggregates the generated rules
// read: whole, fractional, negative, NaN, or absent (NaN too).
func (g *guardGen) windows() fixedWindows {
	w := fixedWindows{}
	for i := range 6 {
		switch g.r.IntN(6) {
		case 0:
			w[i] = math.NaN()
		case 1:
			w[i] = 2.5
		case 2:
			w[i] = -1
		case 3:
		default:
			w[i] = float64(g.r.IntN(4))
		}
	}
	return w
}

// bigList makes profile.l exceed the cost limit of the rules that iterate
// over it (estimated for 1,000 elements).
var bigList = func() []any {
	l := make([]any, 5_000)
	for i := range l {
		l[i] = "e"
	}
	return l
}()

func (g *guardGen) value() any {
	switch g.r.IntN(22) {
	case 0, 1, 2:
		return "x"
	case 3:
		return "y"
	case 4:
		return ""
	case 5:
		return "10"
	case 6, 7:
		return int64(g.r.IntN(20) - 5)
	case 8:
		return float64(g.r.IntN(40))/4 - 2
	case 9:
		return int64(1)<<53 + int64(g.r.IntN(3)) - 1
	case 10:
		return uint64(g.r.IntN(12))
	case 11:
		return math.NaN()
	case 12:
		return math.Inf(g.r.IntN(2)*2 - 1)
	case 13:
		return true
	case 14:
		return nil
	case 15:
		return []any{"x"}
	case 16:
		return map[string]any{"k": "x"}
	case 17:
		return int(g.r.IntN(12))
	case 18:
		return float32(g.r.IntN(12))
	case 19:
		return uint64(math.MaxUint64)
	case 20:
		return int64(math.MinInt64)
	}
	return 9007199254740992.0
}

func (g *guardGen) fields(extra bool) map[string]any {
	if g.r.IntN(10) == 0 {
		return nil
	}
	m := map[string]any{}
	for _, k := range genKeys {
		if g.r.IntN(3) > 0 {
			m[k] = g.value()
		}
	}
	if extra && g.r.IntN(60) == 0 {
		m["l"] = bigList
	} else if extra && g.r.IntN(2) == 0 {
		m["l"] = []any{"q", "r"}
	}
	return m
}

// genPrelude is the lists and macros the generated conditions name,
// followed by the rules key.
const genPrelude = `lists:
  strs: [x, "10", z]
macros:
  is_x: event.attrs.a == "x" && has(profile.b)
  nested: is_x && event.attrs.n > 2
  tracked_macro: profile.l.exists(t, t == "q") && event.attrs.b == "y"
  plain_macro: count("x", "1d") >= 0
rules:
`

// ruleFile returns a rule file of n random rules on event type x.
func (g *guardGen) ruleFile(n int) string {
	var b strings.Builder
	b.WriteString(genPrelude)
	for i := range n {
		params := ""
		if g.r.IntN(3) == 0 {
			params = ", params: {v: '" + strings.ReplaceAll(g.read(), "'", "''") + "', k: 'count(\"x\", \"1d\")'}"
		}
		fmt.Fprintf(&b, "  - {id: r%04d, on: [x], when: '%s', offer: {channels: [sms]%s}}\n", i, strings.ReplaceAll(g.when(), "'", "''"), params)
	}
	return b.String()
}

// short prints a profile with bigList as its length.
func short(p map[string]any) string {
	if l, ok := p["l"].([]any); ok && len(l) == len(bigList) {
		q := maps.Clone(p)
		q["l"] = fmt.Sprintf("[%d elements]", len(l))
		return fmt.Sprint(q)
	}
	return fmt.Sprint(p)
}

// outcome is what an evaluation returns, as text: matches in order with
// their params, and errors.
func outcome(ms []Match, errs []*EvalError) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "match %s %v\n", m.Rule.ID, m.Params)
	}
	for _, e := range errs {
		fmt.Fprintf(&b, "error %v\n", e)
	}
	return b.String()
}

// guardOpts bounds the cost so that profile.l = bigList exceeds it at
// evaluation.
var guardOpts = Options{CostLimit: 20_000}

// TestGuardsDifferential evaluates random rules on random inputs with
// guards and without: matches, params and errors must be the same.
func TestGuardsDifferential(t *testing.T) {
	seeds := 3
	events := 250
	if testing.Short() {
		seeds, events = 1, 200
	}
	var pairs, skipped, skippedErr, skippedTracked, costErrs int
	for seed := range uint64(seeds) {
		g := &guardGen{r: rand.New(rand.NewPCG(seed, 0x6775617264))}
		src := g.ruleFile(250)
		rs, err := compileTB(t, guardOpts, src)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		with, without := rs.NewEvaluator(), rs.NewEvaluator()
		without.noGuards = true
		for i := range events {
			in := &Input{
				Event:   Event{ID: "e", CustomerID: "C", Type: "x", TS: 1_700_000_000_000, Attrs: g.fields(false)},
				Profile: g.fields(true),
				Now:     time.UnixMilli(1_700_000_000_000),
				Windows: g.windows(),
			}
			ms1, errs1 := with.Evaluate(context.Background(), in, nil)
			ms2, errs2 := without.Evaluate(context.Background(), in, nil)
			if a, b := outcome(ms1, errs1), outcome(ms2, errs2); a != b {
				t.Fatalf("seed %d event %d: attrs %v profile %v\nwith guards:\n%s\nwithout:\n%s", seed, i, in.Event.Attrs, short(in.Profile), a, b)
			}
			// How often guards skip, and skip a rule that would fail.
			failed := map[*Rule]bool{}
			for _, e := range errs2 {
				failed[e.Rule] = true
				if strings.Contains(e.Error(), "cost limit") {
					costErrs++
				}
			}
			for _, r := range rs.For("x") {
				pairs++
				if guardsFalse(r, in.Event.Attrs, in.Profile, in.Windows) {
					skipped++
					if r.tracked {
						skippedTracked++
					}
					if failed[r] {
						skippedErr++
					}
				}
			}
		}
	}
	t.Logf("%d rule evaluations, %d skipped by guards (%d of rules that iterate), %d over the cost limit", pairs, skipped, skippedTracked, costErrs)
	if skipped < pairs/10 || skippedTracked == 0 || costErrs == 0 {
		t.Errorf("guards skip too few rules to test them: %d of %d, %d that iterate", skipped, pairs, skippedTracked)
	}
	if skippedErr != 0 {
		t.Errorf("%d skipped rules failed without guards", skippedErr)
	}
}

// FuzzGuards compiles a condition and evaluates it with guards and without
// on an event and profile drawn from a seed.
func FuzzGuards(f *testing.F) {
	for _, w := range []string{
		`event.attrs.a == "x" && event.attrs.missing > 1`,
		`event.attrs.n >= 10 && 1 / (event.attrs.n - 5) > 0`,
		`5u < event.attrs.n && event.attrs.a.startsWith("x")`,
		`profile.a in ["x", "y"] && has(event.attrs.b) && size(profile.b) > 1`,
		`is_x && profile.l.exists(t, t == "q")`,
		`event.attrs.n < 9007199254740992.0 && event.attrs.n != 2.5`,
	} {
		f.Add(w, uint64(1))
	}
	f.Fuzz(func(t *testing.T, when string, seed uint64) {
		if strings.ContainsAny(when, "'\n\r") || strings.TrimSpace(when) == "" {
			return
		}
		src := `macros:
  is_x: event.attrs.a == "x" && has(profile.b)
rules:
  - {id: r, on: [x], when: '` + when + `', offer: {channels: [sms]}}
`
		rs, err := compileTB(t, guardOpts, src)
		if err != nil {
			return
		}
		with, without := rs.NewEvaluator(), rs.NewEvaluator()
		without.noGuards = true
		g := &guardGen{r: rand.New(rand.NewPCG(seed, 1))}
		for range 20 {
			in := &Input{
				Event:   Event{Type: "x", TS: 1_700_000_000_000, Attrs: g.fields(false)},
				Profile: g.fields(true),
				Now:     time.UnixMilli(1_700_000_000_000),
				Windows: fixedWindows{},
			}
			ms1, errs1 := with.Evaluate(context.Background(), in, nil)
			ms2, errs2 := without.Evaluate(context.Background(), in, nil)
			if a, b := outcome(ms1, errs1), outcome(ms2, errs2); a != b {
				t.Fatalf("attrs %v profile %v\nwith guards:\n%s\nwithout:\n%s", in.Event.Attrs, short(in.Profile), a, b)
			}
		}
	})
}

// benchGuardRules returns n rules in the shapes bench.GenerateRules draws
// (which package rules cannot import): each of ten event types triggers a
// tenth of them, most start with a selective test of the event or profile.
func benchGuardRules(n int) string {
	shapes := []string{
		`event.attrs.channel == "%[1]s" && count("%[2]s", "24h") == %[3]d && sum("%[2]s", "amount", "7d") >= 500.0`,
		`has(profile.segment) && profile.segment == "%[1]s" && count("%[2]s", "7d") == %[3]d`,
		`event.attrs.page == "%[1]s" && count("%[2]s", "1h") == %[3]d`,
		`event.attrs.amount >= %[4]d && count("%[2]s", "30d") >= %[3]d`,
		`event.attrs.merchant in ["%[1]s", "m_other"] && sum("%[2]s", "amount", "7d") >= 500.0`,
		`event.attrs.amount < 50 && count("%[2]s", "24h") == %[3]d + 4`,
		`distinct("%[2]s", "page", "24h") == %[3]d`,
	}
	vals := []string{"app", "web", "mass", "affluent", "private", "loans", "cards", "m_fuel", "m_dining"}
	r := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range n {
		typ := fmt.Sprintf("t%d", i%10)
		when := fmt.Sprintf(shapes[(i/10)%len(shapes)], vals[r.IntN(len(vals))], typ, 1+r.IntN(4), 1000*(8+r.IntN(13)))
		fmt.Fprintf(&b, "  - {id: b%05d, on: [%s], when: '%s', offer: {channels: [sms], params: {name: 'has(profile.name) ? profile.name : \"\"'}}}\n", i, typ, when)
	}
	return b.String()
}

// BenchmarkEvaluateGuards evaluates such rule sets with guards and
// without.
func BenchmarkEvaluateGuards(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		rs, err := compileTB(b, Options{}, benchGuardRules(n))
		if err != nil {
			b.Fatal(err)
		}
		r := rand.New(rand.NewPCG(3, 4))
		ins := make([]*Input, 1000)
		vals := []string{"app", "web", "loans", "cards", "home", "m_fuel", "m_grocery"}
		for i := range ins {
			ins[i] = &Input{
				Event: Event{ID: "e", CustomerID: "C", Type: fmt.Sprintf("t%d", i%10), TS: 1_700_000_000_000, Attrs: map[string]any{
					"channel": vals[r.IntN(2)], "page": vals[2+r.IntN(3)], "merchant": vals[5+r.IntN(2)], "amount": float64(r.IntN(20000)),
				}},
				Profile: map[string]any{"segment": []string{"mass", "mass", "affluent", "private"}[r.IntN(4)], "name": "Ann"},
				Now:     time.UnixMilli(1_700_000_000_000),
				Windows: fixedWindows{0: 1, 1: 2, 2: 600},
			}
		}
		for _, guards := range []bool{true, false} {
			name := fmt.Sprintf("rules=%d/guards=%v", n, guards)
			b.Run(name, func(b *testing.B) {
				ev := rs.NewEvaluator()
				ev.noGuards = !guards
				var dst []Match
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					dst, _ = ev.Evaluate(context.Background(), ins[i%len(ins)], dst[:0])
				}
			})
		}
	}
}

func TestGuardsDoNotAllocate(t *testing.T) {
	rs, err := compileTB(t, Options{}, `rules:
  - {id: r, on: [x], when: 'event.attrs.a == "x" && event.attrs.n > 2.5 && event.attrs.m in ["p", "q"] && has(profile.s) && profile.s != "gold"', offer: {channels: [sms]}}
`)
	if err != nil {
		t.Fatal(err)
	}
	r := rs.Rules()[0]
	attrs := map[string]any{"a": "x", "n": int64(5), "m": "q"}
	profile := map[string]any{"s": "silver"}
	if n := testing.AllocsPerRun(100, func() { guardsFalse(r, attrs, profile, nil) }); n != 0 {
		t.Errorf("guardsFalse allocates %v times", n)
	}
	if guardsFalse(r, attrs, profile, nil) {
		t.Error("a guard is false on an input that passes them all")
	}
}

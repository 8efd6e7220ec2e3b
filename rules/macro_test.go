package rules

import (
	"context"
	"errors"
	"fmt"

	"slices"
	"strings"
	"testing"
	"time"
)

// countingWindows serves every aggregate as v and counts reads per index.
type countingWindows struct {
	v     float64
	reads map[int]int
}

func (w *countingWindows) Value(i int) float64 {
	w.reads[i]++
	return w.v
}

func matchIDs(ms []Match) []string {
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.Rule.ID)
	}
	return ids
}

func TestListsAndMacrosAcrossFiles(t *testing.T) {
	rs, err := Load(Options{}, "testdata/check/good")
	if err != nil {
		t.Fatal(err)
	}
	ev := rs.NewEvaluator()
	login := &Input{
		Event:   Event{ID: "e1", CustomerID: "C1", Type: "login", TS: 1_700_000_000_000, Attrs: map[string]any{"channel": "app_tablet"}},
		Profile: map[string]any{"tags": []any{"payroll"}, "segment": "private", "name": "Ann"},
		Now:     time.UnixMilli(1_700_000_000_100),
	}
	cases := []struct {
		name    string
		profile map[string]any
		attrs   map[string]any
		spent   float64
		want    []string
	}{
		{"payroll customer who spends gets both versions", login.Profile, login.Event.Attrs, 20000, []string{"payroll-login-wealth", "payroll-login-wealth-v2"}},
		{"a VIP who spends little gets only the new version", login.Profile, login.Event.Attrs, 100, []string{"payroll-login-wealth-v2"}},
		{"a channel outside the list gets nothing", login.Profile, map[string]any{"channel": "web"}, 20000, nil},
		{"no payroll tag gets nothing", map[string]any{"tags": []any{"x"}}, login.Event.Attrs, 20000, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := *login
			in.Profile, in.Event.Attrs = c.profile, c.attrs
			w := fixedWindows{}
			for i, a := range rs.Aggregates() {
				w[i] = c.spent
				if a.Kind == Count {
					w[i] = 1
				}
			}
			in.Windows = w
			m, errs := ev.Evaluate(context.Background(), &in, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if got := matchIDs(m); !slices.Equal(got, c.want) {
				t.Fatalf("matched %v, want %v", got, c.want)
			}
		})
	}
}

func TestMacroIsEvaluatedOncePerEvent(t *testing.T) {
	rs := mustCompile(t, Options{}, `macros:
  spends: sum("txn", "amount", "30d") > 10.0
rules:
  - {id: a, on: [x], when: 'spends && spends', offer: {channels: [sms]}}
  - {id: b, on: [x], when: '[1, 2, 3].all(i, spends)', offer: {channels: [sms]}}
  - {id: c, on: [x], when: 'spends', offer: {channels: [sms], params: {s: 'spends'}}}
`)
	if len(rs.Aggregates()) != 1 {
		t.Fatalf("aggregates %v, want one", rs.Aggregates())
	}
	for _, r := range rs.Rules() {
		if !slices.Equal(r.Aggregates, []int{0}) || !slices.Equal(r.Uses, []string{"spends"}) {
			t.Fatalf("rule %s reads %v and uses %v", r.ID, r.Aggregates, r.Uses)
		}
	}
	ev := rs.NewEvaluator()
	for event := 1; event <= 3; event++ {
		w := &countingWindows{v: 100, reads: map[int]int{}}
		in := &Input{Event: Event{Type: "x"}, Windows: w}
		m, errs := ev.Evaluate(context.Background(), in, nil)
		if len(errs) > 0 || len(m) != 3 {
			t.Fatalf("event %d: matches %v, errors %v", event, matchIDs(m), errs)
		}
		if w.reads[0] != 1 {
			t.Fatalf("event %d: the macro's aggregate was read %d times, want once", event, w.reads[0])
		}
	}
}

func TestMacroIsHygienic(t *testing.T) {
	// A comprehension variable named like a variable the macro reads, or
	// like the macro itself, does not change what the macro sees.
	rs := mustCompile(t, Options{}, `macros:
  vip: profile.segment == "private"
rules:
  - {id: shadowed-profile, on: [x], when: '[1].exists(profile, vip)', offer: {channels: [sms]}}
  - {id: shadowed-macro, on: [x], when: '[false].exists(vip, vip == false) && vip', offer: {channels: [sms]}}
`)
	in := &Input{Event: Event{Type: "x"}, Profile: map[string]any{"segment": "private"}}
	m, errs := rs.NewEvaluator().Evaluate(context.Background(), in, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if got := matchIDs(m); len(got) != 2 {
		t.Fatalf("matched %v, want both rules", got)
	}
	if r := rs.Rules()[1]; !slices.Equal(r.Uses, []string{"vip"}) {
		t.Fatalf("uses %v", r.Uses)
	}
}

func TestMacroEvalErrorNamesMacro(t *testing.T) {
	rs := mustCompile(t, Options{}, `macros:
  payroll: '"payroll" in profile.tags'
rules:
  - {id: r, on: [x], when: 'payroll', offer: {channels: [sms]}}
  - {id: absorbed, on: [x], when: 'false && payroll', offer: {channels: [sms]}}
`)
	_, errs := rs.NewEvaluator().Evaluate(context.Background(), &Input{Event: Event{Type: "x"}}, nil)
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one", errs)
	}
	want := `rule "r": macro payroll (a.yaml:2:3): no such key: tags`
	if got := errs[0].Error(); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if !errors.Is(errs[0], ErrEval) {
		t.Fatal("not ErrEval")
	}
}

func TestMacrosUsingMacros(t *testing.T) {
	rs := mustCompile(t, Options{}, `macros:
  c: b && a
  a: profile.n > 1
  b: a && count("x", "1h") > 0
lists:
  big: [100, 200]
`, `macros:
  d: c || event.attrs.n in big
rules:
  - {id: r, on: [x], when: 'd', offer: {channels: [sms]}}
`)
	r := rs.Rules()[0]
	if want := []string{"a", "b", "big", "c", "d"}; !slices.Equal(r.Uses, want) {
		t.Fatalf("uses %v, want %v", r.Uses, want)
	}
	if len(r.Aggregates) != 1 {
		t.Fatalf("aggregates %v", r.Aggregates)
	}
	ev := rs.NewEvaluator()
	for _, c := range []struct {
		n, attr int64
		count   float64
		want    bool
	}{{2, 0, 1, true}, {2, 0, 0, false}, {0, 200, 1, true}, {0, 201, 1, false}} {
		in := &Input{Event: Event{Type: "x", Attrs: map[string]any{"n": c.attr}}, Profile: map[string]any{"n": c.n}, Windows: fixedWindows{0: c.count}}
		m, errs := ev.Evaluate(context.Background(), in, nil)
		if len(errs) > 0 || (len(m) == 1) != c.want {
			t.Fatalf("%+v: matches %v, errors %v", c, matchIDs(m), errs)
		}
	}
}

func TestListTypes(t *testing.T) {
	rs := mustCompile(t, Options{}, `lists:
  strs: [a, 2026, true]
  ints: [1, 2]
  doubles: [1, 2.5]
  bools: [true]
  none: []
`)
	want := map[string]struct {
		t    ListType
		vals []any
	}{
		"strs":    {ListString, []any{"a", "2026", "true"}},
		"ints":    {ListInt, []any{int64(1), int64(2)}},
		"doubles": {ListDouble, []any{1.0, 2.5}},
		"bools":   {ListBool, []any{true}},
		"none":    {ListAny, nil},
	}
	for _, l := range rs.Lists() {
		w := want[l.Name]
		if l.Type != w.t || !slices.Equal(l.Values, w.vals) {
			t.Errorf("list %s: %v %v, want %v %v", l.Name, l.Type, l.Values, w.t, w.vals)
		}
	}
	cases := []struct{ when, attr string }{
		{`event.attrs.v in strs`, "2026"},
		{`event.attrs.v in ints`, "2"},
		{`event.attrs.v in doubles`, "2.5"},
		{`2 in ints && 2.5 in doubles && "a" in strs && true in bools && size(none) == 0`, ""},
	}
	for _, c := range cases {
		t.Run(c.when, func(t *testing.T) {
			rs := mustCompile(t, Options{}, `lists:
  strs: [a, 2026, true]
  ints: [1, 2]
  doubles: [1, 2.5]
  bools: [true]
  none: []
rules:
  - {id: r, on: [x], when: '`+c.when+`', offer: {channels: [sms]}}
`)
			var v any = c.attr
			switch c.attr {
			case "2":
				v = int64(2)
			case "2.5":
				v = 2.5
			}
			m, errs := rs.NewEvaluator().Evaluate(context.Background(), &Input{Event: Event{Type: "x", Attrs: map[string]any{"v": v}}}, nil)
			if len(errs) > 0 || len(m) != 1 {
				t.Fatalf("matches %v, errors %v", matchIDs(m), errs)
			}
		})
	}
}

func TestListSizeBoundsCost(t *testing.T) {
	// "in" over a list of two costs far less than over an input list, which
	// is assumed to hold up to 1000 elements.
	rs := mustCompile(t, Options{}, `lists:
  two: [a, b]
rules:
  - {id: list, on: [x], when: 'profile.s in two', offer: {channels: [sms]}}
  - {id: input, on: [x], when: 'profile.s in profile.l', offer: {channels: [sms]}}
`)
	list, input := rs.Rules()[0].Cost, rs.Rules()[1].Cost
	if list >= 10 || input < 1000 {
		t.Fatalf("cost over the list %d, over the input %d", list, input)
	}
}

func TestMacroCostCountsOncePerRule(t *testing.T) {
	src := `macros:
  heavy: profile.tags.exists(a, a.startsWith("x"))
rules:
  - {id: once, on: [x], when: 'heavy', offer: {channels: [sms]}}
  - {id: thrice, on: [x], when: 'heavy && heavy', offer: {channels: [sms], params: {h: heavy}}}
`
	rs := mustCompile(t, Options{}, src)
	once, thrice := rs.Rules()[0].Cost, rs.Rules()[1].Cost
	if once < 1000 || thrice-once > 10 {
		t.Fatalf("costs %d and %d: the macro must count once per rule", once, thrice)
	}
	// The macro iterates, so it is evaluated with cost tracking.
	in := &Input{Event: Event{Type: "x"}, Profile: map[string]any{"tags": []any{"a", "xb"}}}
	m, errs := rs.NewEvaluator().Evaluate(context.Background(), in, nil)
	if len(errs) > 0 || len(m) != 2 || m[1].Params["h"] != true {
		t.Fatalf("matches %v, errors %v", m, errs)
	}
	_, err := compileSrc(t, Options{CostLimit: once / 2}, src)
	if err == nil || !strings.Contains(err.Error(), `a.yaml:2:10: macro "heavy": estimated cost`) {
		t.Fatalf("got %v", err)
	}
	// A rule over the limit only with its macros says so.
	_, err = compileSrc(t, Options{CostLimit: once + 1}, `macros:
  heavy: profile.tags.exists(a, a.startsWith("x"))
rules:
  - {id: r, on: [x], when: 'heavy && profile.tags.exists(c, c == "x")', offer: {channels: [sms]}}
`)
	if err == nil || !strings.Contains(err.Error(), "of it in macros) exceeds the limit") {
		t.Fatalf("got %v", err)
	}
}

func TestDisabledRuleDoesNotKeepMacroWindows(t *testing.T) {
	rs := mustCompile(t, Options{}, `macros:
  m: count("login", "1h") > 0
rules:
  - {id: r, on: [x], when: 'm', enabled: false, offer: {channels: [sms]}}
`)
	if len(rs.Aggregates()) != 0 {
		t.Fatalf("aggregates %v", rs.Aggregates())
	}
}

func TestDefinitionErrors(t *testing.T) {
	cases := []struct {
		name string
		srcs []string
		want string
	}{
		{"a name given twice in a file",
			[]string{"lists:\n  a: [x]\n  a: [y]\n"},
			`a.yaml:3:3: list "a": already defined at a.yaml:2:3`},
		{"a list and a macro of one name in two files",
			[]string{"macros:\n  a: 'true'\n", "lists:\n  a: [y]\n"},
			`b.yaml:2:3: list "a": name already taken by the macro defined at a.yaml:2:3`},
		{"a macro named like a window function",
			[]string{"macros:\n  count: 'true'\n"},
			`a.yaml:2:3: macro "count": cannot be used as a name: count is a function of the rule language`},
		{"a reserved word",
			[]string{"lists:\n  let: [a]\n"},
			`a.yaml:2:3: list "let": cannot be used as a name: let is reserved in CEL`},
		{"a hidden name",
			[]string{"lists:\n  __kairos_windows: [a]\n"},
			`a.yaml:2:3: list "__kairos_windows": cannot be used as a name: names starting with __ are reserved`},
		{"a macro referring to itself",
			[]string{"macros:\n  m: m || true\n"},
			`a.yaml:2:3: macro "m": macros must not refer to themselves: m -> m`},
		{"an empty macro",
			[]string{"macros:\n  m: ' '\n"},
			`a.yaml:2:6: macro "m": is empty`},
		{"an undeclared name in a macro",
			[]string{"macros:\n  m: profile.x == 1 && is_vip\n"},
			`a.yaml:2:24: macro "m": undeclared reference to 'is_vip' (in container '')`},
		{"a rule using a list before it is defined, in another file",
			[]string{"rules:\n  - {id: r, on: [x], when: 'profile.s in l && m', offer: {channels: [sms]}}\n", "lists:\n  l: [a]\nmacros:\n  m: profile.t == 1 && 1 / 0 == 1\n"},
			""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileSrc(t, Options{}, c.srcs...)
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrCompile) {
				t.Fatalf("%v is neither ErrInvalid nor ErrCompile", err)
			}
		})
	}
}

func TestMacroErrorNamesRulesUsingIt(t *testing.T) {
	var b strings.Builder
	b.WriteString("macros:\n  m: size(\"a\") + \"b\"\nrules:\n")
	for i := range 5 {
		fmt.Fprintf(&b, "  - {id: r%d, on: [x], when: 'm == 1', offer: {channels: [sms]}}\n", i)
	}
	_, err := compileSrc(t, Options{}, b.String())
	want := `a.yaml:2:16: macro "m": found no matching overload for '_+_' applied to '(int, string)' (used by rules "r0", "r1", "r2" and 2 more)`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	if es := err.(Errors); len(es) != 1 {
		t.Fatalf("the rules using the macro are reported too: %v", err)
	}
}

func TestVersionWithListsMacrosAndMode(t *testing.T) {
	const rule = "rules:\n  - {id: r, on: [x], when: 'profile.s in l && m', offer: {channels: [sms]}%s}\n"
	version := func(defs, extra string) string {
		t.Helper()
		return mustCompile(t, Options{}, defs+fmt.Sprintf(rule, extra)).Rules()[0].Version
	}
	base := version("lists:\n  l: [a]\nmacros:\n  m: profile.t == 1\n", "")
	cases := []struct {
		name, defs, extra string
		same              bool
	}{
		{"the same definitions", "lists:\n  l: [a]\nmacros:\n  m: profile.t == 1\n", "", true},
		{"the same, written differently", "lists: {l: ['a']}\nmacros: {m: 'profile.t == 1'}\n", "", true},
		{"an unused list and macro", "lists:\n  l: [a]\n  u: [b]\nmacros:\n  m: profile.t == 1\n  n: 'false'\n", "", true},
		{"a list value changed", "lists:\n  l: [a, b]\nmacros:\n  m: profile.t == 1\n", "", false},
		{"a list type changed", "lists:\n  l: [1]\nmacros:\n  m: profile.t == 1\n", "", false},
		{"the macro changed", "lists:\n  l: [a]\nmacros:\n  m: profile.t == 2\n", "", false},
		{"a macro the macro uses changed", "lists:\n  l: [a]\n  k: [c]\nmacros:\n  m: profile.t in k\n", "", false},
		{"shadow mode", "lists:\n  l: [a]\nmacros:\n  m: profile.t == 1\n", ", mode: shadow", false},
		{"live mode written out", "lists:\n  l: [a]\nmacros:\n  m: profile.t == 1\n", ", mode: live", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := version(c.defs, c.extra); (got == base) != c.same {
				t.Fatalf("version %s, base %s: same=%v, want %v", got, base, got == base, c.same)
			}
		})
	}
	dep := func(k string) string {
		return version("lists:\n  l: [a]\n  k: ["+k+"]\nmacros:\n  m: profile.t in k\n", "")
	}
	if dep("c") == dep("d") {
		t.Fatal("a list used through a macro does not change the version")
	}
}

func TestVersionsOfRulesWithoutNewFieldsAreUnchanged(t *testing.T) {
	// Versions computed before lists, macros and mode existed.
	want := map[string]string{
		"payroll-login-wealth": "108388af48ec",
		"big-spender":          "33116d33b641",
		"card-upgrade":         "90dac735bd2f",
		"card-service-note":    "630d390eba6a",
		"card-rm-call":         "066edfbeabce",
	}
	for _, r := range loadGood(t).Rules() {
		if r.Version != want[r.ID] {
			t.Errorf("rule %s: version %s, want %s", r.ID, r.Version, want[r.ID])
		}
	}
}

func TestModeParseAndIndex(t *testing.T) {
	rs := mustCompile(t, Options{}, `rules:
  - {id: live, on: [x], when: 'true', offer: {channels: [sms], priority: 1}}
  - {id: shadow, mode: shadow, on: [x], when: 'true', offer: {channels: [sms], priority: 2}}
`)
	list := rs.For("x")
	if len(list) != 2 || list[0].ID != "shadow" || list[0].Mode != Shadow || list[1].Mode != Live {
		t.Fatalf("For(x) = %v", matchIDs([]Match{{Rule: list[0]}, {Rule: list[1]}}))
	}
	m, _ := rs.NewEvaluator().Evaluate(context.Background(), &Input{Event: Event{Type: "x"}}, nil)
	if len(m) != 2 {
		t.Fatalf("shadow rules are evaluated like live ones: %v", matchIDs(m))
	}
	for mode, want := range map[Mode]string{Live: "live", Shadow: "shadow", Mode(9): "Mode(9)"} {
		if mode.String() != want {
			t.Errorf("%d: %s, want %s", mode, mode, want)
		}
	}
}

func TestCatalogueInCompile(t *testing.T) {
	cat, err := ParseCatalogue("events.yaml", []byte("events: [login, txn]\n"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, on, when string
		want           string
	}{
		{"known types", "[login, txn]", `count("txn", "1d") > 0`, ""},
		{"profile and * are always known", `[profile, "*"]`, `count("profile", "1d") > count("*", "1d")`, ""},
		{"an unknown type in on", "[login, logins]", "true", `a.yaml:2:51: rule "r": on: event type "logins" is not in the event catalogue events.yaml (did you mean "login"?)`},
		{"an unknown type in a window", "[login]", `since("payment") > duration("1h")`, `a.yaml:2:65: rule "r": when: since(): event type "payment" is not in the event catalogue events.yaml`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileSrc(t, Options{Catalogue: cat}, fmt.Sprintf("rules:\n  - {id: r, offer: {channels: [sms]}, on: %s, when: '%s'}\n", c.on, c.when))
			if c.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
			if !errors.Is(err, ErrCatalogue) {
				t.Fatal("not ErrCatalogue")
			}
		})
	}
}

func TestParseCatalogue(t *testing.T) {
	cat, err := LoadCatalogue("testdata/check/catalogue.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := cat.Types(); !slices.Equal(got, []string{"card", "login", "page_view", "payroll", "txn"}) {
		t.Fatalf("types %v", got)
	}
	if txn := cat.Events["txn"]; txn.Attrs["amount"] != AttrNumber || txn.Attrs["merchant"] != AttrString || txn.Description == "" {
		t.Fatalf("txn %+v", txn)
	}
	if cat.Events["page_view"].Attrs != nil {
		t.Fatal("page_view attributes are described")
	}
	bad := []struct{ src, want string }{
		{"", "c.yaml: the catalogue is empty: it must have events"},
		{"events: 3\n", "c.yaml:1:9: events must be a list of event types or a mapping of event type to {description, attrs}, got a number"},
		{"events: [login, login]\n", `c.yaml:1:17: event type "login" already listed at c.yaml:1:10`},
		{"events: [Login]\n", `c.yaml:1:10: event type "Login" must match [a-z0-9_]+`},
		{"events:\n  txn: {attrs: {amount: float}}\n", `c.yaml:2:25: txn.attrs.amount: type must be one of any, string, number, bool, list, map, got "float"`},
		{"events:\n  txn: {fields: {}}\n", `c.yaml:2:9: unknown field "fields" (known: attrs, description)`},
		{"types: [a]\n", `c.yaml:1:1: unknown field "types" (known: events)`},
		{"events: [a\n", "c.yaml:1: yaml: "},
	}
	for _, c := range bad {
		_, err := ParseCatalogue("c.yaml", []byte(c.src))
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %s", c.src, err, c.want)
		}
		if err != nil && !errors.Is(err, ErrCatalogue) {
			t.Errorf("%q: not ErrCatalogue", c.src)
		}
	}
}

func TestClosest(t *testing.T) {
	cands := []string{"amount", "channel", "login", "txn"}
	for s, want := range map[string]string{"amont": "amount", "logn": "login", "tx": "txn", "chanel": "channel", "zzz": "", "payment": ""} {
		if got := closest(s, cands); got != want {
			t.Errorf("closest(%q) = %q, want %q", s, got, want)
		}
	}
}

// BenchmarkEvaluate100RulesMacros is BenchmarkEvaluate100Rules with the
// condition written with a list and macros, which every rule shares.
func BenchmarkEvaluate100RulesMacros(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`lists:
  app_channels: [app]
macros:
  payroll: '"payroll" in profile.tags'
  spender: sum("txn", "amount", "30d") >= 10000.0
rules:
`)
	types := []string{"login", "txn", "page_view", "payroll", "transfer", "profile", "card", "loan", "fx", "bill"}
	for i := 0; i < 100; i++ {
		fmt.Fprintf(&sb, `  - id: r%d
    on: [%s]
    when: event.attrs.channel in app_channels && payroll && count("login", "24h") == %d && spender
    offer: {channels: [sms], params: {name: "profile.name"}}
`, i, types[i%len(types)], i%3)
	}
	f, err := ParseFile("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	rs, err := Compile([]*File{f}, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ev := rs.NewEvaluator()
	w := fixedWindows{}
	for i := range rs.Aggregates() {
		w[i] = 20000
	}
	w[aggIndex(b, rs, Aggregate{Kind: Count, Type: "login", Window: 24 * time.Hour})] = 1
	in := &Input{
		Event:   Event{ID: "e1", CustomerID: "C1", Type: "login", TS: 1_700_000_000_000, Attrs: map[string]any{"channel": "app"}},
		Profile: map[string]any{"tags": []any{"payroll"}, "name": "Ann"},
		Now:     time.UnixMilli(1_700_000_000_100),
		Windows: w,
	}
	var dst []Match
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		dst, _ = ev.Evaluate(context.Background(), in, dst[:0])
	}
	if len(dst) == 0 {
		b.Fatal("no rule matched")
	}
	b.ReportMetric(float64(len(rs.For("login"))), "rules/event")
}

func TestEvaluatorsShareMacrosSafely(t *testing.T) {
	rs, err := Load(Options{}, "testdata/check/good")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	for g := range 4 {
		go func() {
			ev := rs.NewEvaluator()
			for i := range 200 {
				spent := float64(g*1000 + i)
				w := fixedWindows{}
				for k := range rs.Aggregates() {
					w[k] = spent
				}
				in := &Input{
					Event:   Event{Type: "txn", Attrs: map[string]any{"product": "FX", "amount": int64(6000)}},
					Profile: map[string]any{"segment": "private"},
					Windows: w,
				}
				m, errs := ev.Evaluate(context.Background(), in, nil)
				if want := spent >= 3; len(errs) > 0 || (len(m) == 1) != want {
					done <- fmt.Errorf("goroutine %d, event %d: matches %v, errors %v", g, i, matchIDs(m), errs)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

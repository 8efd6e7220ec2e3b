package rules

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const day = 24 * time.Hour

func ptr[T any](v T) *T { return &v }

// ruleFile is a rule file with one rule: id r on x, with extra fields.
func ruleFile(id, when, extra string) string {
	return "rules:\n  - {id: " + id + ", on: [x], when: '" + when + "', offer: {channels: [sms]}" + extra + "}\n"
}

func compileSrc(t *testing.T, opts Options, srcs ...string) (*RuleSet, error) {
	t.Helper()
	var files []*File
	for i, src := range srcs {
		f, err := ParseFile(string(rune('a'+i))+".yaml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return Compile(files, opts)
}

func mustCompile(t *testing.T, opts Options, srcs ...string) *RuleSet {
	t.Helper()
	rs, err := compileSrc(t, opts, srcs...)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Marketing: "marketing", Service: "service", Opportunity: "opportunity", Kind(7): "Kind(7)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

func TestParsePolicyFields(t *testing.T) {
	type policy struct {
		Kind           Kind
		Cooldown       time.Duration
		MaxPerCustomer *Limit
		Budget         *Budget
		Holdout        *float64
	}
	cases := []struct {
		name  string
		extra string
		want  policy
	}{
		{"no policy fields gives the defaults", "", policy{}},
		{"marketing is the default kind", ", kind: marketing", policy{Kind: Marketing}},
		{"service kind", ", kind: service", policy{Kind: Service}},
		{"opportunity kind", ", kind: opportunity", policy{Kind: Opportunity}},
		{"cooldown in days", ", cooldown: 7d", policy{Cooldown: 7 * day}},
		{"cooldown in mixed units", ", cooldown: 1h30m", policy{Cooldown: 90 * time.Minute}},
		{"a bare number is a cap for ever", ", max_per_customer: 2", policy{MaxPerCustomer: &Limit{Max: 2}}},
		{"a cap without per is for ever", ", max_per_customer: {max: 3}", policy{MaxPerCustomer: &Limit{Max: 3}}},
		{"a cap per period", ", max_per_customer: {max: 1, per: 30d}", policy{MaxPerCustomer: &Limit{Max: 1, Per: 30 * day}}},
		{"a budget with both limits", ", budget: {total: 10000, per_day: 500}", policy{Budget: &Budget{Total: 10000, PerDay: 500}}},
		{"a budget per day only", ", budget: {per_day: 500}", policy{Budget: &Budget{PerDay: 500}}},
		{"a budget in total only", ", budget: {total: 10_000}", policy{Budget: &Budget{Total: 10000}}},
		{"a per-day budget equal to the total", ", budget: {total: 5, per_day: 5}", policy{Budget: &Budget{Total: 5, PerDay: 5}}},
		{"a holdout fraction", ", holdout: 0.05", policy{Holdout: ptr(0.05)}},
		{"a holdout of zero is kept apart from none", ", holdout: 0", policy{Holdout: ptr(0.0)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := ParseFile("p.yaml", []byte(ruleFile("r", "true", c.extra)))
			if err != nil {
				t.Fatal(err)
			}
			d := f.Rules[0]
			got := policy{d.Kind, d.Cooldown, d.MaxPerCustomer, d.Budget, d.Holdout}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// contactLog is a contact history for tests: the offers sent to one
// customer, each with its rule index, kind and age at decision time.
type contactLog []sent

type sent struct {
	rule int
	kind Kind
	age  time.Duration
}

func (l contactLog) Contacts(window time.Duration) int {
	n := 0
	for _, s := range l {
		if s.kind == Marketing && s.age < window {
			n++
		}
	}
	return n
}

func (l contactLog) Offers(rule int, window time.Duration) int {
	n := 0
	for _, s := range l {
		if s.rule == rule && s.age < window {
			n++
		}
	}
	return n
}

func indexOfRule(t *testing.T, rs *RuleSet, id string) int {
	t.Helper()
	for _, r := range rs.Rules() {
		if r.ID == id {
			return r.Index
		}
	}
	t.Fatalf("no rule %q", id)
	return -1
}

func TestEvaluateContactFunctions(t *testing.T) {
	rs := loadGood(t)
	upgrade := indexOfRule(t, rs, "card-upgrade")
	note := indexOfRule(t, rs, "card-service-note")
	ev := rs.NewEvaluator()
	cases := []struct {
		name     string
		contacts Contacts // nil is no history
		want     []string // ids of the matching rules
		params   map[string]any
	}{
		{"no contact history counts as none", nil, []string{"card-service-note", "card-upgrade"}, map[string]any{"recent": int64(0), "notes": int64(0)}},
		{"an empty history counts as none", contactLog{}, []string{"card-service-note", "card-upgrade"}, map[string]any{"recent": int64(0), "notes": int64(0)}},
		{"two recent marketing offers still allow a third",
			contactLog{{rule: 99, kind: Marketing, age: time.Hour}, {rule: 98, kind: Marketing, age: 6 * day}, {rule: 97, kind: Marketing, age: 20 * day}},
			[]string{"card-service-note", "card-upgrade"}, map[string]any{"recent": int64(3), "notes": int64(0)}},
		{"three marketing offers within 7 days block it",
			contactLog{{rule: 99, kind: Marketing, age: time.Hour}, {rule: 98, kind: Marketing, age: 2 * day}, {rule: 97, kind: Marketing, age: 3 * day}},
			[]string{"card-service-note"}, nil},
		{"service offers are not marketing contacts",
			contactLog{{rule: 99, kind: Service, age: time.Hour}, {rule: 98, kind: Opportunity, age: 2 * day}, {rule: note, kind: Service, age: 3 * day}},
			[]string{"card-service-note", "card-upgrade"}, map[string]any{"recent": int64(0), "notes": int64(1)}},
		{"its own offer within 30 days blocks it",
			contactLog{{rule: upgrade, kind: Marketing, age: 29 * day}},
			[]string{"card-service-note"}, nil},
		{"its own offer 30 days ago is out of the window",
			contactLog{{rule: upgrade, kind: Marketing, age: 30 * day}},
			[]string{"card-service-note", "card-upgrade"}, map[string]any{"recent": int64(0), "notes": int64(0)}},
		{"a service note of any kind within a day blocks it",
			contactLog{{rule: note, kind: Service, age: 12 * time.Hour}},
			[]string{"card-service-note"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := &Input{
				Event:    Event{ID: "e1", CustomerID: "C1", Type: "card", TS: 1_700_000_000_000},
				Now:      time.UnixMilli(1_700_000_000_100),
				Contacts: c.contacts,
			}
			m, errs := ev.Evaluate(context.Background(), in, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			var ids []string
			for _, x := range m {
				ids = append(ids, x.Rule.ID)
				if x.Rule.ID == "card-upgrade" && !reflect.DeepEqual(x.Params, c.params) {
					t.Errorf("params = %v, want %v", x.Params, c.params)
				}
			}
			if !reflect.DeepEqual(ids, c.want) {
				t.Fatalf("matches = %v, want %v", ids, c.want)
			}
		})
	}
}

func TestContactFunctionsInsideComprehension(t *testing.T) {
	rs := mustCompile(t, Options{}, ruleFile("r", `[1, 2].exists(i, offers("r", "7d") == i) && [1].all(i, contacts("1d") == 0)`, ""))
	ev := rs.NewEvaluator()
	in := &Input{Event: Event{Type: "x"}, Contacts: contactLog{{rule: 0, kind: Service, age: time.Hour}}}
	m, errs := ev.Evaluate(context.Background(), in, nil)
	if len(errs) > 0 || len(m) != 1 {
		t.Fatalf("matches %v, errors %v", m, errs)
	}
}

func TestOffersNamesRuleInLaterFile(t *testing.T) {
	rs := mustCompile(t, Options{},
		ruleFile("first", `offers("second", "7d") == 0`, ""),
		ruleFile("zero", "true", ", enabled: false")+"  - {id: second, on: [y], when: 'true', offer: {channels: [sms]}}\n",
	)
	second := indexOfRule(t, rs, "second")
	if second != 2 {
		t.Fatalf("second has index %d, want 2 (its place in Rules)", second)
	}
	ev := rs.NewEvaluator()
	for _, c := range []struct {
		name    string
		history contactLog
		match   bool
	}{
		{"no offer of the later rule", contactLog{{rule: 0, age: time.Hour}, {rule: 1, age: time.Hour}}, true},
		{"an offer of the later rule", contactLog{{rule: second, age: time.Hour}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, errs := ev.Evaluate(context.Background(), &Input{Event: Event{Type: "x"}, Contacts: c.history}, nil)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			if (len(m) == 1) != c.match {
				t.Fatalf("matches = %v, want match %v", m, c.match)
			}
		})
	}
}

func TestContactFunctionErrors(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		when string
		want string
	}{
		{"unknown rule id", Options{}, `offers("nope", "7d") == 0`, `a.yaml:2:36: rule "r": when: offers(): unknown rule "nope"`},
		{"a window over the horizon", Options{Horizon: 30 * day}, `contacts("31d") == 0`, `a.yaml:2:38: rule "r": when: contacts(): window 31d is longer than the horizon 30d`},
		{"an offers window over the horizon", Options{Horizon: 30 * day}, `offers("r", "5w") == 0`, `a.yaml:2:41: rule "r": when: offers(): window 5w is longer than the horizon 30d`},
		{"a rule id that is not constant", Options{}, `offers(event.id, "1d") == 0`, `a.yaml:2:41: rule "r": when: offers(): argument 1 (rule_id) must be a constant string`},
		{"a window that is not constant", Options{}, `contacts(event.type) == 0`, `a.yaml:2:43: rule "r": when: contacts(): argument 1 (window) must be a constant string`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := compileSrc(t, c.opts, ruleFile("r", c.when, ""))
			if err == nil {
				t.Fatal("compiled")
			}
			if !errors.Is(err, ErrCompile) {
				t.Errorf("%v is not ErrCompile", err)
			}
			// The column is that of the argument (of the dot, for a field).
			if got, _, _ := strings.Cut(err.Error(), "\n"); got != c.want {
				t.Fatalf("got  %s\nwant %s", got, c.want)
			}
		})
	}
	t.Run("a window equal to the horizon", func(t *testing.T) {
		mustCompile(t, Options{Horizon: 30 * day}, ruleFile("r", `contacts("30d") == 0 && offers("r", "720h") == 0`, ""))
	})
}

func TestContactHorizon(t *testing.T) {
	cases := []struct {
		name string
		srcs []string
		want time.Duration
	}{
		{"no contact reads", []string{ruleFile("r", `count("x", "60d") > 0`, "")}, 0},
		{"a contacts window", []string{ruleFile("r", `contacts("7d") < 3`, "")}, 7 * day},
		{"the longest offers window in a param", []string{"rules:\n  - {id: r, on: [x], when: 'offers(\"r\", \"1d\") == 0', offer: {channels: [sms], params: {n: 'offers(\"r\", \"45d\")'}}}\n"}, 45 * day},
		{"a cooldown", []string{ruleFile("r", "true", ", cooldown: 14d")}, 14 * day},
		{"a max_per_customer period", []string{ruleFile("r", `contacts("1d") == 0`, ", max_per_customer: {max: 2, per: 60d}")}, 60 * day},
		{"a max_per_customer for ever needs no span", []string{ruleFile("r", "true", ", max_per_customer: 1")}, 0},
		{"the longest over files", []string{ruleFile("a", "true", ", cooldown: 3d"), ruleFile("b", `contacts("10d") == 0`, "")}, 10 * day},
		{"a disabled rule does not count", []string{ruleFile("a", "true", ", cooldown: 3d"), ruleFile("b", `contacts("10d") == 0`, ", cooldown: 200d, enabled: false")}, 3 * day},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs := mustCompile(t, Options{}, c.srcs...)
			if got := rs.ContactHorizon(); got != c.want {
				t.Fatalf("ContactHorizon() = %s, want %s", got, c.want)
			}
		})
	}
	if got := loadGood(t).ContactHorizon(); got != 30*day {
		t.Fatalf("good.yaml: ContactHorizon() = %s, want 30d", got)
	}
}

func TestContactFunctionsAreNotAggregates(t *testing.T) {
	rs := mustCompile(t, Options{}, ruleFile("r", `contacts("7d") == 0 && offers("r", "30d") == 0 && count("x", "7d") > 0`, ""))
	want := []Aggregate{{Kind: Count, Type: "x", Window: 7 * day}}
	if got := rs.Aggregates(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Aggregates() = %v, want %v", got, want)
	}
	if got := rs.Rules()[0].Aggregates; !reflect.DeepEqual(got, []int{0}) {
		t.Fatalf("rule reads aggregates %v, want [0]", got)
	}
}

func TestVersionChangesWithPolicy(t *testing.T) {
	version := func(extra string) string {
		t.Helper()
		rs := mustCompile(t, Options{}, `rules:
  - {id: r, on: [x], when: 'count("x", "1h") > 0', offer: {channels: [sms], product: P, ttl: 2h, params: {a: '1'}}`+extra+"}\n")
		return rs.Rules()[0].Version
	}
	base := version("")
	// Computed by the rules package before the policy fields existed:
	// rules without them keep their versions.
	if base != "481a893f94da" {
		t.Fatalf("a rule without policy fields changed version: %s", base)
	}
	if got := version(", kind: marketing"); got != base {
		t.Errorf("writing out the default kind changes the version: %s, want %s", got, base)
	}
	if version(", cooldown: 1h") != version(", cooldown: 0d60m") {
		t.Error("the same cooldown in other units changes the version")
	}
	if version(", max_per_customer: 2") != version(", max_per_customer: {max: 2}") {
		t.Error("the short form of max_per_customer changes the version")
	}
	changed := []struct{ name, extra string }{
		{"service kind", ", kind: service"},
		{"opportunity kind", ", kind: opportunity"},
		{"a cooldown", ", cooldown: 1h"},
		{"a longer cooldown", ", cooldown: 2h"},
		{"a cap for ever", ", max_per_customer: 1"},
		{"a higher cap", ", max_per_customer: 2"},
		{"a cap per period", ", max_per_customer: {max: 1, per: 30d}"},
		{"a total budget", ", budget: {total: 100}"},
		{"a daily budget of the same number", ", budget: {per_day: 100}"},
		{"both budgets", ", budget: {total: 100, per_day: 100}"},
		{"a zero holdout", ", holdout: 0"},
		{"a holdout", ", holdout: 0.1"},
	}
	seen := map[string]string{base: "no policy fields"}
	for _, c := range changed {
		v := version(c.extra)
		if prev, dup := seen[v]; dup {
			t.Errorf("%s has the same version as %s", c.name, prev)
		}
		seen[v] = c.name
	}
}

package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RuleSpec describes a generated rule set.
type RuleSpec struct {
	// Rules is the number of rules (default 100).
	Rules int
	// Types are the event types the rules are spread over, one type per
	// rule, round robin (default: the types of BenchMix). With the ten
	// types of BenchMix each event triggers a tenth of the rules.
	Types []string
	// Seed makes the thresholds, windows and policy fields reproducible.
	Seed uint64
	// Audience is how rules beyond the first hundred choose their
	// customers: AudienceTargeted (the default) or AudienceAll.
	Audience string
}

// Audiences of generated rules beyond the first hundred (RuleSpec.Audience).
//
// A bank with thousands of rules has a few general campaigns and many
// variants of them for a segment, a region, a product holding or a
// campaign list: each customer is in the audience of a few. With
// AudienceTargeted the first 100 rules are general; every further block of
// 100 (same shapes, drawn anew) is a "wave" for a share of the customers:
// its rules start with `profile.cohort in [...]`, the cohorts (K00…K99, one
// per customer, Generator.Profile) split evenly over the waves, so each
// customer is in the audience of the general block and of one wave, and
// the matches per event stay near twice those of 100 rules whatever the
// rule count. With AudienceAll every rule is general: matches per event
// grow with the rule count (about 0.4 per 100 rules), and so do the
// decisions, offers and state the engine writes per event.
const (
	AudienceTargeted = "targeted"
	AudienceAll      = "all"
)

// Cohorts is the number of profile cohorts (K00…K99) waves target.
const Cohorts = 100

// waveSize is the number of rules of a block: the general one, then each
// wave.
const waveSize = 100

// waveCohorts returns the cohorts that wave w (1 …) of waves targets:
// cohort c belongs to wave 1 + c mod waves; with more waves than cohorts,
// wave w targets cohort (w-1) mod Cohorts.
func waveCohorts(w, waves int) []string {
	var out []string
	if waves > Cohorts {
		return []string{cohortName((w - 1) % Cohorts)}
	}
	for c := w - 1; c < Cohorts; c += waves {
		out = append(out, cohortName(c))
	}
	return out
}

func cohortName(c int) string { return fmt.Sprintf("K%02d", c) }

// ruleTemplate is one realistic rule shape for an event type. when and
// params may use {n} (1 to 4), {x} (500 to 20,000), {y} (100 to 6,000),
// {big} (8,000 to 20,000), {w} (a window), {h} (hours, 24 to 720) and a
// value of an attribute, drawn per rule. Conditions are selective the way
// marketing rules are: an exact count ("the third login this week"), a
// threshold crossed by this event, a rare attribute value, so a customer
// matches a rule now and then, not on every event.
type ruleTemplate struct {
	desc   string
	when   string
	params string // YAML flow mapping entries after name:, may be empty
}

// templates holds, per event type, the rule shapes the generator draws
// from. Every attribute a template reads is one the generator always sets
// on that type, and profile fields are guarded with has(), so no rule fails
// on bench traffic (an evaluation error would be a dead letter, not an
// offer).
var templates = map[string][]ruleTemplate{
	"login": {
		{"First app login of the day from a customer who spends", `event.attrs.channel == "app" && count("login", "24h") == 1 && sum("txn", "amount", "{w}") >= {x}.0`, ""},
		{"Back after a while", `since("login") > duration("{h}h") && count("login", "{w}") >= 2`, ""},
		{"Nth login of the week in a segment", `has(profile.segment) && profile.segment == "{seg}" && count("login", "7d") == {n}`, `segment: "profile.segment"`},
		{"Web login after browsing", `event.attrs.channel == "web" && count("page_view", "1h") == {n}`, ""},
	},
	"page_view": {
		{"Repeated interest in a page", `event.attrs.page == "{page}" && count("page_view", "1h") == {n}`, `page: "event.attrs.page"`},
		{"Browsing widely", `event.attrs.page == "{page}" && distinct("page_view", "page", "24h") == {n}`, `pages: "distinct('page_view', 'page', '24h')"`},
		{"Looking at loans with a payroll", `event.attrs.page == "loans" && count("payroll", "{w}") >= 1 && count("page_view", "24h") == {n}`, ""},
	},
	"txn": {
		{"Large payment, no premium card", `event.attrs.amount >= {big} && count("txn", "{w}") >= {n} && has(profile.tags) && !("premium_card" in profile.tags)`, `amount: "event.attrs.amount", merchants: "distinct('txn', 'merchant', '30d')"`},
		{"Weekly spending at a merchant crosses a threshold", `event.attrs.merchant == "{merchant}" && sum("txn", "amount", "7d") >= {x}.0 && sum("txn", "amount", "7d") - double(event.attrs.amount) < {x}.0`, `spent: "sum('txn', 'amount', '7d')"`},
		{"Biggest payment of the day, and a big one", `event.attrs.amount >= {y} && max("txn", "amount", "24h") == double(event.attrs.amount) && avg("txn", "amount", "{w}") > {y}.0 / 4.0`, `max: "max('txn', 'amount', '24h')"`},
		{"Many small payments today", `event.attrs.amount < 50 && count("txn", "24h") == {n} + 4`, ""},
	},
	"transfer": {
		{"Large money in", `event.attrs.direction == "in" && event.attrs.amount >= {big} && sum("transfer", "amount", "{w}") >= {x}.0`, `amount: "event.attrs.amount"`},
		{"Frequent transfers out", `event.attrs.direction == "out" && count("transfer", "7d") == {n} + 2`, ""},
	},
	"payroll": {
		{"First large payroll in weeks", `event.attrs.amount >= {big} && since("payroll") > duration("{h}h")`, `amount: "event.attrs.amount"`},
		{"Payroll from a customer not tagged payroll", `has(profile.tags) && !("payroll" in profile.tags) && count("payroll", "{w}") == 1`, ""},
	},
	"card_decline": {
		{"Declined for the limit again", `event.attrs.reason == "limit" && count("card_decline", "{w}") == {n}`, `amount: "event.attrs.amount"`},
		{"Declined for funds with payroll", `event.attrs.reason == "insufficient_funds" && count("payroll", "30d") >= 1 && count("card_decline", "24h") == 1`, ""},
	},
	"atm_withdrawal": {
		{"Other banks' ATMs", `event.attrs.atm == "other" && count("atm_withdrawal", "{w}") == {n} + 1`, ""},
		{"Cash withdrawals cross a threshold", `sum("atm_withdrawal", "amount", "{w}") >= {x}.0 && sum("atm_withdrawal", "amount", "{w}") - double(event.attrs.amount) < {x}.0`, `cash: "sum('atm_withdrawal', 'amount', '30d')"`},
	},
	"bill_payment": {
		{"Regular biller", `event.attrs.biller == "{biller}" && count("bill_payment", "{w}") == {n} + 1`, `biller: "event.attrs.biller"`},
		{"Big bills", `event.attrs.amount >= {y} && avg("bill_payment", "amount", "30d") > 300.0`, ""},
	},
	"search": {
		{"Searching a product again", `event.attrs.query == "{query}" && count("search", "{w}") == {n} + 1`, `query: "event.attrs.query"`},
		{"Many different searches", `distinct("search", "query", "7d") == {n} + 2`, ""},
	},
	"fx_exchange": {
		{"Foreign exchange crosses a threshold", `sum("fx_exchange", "amount", "{w}") >= {x}.0 && sum("fx_exchange", "amount", "{w}") - double(event.attrs.amount) < {x}.0`, `currency: "event.attrs.currency"`},
		{"Travel money", `event.attrs.currency == "{fx}" && count("txn", "7d") >= {n} && count("fx_exchange", "24h") == 1`, ""},
	},
}

// genericTemplates serve event types without their own shapes.
var genericTemplates = []ruleTemplate{
	{"Nth event of this type", `count("{type}", "{w}") == {n}`, ""},
}

var (
	windowChoices  = []string{"24h", "7d", "30d", "90d"}
	channelChoices = [][]string{{"app_push", "sms"}, {"sms", "app_push"}, {"app_push"}, {"sms"}, {"email", "app_push"}}
)

// GenerateRules returns a rule file of spec.Rules realistic rules: each
// is triggered by one event type, uses one to three window functions over
// 24h to 90d, reads the profile, and carries params. About 5% are service
// rules and 5% opportunities (leads for staff); some have a cooldown, a
// per-customer limit, a budget or a holdout. Beyond the first 100 rules
// spec.Audience applies. The output is deterministic for a spec and valid
// for rules.Load.
func GenerateRules(spec RuleSpec) []byte {
	if spec.Rules <= 0 {
		spec.Rules = 100
	}
	if spec.Audience == "" {
		spec.Audience = AudienceTargeted
	}
	waves := (spec.Rules+waveSize-1)/waveSize - 1
	types := spec.Types
	if len(types) == 0 {
		for _, m := range BenchMix {
			types = append(types, m.Type)
		}
	}
	r := rand.New(rand.NewPCG(spec.Seed, 0x72756c6573))
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Generated by kairos bench: %d rules over %d event types (seed %d, audience %s).\n", spec.Rules, len(types), spec.Seed, spec.Audience)
	b.WriteString("rules:\n")
	for i := 0; i < spec.Rules; i++ {
		typ := types[i%len(types)]
		tpls := templates[typ]
		if len(tpls) == 0 {
			tpls = genericTemplates
		}
		tpl := tpls[(i/len(types))%len(tpls)]
		fill := func(s string) string {
			return strings.NewReplacer(
				"{type}", typ,
				"{n}", strconv.Itoa(1+r.IntN(4)),
				"{x}", strconv.Itoa(500*(1+r.IntN(40))),
				"{y}", strconv.Itoa(100*(1+r.IntN(60))),
				"{big}", strconv.Itoa(1000*(8+r.IntN(13))),
				"{w}", windowChoices[r.IntN(len(windowChoices))],
				"{h}", strconv.Itoa(24*(1+r.IntN(30))),
				"{seg}", segments[r.IntN(len(segments))],
				"{page}", pages[r.IntN(len(pages))],
				"{merchant}", merchant[r.IntN(len(merchant))],
				"{biller}", billers[r.IntN(len(billers))],
				"{query}", queries[r.IntN(len(queries))],
				"{fx}", fxCurrencies[r.IntN(len(fxCurrencies))],
			).Replace(s)
		}
		id := fmt.Sprintf("b%05d-%s", i, strings.ReplaceAll(typ, "_", "-"))
		fmt.Fprintf(&b, "  - id: %s\n", id)
		fmt.Fprintf(&b, "    description: %q\n", tpl.desc)
		switch k := r.IntN(100); {
		case k < 5:
			b.WriteString("    kind: service\n")
		case k < 10:
			b.WriteString("    kind: opportunity\n")
		}
		switch k := r.IntN(100); {
		case k < 20:
			fmt.Fprintf(&b, "    cooldown: %s\n", []string{"24h", "7d", "30d"}[r.IntN(3)])
		case k < 30:
			fmt.Fprintf(&b, "    max_per_customer: {max: %d, per: 30d}\n", 1+r.IntN(3))
		case k < 32:
			// Large enough never to be reached in a bench run: budgets that
			// are reached make the engine rerun batches in stream order,
			// which is its own measurement.
			b.WriteString("    budget: {total: 100000000, per_day: 10000000}\n")
		case k < 37:
			b.WriteString("    holdout: 0.05\n")
		}
		fmt.Fprintf(&b, "    on: [%s]\n", typ)
		when := fill(tpl.when)
		if w := i / waveSize; w > 0 && spec.Audience == AudienceTargeted {
			when = fmt.Sprintf(`has(profile.cohort) && profile.cohort in ["%s"] && %s`, strings.Join(waveCohorts(w, waves), `", "`), when)
		}
		fmt.Fprintf(&b, "    when: %s\n", yamlQuote(when))
		ch := channelChoices[r.IntN(len(channelChoices))]
		fmt.Fprintf(&b, "    offer:\n      channels: [%s]\n", strings.Join(ch, ", "))
		fmt.Fprintf(&b, "      product: P-%s-%d\n", strings.ToUpper(strings.ReplaceAll(typ, "_", "")), i)
		fmt.Fprintf(&b, "      template: t_%s_%d\n", typ, (i/len(types))%len(tpls))
		fmt.Fprintf(&b, "      priority: %d\n", 10*(1+r.IntN(9)))
		params := `name: "has(profile.name) ? profile.name : ''"`
		if tpl.params != "" {
			params += ", " + fill(tpl.params)
		}
		fmt.Fprintf(&b, "      params: {%s}\n", params)
		fmt.Fprintf(&b, "      ttl: %s\n", []string{"6h", "24h", "72h"}[r.IntN(3)])
	}
	return b.Bytes()
}

// yamlQuote writes s as a single-quoted YAML scalar.
func yamlQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// WriteRules writes GenerateRules(spec) to dir/bench-rules.yaml, creating
// dir.
func WriteRules(dir string, spec RuleSpec) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench-rules.yaml"), GenerateRules(spec), 0o640)
}

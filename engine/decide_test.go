package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-engine/kairos/connectors"
)

// testClock is an engine clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Set(t time.Time)     { c.mu.Lock(); c.t = t; c.mu.Unlock() }
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

const policyRules = `rules:
  - id: gold
    on: [login]
    when: "true"
    offer: {channels: [sms, app_push], priority: 90}
  - id: silver
    on: [login]
    when: "true"
    offer: {channels: [app_push], priority: 50}
  - id: security
    kind: service
    on: [login]
    when: has(event.attrs.new_device)
    offer: {channels: [sms]}
  - id: lead
    kind: opportunity
    on: [payroll]
    when: "true"
    offer: {channels: [branch]}
  - id: coupon
    on: [txn]
    when: "true"
    cooldown: 1h
    budget: {total: 5}
    offer: {channels: [app_push], priority: 10}
  - id: night-owl
    on: [page_view]
    when: "true"
    offer: {channels: [app_push], ttl: 1h}
  - id: split
    on: [transfer]
    when: "true"
    holdout: 0.5
    offer: {channels: [app_push]}
  - id: quota
    on: [card]
    when: "true"
    max_per_customer: 2
    offer: {channels: [app_push]}
`

// policyEngine starts an engine on policyRules with a test clock.
func policyEngine(t *testing.T, clock *testClock, mutate func(*Config)) *testEngine {
	t.Helper()
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	if err := os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(policyRules), 0o644); err != nil {
		t.Fatal(err)
	}
	return startTestEngineClock(t, dir, func(c *Config) {
		c.Policy.ReleaseInterval = "10ms"
		if mutate != nil {
			mutate(c)
		}
	}, clock.Now)
}

var shanghai = func() *time.Location { l, _ := time.LoadLocation("Asia/Shanghai"); return l }()

// send publishes events and waits until they are applied.
func (te *testEngine) send(t *testing.T, evs ...ev) {
	t.Helper()
	var seq uint64
	for _, e := range evs {
		if e.TS == nil {
			e.TS = int64(1_700_000_000_000)
		}
		seq = te.publishEvent(t, e, false)
	}
	te.waitApplied(t, seq)
}

// decisions reads the decisions stream as "customer rule outcome[/reason][@channel]".
func (te *testEngine) decisions(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range te.streamMsgs(t, "KAIROS_DECISIONS") {
		d, err := connectors.DecodeDecision(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject() != "kairos.decisions."+d.RuleID {
			t.Errorf("decision on %s", m.Subject())
		}
		s := d.CustomerID + " " + d.RuleID + " " + d.Outcome
		if d.Reason != "" {
			s += "/" + d.Reason
		}
		if d.Channel != "" {
			s += "@" + d.Channel
		}
		out = append(out, s)
	}
	return out
}

func login(id, cust string, attrs map[string]any) ev {
	return ev{ID: id, CustomerID: cust, Type: "login", Attrs: attrs}
}

func TestCapsArbitrationAndServiceOffers(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, nil)
	// Four logins on Friday: three offers, then the day cap. A security
	// notice still goes out.
	te.send(t, login("a1", "C1", nil), login("a2", "C1", nil), login("a3", "C1", nil), login("a4", "C1", nil),
		login("a5", "C1", map[string]any{"new_device": true}))
	// Saturday: two more reach the week cap (5), the third is refused.
	clock.Set(time.Date(2026, 11, 21, 9, 0, 0, 0, shanghai))
	te.send(t, login("b1", "C1", nil), login("b2", "C1", nil), login("b3", "C1", nil))
	// Monday starts a new week.
	clock.Set(time.Date(2026, 11, 23, 0, 0, 1, 0, shanghai))
	te.send(t, login("c1", "C1", nil))

	want := []string{
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
		"C1 gold suppressed/cap_day", "C1 silver suppressed/cap_day",
		"C1 gold suppressed/cap_day", "C1 silver suppressed/cap_day", "C1 security emitted@sms",
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
		"C1 gold suppressed/cap_week", "C1 silver suppressed/cap_week",
		"C1 gold emitted@sms", "C1 silver suppressed/outranked",
	}
	if got := te.decisions(t); !slices.Equal(got, want) {
		t.Errorf("decisions:\n got %q\nwant %q", got, want)
	}
	if n := len(te.offers(t)); n != 7 {
		t.Errorf("%d offers, want 7", n)
	}
}

func TestChannelChoiceAndDoNotDisturb(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, func(c *Config) {
		c.Policy.ChannelCaps = map[string][]CapConfig{"sms": {{Per: "day", Max: 1}}}
	})
	prof := func(id, cust string, attrs map[string]any) ev {
		return ev{ID: id, CustomerID: cust, Type: "profile", Attrs: attrs}
	}
	te.send(t,
		prof("p2", "C2", map[string]any{"opt_out": []string{"sms"}}),
		prof("p3", "C3", map[string]any{"opt_out": []string{"sms", "app_push"}}),
		prof("p4", "C4", map[string]any{"channel_pref": []string{"app_push", "sms"}}),
		prof("p6", "C6", map[string]any{"do_not_disturb": true}),
	)
	te.send(t,
		login("l2", "C2", nil),                           // opted out of sms: app_push
		login("l3", "C3", nil),                           // opted out of both: no channel, silver too
		login("l4", "C4", nil),                           // prefers app_push
		login("l5a", "C5", nil), login("l5b", "C5", nil), // sms 1/day: the second goes to app_push
		login("l6", "C6", map[string]any{"new_device": true}), // do not disturb: only the service notice
	)
	want := []string{
		"C2 gold emitted@app_push", "C2 silver suppressed/outranked",
		"C3 gold suppressed/no_channel", "C3 silver suppressed/no_channel",
		"C4 gold emitted@app_push", "C4 silver suppressed/outranked",
		"C5 gold emitted@sms", "C5 silver suppressed/outranked",
		"C5 gold emitted@app_push", "C5 silver suppressed/outranked",
		"C6 gold suppressed/do_not_disturb", "C6 silver suppressed/do_not_disturb", "C6 security emitted@sms",
	}
	got := te.decisions(t)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("decisions:\n got %q\nwant %q", got, want)
	}
}

func TestBudgetCooldownAndMaxPerCustomer(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, func(c *Config) { c.Policy.Caps = &[]CapConfig{} })
	// 60 customers pay at once, in one batch: the budget of 5 goes to the
	// first five in stream order, whatever the workers.
	var evs []ev
	for i := 0; i < 60; i++ {
		evs = append(evs, ev{ID: fmt.Sprintf("t%d", i), CustomerID: fmt.Sprintf("K%02d", i), Type: "txn"})
	}
	te.send(t, evs...)
	var emitted []string
	budget := 0
	for _, d := range te.decisions(t) {
		if strings.HasSuffix(d, "emitted@app_push") {
			emitted = append(emitted, strings.Fields(d)[0])
		}
		if strings.HasSuffix(d, "suppressed/budget") {
			budget++
		}
	}
	if !slices.Equal(emitted, []string{"K00", "K01", "K02", "K03", "K04"}) || budget != 55 {
		t.Errorf("emitted to %v, %d suppressed for budget", emitted, budget)
	}
	// The batch was evaluated twice (in parallel, then in stream order
	// once the budget ran out) but counts once.
	m := te.e.metrics
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("emitted", "live")) + testutil.ToFloat64(m.Decisions.WithLabelValues("suppressed", "live")); got != 60 {
		t.Errorf("kairos_decisions_total says %v decisions, the stream has 60", got)
	}
	if got := testutil.ToFloat64(m.Suppressed.WithLabelValues("coupon", "budget", "live")); got != 55 {
		t.Errorf("kairos_offers_suppressed_total{coupon,budget} = %v, want 55", got)
	}
	if got := testutil.ToFloat64(m.BudgetRemaining.WithLabelValues("coupon", "total")); got != 0 {
		t.Errorf("kairos_rule_budget_remaining{coupon,total} = %v, want 0", got)
	}

	// Cooldown and max_per_customer on other rules.
	te.send(t, ev{ID: "c1", CustomerID: "Q1", Type: "card"}, ev{ID: "c2", CustomerID: "Q1", Type: "card"}, ev{ID: "c3", CustomerID: "Q1", Type: "card"})
	got := te.decisions(t)
	tail := got[len(got)-3:]
	if !slices.Equal(tail, []string{"Q1 quota emitted@app_push", "Q1 quota emitted@app_push", "Q1 quota suppressed/max_per_customer"}) {
		t.Errorf("quota decisions %q", tail)
	}
}

func TestBudgetSurvivesRestart(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(policyRules), 0o644)
	start := func() *testEngine {
		return startTestEngineClock(t, dir, func(c *Config) { c.Policy.Caps = &[]CapConfig{} }, clock.Now)
	}
	te := start()
	te.send(t, ev{ID: "t1", CustomerID: "A", Type: "txn"}, ev{ID: "t2", CustomerID: "B", Type: "txn"}, ev{ID: "t3", CustomerID: "C", Type: "txn"})
	te.stop(t)
	te = start()
	te.send(t, ev{ID: "t4", CustomerID: "D", Type: "txn"}, ev{ID: "t5", CustomerID: "E", Type: "txn"}, ev{ID: "t6", CustomerID: "F", Type: "txn"})
	n := 0
	for _, d := range te.decisions(t) {
		if strings.Contains(d, "coupon emitted") {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d coupons across a restart, budget 5", n)
	}
}

func TestQuietHoursDeferThenRelease(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 22, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, func(c *Config) {
		c.Policy.QuietHours = &QuietHoursConfig{From: "21:00", To: "08:00", Action: "defer"}
	})
	te.send(t, login("n1", "C1", nil), ev{ID: "pv1", CustomerID: "C1", Type: "page_view"})
	x, err := te.e.Explain("C1")
	if err != nil {
		t.Fatal(err)
	}
	if len(x.Deferred) != 1 || x.Deferred[0].Rule != "gold" || x.Deferred[0].ReleaseAt != time.Date(2026, 11, 21, 8, 0, 0, 0, shanghai).UnixMilli() {
		t.Fatalf("deferred = %+v", x.Deferred)
	}
	if len(te.offers(t)) != 0 {
		t.Fatal("an offer went out during quiet hours")
	}
	// The morning: the release loop sends it.
	clock.Set(time.Date(2026, 11, 21, 8, 0, 1, 0, shanghai))
	deadline := time.Now().Add(20 * time.Second)
	for len(te.offers(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred offer was not released")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	want := []string{
		"C1 gold deferred/quiet_hours", "C1 silver suppressed/outranked",
		"C1 night-owl suppressed/expired", // its 1h ttl ends before 08:00
		"C1 gold emitted@sms",
	}
	if got := te.decisions(t); !slices.Equal(got, want) {
		t.Errorf("decisions:\n got %q\nwant %q", got, want)
	}
	x, _ = te.e.Explain("C1")
	if len(x.Deferred) != 0 || len(x.Contacts) != 1 {
		t.Errorf("after release: deferred %v, contacts %v", x.Deferred, x.Contacts)
	}
}

func TestHoldoutAndOpportunities(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, func(c *Config) {
		c.Policy.OpportunityCaps = []CapConfig{{Per: "week", Max: 1}}
	})
	var evs []ev
	for i := 0; i < 40; i++ {
		evs = append(evs, ev{ID: fmt.Sprintf("x%d", i), CustomerID: fmt.Sprintf("H%02d", i), Type: "transfer"})
	}
	evs = append(evs, ev{ID: "pay1", CustomerID: "H00", Type: "payroll"}, ev{ID: "pay2", CustomerID: "H00", Type: "payroll"})
	te.send(t, evs...)
	held := 0
	for _, d := range te.decisions(t) {
		f := strings.Fields(d)
		if f[1] != "split" {
			continue
		}
		isHeld := strings.HasPrefix(f[2], "suppressed/holdout")
		if isHeld != inHoldout(f[0], "kairos", "split", 0.5) {
			t.Errorf("%s: holdout %v disagrees with the hash", f[0], isHeld)
		}
		if isHeld {
			held++
		}
	}
	if held < 10 || held > 30 {
		t.Errorf("%d of 40 held out at 50%%", held)
	}
	got := te.decisions(t)
	if tail := got[len(got)-2:]; !slices.Equal(tail, []string{"H00 lead emitted@branch", "H00 lead suppressed/cap_opportunity"}) {
		t.Errorf("opportunities %q", tail)
	}
}

func TestExplainEndpoint(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	te := policyEngine(t, clock, nil)
	te.send(t, ev{ID: "p", CustomerID: "C1", Type: "profile", Attrs: map[string]any{"name": "Ann"}}, login("l1", "C1", nil))
	resp, err := http.Get("http://" + te.e.HTTPAddr() + "/v1/customers/C1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var x Explanation
	if err := json.NewDecoder(resp.Body).Decode(&x); err != nil {
		t.Fatal(err)
	}
	if !x.Found || x.Profile["name"] != "Ann" || len(x.Decisions) != 2 || x.Decisions[0].Outcome != "emitted" ||
		len(x.Caps) != 2 || x.Caps[0].Cap != "cap_day" || x.Caps[0].Used != 1 || x.Caps[0].Max != 3 || x.Timezone != "Asia/Shanghai" {
		t.Errorf("explanation %+v", x)
	}
	resp2, err := http.Get("http://" + te.e.HTTPAddr() + "/v1/customers/NOBODY")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNotFound {
		t.Errorf("unknown customer: %s", resp2.Status)
	}
	_ = context.Background
}

func TestDeferredOfferSurvivesRestart(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 23, 30, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(policyRules), 0o644)
	quiet := func(c *Config) {
		c.Policy.ReleaseInterval = "10ms"
		c.Policy.QuietHours = &QuietHoursConfig{From: "22:00", To: "07:30", Action: "defer"}
	}
	te := startTestEngineClock(t, dir, quiet, clock.Now)
	te.send(t, login("n1", "C1", nil))
	te.stop(t)
	clock.Set(time.Date(2026, 11, 21, 7, 31, 0, 0, shanghai))
	te = startTestEngineClock(t, dir, quiet, clock.Now)
	deadline := time.Now().Add(20 * time.Second)
	for len(te.offers(t)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the deferred offer was not released after the restart")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	o := te.offers(t)[0]
	if o.RuleID != "gold" || o.DecidedAt != clock.Now().UnixMilli() || o.EventID != "n1" {
		t.Errorf("released offer %+v", o)
	}
}

func TestSuppressionFileAndContactsFunction(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: first-touch
    on: [login]
    when: contacts("7d") == 0
    offer: {channels: [app_push], priority: 10}
  - id: follow-up
    on: [page_view]
    when: offers("first-touch", "24h") == 1 && contacts("1h") >= 1
    offer: {channels: [app_push]}
`), 0o644)
	supp := filepath.Join(dir, "suppressed.txt")
	os.WriteFile(supp, []byte("# complaints\nC9\n"), 0o644)
	te := startTestEngineClock(t, dir, func(c *Config) {
		c.Policy.ReleaseInterval = "10ms"
		c.Policy.SuppressionFile = supp
	}, clock.Now)
	te.send(t, login("a", "C1", nil), ev{ID: "b", CustomerID: "C1", Type: "page_view"}, login("c", "C1", nil), login("d", "C9", nil))
	// C9 leaves the list; the file is reloaded within the release interval.
	os.WriteFile(supp, []byte("# complaints\nC8\n"), 0o644)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s := te.e.suppressed.Load(); s != nil {
			if _, ok := (*s)["C8"]; ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("suppression file not reloaded")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	te.send(t, login("e", "C9", nil))
	want := []string{
		"C1 first-touch emitted@app_push",
		"C1 follow-up emitted@app_push",
		"C9 first-touch suppressed/do_not_disturb",
		"C9 first-touch emitted@app_push",
	}
	if got := te.decisions(t); !slices.Equal(got, want) {
		t.Errorf("decisions:\n got %q\nwant %q", got, want)
	}
}

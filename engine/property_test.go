package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/connectors"
)

// TestPolicyProperties throws random rule sets, customers, events and
// clock jumps at the real engine and checks what must always hold: no cap,
// budget, cooldown or per-customer limit exceeded, at most
// max_offers_per_event marketing offers per event, one final decision per
// match, offers exactly the emitted decisions — and the same decisions
// whether one worker or three make them, in whatever batches.
func TestPolicyProperties(t *testing.T) {
	seeds := []uint64{1, 2, 3}
	if testing.Short() {
		seeds = seeds[:1]
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			sc := newScenario(seed)
			one := sc.run(t, 1, 7)
			three := sc.run(t, 3, 64)
			sc.check(t, one)
			if len(one.decisions) != len(three.decisions) {
				t.Fatalf("one worker made %d decisions, three made %d", len(one.decisions), len(three.decisions))
			}
			for id, d := range one.decisions {
				if g := three.decisions[id]; g == nil || g.Outcome != d.Outcome || g.Reason != d.Reason || g.Channel != d.Channel {
					t.Errorf("decision %s: one worker %+v, three %+v", id, d, g)
				}
			}
		})
	}
}

type scenario struct {
	seed      uint64
	rules     string
	ruleInfo  map[string]ruleLimits
	phases    []phase
	maxPer    int
	customers int
	quiet     bool // quiet hours 22:00-07:00 with defer
}

type ruleLimits struct {
	kind     string
	cooldown time.Duration
	maxPer   int
	budget   int
}

type phase struct {
	jump   time.Duration
	events []ev
}

type runResult struct {
	decisions map[string]*connectors.Decision // by Nats-Msg-Id
	order     []string
	offers    map[string]bool
	dups      int
}

func newScenario(seed uint64) *scenario {
	r := rand.New(rand.NewPCG(seed, 99))
	sc := &scenario{seed: seed, ruleInfo: map[string]ruleLimits{}, maxPer: 1 + r.IntN(2), customers: 12, quiet: seed%2 == 1}
	var b strings.Builder
	b.WriteString("rules:\n")
	types := []string{"login", "txn", "page_view"}
	for i := 0; i < 9; i++ {
		id := fmt.Sprintf("m%d", i)
		lim := ruleLimits{kind: "marketing"}
		fmt.Fprintf(&b, "  - id: %s\n    on: [%s]\n    when: \"true\"\n", id, types[r.IntN(len(types))])
		if r.IntN(3) == 0 {
			lim.cooldown = time.Duration(30+r.IntN(600)) * time.Minute
			fmt.Fprintf(&b, "    cooldown: %dm\n", int(lim.cooldown.Minutes()))
		}
		if r.IntN(3) == 0 {
			lim.maxPer = 1 + r.IntN(3)
			fmt.Fprintf(&b, "    max_per_customer: %d\n", lim.maxPer)
		}
		if r.IntN(3) == 0 {
			lim.budget = 3 + r.IntN(20)
			fmt.Fprintf(&b, "    budget: {total: %d}\n", lim.budget)
		}
		if r.IntN(4) == 0 {
			b.WriteString("    holdout: 0.2\n")
		}
		fmt.Fprintf(&b, "    offer: {channels: [%s], priority: %d}\n", []string{"sms, app_push", "app_push", "sms"}[r.IntN(3)], r.IntN(4)*10)
		sc.ruleInfo[id] = lim
	}
	b.WriteString("  - id: svc\n    kind: service\n    on: [login]\n    when: \"true\"\n    cooldown: 2h\n    offer: {channels: [sms]}\n")
	sc.ruleInfo["svc"] = ruleLimits{kind: "service", cooldown: 2 * time.Hour}
	b.WriteString("  - id: opp\n    kind: opportunity\n    on: [txn]\n    when: \"true\"\n    offer: {channels: [branch]}\n")
	sc.ruleInfo["opp"] = ruleLimits{kind: "opportunity"}
	sc.rules = b.String()

	n := 0
	for p := 0; p < 24; p++ {
		ph := phase{jump: time.Duration(r.IntN(30*60)) * time.Minute}
		if p == 0 {
			ph.jump = 0
			for c := 0; c < sc.customers; c++ {
				attrs := map[string]any{}
				if c%4 == 1 {
					attrs["timezone"] = "America/New_York"
				}
				if c%5 == 2 {
					attrs["opt_out"] = []string{"sms"}
				}
				ph.events = append(ph.events, ev{ID: fmt.Sprintf("p%d", c), CustomerID: fmt.Sprintf("C%02d", c), Type: "profile", Attrs: attrs})
			}
		}
		for k := r.IntN(60); k > 0; k-- {
			n++
			ph.events = append(ph.events, ev{ID: fmt.Sprintf("e%d", n), CustomerID: fmt.Sprintf("C%02d", r.IntN(sc.customers)), Type: types[r.IntN(len(types))]})
		}
		sc.phases = append(sc.phases, ph)
	}
	return sc
}

func (sc *scenario) run(t *testing.T, workers, batch int) *runResult {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	if err := os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(sc.rules), 0o644); err != nil {
		t.Fatal(err)
	}
	// Start on a Sunday evening, so the first jumps cross a week start.
	clock := &testClock{t: time.Date(2026, 11, 22, 18, 0, 0, 0, shanghai)}
	te := startTestEngineClock(t, dir, func(c *Config) {
		c.Engine.Workers = workers
		c.Engine.BatchSize = batch
		c.Consumer.MaxAckPending = 1000
		c.Policy.MaxOffersPerEvent = sc.maxPer
		c.Policy.ChannelCaps = map[string][]CapConfig{"sms": {{Per: "day", Max: 1}}}
		c.Policy.OpportunityCaps = []CapConfig{{Per: "week", Max: 1}}
		if sc.quiet {
			c.Policy.QuietHours = &QuietHoursConfig{From: "22:00", To: "07:00", Action: "defer"}
		}
	}, clock.Now)
	for _, ph := range sc.phases {
		clock.Add(ph.jump)
		if len(ph.events) > 0 {
			te.send(t, ph.events...)
		}
	}
	// Let every deferred offer come due and be released.
	clock.Add(48 * time.Hour)
	te.waitNoDeferred(t)
	res := &runResult{decisions: map[string]*connectors.Decision{}, offers: map[string]bool{}}
	for _, m := range te.streamMsgs(t, "KAIROS_DECISIONS") {
		d, err := connectors.DecodeDecision(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		id := m.Headers().Get("Nats-Msg-Id")
		if res.decisions[id] != nil {
			res.dups++
		}
		res.decisions[id] = d
		res.order = append(res.order, id)
	}
	for _, o := range te.offers(t) {
		if res.offers[o.ID] {
			res.dups++
		}
		res.offers[o.ID] = true
	}
	te.stop(t)
	return res
}

func (sc *scenario) check(t *testing.T, res *runResult) {
	ny, _ := time.LoadLocation("America/New_York")
	locOf := func(c string) *time.Location {
		var i int
		fmt.Sscanf(c, "C%d", &i)
		if i%4 == 1 {
			return ny
		}
		return shanghai
	}
	if res.dups != 0 {
		t.Errorf("%d duplicate decisions or offers", res.dups)
	}
	type key struct{ a, b string }
	day, week, smsDay, oppWeek := map[key]int{}, map[key]int{}, map[key]int{}, map[key]int{}
	perEvent := map[string]int{}
	budget := map[string]int{}
	perCust := map[key]int{}
	last := map[key]int64{}
	finals := map[string]int{}
	emitted := 0
	reasons := map[string]int{}
	ids := append([]string(nil), res.order...)
	sort.SliceStable(ids, func(i, j int) bool { return res.decisions[ids[i]].DecidedAt < res.decisions[ids[j]].DecidedAt })
	for _, id := range ids {
		d := res.decisions[id]
		if d.Outcome != connectors.Deferred {
			finals[d.ID]++
		}
		if sc.quiet && d.Outcome == connectors.Emitted && sc.ruleInfo[d.RuleID].kind == "marketing" {
			l := time.UnixMilli(d.DecidedAt).In(locOf(d.CustomerID))
			if h := l.Hour(); h >= 22 || h < 7 {
				t.Errorf("%s emitted at %s local time, in quiet hours", d.ID, l.Format("15:04"))
			}
		}
		reasons[d.Outcome+"/"+d.Reason]++
		if d.Outcome != connectors.Emitted {
			continue
		}
		emitted++
		if !res.offers[d.ID] {
			t.Errorf("emitted decision %s has no offer", d.ID)
		}
		lim := sc.ruleInfo[d.RuleID]
		at := time.UnixMilli(d.DecidedAt)
		loc := locOf(d.CustomerID)
		dk := key{d.CustomerID, periodStart(at, loc, "day", time.Monday).String()}
		wk := key{d.CustomerID, periodStart(at, loc, "week", time.Monday).String()}
		switch lim.kind {
		case "marketing":
			day[dk]++
			week[wk]++
			perEvent[d.EventID]++
			if d.Channel == "sms" {
				smsDay[dk]++
			}
			if day[dk] > 3 || week[wk] > 5 || smsDay[dk] > 1 || perEvent[d.EventID] > sc.maxPer {
				t.Errorf("%s: day %d, week %d, sms %d, event %d after %s", d.CustomerID, day[dk], week[wk], smsDay[dk], perEvent[d.EventID], d.ID)
			}
		case "opportunity":
			oppWeek[wk]++
			if oppWeek[wk] > 1 {
				t.Errorf("%s: %d opportunities in a week", d.CustomerID, oppWeek[wk])
			}
		}
		rc := key{d.RuleID, d.CustomerID}
		if lim.cooldown > 0 {
			if prev, ok := last[rc]; ok && d.DecidedAt-prev < lim.cooldown.Milliseconds() {
				t.Errorf("%s to %s again after %v, cooldown %v", d.RuleID, d.CustomerID, time.Duration(d.DecidedAt-prev)*time.Millisecond, lim.cooldown)
			}
		}
		last[rc] = d.DecidedAt
		perCust[rc]++
		if lim.maxPer > 0 && perCust[rc] > lim.maxPer {
			t.Errorf("%s to %s %d times, max %d", d.RuleID, d.CustomerID, perCust[rc], lim.maxPer)
		}
		budget[d.RuleID]++
		if lim.budget > 0 && budget[d.RuleID] > lim.budget {
			t.Errorf("%s issued %d, budget %d", d.RuleID, budget[d.RuleID], lim.budget)
		}
	}
	for id, n := range finals {
		if n != 1 {
			t.Errorf("match %s has %d final decisions", id, n)
		}
	}
	if emitted != len(res.offers) {
		t.Errorf("%d emitted decisions, %d offers", emitted, len(res.offers))
	}
	t.Logf("seed %d: %d decisions %v", sc.seed, len(res.decisions), reasons)
	musts := []string{"emitted/", "suppressed/outranked", "suppressed/cap_day"}
	if sc.quiet {
		musts = append(musts, "deferred/quiet_hours")
	}
	for _, must := range musts {
		if reasons[must] == 0 {
			t.Errorf("no %s decision: the scenario does not exercise the policy", must)
		}
	}
}

// waitNoDeferred polls until no deferred offer is left in the engine.
func (te *testEngine) waitNoDeferred(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		due, err := te.e.store.DueDeferred(1<<62, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(due) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("deferred offers not released: %v", due)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
}

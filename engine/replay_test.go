package engine

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/rules"
)

func exampleRuleSet(t testing.TB) *rules.RuleSet {
	t.Helper()
	dir := t.TempDir()
	useExampleRules(t, dir)
	rs, err := rules.Load(rules.Options{}, filepath.Join(dir, "rules"))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// recorded returns synthetic events over a few days, as a recording of
// the events stream would hold them.
func recorded(n, customers int) []bench.Event {
	g := bench.NewGenerator(bench.Workload{Customers: customers, Seed: 5, RunID: "rec"})
	base := time.Date(2026, 11, 16, 8, 0, 0, 0, shanghai)
	var out []bench.Event
	for i := 0; i < customers; i++ {
		out = append(out, g.ProfileEvent(i, base))
	}
	for i := 0; i < n; i++ {
		out = append(out, g.Next(base.Add(time.Duration(i)*20*time.Second)))
	}
	return out
}

func TestReplayProjectsLikeTheEngine(t *testing.T) {
	rs := exampleRuleSet(t)
	evs := recorded(6000, 200)
	rp, err := NewReplay(rs, PolicyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		data, _ := bench.Encode(nil, &e)
		if err := rp.AddRaw(data, false); err != nil {
			t.Fatal(err)
		}
	}
	rp.AddRaw([]byte("garbage"), false)
	rep, err := rp.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != len(evs) || rep.Invalid != 1 {
		t.Errorf("events %d invalid %d", rep.Events, rep.Invalid)
	}
	emitted, matched := 0, 0
	for _, p := range rep.Rules {
		emitted += p.Emitted
		matched += p.Matched
		sup := 0
		for _, n := range p.Suppressed {
			sup += n
		}
		if p.Matched != p.Emitted+sup {
			t.Errorf("%s: matched %d != emitted %d + suppressed %d", p.Rule, p.Matched, p.Emitted, sup)
		}
	}
	if emitted == 0 || rep.Suppressed["cap_day"] == 0 || len(rep.Opportunities) == 0 {
		t.Errorf("replay projected too little: %d emitted of %d matched, suppressed %v, opportunities %v", emitted, matched, rep.Suppressed, rep.Opportunities)
	}
	for _, f := range []string{"md", "json", "csv"} {
		var b bytes.Buffer
		if err := rep.Write(&b, f); err != nil || b.Len() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	var b bytes.Buffer
	rep.Write(&b, "json")
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["events"].(float64) != float64(len(evs)) {
		t.Errorf("json report: %v", err)
	}
	if !strings.Contains(b.String(), `"by_day"`) {
		t.Error("json report lacks per-day figures")
	}
	_ = os.Stdout
}

// TestReplayMatchesLiveEngine replays the same events the live engine
// decided, at the same clock, and expects the same decisions.
func TestReplayMatchesLiveEngine(t *testing.T) {
	evs := recorded(1500, 60)
	at := time.Date(2026, 11, 16, 8, 0, 0, 0, shanghai)
	// Live: every event decided at one clock (the test clock does not move).
	clock := &testClock{t: at}
	dir := t.TempDir()
	useExampleRules(t, dir)
	te := startTestEngineClock(t, dir, nil, clock.Now)
	var msgs []ev
	for _, e := range evs {
		msgs = append(msgs, ev{ID: e.ID, CustomerID: e.CustomerID, Type: e.Type, TS: e.TS, Attrs: e.Attrs})
	}
	te.send(t, msgs...)
	live := map[string]string{}
	for _, d := range te.decisions(t) {
		live[d] += "x"
	}
	// Simulated: the same events at the same clock.
	sim, err := NewSimulator(SimOptions{Rules: te.e.Rules()})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	var sevs []SimEvent
	for _, e := range evs {
		sevs = append(sevs, SimEvent{At: at, Event: Event{ID: e.ID, CustomerID: e.CustomerID, Type: e.Type, TS: e.TS, Attrs: NormalizeAttrs(e.Attrs)}})
	}
	res, err := sim.Process(sevs)
	if err != nil {
		t.Fatal(err)
	}
	simulated := map[string]string{}
	for _, d := range res.Decisions {
		s := d.CustomerID + " " + d.RuleID + " " + d.Outcome
		if d.Reason != "" {
			s += "/" + d.Reason
		}
		if d.Channel != "" {
			s += "@" + d.Channel
		}
		simulated[s] += "x"
	}
	if len(live) == 0 {
		t.Fatal("no live decisions")
	}
	for k, v := range live {
		if simulated[k] != v {
			t.Errorf("%s: live %d, simulated %d", k, len(v), len(simulated[k]))
		}
	}
	for k, v := range simulated {
		if live[k] == "" {
			t.Errorf("%s: simulated %d, never live", k, len(v))
		}
	}
}

func BenchmarkReplay(b *testing.B) {
	rs := exampleRuleSet(b)
	evs := recorded(b.N, 10000)
	payloads := make([][]byte, len(evs))
	for i := range evs {
		payloads[i], _ = bench.Encode(nil, &evs[i])
	}
	b.ReportAllocs()
	b.ResetTimer()
	rp, err := NewReplay(rs, PolicyConfig{})
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range payloads {
		if err := rp.AddRaw(p, false); err != nil {
			b.Fatal(err)
		}
	}
	rep, err := rp.Finish()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rep.Events)/b.Elapsed().Seconds(), "events/s")
}

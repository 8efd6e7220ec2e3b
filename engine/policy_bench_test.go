package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/rules"
)

// BenchmarkPolicyCheck measures the contact-policy check of one match, as
// decide makes it for a marketing rule: the rule's budget, cooldown and
// per-customer limit, the cross-channel caps (3 a day, 5 a week) and the
// channel choice against opt-outs, channel caps and the customer's
// preference, on a customer with four offers this week. Run it with
//
//	go test -run '^$' -bench PolicyCheck -benchmem ./engine
func BenchmarkPolicyCheck(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "r.yaml"), []byte(`rules:
  - id: wealth
    on: [login]
    when: "true"
    cooldown: 12h
    max_per_customer: {max: 10, per: 30d}
    budget: {total: 100000, per_day: 5000}
    offer: {channels: [sms, app_push, email]}
`), 0o644)
	rs, err := rules.Load(rules.Options{}, dir)
	if err != nil {
		b.Fatal(err)
	}
	pc := PolicyConfig{ChannelCaps: map[string][]CapConfig{"sms": {{Per: "week", Max: 2}}}}
	s, err := NewSimulator(SimOptions{Rules: rs, Policy: pc})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	start := time.Date(2026, 11, 16, 10, 0, 0, 0, time.UTC) // a Monday
	if err := s.SetProfile("C1", map[string]any{"channel_pref": []any{"email", "app_push"}, "opt_out": []any{"email"}}); err != nil {
		b.Fatal(err)
	}
	var evs []SimEvent
	for d := range 4 {
		at := start.Add(time.Duration(d) * 24 * time.Hour)
		evs = append(evs, SimEvent{Event: Event{ID: fmt.Sprint("l", d), CustomerID: "C1", Type: "login", TS: at.UnixMilli()}, At: at})
	}
	res, err := s.Process(evs)
	if err != nil {
		b.Fatal(err)
	}
	if len(res.Offers) != 4 {
		b.Fatalf("%d offers for the history, want 4", len(res.Offers))
	}
	c, ok, err := s.e.store.Snapshot("C1")
	if err != nil || !ok {
		b.Fatal(ok, err)
	}
	w := s.e.workers[0]
	now := start.Add(4*24*time.Hour + time.Hour)
	w.reset(now, nil)
	r := rs.Rules()[0]
	loc := w.location(c.Profile())
	caps := s.e.pol.caps
	check := func() (string, string) {
		if reason := w.ruleCheck(r, c); reason != "" {
			return "", reason
		}
		if reason := w.capCheck(caps, c, kindMarketing, "", loc); reason != "" {
			return "", reason
		}
		return w.chooseChannel(r, c, true, loc)
	}
	if ch, reason := check(); ch != "app_push" || reason != "" {
		b.Fatalf("check: channel %q reason %q, want app_push (email opted out, sms at its cap)", ch, reason)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		check()
	}
}

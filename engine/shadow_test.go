package engine

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-engine/kairos/connectors"
)

func TestShadowRulesDecideWithoutSending(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: gold
    on: [login]
    when: "true"
    offer: {channels: [sms], priority: 90}
  - id: gold-v2
    mode: shadow
    on: [login]
    when: "true"
    budget: {total: 1}
    offer: {channels: [app_push], priority: 95}
`), 0o644)
	te := startTestEngineClock(t, dir, func(c *Config) { c.Policy.Caps = &[]CapConfig{{Per: "day", Max: 2}} }, clock.Now)
	te.send(t, login("a", "C1", nil), login("b", "C1", nil), login("c", "C1", nil))

	var live, shadow []string
	for _, m := range te.streamMsgs(t, "KAIROS_DECISIONS") {
		d, _ := connectors.DecodeDecision(m.Data())
		s := d.RuleID + " " + d.Outcome + "/" + d.Reason
		if d.Mode == "shadow" {
			shadow = append(shadow, s)
			if id := m.Headers().Get("Nats-Msg-Id"); id != d.ID+":shadow" {
				t.Errorf("shadow decision id %s", id)
			}
		} else {
			live = append(live, s)
		}
	}
	// gold-v2 outranks nothing and is never outranked; its budget of 1 is
	// never spent, because it sends nothing; it sees the caps the live
	// offers used.
	if want := []string{"gold emitted/", "gold emitted/", "gold suppressed/cap_day"}; !slices.Equal(live, want) {
		t.Errorf("live %q, want %q", live, want)
	}
	if want := []string{"gold-v2 emitted/", "gold-v2 emitted/", "gold-v2 suppressed/cap_day"}; !slices.Equal(shadow, want) {
		t.Errorf("shadow %q, want %q", shadow, want)
	}
	for _, o := range te.offers(t) {
		if o.RuleID == "gold-v2" {
			t.Errorf("a shadow rule's offer was sent: %+v", o)
		}
	}
	m := te.e.metrics
	if got := testutil.ToFloat64(m.Decisions.WithLabelValues("emitted", "shadow")); got != 2 {
		t.Errorf("kairos_decisions_total{emitted,shadow} = %v", got)
	}
	x, _ := te.e.Explain("C1")
	n := 0
	for _, d := range x.Decisions {
		if d.Outcome == "shadow:emitted" {
			n++
		}
	}
	if n != 2 || len(x.Contacts) != 2 {
		t.Errorf("explain: %d shadow decisions, %d contacts", n, len(x.Contacts))
	}
}

package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/kairos-engine/kairos/connectors"
)

// TestConversionsAttributedToOffersAndHoldouts: customers see a fund
// nudge or are held out; those who then buy the fund within a week convert,
// in their group, once each.
func TestConversionsAttributedToOffersAndHoldouts(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: fund-nudge
    on: [page_view]
    when: "true"
    holdout: 0.5
    conversion: {event: fund_purchase, where: 'event.attrs.product == offer.product', within: 7d}
    offer: {channels: [app_push], product: FUND-A}
`), 0o644)
	te := startTestEngineClock(t, dir, nil, clock.Now)
	const n = 40
	var views, buys []ev
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("K%02d", i)
		views = append(views, ev{ID: "v" + c, CustomerID: c, Type: "page_view"})
		buys = append(buys, ev{ID: "b" + c, CustomerID: c, Type: "fund_purchase", Attrs: map[string]any{"product": "FUND-A"}})
	}
	te.send(t, views...)
	clock.Add(48 * time.Hour)
	te.send(t, buys...)
	// A second purchase, another fund, and a purchase after the window: no new conversion.
	te.send(t, ev{ID: "again", CustomerID: "K00", Type: "fund_purchase", Attrs: map[string]any{"product": "FUND-A"}},
		ev{ID: "other", CustomerID: "K01", Type: "fund_purchase", Attrs: map[string]any{"product": "FUND-B"}})
	clock.Add(8 * 24 * time.Hour)
	te.send(t, ev{ID: "late", CustomerID: "K02", Type: "fund_purchase", Attrs: map[string]any{"product": "FUND-A"}})

	held := map[string]bool{}
	groups := map[string]int{}
	converted := map[string]string{}
	for _, m := range te.streamMsgs(t, "KAIROS_DECISIONS") {
		d, _ := connectors.DecodeDecision(m.Data())
		switch d.Outcome {
		case connectors.Suppressed:
			held[d.CustomerID] = d.Reason == ReasonHoldout
		case connectors.Converted:
			if converted[d.CustomerID] != "" {
				t.Errorf("%s converted twice", d.CustomerID)
			}
			converted[d.CustomerID] = d.Group
			groups[d.Group]++
			if m.Headers().Get("Nats-Msg-Id") != d.ID+":converted" || d.EventType != "fund_purchase" {
				t.Errorf("conversion record %+v", d)
			}
		}
	}
	if len(converted) != n {
		t.Errorf("%d conversions, want %d", len(converted), n)
	}
	for c, g := range converted {
		if want := map[bool]string{true: "holdout", false: "treatment"}[held[c]]; g != want {
			t.Errorf("%s converted in %s, its group is %s", c, g, want)
		}
	}
	if groups["holdout"] == 0 || groups["treatment"] == 0 {
		t.Errorf("groups %v", groups)
	}
	m := te.e.metrics
	if got := testutil.ToFloat64(m.Conversions.WithLabelValues("fund-nudge", "treatment")); got != float64(groups["treatment"]) {
		t.Errorf("kairos_conversions_total{treatment} = %v, want %d", got, groups["treatment"])
	}
}

package connectors

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestOpportunityWorklistRoundTrip(t *testing.T) {
	js := natsJS(t)
	ctx := context.Background()
	c, err := NewOpportunity(Config{Name: "rm", JS: js, Prefix: "kairos", Settings: map[string]any{"sla": "48h"}})
	if err != nil {
		t.Fatal(err)
	}
	o := &Offer{ID: "o-1", RuleID: "payroll-arrived-rm-call", CustomerID: "C1", Channel: "branch", Product: "DEP", Params: map[string]any{"branch": "SH002"}}
	for i := 0; i < 2; i++ { // a redelivery adds nothing
		if err := c.Deliver(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Deliver(ctx, &Offer{ID: "o-2", CustomerID: "C2"}); err != nil {
		t.Fatal(err)
	}
	wl, err := OpenWorklist(ctx, js, "", "kairos", nil)
	if err != nil {
		t.Fatal(err)
	}
	list, err := wl.List(ctx, "SH002", false)
	if err != nil || len(list) != 1 || list[0].Status != StatusOpen || list[0].DueAt == 0 {
		t.Fatalf("SH002 list %+v %v", list, err)
	}
	if l, _ := wl.List(ctx, "unassigned", false); len(l) != 1 {
		t.Errorf("an offer without a branch param is not in the default list: %v", l)
	}
	if _, err := wl.Record(ctx, "SH002", "o-1", "ann", "accepted", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("an outcome before a claim: %v", err)
	}
	if _, err := wl.Claim(ctx, "SH002", "o-1", "ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := wl.Claim(ctx, "SH002", "o-1", "bob"); !errors.Is(err, ErrConflict) {
		t.Errorf("a second member of staff claimed a claimed lead: %v", err)
	}
	if _, err := wl.Record(ctx, "SH002", "o-1", "ann", "won", ""); err == nil {
		t.Error("an unknown outcome was accepted")
	}
	op, err := wl.Record(ctx, "SH002", "o-1", "ann", "accepted", "opened a term deposit")
	if err != nil || op.Status != StatusDone || op.Outcome != "accepted" {
		t.Fatalf("%+v %v", op, err)
	}
	if _, err := wl.Claim(ctx, "SH002", "nope", "ann"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown lead: %v", err)
	}
	if l, _ := wl.List(ctx, "SH002", false); len(l) != 0 {
		t.Errorf("done leads are listed: %v", l)
	}
	if l, _ := wl.List(ctx, "SH002", true); len(l) != 1 {
		t.Errorf("--all lists %d", len(l))
	}
	if n := streamCount(t, js, "KAIROS_EVENTS", "kairos.events.opportunity_outcome.C1"); n != 1 {
		t.Errorf("%d outcome events", n)
	}
	if op.Overdue(time.Now().Add(72 * time.Hour)) {
		t.Error("a done lead is overdue")
	}
	if open := (&Opportunity{Status: StatusOpen, DueAt: time.Now().UnixMilli()}); !open.Overdue(time.Now().Add(time.Minute)) {
		t.Error("an open lead past its SLA is not overdue")
	}
}

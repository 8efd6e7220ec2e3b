package rules

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestConversionParseCompileAndEvaluate(t *testing.T) {
	f, err := ParseFile("c.yaml", []byte(`rules:
  - id: fund-nudge
    on: [page_view]
    when: "true"
    conversion: {event: fund_purchase, where: 'event.attrs.product == offer.product && offer.params.n >= 1', within: 7d}
    offer: {channels: [app_push], product: FUND-A, params: {n: "1"}}
  - id: any-login
    on: [page_view]
    when: "true"
    conversion: {event: login, within: 1d}
    offer: {channels: [app_push]}
`))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Compile([]*File{f}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := rs.ConversionsFor("fund_purchase"); len(got) != 1 || got[0].ID != "fund-nudge" {
		t.Fatalf("ConversionsFor = %v", got)
	}
	if rs.ConversionHorizon() != 7*24*time.Hour {
		t.Errorf("horizon %v", rs.ConversionHorizon())
	}
	ev := rs.NewEvaluator()
	r := rs.ConversionsFor("fund_purchase")[0]
	in := &Input{Event: Event{ID: "p", CustomerID: "C1", Type: "fund_purchase", TS: 1, Attrs: map[string]any{"product": "FUND-A"}}}
	offer := map[string]any{"product": "FUND-A", "params": map[string]any{"n": int64(1)}}
	if ok, err := ev.Converts(context.Background(), r, in, offer); !ok || err != nil {
		t.Errorf("same product: %v %v", ok, err)
	}
	offer["product"] = "FUND-B"
	if ok, _ := ev.Converts(context.Background(), r, in, offer); ok {
		t.Error("another product converted")
	}
	if ok, err := ev.Converts(context.Background(), rs.ConversionsFor("login")[0], in, nil); !ok || err != nil {
		t.Errorf("no where: %v %v", ok, err)
	}
}

func TestConversionErrors(t *testing.T) {
	cases := []struct{ name, conv, want string }{
		{"no event", `{within: 7d}`, "conversion has no event"},
		{"no window", `{event: buy}`, "conversion has no within"},
		{"bad window", `{event: buy, within: soon}`, "conversion.within: must be a positive duration"},
		{"unknown field", `{event: buy, within: 1d, whom: x}`, `unknown field "whom"`},
		{"where not bool", `{event: buy, within: 1d, where: 'offer.product'}`, "conversion.where must evaluate to bool"},
		{"offer outside where", ``, "undeclared reference to 'offer'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			when := `"true"`
			conv := "    conversion: " + c.conv + "\n"
			if c.conv == "" {
				when, conv = `offer.product == "x"`, ""
			}
			src := "rules:\n  - id: r\n    on: [x]\n    when: " + when + "\n" + conv + "    offer: {channels: [sms]}\n"
			_, err := Load(Options{}, writeTemp(t, src))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
}

func writeTemp(t *testing.T, src string) string {
	t.Helper()
	p := t.TempDir() + "/r.yaml"
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

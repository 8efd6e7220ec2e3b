package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/connectors"
)

// TestFeedbackLoopAndReport closes the loop on the built binary: offers go
// out through a webhook connector, channels report clicks, customers buy,
// and kairos report shows deliveries, clicks, conversions by group and
// the uplift.
func TestFeedbackLoopAndReport(t *testing.T) {
	dir := t.TempDir()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	defer gw.Close()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: fund-nudge
    on: [page_view]
    when: "true"
    holdout: 0.3
    conversion: {event: fund_purchase, where: 'event.attrs.product == offer.product', within: 7d}
    offer: {channels: [app_push], product: FUND-A}
`), 0o644)
	cfg := filepath.Join(dir, "kairos.yaml")
	os.WriteFile(cfg, []byte("connectors:\n  - {name: push, type: webhook, channel: app_push, settings: {url: "+gw.URL+"}}\n"), 0o644)
	natsAddr := freePort(t)
	p := startKairos(t, "--config", cfg, "--rules", rd, "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	url := "nats://" + natsAddr
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	pub := func(typ, cust string, attrs string) uint64 {
		ack, err := js.Publish(ctx, "kairos.events."+typ+"."+cust, []byte(fmt.Sprintf(`{"id":"%s-%s","customer_id":"%s","type":"%s","ts":%d,"attrs":{%s}}`, typ, cust, cust, typ, time.Now().UnixMilli(), attrs)))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	const n = 60
	var last uint64
	for i := 0; i < n; i++ {
		last = pub("page_view", fmt.Sprintf("C%02d", i), "")
	}
	p.waitApplied(t, last)
	// Offers are delivered; then click five and let the even customers buy.
	offers := readStream(t, js, "KAIROS_OFFERS")
	for i, m := range offers[:5] {
		o, _ := connectors.DecodeOffer(m.Data())
		body := fmt.Sprintf(`{"type":"offer_clicked","offer_id":"%s","customer_id":"%s"}`, o.ID, o.CustomerID)
		resp, err := http.Post("http://"+p.http+"/v1/feedback", "application/json", strings.NewReader(body))
		if err != nil || resp.StatusCode != http.StatusAccepted {
			t.Fatalf("click %d: %v %v", i, err, resp)
		}
		resp.Body.Close()
	}
	for i := 0; i < n; i += 2 {
		last = pub("fund_purchase", fmt.Sprintf("C%02d", i), `"product":"FUND-A"`)
	}
	p.waitApplied(t, last)
	deadline := time.Now().Add(30 * time.Second)
	var rep struct {
		Rules []struct {
			Rule      string         `json:"rule"`
			Matched   int            `json:"matched"`
			Emitted   int            `json:"emitted"`
			Holdout   int            `json:"holdout"`
			Delivered int            `json:"delivered"`
			Clicked   int            `json:"clicked"`
			Converted map[string]int `json:"converted"`
			Uplift    *float64       `json:"uplift"`
		} `json:"rules"`
	}
	for {
		out, errOut, code := kairosCmd(t, ctx, "report", "--nats-url", url, "--format", "json")
		if code != 0 {
			t.Fatalf("report: %s", errOut)
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Rules) == 1 && rep.Rules[0].Delivered == rep.Rules[0].Emitted && rep.Rules[0].Clicked == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("report never complete: %s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition, with a deadline
	}
	r := rep.Rules[0]
	if r.Matched != n || r.Emitted+r.Holdout != n || r.Emitted != len(offers) {
		t.Errorf("matched %d emitted %d holdout %d offers %d", r.Matched, r.Emitted, r.Holdout, len(offers))
	}
	if r.Converted["treatment"]+r.Converted["holdout"] != n/2 || r.Uplift == nil {
		t.Errorf("conversions %v uplift %v", r.Converted, r.Uplift)
	}
	md, _, _ := kairosCmd(t, ctx, "report", "--nats-url", url)
	if !strings.Contains(md, "| fund-nudge |") || !strings.Contains(md, "pp (") {
		t.Errorf("markdown report:\n%s", md)
	}
	p.stop(t)
}

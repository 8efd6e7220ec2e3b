package engine

import (
	"strings"
	"testing"
	"time"
)

// opsCanary marks customer data: it must never reach a log line or a metric.
const opsCanary = "CANARY7f3a9cPII"

// TestCustomerDataStaysOutOfLogsAndMetrics feeds events whose attributes
// (values and keys) and profile carry a canary string, through every path
// that logs — good events, an offer, a failing rule, undecodable and
// invalid events, an explain request — with debug logging, in both log
// formats, and checks that the canary appears in no log line and nowhere
// in /metrics. The customer's data is served by /v1/customers/{id}, which
// is what it is for.
func TestCustomerDataStaysOutOfLogsAndMetrics(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			opsWriteRules(t, dir, opsRules)
			te, logs := startLoggedEngine(t, dir, format, nil)
			base := time.Now().UnixMilli()
			c := opsCanary
			te.publishEvent(t, ev{ID: "p1", CustomerID: "C1", Type: "profile", TS: base, Attrs: map[string]any{
				"name": c, "email": c + "@example.com", "tags": []any{c, "payroll"}, c: "a key",
			}}, false)
			te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base + 1, Attrs: map[string]any{"amount": 150, "divisor": 1000, "merchant": c}}, true)
			te.publishEvent(t, ev{ID: "t2", CustomerID: "C1", Type: "txn", TS: base + 2, Attrs: map[string]any{"amount": 150, "divisor": 1000, "memo": c}}, false)
			// A failing rule: the divisor is a string holding the canary.
			te.publishEvent(t, ev{ID: "t3", CustomerID: "C1", Type: "txn", TS: base + 3, Attrs: map[string]any{"amount": 5, "divisor": c}}, false)
			// An offer whose params read the profile (name).
			te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 4, Attrs: map[string]any{"channel": "app", "device": c}}, false)
			// Bad input carrying the canary: undecodable JSON, invalid events, oversize.
			te.publish(t, "kairos.events.login.C2", []byte(`{"id":"x","customer_id":"C2","attrs":{"k":"`+c+`"`), nil)
			te.publish(t, "kairos.events.login.C2", []byte(`{"id":"i1","customer_id":"C9","type":"login","ts":1,"attrs":{"note":"`+c+`"}}`), nil)
			te.publish(t, "kairos.events.txn.C2", []byte(`{"id":"i2","customer_id":"C2","type":"login","ts":1,"attrs":{"`+c+`":1}}`), nil)
			te.publish(t, "kairos.events.login.C2", []byte(`{"id":"i3","customer_id":"C2","type":"login","ts":"`+c+`"}`), nil)
			te.publish(t, "kairos.events.login.C2", []byte(`{"id":"i4","attrs":{"pad":"`+strings.Repeat(c, 6000)+`"}}`), nil)
			seq := te.publishEvent(t, ev{ID: "v1", CustomerID: "C3", Type: "page_view", TS: base + 5, Attrs: map[string]any{"page": c}}, false)
			te.waitApplied(t, seq)

			if code, body := te.opsGet(t, "/v1/customers/C1", ""); code != 200 || !strings.Contains(body, c) {
				t.Fatalf("explain C1: %d, and the profile should be there: %s", code, body)
			}
			if n := len(te.offers(t)); n == 0 {
				t.Fatal("no offer: the offer path was not exercised")
			}
			if dl := te.streamMsgs(t, "KAIROS_DLQ"); len(dl) < 4 {
				t.Fatalf("%d dead letters, want at least 4: the bad-input paths were not exercised", len(dl))
			}
			metrics := te.opsScrape(t)
			te.stop(t) // the shutdown logs too

			if strings.Contains(metrics, c) {
				for _, line := range strings.Split(metrics, "\n") {
					if strings.Contains(line, c) {
						t.Errorf("/metrics: %s", line)
					}
				}
			}
			out := logs.String()
			if !strings.Contains(out, "DEBUG") {
				t.Fatalf("no debug line logged: the test does not run at debug level")
			}
			if !strings.Contains(out, "http admin request") {
				t.Errorf("the explain request was not logged")
			}
			for _, line := range strings.Split(out, "\n") {
				if strings.Contains(line, c) {
					t.Errorf("log line carries customer data: %s", line)
				}
			}
		})
	}
}

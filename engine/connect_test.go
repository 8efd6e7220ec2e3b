package engine

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestFailedDeliveryReleasesTheCap runs the engine with a webhook connector
// whose gateway rejects every message: the offer_failed event that comes
// back gives the customer's cap back, so the next login gets an offer.
func TestFailedDeliveryReleasesTheCap(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "released"
		if keep {
			name = "kept with keep_failed_contacts"
		}
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls.Add(1)
				http.Error(w, "unknown number", http.StatusUnprocessableEntity)
			}))
			defer gw.Close()
			clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
			te := policyEngine(t, clock, func(c *Config) {
				c.Policy.Caps = &[]CapConfig{{Per: "day", Max: 1}}
				c.Policy.KeepFailedContacts = keep
				c.Connectors = []ConnectorConfig{{Name: "sms-gw", Type: "webhook", Channel: "sms", BackoffBase: "1ms",
					Settings: map[string]any{"url": gw.URL}}}
			})
			te.send(t, login("l1", "C1", nil))
			// Wait for the failure to come back as an event and be applied.
			deadline := time.Now().Add(20 * time.Second)
			for {
				applied := false
				for _, m := range te.streamMsgs(t, "KAIROS_EVENTS") {
					if m.Subject() == "kairos.events.offer_failed.C1" {
						md, _ := m.Metadata()
						applied = te.e.Applied() >= md.Sequence.Stream
					}
				}
				if applied {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no offer_failed event applied")
				}
				time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
			}
			te.send(t, login("l2", "C1", nil))
			got := te.decisions(t)
			second := "C1 gold emitted@sms"
			if keep {
				second = "C1 gold suppressed/cap_day"
			}
			want := []string{"C1 gold emitted@sms", "C1 silver suppressed/outranked", second}
			if !slices.Equal(got[:3], want) {
				t.Errorf("decisions %q, want prefix %q", got, want)
			}
			if calls.Load() == 0 {
				t.Error("the gateway was never called")
			}
		})
	}
}

func httpJSON(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestOpportunityWorklistAndFeedbackOverHTTP(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, shanghai)}
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(`rules:
  - id: rm-lead
    kind: opportunity
    on: [payroll]
    when: "true"
    offer: {channels: [branch], params: {branch: "profile.branch"}}
  - id: thanks-for-clicking
    kind: service
    on: [offer_clicked]
    when: "true"
    offer: {channels: [app_push]}
`), 0o644)
	te := startTestEngineClock(t, dir, func(c *Config) {
		c.Connectors = []ConnectorConfig{{Name: "worklist", Type: "opportunity", Channel: "branch"}}
	}, clock.Now)
	te.send(t, ev{ID: "p", CustomerID: "C1", Type: "profile", Attrs: map[string]any{"branch": "SH002"}}, ev{ID: "pay", CustomerID: "C1", Type: "payroll"})
	base := "http://" + te.e.HTTPAddr()
	var list []map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for len(list) == 0 {
		code, body := httpJSON(t, "GET", base+"/v1/opportunities?branch=SH002", "")
		if code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		json.Unmarshal([]byte(body), &list)
		if time.Now().After(deadline) {
			t.Fatal("the opportunity never reached the worklist")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	id := list[0]["offer"].(map[string]any)["id"].(string)
	if code, body := httpJSON(t, "POST", base+"/v1/opportunities/SH002/"+id+"/claim", `{"by":"ann"}`); code != 200 {
		t.Fatalf("claim: %d %s", code, body)
	}
	if code, _ := httpJSON(t, "POST", base+"/v1/opportunities/SH002/"+id+"/claim", `{"by":"bob"}`); code != http.StatusConflict {
		t.Errorf("second claim: %d, want 409", code)
	}
	if code, body := httpJSON(t, "POST", base+"/v1/opportunities/SH002/"+id+"/outcome", `{"by":"ann","result":"accepted"}`); code != 200 {
		t.Fatalf("outcome: %d %s", code, body)
	}
	// Feedback from a channel: a click, reported twice.
	for i := 0; i < 2; i++ {
		if code, body := httpJSON(t, "POST", base+"/v1/feedback", `{"type":"offer_clicked","offer_id":"o-123","customer_id":"C1"}`); code != http.StatusAccepted {
			t.Fatalf("feedback: %d %s", code, body)
		}
	}
	if code, _ := httpJSON(t, "POST", base+"/v1/feedback", `{"type":"offer_liked","offer_id":"o-1","customer_id":"C1"}`); code != http.StatusBadRequest {
		t.Errorf("unknown feedback type: %d", code)
	}
	var outcome, clicks int
	for _, m := range te.streamMsgs(t, "KAIROS_EVENTS") {
		switch m.Subject() {
		case "kairos.events.opportunity_outcome.C1":
			outcome++
		case "kairos.events.offer_clicked.C1":
			clicks++
		}
	}
	if outcome != 1 || clicks != 1 {
		t.Errorf("%d outcome events, %d click events (a repeated report must be dropped)", outcome, clicks)
	}
}

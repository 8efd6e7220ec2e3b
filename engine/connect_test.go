package engine

import (
	"net/http"
	"net/http/httptest"
	"slices"
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

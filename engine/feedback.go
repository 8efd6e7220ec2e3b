package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
)

// FeedbackTypes are the event types channel systems report over
// POST /v1/feedback (they may also publish them to NATS themselves).
var FeedbackTypes = []string{"offer_delivered", "offer_opened", "offer_clicked", "offer_redeemed"}

// Feedback is what a channel system reports about an offer.
type Feedback struct {
	Type       string         `json:"type"`
	OfferID    string         `json:"offer_id"`
	CustomerID string         `json:"customer_id"`
	TS         int64          `json:"ts,omitempty"` // unix ms; default now
	Attrs      map[string]any `json:"attrs,omitempty"`
}

// handleFeedback publishes a feedback report as an event of the customer
// (<type>:<offer id> is its id, so a repeated report is dropped by the
// stream). Rules and windows see it like any event.
func (e *Engine) handleFeedback(w http.ResponseWriter, r *http.Request) {
	var fb Feedback
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		http.Error(w, "feedback: "+err.Error(), http.StatusBadRequest)
		return
	}
	known := false
	for _, t := range FeedbackTypes {
		known = known || t == fb.Type
	}
	switch {
	case !known:
		http.Error(w, "feedback: type must be one of offer_delivered, offer_opened, offer_clicked, offer_redeemed", http.StatusBadRequest)
		return
	case fb.OfferID == "" || len(fb.OfferID) > maxIDLen:
		http.Error(w, "feedback: offer_id is required", http.StatusBadRequest)
		return
	case fb.CustomerID == "" || !validSubjectToken(fb.CustomerID):
		http.Error(w, "feedback: customer_id is required and may not contain dots, spaces or wildcards", http.StatusBadRequest)
		return
	}
	if fb.TS == 0 {
		fb.TS = e.now().UnixMilli()
	}
	attrs := map[string]any{}
	for k, v := range fb.Attrs {
		attrs[k] = v
	}
	attrs["offer_id"] = fb.OfferID
	ev := map[string]any{"id": fb.Type + ":" + fb.OfferID, "customer_id": fb.CustomerID, "type": fb.Type, "ts": fb.TS, "attrs": attrs}
	data, err := msgpack.Marshal(ev)
	if err != nil {
		http.Error(w, "feedback: "+err.Error(), http.StatusBadRequest)
		return
	}
	msg := nats.NewMsg(e.sub.eventsPrefix + fb.Type + "." + fb.CustomerID)
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, fb.Type+":"+fb.OfferID)
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, msg)
	if err != nil {
		e.log.Error("feedback not published", "err", err)
		http.Error(w, "feedback could not be stored; retry", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(map[string]any{"event_id": fb.Type + ":" + fb.OfferID, "duplicate": ack.Duplicate})
}

func validSubjectToken(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return false
		}
	}
	return true
}

// worklist opens the opportunity worklist on first use.
func (e *Engine) worklist(ctx context.Context) (*connectors.Worklist, error) {
	e.wlOnce.Do(func() {
		e.wl, e.wlErr = connectors.OpenWorklist(ctx, e.js, "", e.cfg.Streams.Prefix, e.now)
	})
	return e.wl, e.wlErr
}

type worklistState struct {
	wlOnce sync.Once
	wl     *connectors.Worklist
	wlErr  error
}

func (e *Engine) handleOpportunities(w http.ResponseWriter, r *http.Request) {
	branch := r.URL.Query().Get("branch")
	if branch == "" {
		http.Error(w, "branch is required", http.StatusBadRequest)
		return
	}
	wl, err := e.worklist(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	list, err := wl.List(r.Context(), branch, r.URL.Query().Get("all") != "")
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if list == nil {
		list = []*connectors.Opportunity{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (e *Engine) handleOpportunityChange(w http.ResponseWriter, r *http.Request) {
	var body struct {
		By     string `json:"by"`
		Result string `json:"result"`
		Note   string `json:"note"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	wl, err := e.worklist(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	branch, id := r.PathValue("branch"), r.PathValue("id")
	var op *connectors.Opportunity
	if r.PathValue("action") == "claim" {
		op, err = wl.Claim(r.Context(), branch, id, body.By)
	} else {
		op, err = wl.Record(r.Context(), branch, id, body.By, body.Result, body.Note)
	}
	switch {
	case errors.Is(err, connectors.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, connectors.ErrConflict):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		http.Error(w, err.Error(), http.StatusBadRequest)
	default:
		writeJSON(w, http.StatusOK, op)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

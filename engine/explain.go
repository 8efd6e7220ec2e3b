package engine

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
)

// Explanation is what GET /v1/customers/{id} answers: the customer's
// committed state and recent decisions — why they got an offer, or not.
type Explanation struct {
	CustomerID string         `json:"customer_id"`
	Found      bool           `json:"found"`
	At         int64          `json:"at"` // unix ms the window values and caps are computed at
	Timezone   string         `json:"timezone"`
	Profile    map[string]any `json:"profile"`
	Windows    []WindowValue  `json:"windows"`
	Caps       []CapUse       `json:"caps"`
	Contacts   []ContactView  `json:"contacts"`
	Deferred   []DeferredView `json:"deferred"`
	Decisions  []DecisionView `json:"decisions"`
}

// WindowValue is one aggregate the rules use, at At. NaN (an empty
// window's min, max or avg) and +Inf (since() with no previous event) are
// written as null.
type WindowValue struct {
	Aggregate string   `json:"aggregate"`
	Value     *float64 `json:"value"`
	// Display is the value as a person reads it: since() as a duration.
	Display string `json:"display"`
}

// CapUse is how much of a cap the customer has used in its current period.
type CapUse struct {
	Cap     string `json:"cap"`
	Channel string `json:"channel,omitempty"`
	Used    int    `json:"used"`
	Max     int    `json:"max"`
}

// ContactView is one offer sent to the customer.
type ContactView struct {
	At      int64  `json:"at"`
	Rule    string `json:"rule"`
	Channel string `json:"channel"`
	Kind    string `json:"kind"`
}

// DeferredView is an offer waiting for the end of quiet hours.
type DeferredView struct {
	OfferID   string `json:"offer_id"`
	Rule      string `json:"rule"`
	ReleaseAt int64  `json:"release_at"`
	ExpiresAt int64  `json:"expires_at"`
}

// DecisionView is one recent decision.
type DecisionView struct {
	At      int64  `json:"at"`
	Rule    string `json:"rule"`
	OfferID string `json:"offer_id"`
	EventID string `json:"event_id"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	Channel string `json:"channel,omitempty"`
}

var kindNames = [...]string{"marketing", "service", "opportunity"}

// Explain reads a customer's committed state. It is safe to call while the
// engine runs: it reads Badger, not the workers' caches, so it lags the
// batch in hand by at most one commit.
func (e *Engine) Explain(customerID string) (*Explanation, error) {
	c, ok, err := e.store.Snapshot(customerID)
	if err != nil {
		return nil, err
	}
	now := e.now()
	view := e.view.Load()
	x := &Explanation{CustomerID: customerID, Found: ok, At: now.UnixMilli(), Profile: map[string]any{},
		Windows: []WindowValue{}, Caps: []CapUse{}, Contacts: []ContactView{}, Deferred: []DeferredView{}, Decisions: []DecisionView{}}
	if !ok {
		return x, nil
	}
	x.Profile = c.Profile()
	w := &worker{e: e, locs: map[string]*time.Location{}, now: now}
	loc := w.location(x.Profile)
	x.Timezone = loc.String()
	for i, a := range view.rs.Aggregates() {
		v := c.Value(view.plan, i, now.UnixMilli())
		wv := WindowValue{Aggregate: a.String(), Display: "none"}
		if v == v && v < 1e308 {
			wv.Value = &v
			wv.Display = strconv.FormatFloat(v, 'f', -1, 64)
			if a.Kind == rules.Since {
				wv.Display = (time.Duration(v) * time.Millisecond).String()
			}
		}
		x.Windows = append(x.Windows, wv)
	}
	for _, cp := range e.pol.caps {
		x.Caps = append(x.Caps, CapUse{Cap: cp.reason, Used: c.CountContacts(cp.since(now, loc, e.pol.weekStart), int(kindMarketing), "", ""), Max: cp.max})
	}
	chans := make([]string, 0, len(e.pol.channelCaps))
	for ch := range e.pol.channelCaps {
		chans = append(chans, ch)
	}
	sort.Strings(chans)
	for _, ch := range chans {
		for _, cp := range e.pol.channelCaps[ch] {
			x.Caps = append(x.Caps, CapUse{Cap: cp.reason, Channel: ch, Used: c.CountContacts(cp.since(now, loc, e.pol.weekStart), int(kindMarketing), "", ch), Max: cp.max})
		}
	}
	for _, cp := range e.pol.oppCaps {
		x.Caps = append(x.Caps, CapUse{Cap: cp.reason, Used: c.CountContacts(cp.since(now, loc, e.pol.weekStart), int(kindOpportunity), "", ""), Max: cp.max})
	}
	for _, ct := range c.Contacts() {
		k := "unknown"
		if int(ct.Kind) < len(kindNames) {
			k = kindNames[ct.Kind]
		}
		x.Contacts = append(x.Contacts, ContactView{At: ct.TS, Rule: ct.Rule, Channel: ct.Channel, Kind: k})
	}
	for _, d := range c.Deferred() {
		dv := DeferredView{OfferID: d.ID, ReleaseAt: d.Release, ExpiresAt: d.Expires}
		if o, err := connectors.DecodeOffer(d.Data); err == nil {
			dv.Rule = o.RuleID
		}
		x.Deferred = append(x.Deferred, dv)
	}
	for _, d := range c.Decisions() {
		x.Decisions = append(x.Decisions, DecisionView{At: d.TS, Rule: d.Rule, OfferID: d.OfferID, EventID: d.EventID, Outcome: d.Outcome, Reason: d.Reason, Channel: d.Channel})
	}
	return x, nil
}

func (e *Engine) handleCustomer(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxIDLen {
		http.Error(w, "customer id required", http.StatusBadRequest)
		return
	}
	if !e.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	if e.sc != nil && !e.ownedNow()(id) {
		e.routeCustomer(w, r, id)
		return
	}
	x, err := e.Explain(id)
	if err != nil {
		e.log.Error("explain", "err", err)
		http.Error(w, "cannot read the customer's state", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if !x.Found {
		w.WriteHeader(http.StatusNotFound)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(x)
}

// NotOwned is what GET /v1/customers/{id} answers in cluster mode when
// another instance owns the customer and its address is not known, or the
// partition is being taken over (503, with Retry-After).
type NotOwned struct {
	Error     string `json:"error"`
	Partition int    `json:"partition"`
	Owner     string `json:"owner,omitempty"`
}

// routeCustomer answers for a customer of a partition this instance does
// not hold: a 307 to the owner's advertised address, which serves it from
// its state, or a 503 naming the partition and the owner.
func (e *Engine) routeCustomer(w http.ResponseWriter, r *http.Request, id string) {
	p, owner, addr, err := e.customerOwner(r.Context(), id)
	if err != nil {
		e.log.Warn("explain: cannot read the partition's owner", "partition", p, "err", err)
	}
	if addr != "" && owner != e.sc.instance && r.URL.Query().Get("hop") == "" {
		// hop marks a redirected request, so that two instances that
		// disagree for a moment do not send a client back and forth.
		http.Redirect(w, r, "http://"+addr+"/v1/customers/"+url.PathEscape(id)+"?hop=1", http.StatusTemporaryRedirect)
		return
	}
	msg := "the customer's partition is owned by another instance"
	if owner == "" || owner == e.sc.instance {
		msg = "the customer's partition is being taken over; try again"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(NotOwned{Error: msg, Partition: p, Owner: owner})
}

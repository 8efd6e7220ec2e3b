package engine

import (
	"slices"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// This file is the contact policy in action: for every rule match it
// decides, atomically with the batch's state commit, whether an offer goes
// out, on which channel, or why not.
//
// Order of checks for a marketing match, in the event's priority order:
// the rule's own limits (budget, cooldown, max_per_customer), the
// customer's do-not-disturb, a free slot of max_offers_per_event (else
// outranked), the contact caps, quiet hours (drop, or defer and take the
// slot), channel choice, and last the holdout (which takes the slot but
// sends nothing). Service offers skip do-not-disturb, slots, caps, quiet
// hours and holdout; opportunities skip slots and quiet hours and have
// their own caps.

// budgets is what committed batches used of each budgeted rule, by rule
// index. The batch loop owns it; workers read it during a batch.
type budgets struct {
	day   string  // policy-time-zone date of daily
	total []int64 // offers ever issued
	daily []int64 // offers issued on day
	stale []string
}

// budgetLeft reports whether r may issue one more offer: committed use
// plus this batch's reservations (the worker's own in a parallel batch,
// everyone's in a sequential one) below each limit.
func (w *worker) budgetLeft(r *rules.Rule) bool {
	b := r.Budget
	if b == nil {
		return true
	}
	bu := &w.e.budgets
	res := w.reserved[r.Index]
	if b.Total > 0 && bu.total[r.Index]+res >= b.Total {
		return false
	}
	if b.PerDay > 0 && bu.daily[r.Index]+res >= b.PerDay {
		return false
	}
	return true
}

// location is the customer's time zone: the profile's timezone attribute
// when it names one, else the policy's.
func (w *worker) location(profile map[string]any) *time.Location {
	name, _ := profile["timezone"].(string)
	if name == "" {
		return w.e.pol.loc
	}
	if loc, ok := w.locs[name]; ok {
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = w.e.pol.loc
	}
	w.locs[name] = loc
	return loc
}

// ruleCheck applies the rule's own limits.
func (w *worker) ruleCheck(r *rules.Rule, c *state.Customer) string {
	if !w.budgetLeft(r) {
		return ReasonBudget
	}
	now := w.now
	if r.Cooldown > 0 && c.CountContacts(now.Add(-r.Cooldown).UnixMilli(), -1, r.ID, "") > 0 {
		return ReasonCooldown
	}
	if l := r.MaxPerCustomer; l != nil {
		var n int
		if l.Per > 0 {
			n = c.CountContacts(now.Add(-l.Per).UnixMilli(), -1, r.ID, "")
		} else {
			n = int(c.RuleTotal(r.ID))
		}
		if n >= l.Max {
			return ReasonMaxPerCustomer
		}
	}
	return ""
}

// capCheck applies a list of caps to the customer's contacts of a kind.
func (w *worker) capCheck(caps []capRule, c *state.Customer, kind uint8, channel string, loc *time.Location) string {
	for i := range caps {
		cp := &caps[i]
		if c.CountContacts(cp.since(w.now, loc, w.e.pol.weekStart), int(kind), "", channel) >= cp.max {
			return cp.reason
		}
	}
	return ""
}

// doNotDisturb reports a profile flag or the suppression list.
func (w *worker) doNotDisturb(c *state.Customer) bool {
	if v, _ := c.Profile()["do_not_disturb"].(bool); v {
		return true
	}
	if s := w.e.suppressed.Load(); s != nil {
		_, ok := (*s)[c.ID()]
		return ok
	}
	return false
}

// chooseChannel picks the channel: the rule's eligible channels, less
// those the customer opted out of and those at their channel cap (for
// marketing), in the customer's order of preference.
func (w *worker) chooseChannel(r *rules.Rule, c *state.Customer, marketing bool, loc *time.Location) (string, string) {
	profile := c.Profile()
	left := w.chans[:0]
	capped := false
	for _, ch := range r.Offer.Channels {
		if marketing {
			if inList(profile["opt_out"], ch) {
				continue
			}
			if caps := w.e.pol.channelCaps[ch]; len(caps) > 0 && w.capCheck(caps, c, kindMarketing, ch, loc) != "" {
				capped = true
				continue
			}
		}
		left = append(left, ch)
	}
	w.chans = left
	if len(left) == 0 {
		if capped {
			return "", ReasonCapChannel
		}
		return "", ReasonNoChannel
	}
	if pref, ok := profile["channel_pref"].([]any); ok {
		for _, p := range pref {
			if s, ok := p.(string); ok && slices.Contains(left, s) {
				return s, ""
			}
		}
	}
	return left[0], ""
}

func inList(v any, s string) bool {
	switch l := v.(type) {
	case []any:
		for _, x := range l {
			if x == s {
				return true
			}
		}
	case string:
		return l == s
	}
	return false
}

// pending is one match on its way to a decision.
type pending struct {
	rule      *rules.Rule
	offer     connectors.Offer
	fromEvent bool // decided for an event, not released later
}

// decide turns the event's matches into decisions, offers and the
// customer's contact history. Matches arrive highest priority first.
func (w *worker) decide(it *item, ev *Event, c *state.Customer) error {
	e := w.e
	pol := e.pol
	slots := pol.maxPerEvent
	loc := w.location(c.Profile())
	dnd := w.doNotDisturb(c)
	// Shadow rules first: they change nothing, so they see the customer
	// as the event found them.
	for i := range w.matches {
		if m := &w.matches[i]; m.Rule.Mode == rules.Shadow {
			if err := w.shadow(it, ev, c, m, loc, dnd); err != nil {
				return err
			}
		}
	}
	for i := range w.matches {
		m := &w.matches[i]
		r := m.Rule
		if r.Mode == rules.Shadow {
			continue
		}
		p := w.newPending(ev, m)
		reason := w.ruleCheck(r, c)
		switch r.Kind {
		case rules.Service:
			if reason == "" {
				p.offer.Channel, reason = w.chooseChannel(r, c, false, loc)
			}
		case rules.Opportunity:
			if reason == "" && dnd {
				reason = ReasonDoNotDisturb
			}
			if reason == "" {
				reason = w.capCheck(pol.oppCaps, c, kindOpportunity, "", loc)
			}
			if reason == "" {
				p.offer.Channel = r.Offer.Channels[0]
				if w.holdout(r, c) {
					reason = ReasonHoldout
				}
			}
		default: // marketing
			if reason == "" && dnd {
				reason = ReasonDoNotDisturb
			}
			if reason == "" && slots == 0 {
				reason = ReasonOutranked
			}
			if reason == "" {
				reason = w.capCheck(pol.caps, c, kindMarketing, "", loc)
			}
			if reason == "" && pol.quiet != nil {
				if quiet, until := pol.quiet.quietUntil(w.now, loc); quiet {
					slots--
					if pol.quiet.deferIt && until.UnixMilli() < p.offer.ExpiresAt {
						if err := w.deferOffer(it, c, &p, until.UnixMilli()); err != nil {
							return err
						}
						continue
					}
					reason = ReasonQuietHours
					if pol.quiet.deferIt {
						reason = ReasonExpired // it would expire before quiet hours end
					}
					w.suppress(it, c, &p, reason)
					continue
				}
			}
			if reason == "" {
				p.offer.Channel, reason = w.chooseChannel(r, c, true, loc)
			}
			if reason == "" {
				slots--
				if w.holdout(r, c) {
					reason = ReasonHoldout
				}
			}
		}
		if reason != "" {
			w.suppress(it, c, &p, reason)
			continue
		}
		if err := w.emit(it, c, &p); err != nil {
			return err
		}
	}
	return nil
}

// newPending is the offer a match would make.
func (w *worker) newPending(ev *Event, m *rules.Match) pending {
	r := m.Rule
	now := w.now.UnixMilli()
	return pending{rule: r, fromEvent: true, offer: connectors.Offer{
		ID:          offerID(r.ID, ev.CustomerID, ev.ID),
		RuleID:      r.ID,
		RuleVersion: r.Version,
		CustomerID:  ev.CustomerID,
		Product:     r.Offer.Product,
		Template:    r.Offer.Template,
		Params:      m.Params,
		Priority:    r.Offer.Priority,
		EventID:     ev.ID,
		EventType:   ev.Type,
		EventTS:     ev.TS,
		DecidedAt:   now,
		ExpiresAt:   now + r.Offer.TTL.Milliseconds(),
	}}
}

// shadow records what a shadow rule would have decided, as if it were
// the only rule that matched the event: its own limits, the customer's
// caps, quiet hours, channels and holdout, against the customer's state
// before this event's live offers. It sends nothing and changes no
// counter, cap or budget; the decision carries mode shadow.
func (w *worker) shadow(it *item, ev *Event, c *state.Customer, m *rules.Match, loc *time.Location, dnd bool) error {
	r := m.Rule
	p := w.newPending(ev, m)
	pol := w.e.pol
	reason := w.ruleCheck(r, c)
	marketing := r.Kind == rules.Marketing
	if reason == "" && dnd && r.Kind != rules.Service {
		reason = ReasonDoNotDisturb
	}
	if reason == "" && marketing {
		reason = w.capCheck(pol.caps, c, kindMarketing, "", loc)
	}
	if reason == "" && r.Kind == rules.Opportunity {
		reason = w.capCheck(pol.oppCaps, c, kindOpportunity, "", loc)
	}
	outcome := connectors.Emitted
	if reason == "" && marketing && pol.quiet != nil {
		if quiet, until := pol.quiet.quietUntil(w.now, loc); quiet {
			reason = ReasonQuietHours
			if pol.quiet.deferIt && until.UnixMilli() < p.offer.ExpiresAt {
				outcome = connectors.Deferred
			}
		}
	}
	if reason == "" {
		if r.Kind == rules.Opportunity {
			p.offer.Channel = r.Offer.Channels[0]
		} else {
			p.offer.Channel, reason = w.chooseChannel(r, c, marketing, loc)
		}
	}
	if reason == "" && r.Kind != rules.Service && w.holdout(r, c) {
		reason = ReasonHoldout
	}
	switch {
	case outcome == connectors.Deferred:
	case reason != "":
		outcome = connectors.Suppressed
	}
	return w.recordMode(it, c, &p, outcome, reason, 0, "shadow")
}

func (w *worker) holdout(r *rules.Rule, c *state.Customer) bool {
	f := w.e.pol.holdout
	if r.Holdout != nil {
		f = *r.Holdout
	}
	return inHoldout(c.ID(), w.e.pol.salt, r.ID, f)
}

// emit sends the offer: the offer record, the contact, the budget
// reservation and the decision.
func (w *worker) emit(it *item, c *state.Customer, p *pending) error {
	e := w.e
	r := p.rule
	data, err := w.enc.Encode(nil, &p.offer, e.enc)
	if err != nil {
		return err
	}
	ch := p.offer.Channel
	rec := outRecord{
		Stream:    e.cfg.Streams.Offers.Name,
		Subject:   e.sub.offers + ch + "." + p.offer.CustomerID,
		MsgID:     p.offer.ID,
		DecidedAt: p.offer.DecidedAt,
		Header:    []string{headerCT, e.enc.ContentType(), HeaderRule, r.ID},
		Data:      data,
		eventTS:   p.offer.EventTS,
		tag:       recTag{kind: tagOffer, rule: r, channel: ch},
	}
	// Offers come before the other records of an item.
	it.records = append(it.records, outRecord{})
	copy(it.records[it.offers+1:], it.records[it.offers:])
	it.records[it.offers] = rec
	it.offers++
	c.AddContact(state.Contact{TS: w.now.UnixMilli(), Rule: r.ID, Channel: ch, Kind: uint8(r.Kind), OfferID: p.offer.ID}, e.contactRetention)
	if l := r.MaxPerCustomer; l != nil && l.Per == 0 {
		c.AddRuleTotal(r.ID, 1)
	}
	if r.Budget != nil {
		w.reserved[r.Index]++
	}
	if err := w.expose(c, p, false); err != nil {
		return err
	}
	return w.record(it, c, p, connectors.Emitted, "", 0)
}

func (w *worker) suppress(it *item, c *state.Customer, p *pending, reason string) {
	if reason == ReasonHoldout {
		_ = w.expose(c, p, true) // the control group's baseline for uplift
	}
	_ = w.record(it, c, p, connectors.Suppressed, reason, 0)
}

// deferOffer keeps the offer in the customer's state until quiet hours end.
func (w *worker) deferOffer(it *item, c *state.Customer, p *pending, release int64) error {
	data, err := w.enc.Encode(nil, &p.offer, connectors.Msgpack)
	if err != nil {
		return err
	}
	c.AddDeferred(state.Deferred{ID: p.offer.ID, Release: release, Expires: p.offer.ExpiresAt, Data: data})
	w.minRelease = min(w.minRelease, release)
	return w.record(it, c, p, connectors.Deferred, ReasonQuietHours, release)
}

// record publishes the decision and keeps it in the customer's recent
// decisions.
func (w *worker) record(it *item, c *state.Customer, p *pending, outcome, reason string, release int64) error {
	return w.recordMode(it, c, p, outcome, reason, release, "")
}

// recordMode is record for a live ("") or shadow decision.
func (w *worker) recordMode(it *item, c *state.Customer, p *pending, outcome, reason string, release int64, mode string) error {
	e := w.e
	r := p.rule
	kind := rules.Marketing // a released offer whose rule is gone was marketing
	if r != nil {
		kind = r.Kind
	}
	d := connectors.Decision{
		ID:          p.offer.ID,
		RuleID:      p.offer.RuleID,
		RuleVersion: p.offer.RuleVersion,
		CustomerID:  p.offer.CustomerID,
		Kind:        kind.String(),
		Outcome:     outcome,
		Reason:      reason,
		Channel:     p.offer.Channel,
		Priority:    p.offer.Priority,
		EventID:     p.offer.EventID,
		EventType:   p.offer.EventType,
		EventTS:     p.offer.EventTS,
		DecidedAt:   w.now.UnixMilli(),
		ReleaseAt:   release,
		Mode:        mode,
	}
	data, err := w.enc.EncodeDecision(nil, &d, e.enc)
	if err != nil {
		return err
	}
	stage := "final"
	switch {
	case mode == "shadow":
		stage = "shadow"
	case outcome == connectors.Deferred:
		stage = "deferred"
	}
	it.records = append(it.records, outRecord{
		Stream:    e.cfg.Streams.Decisions.Name,
		Subject:   e.sub.decisions + d.RuleID,
		MsgID:     p.offer.ID + ":" + stage,
		DecidedAt: d.DecidedAt,
		Header:    []string{headerCT, e.enc.ContentType(), HeaderRule, d.RuleID},
		Data:      data,
		eventTS:   d.EventTS,
		tag:       recTag{kind: tagDecision, rule: r, ruleID: d.RuleID, outcome: outcome, reason: reason, channel: d.Channel, fromEvent: p.fromEvent, mode: mode},
	})
	kept := outcome
	if mode != "" {
		kept = mode + ":" + outcome // explain shows shadow decisions beside the live ones
	}
	c.AddDecision(state.Decision{TS: d.DecidedAt, Rule: d.RuleID, OfferID: d.ID, EventID: d.EventID, Outcome: kept, Reason: reason, Channel: d.Channel}, e.pol.keep)
	return nil
}

// release decides a deferred offer whose quiet hours are over: it goes
// out if it has not expired and the rule, the caps and the channels still
// allow it.
func (w *worker) release(it *item, c *state.Customer, d state.Deferred) error {
	e := w.e
	c.RemoveDeferred(d.ID)
	o, err := connectors.DecodeOffer(d.Data)
	if err != nil {
		e.log.Error("dropping an undecodable deferred offer", "offer", d.ID, "err", err)
		return nil
	}
	r := e.ruleByID[o.RuleID]
	p := pending{rule: r, offer: *o}
	p.offer.DecidedAt = w.now.UnixMilli()
	if r == nil || !r.Enabled {
		// The rule was removed or disabled while the offer waited.
		p.rule = nil
		w.suppress(it, c, &p, ReasonRuleRemoved)
		return nil
	}
	loc := w.location(c.Profile())
	reason := ""
	switch {
	case o.ExpiresAt <= w.now.UnixMilli():
		reason = ReasonExpired
	default:
		reason = w.ruleCheck(r, c)
	}
	if reason == "" && w.doNotDisturb(c) {
		reason = ReasonDoNotDisturb
	}
	if reason == "" {
		reason = w.capCheck(e.pol.caps, c, kindMarketing, "", loc)
	}
	if reason == "" && e.pol.quiet != nil {
		if quiet, until := e.pol.quiet.quietUntil(w.now, loc); quiet {
			// Still quiet for this customer (its time zone changed):
			// keep it until these quiet hours end.
			if until.UnixMilli() < o.ExpiresAt {
				c.AddDeferred(state.Deferred{ID: d.ID, Release: until.UnixMilli(), Expires: d.Expires, Data: d.Data})
				return nil
			}
			reason = ReasonExpired
		}
	}
	if reason == "" {
		p.offer.Channel, reason = w.chooseChannel(r, c, true, loc)
	}
	if reason == "" && w.holdout(r, c) {
		reason = ReasonHoldout
	}
	if reason != "" {
		w.suppress(it, c, &p, reason)
		return nil
	}
	return w.emit(it, c, &p)
}

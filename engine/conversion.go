package engine

import (
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Conversions and uplift: a rule that declares conversion: keeps, per
// customer, its emitted offers and its holdout decisions (exposures). A
// later event of the conversion's type is attributed to the most recent
// exposure of the rule within the window whose condition holds, once per
// exposure; the attribution is published as a decision record with
// outcome converted and group treatment or holdout, and counted in
// kairos_conversions_total{rule,group}.

// expose keeps an offer (or a holdout decision) a conversion may later be
// attributed to.
func (w *worker) expose(c *state.Customer, p *pending, holdout bool) error {
	if p.rule == nil || p.rule.Conversion == nil || p.rule.Mode == rules.Shadow {
		return nil
	}
	data, err := w.enc.Encode(nil, &p.offer, connectors.Msgpack)
	if err != nil {
		return err
	}
	c.AddExposure(state.Exposure{TS: w.now.UnixMilli(), Rule: p.rule.ID, OfferID: p.offer.ID, Holdout: holdout, Data: data}, w.e.rs.ConversionHorizon())
	return nil
}

// convert attributes the event to the rules it converts.
func (w *worker) convert(it *item, ev *Event, c *state.Customer) error {
	e := w.e
	list := e.rs.ConversionsFor(ev.Type)
	if len(list) == 0 {
		return nil
	}
	xs := c.Exposures()
	now := w.now.UnixMilli()
	for _, r := range list {
		window := r.Conversion.Within.Milliseconds()
		for i := len(xs) - 1; i >= 0; i-- {
			x := xs[i]
			if now-x.TS > window {
				break
			}
			if x.Rule != r.ID || x.Converted || x.TS > now {
				continue
			}
			o, err := connectors.DecodeOffer(x.Data)
			if err != nil {
				continue
			}
			ok, err := w.eval.Converts(e.hard, r, &w.in, offerMap(o))
			if err != nil {
				w.deadLetter(it, ReasonEval, err.Error(), r)
				break
			}
			if !ok {
				continue
			}
			c.MarkConverted(x.OfferID)
			group := connectors.GroupTreatment
			if x.Holdout {
				group = connectors.GroupHoldout
			}
			p := pending{rule: r, offer: *o}
			p.offer.EventID, p.offer.EventType, p.offer.EventTS = ev.ID, ev.Type, ev.TS
			if err := w.recordConversion(it, c, &p, group); err != nil {
				return err
			}
			break
		}
	}
	return nil
}

// recordConversion publishes the conversion record.
func (w *worker) recordConversion(it *item, c *state.Customer, p *pending, group string) error {
	e := w.e
	d := connectors.Decision{
		ID: p.offer.ID, RuleID: p.offer.RuleID, RuleVersion: p.offer.RuleVersion, CustomerID: p.offer.CustomerID,
		Kind: p.rule.Kind.String(), Outcome: connectors.Converted, Channel: p.offer.Channel, Priority: p.offer.Priority,
		EventID: p.offer.EventID, EventType: p.offer.EventType, EventTS: p.offer.EventTS, DecidedAt: w.now.UnixMilli(), Group: group,
	}
	data, err := w.enc.EncodeDecision(nil, &d, e.enc)
	if err != nil {
		return err
	}
	it.records = append(it.records, outRecord{
		Stream:    e.cfg.Streams.Decisions.Name,
		Subject:   e.sub.decisions + d.RuleID,
		MsgID:     d.ID + ":converted",
		DecidedAt: d.DecidedAt,
		Header:    []string{headerCT, e.enc.ContentType(), HeaderRule, d.RuleID},
		Data:      data,
		tag:       recTag{kind: tagConversion, rule: p.rule, ruleID: d.RuleID, outcome: group},
	})
	c.AddDecision(state.Decision{TS: d.DecidedAt, Rule: d.RuleID, OfferID: d.ID, EventID: d.EventID, Outcome: connectors.Converted, Reason: group, Channel: d.Channel}, e.pol.keep)
	return nil
}

// offerMap is the offer as a conversion condition sees it.
func offerMap(o *connectors.Offer) map[string]any {
	params := o.Params
	if params == nil {
		params = map[string]any{}
	}
	return map[string]any{
		"id": o.ID, "rule_id": o.RuleID, "customer_id": o.CustomerID, "channel": o.Channel, "product": o.Product,
		"template": o.Template, "params": NormalizeAttrs(params), "priority": int64(o.Priority), "event_id": o.EventID,
		"event_type": o.EventType, "decided_at": time.UnixMilli(o.DecidedAt).UTC().Format(time.RFC3339Nano),
	}
}

package engine

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// worker evaluates and decides the events of the customers routed to it.
// Only one goroutine uses a worker at a time: its own during a parallel
// batch, the batch loop's otherwise.
type worker struct {
	e       *Engine
	id      int
	shard   *state.Shard
	eval    *rules.Evaluator
	dec     *eventDecoder
	enc     *connectors.Encoder
	win     customerWindows
	con     customerContacts
	ev      Event
	in      rules.Input
	matches []rules.Match
	now     time.Time
	locs    map[string]*time.Location
	chans   []string
	// reserved counts this batch's offers of budgeted rules, by rule
	// index: the worker's own in a parallel batch, shared in a
	// sequential one.
	reserved []int64
	own      []int64

	items      []*item
	dirty      []*state.Customer
	seenKeys   []string            // batch event ids applied in this batch
	seenCust   []string            // the customer of each of seenKeys
	seenSet    map[string]struct{} // the same, for lookups
	minRelease int64               // earliest release of an offer deferred in this batch
	err        error
}

func newWorker(e *Engine, id int, shard *state.Shard) *worker {
	w := &worker{e: e, id: id, shard: shard, eval: e.rs.NewEvaluator(), dec: newEventDecoder(), enc: connectors.NewEncoder(),
		locs: map[string]*time.Location{}, own: make([]int64, len(e.rs.Rules())), seenSet: map[string]struct{}{}}
	w.reserved = w.own
	return w
}

func (w *worker) reset(now time.Time, shared []int64) {
	w.items = w.items[:0]
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	w.err = nil
	w.now = now
	clear(w.seenKeys)
	w.seenKeys = w.seenKeys[:0]
	clear(w.seenCust)
	w.seenCust = w.seenCust[:0]
	clear(w.seenSet)
	w.minRelease = math.MaxInt64
	clear(w.own)
	w.reserved = w.own
	if shared != nil {
		w.reserved = shared
	}
}

// customerWindows serves one customer's aggregates at one event's time.
type customerWindows struct {
	c    *state.Customer
	plan *state.Plan
	at   int64
}

func (cw *customerWindows) Value(i int) float64 { return cw.c.Value(cw.plan, i, cw.at) }

// customerContacts serves one customer's contact history at decision time.
type customerContacts struct {
	c   *state.Customer
	rs  *rules.RuleSet
	now time.Time
}

func (cc *customerContacts) Contacts(window time.Duration) int {
	return cc.c.CountContacts(cc.now.Add(-window).UnixMilli(), int(kindMarketing), "", "")
}

func (cc *customerContacts) Offers(rule int, window time.Duration) int {
	return cc.c.CountContacts(cc.now.Add(-window).UnixMilli(), -1, cc.rs.Rules()[rule].ID, "")
}

func (w *worker) run() {
	for _, it := range w.items {
		if err := w.process(it); err != nil {
			w.err = err
			return
		}
	}
}

// track remembers a customer this batch changed, once.
func (w *worker) track(c *state.Customer, wasDirty bool) {
	if !wasDirty && c.Dirty() {
		w.dirty = append(w.dirty, c)
	}
}

// process handles one event. An error is an infrastructure failure that
// aborts the batch; problems with the event itself become dead letters.
func (w *worker) process(it *item) error {
	e := w.e
	data := it.data
	if len(data) > e.cfg.Engine.MaxEventBytes {
		w.deadLetter(it, ReasonOversize, fmt.Sprintf("payload of %d bytes exceeds engine.max_event_bytes (%d)", len(data), e.cfg.Engine.MaxEventBytes), nil)
		return nil
	}
	if it.customer == "" {
		w.deadLetter(it, ReasonInvalid, "subject is not "+it.src.prefix+"<type>.<customer_id>", nil)
		return nil
	}
	isJSON := strings.HasPrefix(it.contentType, "application/json")
	ev := &w.ev
	if err := w.dec.Decode(data, isJSON, it.typ, it.customer, ev); err != nil {
		var ee *EventError
		if errors.As(err, &ee) {
			w.deadLetter(it, ee.Reason, ee.Msg, nil)
			return nil
		}
		w.deadLetter(it, ReasonDecode, err.Error(), nil)
		return nil
	}
	if it.src.batch {
		// A batch event applied before (a job run again, a list sent
		// twice) is skipped, also after the stream's duplicate window.
		if _, dup := w.seenSet[ev.ID]; dup {
			it.skipped = true
			return nil
		}
		seen, err := e.store.Seen(ev.ID)
		if err != nil {
			return fmt.Errorf("batch event dedupe: %w", err)
		}
		if seen {
			it.skipped = true
			return nil
		}
		w.seenSet[ev.ID] = struct{}{}
		w.seenKeys = append(w.seenKeys, ev.ID)
		w.seenCust = append(w.seenCust, ev.CustomerID)
	}
	return w.apply(it, ev)
}

// apply applies a decoded, valid event: the customer's windows and
// profile, the rules, the decisions.
func (w *worker) apply(it *item, ev *Event) error {
	e := w.e
	w.now = e.batchNow
	if !it.now.IsZero() {
		w.now = it.now
	}
	c, err := w.shard.Load(ev.CustomerID)
	if err != nil {
		return fmt.Errorf("load customer state: %w", err)
	}
	wasDirty := c.Dirty()
	defer w.track(c, wasDirty)
	switch ev.Type {
	case "profile":
		c.MergeProfile(ev.Attrs)
	case connectors.EventOfferFailed:
		w.releaseFailed(c, ev)
	}
	c.Apply(e.plan, ev.Type, ev.TS, ev.Attrs)
	c.Seen(ev.Type, ev.TS)
	it.evType = ev.Type

	w.win = customerWindows{c: c, plan: e.plan, at: ev.TS}
	w.con = customerContacts{c: c, rs: e.rs, now: w.now}
	w.in = rules.Input{
		Event:    rules.Event{ID: ev.ID, CustomerID: ev.CustomerID, Type: ev.Type, TS: ev.TS, Attrs: ev.Attrs},
		Profile:  c.Profile(),
		Now:      w.now,
		Windows:  &w.win,
		Contacts: &w.con,
	}
	if err := w.convert(it, ev, c); err != nil {
		return fmt.Errorf("conversions: %w", err)
	}
	var errs []*rules.EvalError
	w.matches, errs = w.eval.Evaluate(e.hard, &w.in, w.matches[:0])
	err = w.decide(it, ev, c)
	clear(w.matches)
	if err != nil {
		return fmt.Errorf("decide: %w", err)
	}
	for _, ee := range errs {
		w.deadLetter(it, ReasonEval, ee.Err.Error(), ee.Rule)
	}
	return nil
}

// deadLetter records a dead letter for the item. For decode, invalid and
// oversize the event is terminated; for eval the event was applied and is
// acknowledged, and the dead letter names the failing rule.
func (w *worker) deadLetter(it *item, reason, msg string, rule *rules.Rule) {
	e := w.e
	if reason != ReasonEval {
		it.term = reason
	}
	src := it.src
	if src == nil {
		src = e.rt
	}
	id := "dlq:" + reason + ":" + src.name + ":" + src.incarnation + ":" + strconv.FormatUint(it.seq, 10)
	hdr := []string{HeaderReason, reason, HeaderError, truncate(msg, 1024), HeaderSubject, it.subject, HeaderStreamSeq, strconv.FormatUint(it.seq, 10)}
	if rule != nil {
		id += ":" + rule.ID
		hdr = append(hdr, HeaderRule, rule.ID)
	}
	if it.contentType != "" {
		hdr = append(hdr, headerCT, it.contentType)
	}
	it.records = append(it.records, outRecord{
		Stream:    e.cfg.Streams.DLQ.Name,
		Subject:   e.sub.dlq + reason,
		MsgID:     id,
		DecidedAt: w.now.UnixMilli(),
		Header:    hdr,
		Data:      it.data,
		tag:       recTag{kind: tagDeadLetter, reason: reason, rule: rule},
	})
}

// releaseFailed gives back the contact an offer held when its delivery
// failed (an offer_failed event from a connector), unless the policy keeps
// failed contacts: the customer never got the message, so it must not
// count against the caps.
func (w *worker) releaseFailed(c *state.Customer, ev *Event) {
	if w.e.cfg.Policy.KeepFailedContacts {
		return
	}
	id, _ := ev.Attrs["offer_id"].(string)
	if id == "" || !c.RemoveContact(id) {
		return
	}
	rule, _ := ev.Attrs["rule_id"].(string)
	if r := w.e.ruleByID[rule]; r != nil && r.MaxPerCustomer != nil && r.MaxPerCustomer.Per == 0 {
		c.AddRuleTotal(rule, -1)
	}
}

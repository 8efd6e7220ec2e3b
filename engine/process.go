package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
	"github.com/kairos-engine/kairos/state"
)

// Header names the engine sets on dead letters and offers.
const (
	HeaderReason    = "Kairos-Dlq-Reason"
	HeaderError     = "Kairos-Dlq-Error"
	HeaderSubject   = "Kairos-Subject"
	HeaderStreamSeq = "Kairos-Stream-Seq"
	HeaderRule      = "Kairos-Rule"
	headerCT        = "Content-Type"
)

// inMsg is a delivered event message.
type inMsg struct {
	msg  jetstream.Msg
	seq  uint64
	recv time.Time
}

// item is an event message within a batch.
type item struct {
	inMsg
	typ, customer string
	dup           bool
	term          string // dead-letter reason when the message is terminated
	records       []outRecord
	offers        int // how many of records are offers (they come first)
}

// inlineBatch is the batch size under which one goroutine processes the
// whole batch: handing work to the workers costs more than it saves.
const inlineBatch = 32

// loop collects batches from the consumer and processes them, one at a
// time, until ctx ends.
func (e *Engine) loop(ctx context.Context) error {
	max := e.cfg.Engine.BatchSize
	msgs := make([]inMsg, 0, max)
	items := make([]item, 0, max)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		msgs = msgs[:0]
		if len(e.prevKeys) > 0 {
			idle.Reset(time.Second)
		}
		select {
		case <-ctx.Done():
			idle.Stop()
			return nil
		case <-idle.C:
			// Nothing came for a while: clear the published outbox now
			// rather than with the next batch.
			if err := e.finish(); err != nil {
				return err
			}
			continue
		case m := <-e.in:
			msgs = append(msgs, m)
		}
		idle.Stop()
	drain:
		for len(msgs) < max {
			select {
			case m := <-e.in:
				msgs = append(msgs, m)
			default:
				break drain
			}
		}
		items = items[:0]
		for _, m := range msgs {
			items = append(items, item{inMsg: m})
		}
		if err := e.processWithRetry(ctx, items); err != nil {
			return err
		}
	}
}

// processWithRetry processes a batch until it succeeds. Failures here are
// of the infrastructure (state or NATS), not of the events: the batch is
// retried from the committed state with a growing pause; only a stop ends
// the retries, leaving the batch unacknowledged for redelivery.
func (e *Engine) processWithRetry(ctx context.Context, items []item) error {
	backoff := 100 * time.Millisecond
	for {
		err := e.process(ctx, items)
		if err == nil {
			return nil
		}
		if errors.Is(err, state.ErrBatchTooBig) && len(items) > 1 {
			half := len(items) / 2
			if err := e.processWithRetry(ctx, items[:half]); err != nil {
				return err
			}
			return e.processWithRetry(ctx, items[half:])
		}
		e.log.Error("batch failed; retrying", "events", len(items), "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 10*time.Second)
		for i := range items {
			items[i].records, items[i].term, items[i].offers = nil, "", 0
		}
	}
}

// process applies one batch: evaluate, commit state and outbox atomically,
// publish the outbox, acknowledge.
func (e *Engine) process(ctx context.Context, items []item) error {
	start := time.Now()
	now := e.now()
	nw := len(e.workers)
	for _, w := range e.workers {
		w.reset(now)
	}
	var last uint64
	pl := len(e.sub.eventsPrefix)
	for i := range items {
		it := &items[i]
		if it.seq != 0 && it.seq <= e.applied {
			it.dup = true
			continue
		}
		if it.seq > last {
			last = it.seq
		}
		typ, cust, ok := splitEventSubject(it.msg.Subject(), pl)
		it.typ, it.customer = typ, cust
		if !ok {
			e.workers[0].items = append(e.workers[0].items, it)
			continue
		}
		w := e.workers[shardOf(cust, nw)]
		w.items = append(w.items, it)
	}
	// Evaluate: each worker owns its customers, in stream order.
	live := len(items)
	if live < inlineBatch || nw == 1 {
		for _, w := range e.workers {
			w.run()
		}
	} else {
		var wg sync.WaitGroup
		for _, w := range e.workers[1:] {
			if len(w.items) > 0 {
				wg.Add(1)
				go func() { defer wg.Done(); w.run() }()
			}
		}
		e.workers[0].run()
		wg.Wait()
	}
	for _, w := range e.workers {
		if w.err != nil {
			e.invalidate()
			return w.err
		}
	}
	if err := e.hard.Err(); err != nil {
		// The shutdown deadline cut evaluation short: abandon the batch
		// (it is redelivered) rather than commit its interrupted rules.
		e.invalidate()
		return fmt.Errorf("shutdown timeout: batch abandoned: %w", err)
	}

	// Commit state, outbox and watermark in one transaction.
	b := e.batch
	b.Reset()
	if last > 0 {
		for _, w := range e.workers {
			for _, c := range w.dirty {
				b.Put(c)
			}
		}
		for _, k := range e.prevKeys {
			b.DeleteOutbox(k)
		}
		e.keyBuf = e.keyBuf[:0]
		var keys [][]byte
		n := 0
		for i := range items {
			for j := range items[i].records {
				ks := len(e.keyBuf)
				e.keyBuf = outboxKey(e.keyBuf, last, n)
				n++
				keys = append(keys, e.keyBuf[ks:len(e.keyBuf):len(e.keyBuf)])
				e.recBuf = appendOutRecord(e.recBuf[:0], &items[i].records[j])
				b.AddOutbox(keys[len(keys)-1], e.recBuf)
			}
		}
		b.SetApplied(state.Watermark{Stream: e.eventsStream, StreamCreated: e.streamCreated, Seq: last})
		if err := e.store.Commit(b); err != nil {
			e.invalidate()
			return fmt.Errorf("commit: %w", err)
		}
		e.applied = last
		e.metrics.Applied.Set(float64(last))
		e.prevKeys = append(e.prevKeys[:0], keys...)
		e.crash.reach("after-commit")
	}

	// Publish what the batch decided, then acknowledge.
	if err := e.publish(ctx, items); err != nil {
		return err
	}
	published := time.Now()
	defer e.appliedPub.Store(e.applied)
	e.crash.reach("after-publish")
	for i := range items {
		it := &items[i]
		switch {
		case it.dup:
			e.metrics.Duplicates.Inc()
			_ = it.msg.Ack()
		case it.term != "":
			_ = it.msg.TermWithReason(it.term)
		default:
			_ = it.msg.Ack()
		}
		for j := 0; j < it.offers; j++ {
			e.metrics.ArrivalToOffer.Observe(published.Sub(it.recv).Seconds())
			e.metrics.EventTimeToOffer.Observe(float64(published.UnixMilli()-it.records[j].eventTS) / 1000)
		}
	}
	e.metrics.BatchSize.Observe(float64(len(items)))
	e.metrics.BatchDuration.Observe(time.Since(start).Seconds())
	return nil
}

// publish sends every record of the batch and waits until the streams hold
// them. On failure it publishes again (the ids make that harmless) until
// it succeeds or ctx ends; the outbox keeps the records meanwhile.
func (e *Engine) publish(ctx context.Context, items []item) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := e.publishOnce(items)
		if err == nil {
			return nil
		}
		if attempt == 0 {
			e.metrics.PublishRetries.Inc()
		}
		e.log.Error("publishing the outbox failed; retrying", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func (e *Engine) publishOnce(items []item) error {
	for i := range items {
		for j := range items[i].records {
			if err := e.pub.Publish(items[i].records[j].natsMsg()); err != nil {
				_ = e.pub.Flush(e.hard)
				return err
			}
		}
	}
	if e.pub.Pending() == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(e.hard, 30*time.Second)
	defer cancel()
	return e.pub.Flush(fctx)
}

func (r *outRecord) natsMsg() *nats.Msg {
	m := &nats.Msg{Subject: r.Subject, Data: r.Data, Header: make(nats.Header, len(r.Header)/2+1)}
	m.Header[jetstream.MsgIDHeader] = []string{r.MsgID}
	for i := 0; i+1 < len(r.Header); i += 2 {
		m.Header[r.Header[i]] = append(m.Header[r.Header[i]], r.Header[i+1])
	}
	return m
}

// invalidate drops the batch's customers from the cache after a failed
// batch, so the retry starts from the committed state.
func (e *Engine) invalidate() {
	for _, w := range e.workers {
		ids := make([]string, 0, len(w.dirty))
		for _, c := range w.dirty {
			ids = append(ids, c.ID())
		}
		e.store.Invalidate(ids...)
		w.dirty = w.dirty[:0]
	}
}

// shardOf routes a customer to a worker (FNV-1a of the id).
func shardOf(customer string, n int) int {
	if n == 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(customer); i++ {
		h ^= uint32(customer[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

// offerID is the deterministic id of the offer a rule makes on a
// customer's event: "o-" and the first 12 bytes, in hex, of
// sha256(rule_id NUL customer_id NUL event_id).
func offerID(ruleID, customerID, eventID string) string {
	h := sha256.New()
	h.Write([]byte(ruleID))
	h.Write([]byte{0})
	h.Write([]byte(customerID))
	h.Write([]byte{0})
	h.Write([]byte(eventID))
	var sum [sha256.Size]byte
	return "o-" + hex.EncodeToString(h.Sum(sum[:0])[:12])
}

// worker evaluates the events of the customers routed to it. Only one
// goroutine uses a worker at a time.
type worker struct {
	e       *Engine
	id      int
	shard   *state.Shard
	eval    *rules.Evaluator
	dec     *eventDecoder
	enc     *connectors.Encoder
	win     customerWindows
	ev      Event
	in      rules.Input
	matches []rules.Match
	now     time.Time

	items []*item
	dirty []*state.Customer
	err   error
}

func newWorker(e *Engine, id int, shard *state.Shard) *worker {
	return &worker{e: e, id: id, shard: shard, eval: e.rs.NewEvaluator(), dec: newEventDecoder(), enc: connectors.NewEncoder()}
}

func (w *worker) reset(now time.Time) {
	w.items = w.items[:0]
	clear(w.dirty)
	w.dirty = w.dirty[:0]
	w.err = nil
	w.now = now
}

// customerWindows serves one customer's aggregates at one event's time.
type customerWindows struct {
	c    *state.Customer
	plan *state.Plan
	at   int64
}

func (cw *customerWindows) Value(i int) float64 { return cw.c.Value(cw.plan, i, cw.at) }

func (w *worker) run() {
	for _, it := range w.items {
		if err := w.process(it); err != nil {
			w.err = err
			return
		}
	}
}

// process handles one event. An error is an infrastructure failure that
// aborts the batch; problems with the event itself become dead letters.
func (w *worker) process(it *item) error {
	e := w.e
	data := it.msg.Data()
	if len(data) > e.cfg.Engine.MaxEventBytes {
		w.deadLetter(it, ReasonOversize, fmt.Sprintf("payload of %d bytes exceeds engine.max_event_bytes (%d)", len(data), e.cfg.Engine.MaxEventBytes), "")
		return nil
	}
	if it.customer == "" {
		w.deadLetter(it, ReasonInvalid, "subject is not "+e.sub.eventsPrefix+"<type>.<customer_id>", "")
		return nil
	}
	hdr := it.msg.Headers()
	isJSON := hdr != nil && strings.HasPrefix(hdr.Get(headerCT), "application/json")
	ev := &w.ev
	if err := w.dec.Decode(data, isJSON, it.typ, it.customer, ev); err != nil {
		var ee *EventError
		if errors.As(err, &ee) {
			w.deadLetter(it, ee.Reason, ee.Msg, "")
			return nil
		}
		w.deadLetter(it, ReasonDecode, err.Error(), "")
		return nil
	}
	c, err := w.shard.Load(ev.CustomerID)
	if err != nil {
		return fmt.Errorf("load customer state: %w", err)
	}
	wasDirty := c.Dirty()
	if ev.Type == "profile" {
		c.MergeProfile(ev.Attrs)
	}
	c.Apply(e.plan, ev.Type, ev.TS, ev.Attrs)
	if !wasDirty && c.Dirty() {
		w.dirty = append(w.dirty, c)
	}
	if ctr, ok := e.typeLbl[ev.Type]; ok {
		ctr.Inc()
	} else {
		e.otherEv.Inc()
	}

	w.win = customerWindows{c: c, plan: e.plan, at: ev.TS}
	w.in = rules.Input{
		Event:   rules.Event{ID: ev.ID, CustomerID: ev.CustomerID, Type: ev.Type, TS: ev.TS, Attrs: ev.Attrs},
		Profile: c.Profile(),
		Now:     w.now,
		Windows: &w.win,
	}
	for _, r := range e.rs.For(ev.Type) {
		e.ruleM[r.Index].evals.Inc()
	}
	var errs []*rules.EvalError
	w.matches, errs = w.eval.Evaluate(e.hard, &w.in, w.matches[:0])
	for i := range w.matches {
		if err := w.offer(it, ev, &w.matches[i]); err != nil {
			errs = append(errs, &rules.EvalError{Rule: w.matches[i].Rule, Err: err})
		}
	}
	clear(w.matches)
	for _, ee := range errs {
		e.ruleM[ee.Rule.Index].errors.Inc()
		w.deadLetter(it, ReasonEval, ee.Err.Error(), ee.Rule.ID)
	}
	return nil
}

// offer turns a match into an offer record.
func (w *worker) offer(it *item, ev *Event, m *rules.Match) error {
	e := w.e
	r := m.Rule
	rm := e.ruleM[r.Index]
	rm.matches.Inc()
	ch := r.Offer.Channels[0]
	decided := w.now.UnixMilli()
	o := connectors.Offer{
		ID:          offerID(r.ID, ev.CustomerID, ev.ID),
		RuleID:      r.ID,
		RuleVersion: r.Version,
		CustomerID:  ev.CustomerID,
		Channel:     ch,
		Product:     r.Offer.Product,
		Template:    r.Offer.Template,
		Params:      m.Params,
		Priority:    r.Offer.Priority,
		EventID:     ev.ID,
		EventType:   ev.Type,
		EventTS:     ev.TS,
		DecidedAt:   decided,
		ExpiresAt:   decided + r.Offer.TTL.Milliseconds(),
	}
	data, err := w.enc.Encode(nil, &o, e.enc)
	if err != nil {
		return err
	}
	rec := outRecord{
		Stream:    e.cfg.Streams.Offers.Name,
		Subject:   e.sub.offers + ch + "." + ev.CustomerID,
		MsgID:     o.ID,
		DecidedAt: decided,
		Header:    []string{headerCT, e.enc.ContentType(), HeaderRule, r.ID},
		Data:      data,
		eventTS:   ev.TS,
	}
	// Offers come before dead letters in an item's records.
	it.records = append(it.records, outRecord{})
	copy(it.records[it.offers+1:], it.records[it.offers:])
	it.records[it.offers] = rec
	it.offers++
	rm.offers[ch].Inc()
	return nil
}

// deadLetter records a dead letter for the item. For decode, invalid and
// oversize the event is terminated; for eval the event was applied and is
// acknowledged, and the dead letter names the failing rule.
func (w *worker) deadLetter(it *item, reason, msg, ruleID string) {
	e := w.e
	if reason != ReasonEval {
		it.term = reason
	}
	e.metrics.Invalid.WithLabelValues(reason).Inc()
	id := "dlq:" + reason + ":" + e.eventsStream + ":" + e.incarnation + ":" + strconv.FormatUint(it.seq, 10)
	hdr := []string{HeaderReason, reason, HeaderError, truncate(msg, 1024), HeaderSubject, it.msg.Subject(), HeaderStreamSeq, strconv.FormatUint(it.seq, 10)}
	if ruleID != "" {
		id += ":" + ruleID
		hdr = append(hdr, HeaderRule, ruleID)
	}
	if h := it.msg.Headers(); h != nil && h.Get(headerCT) != "" {
		hdr = append(hdr, headerCT, h.Get(headerCT))
	}
	it.records = append(it.records, outRecord{
		Stream:    e.cfg.Streams.DLQ.Name,
		Subject:   e.sub.dlq + reason,
		MsgID:     id,
		DecidedAt: w.now.UnixMilli(),
		Header:    hdr,
		Data:      it.msg.Data(),
	})
}

// recoverOutbox publishes what a previous run committed but may not have
// published. Records younger than their stream's duplicate window are
// simply published again: the stream drops those it already has. For
// older ones the stream's last message on the subject tells which were
// stored (a subject's messages are stored in publish order).
func (e *Engine) recoverOutbox(ctx context.Context) error {
	var recs []*outRecord
	var keys [][]byte
	err := e.store.Outbox(func(k, v []byte) error {
		r, err := decodeOutRecord(v)
		if err != nil {
			e.log.Error("dropping a corrupt outbox record", "err", err)
		} else {
			recs = append(recs, r)
		}
		keys = append(keys, append([]byte(nil), k...))
		return nil
	})
	if err != nil {
		return fmt.Errorf("read outbox: %w", err)
	}
	if len(keys) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	skip := map[string]bool{} // msg ids already stored
	last := map[string]string{}
	for i := len(recs) - 1; i >= 0; i-- {
		r := recs[i]
		dup := e.cfg.Streams.Offers.DuplicateWindow
		if r.Stream == e.cfg.Streams.DLQ.Name {
			dup = e.cfg.Streams.DLQ.DuplicateWindow
		}
		if now-r.DecidedAt < mustDuration(dup).Milliseconds()*9/10 {
			continue
		}
		if _, seen := last[r.Subject]; !seen {
			last[r.Subject] = ""
			if m, err := e.js.Stream(ctx, r.Stream); err == nil {
				if raw, err := m.GetLastMsgForSubject(ctx, r.Subject); err == nil {
					last[r.Subject] = raw.Header.Get(jetstream.MsgIDHeader)
				}
			}
		}
	}
	for subj, id := range last {
		stored := false
		for i := len(recs) - 1; i >= 0; i-- {
			if recs[i].Subject != subj {
				continue
			}
			if recs[i].MsgID == id {
				stored = true
			}
			if stored {
				skip[recs[i].MsgID] = true
			}
		}
	}
	n := 0
	for _, r := range recs {
		if skip[r.MsgID] {
			continue
		}
		if err := e.pub.Publish(r.natsMsg()); err != nil {
			return fmt.Errorf("recover outbox: %w", err)
		}
		n++
	}
	if err := e.pub.Flush(ctx); err != nil {
		return fmt.Errorf("recover outbox: %w", err)
	}
	b := e.store.NewBatch()
	for _, k := range keys {
		b.DeleteOutbox(k)
	}
	if err := e.store.Commit(b); err != nil {
		return fmt.Errorf("recover outbox: %w", err)
	}
	e.log.Info("recovered the outbox", "records", len(recs), "published", n, "already_stored", len(recs)-n)
	return nil
}

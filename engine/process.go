package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/kairos-engine/kairos/connectors"
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
	src  *source
	gen  uint32 // the generation of src's consumer that delivered it
	gap  bool   // a delivery before it was lost (lostDelivery)
}

// item is an event message within a batch.
type item struct {
	inMsg
	subject       string
	data          []byte
	contentType   string
	now           time.Time // the decision clock of this event; zero is the batch's
	typ, customer string
	dup           bool
	worker        int    // the worker that owns the customer
	evType        string // the type of the decoded event, once applied
	skipped       bool   // a batch event already applied: acknowledged, nothing else
	dropped       bool   // its partition went to another instance: not acknowledged, nothing else
	term          string // dead-letter reason when the message is terminated
	records       []outRecord
	offers        int // how many of records are offers (they come first)
}

// part is the item's partition in cluster mode: its source's, or -1 when
// it has none (a released offer) or in single-instance mode.
func (it *item) part() int {
	if it.src == nil {
		return -1
	}
	return it.src.part
}

// inlineBatch is the batch size under which one goroutine processes the
// whole batch: handing work to the workers costs more than it saves.
const inlineBatch = 32

// loop collects batches from the consumer and processes them, one at a
// time, until ctx ends. Between batches it releases deferred offers whose
// quiet hours are over and reloads the suppression list.
func (e *Engine) loop(ctx context.Context) error {
	max := e.cfg.Engine.BatchSize
	msgs := make([]inMsg, 0, max)
	items := make([]item, 0, max)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	tick := time.NewTicker(mustDuration(e.cfg.Policy.ReleaseInterval))
	defer tick.Stop()
	// Batch events are taken at most batch.consume_rate a second.
	lim := rate.NewLimiter(rate.Limit(e.cfg.Batch.ConsumeRate), e.cfg.Batch.MaxPerBatch)
	tokenWait := time.Duration(float64(time.Second) / e.cfg.Batch.ConsumeRate)
	// Whatever way the loop ends, the batch being published finishes
	// first (or fails with the stop, and stays in the outbox).
	defer func() { _ = e.awaitPublished() }()
	for {
		msgs = msgs[:0]
		if len(e.prevKeys) > 0 {
			idle.Reset(time.Second)
		}
		// The batch being published, if any: its end is an event of the
		// loop like a message, so that the next batch may be taken and
		// committed meanwhile (publish.go).
		var pubDone <-chan struct{}
		if e.inflight != nil {
			pubDone = e.inflight.done
		}
		btIn := e.bt.in
		var throttled <-chan time.Time
		if lim.Tokens() < 1 {
			btIn = nil
			throttled = time.After(tokenWait)
		}
		select {
		case <-throttled:
			continue
		case <-ctx.Done():
			idle.Stop()
			return nil
		case <-pubDone:
			if err := e.published(); err != nil {
				if ctx.Err() != nil {
					return nil // the stop cut it short
				}
				return err
			}
			continue
		case <-idle.C:
			// Nothing came for a while: clear the published outbox now
			// rather than with the next batch.
			if err := e.finish(); err != nil {
				return err
			}
			continue
		case sw := <-e.swapCh:
			sw.done <- e.swapRules(sw.rs)
			continue
		case ch, ok := <-e.clusterChanges():
			e.handleChange(ctx, ch, ok)
			continue
		case <-tick.C:
			e.realignSources(ctx)
			e.reloadSuppression()
			if err := e.releaseWithRetry(ctx); err != nil {
				return err
			}
			continue
		case m := <-e.rt.in:
			msgs = append(msgs, m)
		case m := <-btIn:
			lim.Allow()
			msgs = append(msgs, m)
		}
		idle.Stop()
		// Real-time events first, then batch events up to their share,
		// so a large batch job never delays real-time offers by more than
		// a small batch's work.
	drain:
		for len(msgs) < max {
			select {
			case m := <-e.rt.in:
				msgs = append(msgs, m)
			default:
				break drain
			}
		}
		nb := 0
		for _, m := range msgs {
			if m.src.batch {
				nb++
			}
		}
	drainBatch:
		for len(msgs) < max && nb < e.cfg.Batch.MaxPerBatch && lim.Tokens() >= 1 {
			select {
			case m := <-e.bt.in:
				lim.Allow()
				msgs = append(msgs, m)
				nb++
			default:
				break drainBatch
			}
		}
		// A new rule set waiting is swapped in before this batch.
		select {
		case sw := <-e.swapCh:
			sw.done <- e.swapRules(sw.rs)
		default:
		}
		// Offers whose quiet hours ended go out before the events that
		// arrive at the same clock, on every run alike.
		if e.nextRelease <= e.now().UnixMilli() {
			if err := e.releaseWithRetry(ctx); err != nil {
				return err
			}
		}
		items = items[:0]
		for _, m := range msgs {
			it := item{inMsg: m, subject: m.msg.Subject(), data: m.msg.Data()}
			if h := m.msg.Headers(); h != nil {
				it.contentType = h.Get(headerCT)
			}
			items = append(items, it)
		}
		if err := e.processWithRetry(ctx, items); err != nil {
			return err
		}
		e.realignSources(ctx)
	}
}

// processWithRetry processes a batch until it succeeds. Failures here are
// of the infrastructure (state or NATS), not of the events: the batch is
// retried from the committed state with a growing pause; only a stop ends
// the retries, leaving the batch unacknowledged for redelivery.
func (e *Engine) processWithRetry(ctx context.Context, items []item) error {
	backoff := 100 * time.Millisecond
	for {
		err := e.process(ctx, items, false)
		if err == nil {
			return nil
		}
		if errors.Is(err, errRetryNow) {
			resetItems(items)
			continue
		}
		if errors.Is(err, errFatal) {
			return err
		}
		if errors.Is(err, state.ErrBatchTooBig) && len(items) > 1 {
			half := len(items) / 2
			if err := e.processWithRetry(ctx, items[:half]); err != nil {
				return err
			}
			return e.processWithRetry(ctx, items[half:])
		}
		e.log.Error("batch failed; retrying", "events", len(items), "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 10*time.Second)
		resetItems(items)
	}
}

func resetItems(items []item) {
	for i := range items {
		items[i].records, items[i].term, items[i].offers, items[i].evType, items[i].skipped = nil, "", 0, "", false
	}
}

// beginBatch readies the workers for a batch at the engine's clock; a
// sequential batch shares one budget reservation among them.
func (e *Engine) beginBatch(sequential bool) {
	e.batchNow = e.now()
	e.sequential = sequential
	e.rollBudgetDay(e.batchNow)
	var shared []int64
	if sequential {
		clear(e.sharedReserved)
		shared = e.sharedReserved
	}
	for _, w := range e.workers {
		w.reset(e.batchNow, shared)
	}
}

// process applies one batch: evaluate and decide, commit state, outbox,
// budgets and watermark atomically, publish the outbox, acknowledge.
//
// A batch runs its customers on the workers in parallel. Budgets are the
// one thing customers share: each worker reserves against the budgets
// left at the start of the batch, and if together they reach a rule's
// limit, the batch is run again sequentially in stream order, so that the
// last units of a budget go to the earliest events and every later match
// sees the budget spent, deterministically.
func (e *Engine) process(ctx context.Context, items []item, sequential bool) error {
	start := time.Now()
	e.beginBatch(sequential)
	nw := len(e.workers)
	e.resetSources()
	for i := range items {
		it := &items[i]
		if it.src == nil {
			it.src = e.rt
		}
		if it.src.gone || (it.msg != nil && it.gen != it.src.gen) {
			// Its partition went to another instance, or its consumer
			// is made again: leave it unacknowledged.
			it.dropped = true
			continue
		}
		if it.gap {
			e.lostDelivery(it.src)
			it.dropped = true
			continue
		}
		if it.seq != 0 && it.seq <= it.src.applied {
			it.dup = true
			continue
		}
		if s := it.src; it.seq > s.pending {
			if !s.inBatch {
				s.inBatch = true
				e.srcs = append(e.srcs, s)
			}
			s.pending = it.seq
		}
		typ, cust, ok := splitEventSubject(it.subject, len(it.src.prefix))
		it.typ, it.customer = typ, cust
		it.worker = 0
		if ok {
			it.worker = shardOf(cust, nw)
		}
		if !sequential {
			w := e.workers[it.worker]
			w.items = append(w.items, it)
		}
	}
	switch {
	case sequential:
		for i := range items {
			// Not the dropped ones either, as the workers' path: their
			// partition went to another instance, and a record of it
			// would make every commit of the batch fail (no mark).
			if it := &items[i]; !it.dup && !it.dropped {
				if err := e.workers[it.worker].process(it); err != nil {
					e.invalidate()
					return err
				}
			}
		}
	case len(items) < inlineBatch || nw == 1:
		for _, w := range e.workers {
			w.run()
		}
	default:
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
	if !sequential && e.budgetReached() {
		e.invalidate()
		resetItems(items)
		return e.process(ctx, items, true)
	}
	var keys [][]byte
	if len(e.srcs) > 0 {
		if err := e.commit(items, e.srcs); err != nil {
			return err
		}
		keys = e.keys
		e.crash.reach("after-commit")
	}
	// Publish what the batch decided, then acknowledge (publish.go).
	return e.handOff(ctx, e.newPubJob(items, keys, start))
}

// errFatal marks an error the engine cannot recover from without a
// restart.
var errFatal = errors.New("fatal")

// resetSources forgets the sources a batch (or an attempt of it) moved.
func (e *Engine) resetSources() {
	for _, s := range e.srcs {
		s.pending, s.inBatch = 0, false
	}
	e.srcs = e.srcs[:0]
}

// addOutboxPage adds to b the page of the batch's records first to n-1,
// whose body is e.pageBuf, and empties the body. It returns keys with the
// page's key, which stays valid until the next commit.
func (e *Engine) addOutboxPage(b *state.Batch, keys [][]byte, seq uint64, first, n int) [][]byte {
	at := len(e.keyBuf)
	e.keyBuf = outboxKey(e.keyBuf, seq, e.outboxSeq+first)
	key := e.keyBuf[at:len(e.keyBuf):len(e.keyBuf)]
	e.recBuf = appendOutPage(e.recBuf[:0], n-first, e.pageBuf)
	b.AddOutbox(key, e.recBuf)
	e.pageBuf = e.pageBuf[:0]
	return append(keys, key)
}

// commit writes, in one transaction, the customers the batch changed, its
// outbox records, the budgets it used, the batch event ids it applied and
// the watermarks of srcs, which move to their pending sequences; and
// deletes the previous batch's published outbox records. In cluster mode
// the changelog gets it all first (commitChangelog).
func (e *Engine) commit(items []item, srcs []*source) error {
	b := e.batch
	b.Reset()
	for _, wk := range e.workers {
		for _, c := range wk.dirty {
			b.Put(c)
		}
	}
	for _, k := range e.prevKeys {
		b.DeleteOutbox(k)
	}
	seq := e.rt.applied
	if e.rt.pending > seq {
		seq = e.rt.pending
	}
	// The batch's records go in outbox pages (outbox.go): one, unless
	// they exceed maxPageBody.
	keys := e.keys[:0]
	e.keyBuf, e.pageBuf = e.keyBuf[:0], e.pageBuf[:0]
	n, first := 0, 0
	for i := range items {
		if e.sink != nil || e.sc != nil {
			break // a simulation keeps no outbox; in cluster mode the marks are the outbox
		}
		for j := range items[i].records {
			e.recBuf = appendOutRecord(e.recBuf[:0], &items[i].records[j])
			e.pageBuf = appendPageRecord(e.pageBuf, e.recBuf)
			n++
			if len(e.pageBuf) >= maxPageBody {
				keys = e.addOutboxPage(b, keys, seq, first, n)
				first = n
			}
		}
	}
	if n > first {
		keys = e.addOutboxPage(b, keys, seq, first, n)
	}
	used := e.budgetUse(b)
	ttl := mustDuration(e.cfg.Batch.SeenTTL)
	for _, wk := range e.workers {
		for _, k := range wk.seenKeys {
			b.MarkSeen(k, ttl)
		}
	}
	for _, s := range srcs {
		switch {
		case e.sc != nil:
			// The partitions' watermarks are in the changelog marks.
		case s == e.rt:
			b.SetApplied(s.watermark(s.pending))
		default:
			b.SetWatermark(s.name, s.watermark(s.pending))
		}
	}
	if e.sc != nil {
		if err := e.commitChangelog(e.hard, b, items, srcs, used); err != nil {
			e.invalidate()
			return err
		}
		e.crash.reach("after-changelog")
	}
	if err := e.store.Commit(b); err != nil {
		e.invalidate()
		if e.sc != nil {
			// The changelog holds the batch but this instance's state
			// does not: only a restart, which loads the partitions from
			// the changelog, puts them together again.
			return fmt.Errorf("%w: local commit after the changelog commit: %w", errFatal, err)
		}
		return fmt.Errorf("commit: %w", err)
	}
	e.keys = keys
	e.outboxSeq += n
	for _, s := range srcs {
		s.applied = s.pending
		if s == e.rt {
			e.metrics.Applied.Set(float64(s.applied))
		}
	}
	e.applyBudgetUse(used)
	// Deleted by this commit; the batch's own keys join them once it is
	// published (awaitPublished).
	e.prevKeys = e.prevKeys[:0]
	for _, wk := range e.workers {
		e.noteRelease(wk.minRelease)
	}
	e.count(items)
	if e.sink != nil {
		for i := range items {
			e.sink(items[i].records)
		}
	}
	return nil
}

// count updates the metrics of a committed batch. Counting happens only
// here, so a batch evaluated twice (a retry, a sequential rerun) counts once.
func (e *Engine) count(items []item) {
	m := e.metrics
	committed := time.Now()
	if e.typeCount == nil {
		e.typeCount = map[string]int{}
	}
	clear(e.typeCount)
	for i := range items {
		it := &items[i]
		if it.evType != "" {
			e.typeCount[it.evType]++
		}
		for j := range it.records {
			t := &it.records[j].tag
			switch t.kind {
			case tagOffer:
				e.ruleM[t.rule.Index].offer(t.channel)
			case tagDecision:
				mode := t.mode
				if mode == "" {
					mode = "live"
				}
				m.Decisions.WithLabelValues(t.outcome, mode).Inc()
				if t.fromEvent && !it.recv.IsZero() {
					m.ArrivalToDecision.Observe(committed.Sub(it.recv).Seconds())
					m.EventTimeToDecision.Observe(float64(committed.UnixMilli()-it.records[j].eventTS) / 1000)
				}
				if t.fromEvent && t.rule != nil {
					e.ruleM[t.rule.Index].matches.Inc()
				}
				switch t.outcome {
				case "suppressed":
					m.Suppressed.WithLabelValues(t.ruleID, t.reason, mode).Inc()
				case "deferred":
					m.Deferred.Inc()
				}
			case tagConversion:
				m.Conversions.WithLabelValues(t.ruleID, t.outcome).Inc()
				m.Decisions.WithLabelValues(connectors.Converted, "live").Inc()
			case tagDeadLetter:
				m.Invalid.WithLabelValues(t.reason).Inc()
				if t.rule != nil {
					e.ruleM[t.rule.Index].errors.Inc()
				}
			}
		}
	}
	// By type once per batch, not per event; the rules' evaluations too
	// (evalTally): with thousands of rules, counting per event would cost
	// more than evaluating them.
	for t, n := range e.typeCount {
		if ctr, ok := e.typeLbl[t]; ok {
			ctr.Add(float64(n))
		} else {
			e.otherEv.Add(float64(n))
		}
	}
	e.metrics.evals.add(e.typeCount, committed)
}

// releaseWithRetry releases due deferred offers; like an event batch it
// retries infrastructure failures until it succeeds or the engine stops.
func (e *Engine) releaseWithRetry(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := e.release(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, errRetryNow) {
			continue
		}
		if errors.Is(err, errFatal) {
			return err
		}
		e.log.Error("releasing deferred offers failed; retrying", "err", err, "retry_in", backoff)
		if !sleepCtx(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// release decides every deferred offer whose quiet hours are over, in
// sequential batches of its own, before any further event is processed.
func (e *Engine) release(ctx context.Context) error {
	for {
		more, err := e.releaseBatch(ctx)
		if err != nil || !more {
			return err
		}
	}
}

// releaseBatch releases up to a batch of due offers. A customer's due
// offers are released highest priority first (ties by rule id), as if
// they had come together.
func (e *Engine) releaseBatch(ctx context.Context) (more bool, err error) {
	now := e.now().UnixMilli()
	due, err := e.store.DueDeferredOf(now, e.cfg.Engine.BatchSize, e.ownsFunc())
	if err != nil {
		return false, err
	}
	if len(due) == 0 {
		return false, e.peekRelease()
	}
	e.beginBatch(true)
	var items []item
	seen := map[string]bool{}
	for _, d := range due {
		if seen[d.Customer] {
			continue
		}
		seen[d.Customer] = true
		items = append(items, item{customer: d.Customer})
		it := &items[len(items)-1]
		w := e.workers[shardOf(d.Customer, len(e.workers))]
		c, err := w.shard.Load(d.Customer)
		if err != nil {
			e.invalidate()
			return false, fmt.Errorf("load customer state: %w", err)
		}
		wasDirty := c.Dirty()
		var ready []state.Deferred
		var prio []int
		var rule []string
		for _, df := range c.Deferred() {
			if df.Release <= now {
				ready = append(ready, df)
				o, _ := connectors.DecodeOffer(df.Data)
				if o == nil {
					o = &connectors.Offer{}
				}
				prio, rule = append(prio, o.Priority), append(rule, o.RuleID)
			}
		}
		order := make([]int, len(ready))
		for i := range order {
			order[i] = i
		}
		sort.SliceStable(order, func(a, b int) bool {
			if prio[order[a]] != prio[order[b]] {
				return prio[order[a]] > prio[order[b]]
			}
			return rule[order[a]] < rule[order[b]]
		})
		for _, k := range order {
			if err := w.release(it, c, ready[k]); err != nil {
				e.invalidate()
				return false, err
			}
		}
		w.track(c, wasDirty)
	}
	if err := e.commit(items, nil); err != nil {
		return false, err
	}
	if err := e.publish(ctx, items); err != nil {
		return false, err
	}
	return true, nil
}

// noteRelease remembers the earliest release time of a deferred offer.
func (e *Engine) noteRelease(at int64) {
	if at < e.nextRelease {
		e.nextRelease = at
	}
}

// peekRelease finds the earliest release time still to come.
func (e *Engine) peekRelease() error {
	next, err := e.store.DueDeferredOf(math.MaxInt64, 1, e.ownsFunc())
	if err != nil {
		return err
	}
	e.nextRelease = math.MaxInt64
	if len(next) > 0 {
		e.nextRelease = next[0].Release
	}
	return nil
}

// publish sends every record of the batch and waits until the streams hold
// them. On failure it publishes again (the ids make that harmless) until
// it succeeds or ctx ends; the outbox keeps the records meanwhile.
func (e *Engine) publish(ctx context.Context, items []item) error {
	if e.sink != nil {
		return nil // a simulation publishes nothing
	}
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
		if !sleepCtx(ctx, backoff) {
			return ctx.Err()
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

// sleepCtx waits d, or until ctx ends: it reports whether the whole wait
// passed. For the retry loops' backoff.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

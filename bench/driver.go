package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"
)

// ringBits sizes the table of scheduled publish times: 2^22 events, 40 s
// of traffic at 100,000 events/s. An offer whose event is older than that
// when it arrives is counted as unmatched instead of measured.
const ringBits = 22

// subjects are the subjects and stream names of one side of a run: the
// engine's (prefix kairos) or the baseline's (prefix kbench).
type subjects struct {
	prefix        string
	eventsStream  string
	offersStream  string
	durable       string // the consumer whose lag is sampled
	offersSubject string // filter of the offers consumer
	// partitioned says the engines run in cluster mode: the events are
	// consumed by one consumer per partition, <durable>-p<N>.
	partitioned bool
}

// driver publishes one workload to one side (engine or baseline) and
// measures what comes back. A driver serves the runs of one point side;
// its generator and sequence numbers continue from run to run, so event
// ids stay unique for the stream's duplicate window.
type driver struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	sub   subjects
	gen   *Generator
	runID string

	sched  [1 << ringBits]atomic.Int64 // scheduled publish time (unix ns) by seq
	pubSeq atomic.Uint64               // the last sequence number published
	dec    *msgpack.Decoder            // offers, on the consumer's goroutine
	rd     bytes.Reader
	seen   []uint64 // bitset of customers that got an event

	pubErrors atomic.Int64
	lastErr   atomic.Value // string

	// The window of event sequence numbers whose offers are measured, and
	// the recorder they go to.
	mu       sync.Mutex
	lo, hi   uint64 // [lo, hi); hi 0 means open
	rec      *Recorder
	measured atomic.Int64 // offers recorded in the window
	offers   atomic.Int64 // every offer of this run id
	other    atomic.Int64 // offers not of this run, or too old to match
	received atomic.Int64 // every offer the consumer received
	// fingerprint is the sum of offerHash over the offers of this run id:
	// the same for the same set of offers (and their duplicates), in any
	// order.
	fingerprint atomic.Uint64
	lastOff     atomic.Uint64

	cc jetstream.ConsumeContext
}

func newDriver(nc *nats.Conn, sub subjects, w Workload, inFlight int) (*driver, error) {
	d := &driver{nc: nc, sub: sub, runID: w.RunID}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(inFlight),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			d.pubErrors.Add(1)
			d.lastErr.Store(err.Error())
		}),
	)
	if err != nil {
		return nil, err
	}
	d.js = js
	d.gen = NewGenerator(w)
	d.seen = make([]uint64, (w.Customers+63)/64)
	return d, nil
}

// startOffers starts the ordered consumer on the offers stream, from the
// messages stored after now.
func (d *driver) startOffers(ctx context.Context) error {
	cons, err := d.js.OrderedConsumer(ctx, d.sub.offersStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{d.sub.offersSubject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("offers consumer on %s: %w", d.sub.offersStream, err)
	}
	d.cc, err = cons.Consume(d.onOffer)
	return err
}

func (d *driver) stop() {
	if d.cc != nil {
		d.cc.Stop()
	}
}

// onOffer measures one offer: now minus the scheduled publish time of the
// event it names.
func (d *driver) onOffer(m jetstream.Msg) {
	now := time.Now().UnixNano()
	d.received.Add(1)
	if md, err := m.Metadata(); err == nil {
		d.lastOff.Store(md.Sequence.Stream)
	}
	id, rule, err := d.offerIDs(m.Data())
	if err != nil || !strings.HasPrefix(id, d.runID) || len(id) <= len(d.runID) || id[len(d.runID)] != '-' {
		d.other.Add(1)
		return
	}
	seq, ok := SeqOf(id)
	if !ok {
		d.other.Add(1)
		return
	}
	d.offers.Add(1)
	d.fingerprint.Add(offerHash(seq, rule))
	// Under the lock, so that a run's latency count and its offer count
	// are read together (recorded).
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rec == nil || seq < d.lo || (d.hi != 0 && seq >= d.hi) {
		return
	}
	at := d.sched[seq&(1<<ringBits-1)].Load()
	if at == 0 || d.pubSeq.Load()-seq >= 1<<ringBits {
		d.other.Add(1)
		return
	}
	d.rec.Record(time.Duration(now - at))
	d.measured.Add(1)
}

// recorded returns rec's latencies and the offers recorded so far, read
// together: an offer being recorded meanwhile is in both or in neither.
func (d *driver) recorded(rec *Recorder) (Percentiles, int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return rec.Total(), d.measured.Load()
}

// measure sets the window of sequence numbers whose offers rec records.
// It returns the offers recorded until then, read at the switch, so that
// an offer of the previous window is not counted in the new one.
func (d *driver) measure(lo, hi uint64, rec *Recorder) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lo, d.hi, d.rec = lo, hi, rec
	return d.measured.Load()
}

// publish sends events at rate from start until end (open loop: event i is
// due at start + i/rate whatever happened to earlier ones) and returns the
// sequence number after the last one. The scheduled time, not the moment
// the publish call returned, is what latency is measured from, so a
// publisher held back by a full in-flight window shows as latency instead
// of hiding it (no coordinated omission). late, when not nil, records how
// late each event was sent against its schedule: the part of its latency
// that is the load generator's own.
func (d *driver) publish(ctx context.Context, rate float64, start, end time.Time, late *Recorder) (uint64, error) {
	interval := float64(time.Second) / rate
	total := int64(float64(end.Sub(start)) / interval)
	var i int64
	msg := func(ev *Event) (*nats.Msg, error) {
		data, err := msgpack.Marshal(ev)
		if err != nil {
			return nil, err
		}
		m := nats.NewMsg(ev.Subject(d.sub.prefix))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		return m, nil
	}
	if err := pauseUntil(ctx, start); err != nil {
		return d.gen.Seq() + 1, err
	}
	for i < total {
		if err := ctx.Err(); err != nil {
			return d.gen.Seq() + 1, err
		}
		due := min(total, int64(float64(time.Since(start))/interval)+1)
		for ; i < due; i++ {
			at := start.Add(time.Duration(float64(i) * interval))
			ev := d.gen.Next(at)
			seq := d.gen.Seq()
			d.sched[seq&(1<<ringBits-1)].Store(at.UnixNano())
			d.pubSeq.Store(seq)
			c := customerIndex(ev.CustomerID)
			if c >= 0 && c/64 < len(d.seen) {
				d.seen[c/64] |= 1 << (c % 64)
			}
			m, err := msg(&ev)
			if err != nil {
				return seq + 1, err
			}
			if late != nil {
				late.Record(time.Since(at))
			}
			if err := d.publishAsync(ctx, m); err != nil {
				return seq + 1, err
			}
		}
		if i < total {
			next := start.Add(time.Duration(float64(i) * interval))
			if err := pauseUntil(ctx, next); err != nil {
				return d.gen.Seq() + 1, err
			}
		}
	}
	return d.gen.Seq() + 1, nil
}

// pauseUntil waits until t or ctx ends (its error then).
//
// A Go timer wakes the publisher. During a collection's mark phase the
// runtime's idle-priority mark workers take every idle CPU, and they give
// way to runnable goroutines and network input but not to expired timers
// (golang/go#37116, #44163), so a wait can end late. In an execution trace
// of the in-process bench (engine, nats-server and publisher in one heap)
// at 1,000 events/s, two 1 ms waits took 18 and 23 ms at the start of mark
// phases, and the events due meanwhile went out late. RunResult.SendLate
// measures this. A nanosleep instead of the timer removed those delays but
// cost the engine 10-25% of its throughput at 20,000 events/s (a sleeping
// thread hands its P over), so the timer stays: in the default child mode
// the bench process's heap is small, and its publisher was at most 1.2 ms
// late at p99 at 1,000 events/s.
func pauseUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// publishAsync publishes m, waiting while the in-flight window is full.
func (d *driver) publishAsync(ctx context.Context, m *nats.Msg) error {
	for {
		_, err := d.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Second))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			return fmt.Errorf("publish %s: %w", m.Subject, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// waitPublished waits until every async publish is acknowledged.
func (d *driver) waitPublished(ctx context.Context) error {
	select {
	case <-d.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// preload publishes a profile event for each of the first n customers as
// fast as the in-flight window allows.
func (d *driver) preload(ctx context.Context, n int, now time.Time) error {
	for i := range n {
		ev := d.gen.ProfileEvent(i, now)
		data, err := msgpack.Marshal(&ev)
		if err != nil {
			return err
		}
		m := nats.NewMsg(ev.Subject(d.sub.prefix))
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		if err := d.publishAsync(ctx, m); err != nil {
			return err
		}
		if i/64 < len(d.seen) {
			d.seen[i/64] |= 1 << (i % 64)
		}
	}
	return d.waitPublished(ctx)
}

// markProfiled counts customers 0…n-1 as having state: their profiles
// were imported.
func (d *driver) markProfiled(n int) {
	for i := 0; i < n && i/64 < len(d.seen); i++ {
		d.seen[i/64] |= 1 << (i % 64)
	}
}

// customersSeen is the number of distinct customers that got an event or
// a profile.
func (d *driver) customersSeen() int {
	n := 0
	for _, w := range d.seen {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// customerIndex reads the index back from CustomerID's "C%07d".
func customerIndex(id string) int {
	if len(id) < 2 || id[0] != 'C' {
		return -1
	}
	n := 0
	for _, c := range id[1:] {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// consumerState reads a side's backlog (messages not yet delivered plus
// delivered and not yet acknowledged) and a count that grows by one with
// each event fully processed: the ack floor of the engine's consumer, or in
// cluster mode the events stored minus the backlog of the partition
// consumers.
func consumerState(ctx context.Context, js jetstream.JetStream, sub subjects) (lag int64, done uint64, err error) {
	if sub.partitioned {
		return partitionedState(ctx, js, sub.eventsStream, sub.durable)
	}
	return lagOf(ctx, js, sub.eventsStream, sub.durable)
}

// lagOf reads the sampled consumer's backlog: messages not yet delivered
// plus delivered and not yet acknowledged, and its ack floor.
func lagOf(ctx context.Context, js jetstream.JetStream, stream, durable string) (lag int64, ackFloor uint64, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := js.Consumer(cctx, stream, durable)
	if err != nil {
		return 0, 0, err
	}
	info := c.CachedInfo()
	return int64(info.NumPending) + int64(info.NumAckPending), info.AckFloor.Stream, nil
}

// offerHash hashes an offer by its event's sequence number and its rule
// (FNV-1a of the rule, mixed with the sequence by SplitMix64's finalizer).
func offerHash(seq uint64, rule string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(rule); i++ {
		h ^= uint64(rule[i])
		h *= 1099511628211
	}
	x := h ^ (seq * 0x9e3779b97f4a7c15)
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// offerEventID returns the event_id field of an offer, msgpack or JSON,
// without decoding the rest.
func (d *driver) offerEventID(data []byte) (string, error) {
	id, _, err := d.offerIDs(data)
	return id, err
}

// offerIDs returns the event_id and rule_id fields of an offer, msgpack or
// JSON, decoding no further than event_id (rule_id comes before it in the
// engine's encoding; it is "" when it does not).
func (d *driver) offerIDs(data []byte) (eventID, ruleID string, err error) {
	if len(data) > 0 && data[0] == '{' {
		var o struct {
			EventID string `json:"event_id"`
			RuleID  string `json:"rule_id"`
		}
		err := json.Unmarshal(data, &o)
		return o.EventID, o.RuleID, err
	}
	if d.dec == nil {
		d.dec = msgpack.NewDecoder(nil)
	}
	d.rd.Reset(data)
	dec := d.dec
	dec.Reset(&d.rd)
	n, err := dec.DecodeMapLen()
	if err != nil {
		return "", "", err
	}
	for range n {
		k, err := dec.DecodeString()
		if err != nil {
			return "", "", err
		}
		switch k {
		case "event_id":
			id, err := dec.DecodeString()
			return id, ruleID, err
		case "rule_id":
			if ruleID, err = dec.DecodeString(); err != nil {
				return "", "", err
			}
		default:
			if err := dec.Skip(); err != nil {
				return "", "", err
			}
		}
	}
	return "", "", errors.New("offer has no event_id")
}

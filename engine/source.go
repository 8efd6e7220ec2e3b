package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/state"
)

// source is a stream the engine consumes: the real-time events, or the
// batch events (docs/batch.md). Each has its own durable consumer and its
// own watermark, committed with the batches that apply its events; the
// batch loop takes real-time events first.
type source struct {
	name        string
	prefix      string // subject prefix: <prefix>.events. or <prefix>.batch.
	durable     string
	created     int64
	incarnation string
	applied     uint64
	batch       bool
	// maxAckPending is the consumer's max_ack_pending: how many events it
	// may hold fetched and unacknowledged.
	maxAckPending int
	in            chan inMsg

	// Cluster mode: the partition (-1 in single-instance mode), the name
	// of the watermark in the partition's mark, and whether the partition
	// was given up (its queued events are dropped).
	part     int
	markName string
	gone     bool

	// pending is the highest sequence of the batch in hand; inBatch
	// whether the batch has events of this source.
	pending uint64
	inBatch bool
	// ack is the delivery with the highest sequence (ackSeq) the batch
	// acknowledges for this consumer, nil when none.
	ack    jetstream.Msg
	ackSeq uint64

	// gen counts the consumers the source consumed through; events of an
	// earlier one are dropped. realign asks for the consumer to be made
	// again at the watermark (a delivery was lost); stopCur stops the
	// current one. The loop's goroutine owns them.
	gen     uint32
	realign bool
	stopCur func()
}

// batchMaxAckPending is how many batch events the batch consumer may hold
// unacknowledged: what the engine takes in a quarter of the ack wait at
// batch.consume_rate (so no fetched batch event waits long enough to be
// redelivered), at least two processing batches' worth and at most
// consumer.max_ack_pending.
func batchMaxAckPending(cfg *Config) int {
	n := int(cfg.Batch.ConsumeRate * mustDuration(cfg.Consumer.AckWait).Seconds() / 4)
	return min(max(n, 2*cfg.Batch.MaxPerBatch), cfg.Consumer.MaxAckPending)
}

// watermark is the source's watermark at seq.
func (s *source) watermark(seq uint64) state.Watermark {
	return state.Watermark{Stream: s.name, StreamCreated: s.created, Seq: seq}
}

// open reads the source's watermark, realigns its consumer to it and
// starts consuming into s.in. The returned func stops consuming.
func (e *Engine) openSource(ctx context.Context, s *source, info *jetstream.StreamInfo) (func(), error) {
	s.created = info.Created.UnixNano()
	s.incarnation = strconv.FormatInt(info.Created.Unix(), 36)
	var w state.Watermark
	var err error
	if s.batch {
		w, err = e.store.Watermark(s.name)
	} else {
		w, err = e.store.Applied()
	}
	if err != nil {
		return nil, fmt.Errorf("read watermark of %s: %w", s.name, err)
	}
	if w.Seq > 0 && (w.Stream != s.name || w.StreamCreated != s.created) {
		e.log.Warn("the stream was recreated since the state was written; starting from its beginning", "stream", s.name)
		w = state.Watermark{}
	}
	s.applied = w.Seq
	cons, err := ensureConsumer(ctx, e.js, &e.cfg, s, w, e.log)
	if err != nil {
		return nil, err
	}
	s.in = make(chan inMsg, s.maxAckPending+e.cfg.Engine.BatchSize)
	return e.consume(s, cons)
}

// consumeHeartbeat is the idle heartbeat of the consumers' pulls. On a
// NATS cluster, the first pull of a consumer just created is now and then
// lost (about 1 in 200: it reaches a server that does not know the new
// consumer's interest yet, "no responders") and nothing comes until the
// client misses two heartbeats and pulls again: 30s with the default
// heartbeat, for a partition taken over, which waits all along; 2s with
// this one.
const consumeHeartbeat = time.Second

// consume starts consuming cons into s.in. The returned func stops it,
// and the consumers realignSources makes again later.
func (e *Engine) consume(s *source, cons jetstream.Consumer) (func(), error) {
	if err := e.startConsume(s, cons); err != nil {
		return nil, err
	}
	return func() {
		if s.stopCur != nil {
			s.stopCur()
			s.stopCur = nil
		}
	}, nil
}

// startConsume consumes cons into s.in, as s's consumer of generation
// s.gen, marking a delivery that follows a lost one (see lostDelivery).
func (e *Engine) startConsume(s *source, cons jetstream.Consumer) error {
	stopFetch := make(chan struct{})
	pull := 2 * e.cfg.Engine.BatchSize
	if s.batch {
		pull = 2 * e.cfg.Batch.MaxPerBatch
	}
	gen := s.gen
	last := cons.CachedInfo().Delivered.Consumer // the consumer's delivery sequence
	cc, err := cons.Consume(func(m jetstream.Msg) {
		im := inMsg{msg: m, recv: time.Now(), src: s, gen: gen}
		if md, err := m.Metadata(); err == nil {
			im.seq = md.Sequence.Stream
			im.gap = md.Sequence.Consumer != last+1
			last = md.Sequence.Consumer
		}
		select {
		case s.in <- im:
		case <-stopFetch:
		}
	}, jetstream.PullMaxMessages(pull), jetstream.PullHeartbeat(consumeHeartbeat), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		e.log.Warn("consume", "stream", s.name, "err", err)
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", s.name, err)
	}
	var once sync.Once
	s.stopCur = func() {
		once.Do(func() {
			cc.Stop()
			close(stopFetch)
		})
	}
	return nil
}

// lostDelivery handles an event delivered after a lost one: the consumer's
// delivery sequence jumped, as when a NATS node goes down with deliveries
// in transit, or when another client pulls from the same consumer (the
// server serves waiting pulls in turn). JetStream sends the lost events
// again only after the ack wait, after later ones, and by then the
// watermark has passed them: they would be taken for applied and
// acknowledged unprocessed. So this event and the rest of this consumer's
// deliveries are dropped, unacknowledged, and realignSources makes the
// consumer again at the watermark.
func (e *Engine) lostDelivery(s *source) {
	s.gen++
	if !s.realign {
		s.realign = true
		e.log.Warn("a delivery was lost on its way; consuming again from the watermark", "stream", s.name, "consumer", s.durable, "partition", s.part)
	}
}

// realignSources makes again, at their watermarks, the consumers of the
// sources that lost a delivery; those it cannot are tried again after the
// next batch or tick.
func (e *Engine) realignSources(ctx context.Context) {
	realign := func(s *source) {
		if !s.realign || s.gone {
			return
		}
		if s.stopCur != nil {
			s.stopCur()
			s.stopCur = nil
		}
		cons, err := resetConsumer(ctx, e.js, &e.cfg, s, s.applied)
		if err == nil {
			err = e.startConsume(s, cons)
		}
		if err != nil {
			e.log.Warn("making a consumer again failed; retrying", "stream", s.name, "consumer", s.durable, "err", err)
			return
		}
		s.realign = false
	}
	if e.sc == nil {
		realign(e.rt)
		realign(e.bt)
		return
	}
	for _, ps := range e.sc.parts {
		if ps != nil {
			for _, s := range ps.srcs {
				realign(s)
			}
		}
	}
}

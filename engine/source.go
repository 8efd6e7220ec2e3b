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

// consume starts consuming cons into s.in. The returned func stops it.
func (e *Engine) consume(s *source, cons jetstream.Consumer) (func(), error) {
	stopFetch := make(chan struct{})
	pull := 2 * e.cfg.Engine.BatchSize
	if s.batch {
		pull = 2 * e.cfg.Batch.MaxPerBatch
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		im := inMsg{msg: m, recv: time.Now(), src: s}
		if md, err := m.Metadata(); err == nil {
			im.seq = md.Sequence.Stream
		}
		select {
		case s.in <- im:
		case <-stopFetch:
		}
	}, jetstream.PullMaxMessages(pull), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		e.log.Warn("consume", "stream", s.name, "err", err)
	}))
	if err != nil {
		return nil, fmt.Errorf("consume %s: %w", s.name, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			cc.Stop()
			close(stopFetch)
		})
	}, nil
}

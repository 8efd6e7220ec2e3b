package engine

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pubJob is the last stage of a batch: publish its outbox records, then
// acknowledge its events. In single-instance mode the engine runs it on a
// goroutine of its own while the batch loop takes, processes and commits
// the next batch (publish overlaps with the next batch's work); the loop
// waits for it before it hands over the next one, so batches are
// published and acknowledged in order, one at a time. The loop's select
// takes a job's end like a message, so an idle engine has everything
// acknowledged. Simulations and cluster mode run it in the loop.
//
// A job owns copies of what it reads: the batch's items (records and
// messages are never changed after the batch is committed), its outbox
// keys and the deliveries to acknowledge. Only once it is done do its keys
// join Engine.prevKeys, the published records the next commit deletes: a
// commit made while it still publishes must not delete them, and a stop
// before it is done leaves them to the outbox recovery of the next start.
type pubJob struct {
	items []item
	keys  [][]byte
	// acks: per consumer, the delivery with the highest sequence that the
	// batch acknowledges (the consumers acknowledge all).
	acks []jetstream.Msg
	// rtApplied and btApplied are the watermarks after the batch, for
	// Engine.Applied once it is acknowledged.
	rtApplied, btApplied uint64
	start                time.Time
	err                  error
	done                 chan struct{}
}

// pipelined tells whether a batch's publishing overlaps with the next
// batch: not in simulations (which publish nothing) nor in cluster mode
// (whose marks, changelog and partition moves assume one batch at a time).
func (e *Engine) pipelined() bool { return e.sink == nil && e.sc == nil }

// newPubJob prepares the publishing of a batch that was just committed;
// keys are its outbox keys (nil when it committed none). It runs on the
// loop's goroutine, while the batch's sources are the loop's.
func (e *Engine) newPubJob(items []item, keys [][]byte, start time.Time) *pubJob {
	// The other job may still be publishing the previous batch; this one
	// published the batch before that, and was waited for since.
	i := e.nextJob
	e.nextJob ^= 1
	if e.jobs[i] == nil {
		e.jobs[i] = &pubJob{done: make(chan struct{}, 1)}
	}
	j := e.jobs[i]
	j.items = append(j.items[:0], items...)
	j.keys = nil
	if len(keys) > 0 {
		// Fresh memory: the keys outlive the job in prevKeys.
		n := 0
		for _, k := range keys {
			n += len(k)
		}
		buf := make([]byte, 0, n)
		j.keys = make([][]byte, len(keys))
		for i, k := range keys {
			buf = append(buf, k...)
			j.keys[i] = buf[len(buf)-len(k) : len(buf) : len(buf)]
		}
	}
	j.acks = j.acks[:0]
	srcs := e.ackSrcs[:0]
	for i := range items {
		it := &items[i]
		if it.msg == nil || it.dropped || it.term != "" {
			continue
		}
		if s := it.src; s.ack == nil || it.seq >= s.ackSeq {
			if s.ack == nil {
				srcs = append(srcs, s)
			}
			s.ack, s.ackSeq = it.msg, it.seq
		}
	}
	for i, s := range srcs {
		j.acks = append(j.acks, s.ack)
		s.ack, srcs[i] = nil, nil
	}
	e.ackSrcs = srcs[:0]
	j.rtApplied, j.btApplied = e.rt.applied, e.bt.applied
	j.start, j.err = start, nil
	return j
}

// runPubJob publishes the job's records (retrying until ctx ends), then
// terminates the rejected events and acknowledges the rest: one
// acknowledgement of a consumer's highest delivery covers every earlier
// one, each applied by this batch or an earlier one (or terminated just
// before), where one per event cost nats-server an acknowledgement to
// route and a consumer state update per event. A dropped delivery is never
// below an acknowledged one of its consumer: after a lost delivery every
// later one is dropped, and a partition given up drops them all.
//
// A consumer made again meanwhile (after a lost delivery) starts after
// the watermark, which covers this batch: nats-server ignores an ack all
// at or below a consumer's ack floor, so the batch's acks, late for the
// consumer they came from, change nothing on the new one.
//
// It touches only the job and what is safe from any goroutine (the
// publisher, the metrics, the atomics).
func (e *Engine) runPubJob(ctx context.Context, j *pubJob) error {
	if err := e.publish(ctx, j.items); err != nil {
		return err
	}
	published := time.Now()
	e.crash.reach("after-publish")
	for i := range j.items {
		it := &j.items[i]
		switch {
		case it.msg == nil, it.dropped:
		case it.dup:
			e.metrics.Duplicates.Inc()
		case it.skipped:
			e.metrics.BatchDuplicates.Inc()
		case it.term != "":
			_ = it.msg.TermWithReason(it.term)
		}
		for k := 0; k < it.offers; k++ {
			e.metrics.ArrivalToOffer.Observe(published.Sub(it.recv).Seconds())
			e.metrics.EventTimeToOffer.Observe(float64(published.UnixMilli()-it.records[k].eventTS) / 1000)
		}
	}
	for _, m := range j.acks {
		_ = m.Ack()
	}
	e.appliedPub.Store(j.rtApplied)
	e.appliedBatchPub.Store(j.btApplied)
	e.metrics.BatchSize.Observe(float64(len(j.items)))
	e.metrics.BatchDuration.Observe(time.Since(j.start).Seconds())
	return nil
}

// handOff publishes a committed batch: at once in the loop, or, when
// pipelined, on a goroutine of its own after the previous batch's job is
// done.
func (e *Engine) handOff(ctx context.Context, j *pubJob) error {
	if !e.pipelined() {
		if err := e.runPubJob(ctx, j); err != nil {
			return err
		}
		e.prevKeys = append(e.prevKeys, j.keys...)
		return nil
	}
	if err := e.awaitPublished(); err != nil {
		return err
	}
	e.inflight = j
	go func() {
		j.err = e.runPubJob(ctx, j)
		j.done <- struct{}{}
	}()
	return nil
}

// awaitPublished waits until the batch being published, if any, is
// published and acknowledged; its keys then join prevKeys. Its error (the
// stop came before it was published) leaves its records to the outbox
// recovery of the next start.
func (e *Engine) awaitPublished() error {
	if e.inflight == nil {
		return nil
	}
	<-e.inflight.done
	return e.published()
}

// published takes the end of the batch being published, whose done
// channel was received from.
func (e *Engine) published() error {
	j := e.inflight
	e.inflight = nil
	if j.err != nil {
		return j.err
	}
	e.prevKeys = append(e.prevKeys, j.keys...)
	return nil
}

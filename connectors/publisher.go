package connectors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrNoMsgID marks a message given to the Publisher without a Nats-Msg-Id.
var ErrNoMsgID = errors.New("message has no Nats-Msg-Id header")

// Publisher publishes messages to JetStream asynchronously and waits for
// the stream's acknowledgements in Flush. Every message must carry a
// Nats-Msg-Id so that retries and re-publishes after a crash are
// deduplicated by the stream.
//
// Lifecycle: one goroutine calls Publish for each message of a batch, then
// Flush; the Publisher is reused for the next batch. It is not safe for
// concurrent use. The JetStream context bounds the messages in flight
// (jetstream.WithPublishAsyncMaxPending): Publish blocks when it is full.
type Publisher struct {
	js      jetstream.JetStream
	log     *slog.Logger
	pending []jetstream.PubAckFuture
	retries int
	// stallAfter is how long Flush waits for acknowledgements before it
	// sends the unanswered messages again, synchronously: an ack lost in
	// a reconnect (a NATS node going down) is never answered, and the
	// batch would wait for the caller's whole deadline.
	stallAfter time.Duration
}

// defaultStallAfter is Publisher.stallAfter: acknowledgements take
// milliseconds, also under load; a re-send is deduplicated by its id.
const defaultStallAfter = 5 * time.Second

// errUnanswered is the reason a stalled message is sent again.
var errUnanswered = errors.New("no acknowledgement")

// NewPublisher returns a publisher on js. retries is how many times a
// message whose publish failed is sent again (synchronously, with the same
// Nats-Msg-Id) before Flush gives up; a negative value means 5.
func NewPublisher(js jetstream.JetStream, log *slog.Logger, retries int) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if retries < 0 {
		retries = 5
	}
	return &Publisher{js: js, log: log, retries: retries, stallAfter: defaultStallAfter}
}

// Publish sends msg without waiting for its acknowledgement.
func (p *Publisher) Publish(msg *nats.Msg) error {
	if msg.Header.Get(jetstream.MsgIDHeader) == "" {
		return fmt.Errorf("%w: %s", ErrNoMsgID, msg.Subject)
	}
	f, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	p.pending = append(p.pending, f)
	return nil
}

// Pending is the number of messages published since the last Flush.
func (p *Publisher) Pending() int { return len(p.pending) }

// Flush waits until every message published since the last Flush is
// stored by its stream. A message whose publish failed is re-sent with the
// same id; Flush returns an error only when a message could not be stored
// after the retries, or ctx ends. After an error the caller must publish
// the same messages again (they are deduplicated) before acknowledging
// what produced them.
func (p *Publisher) Flush(ctx context.Context) error {
	defer func() {
		clear(p.pending)
		p.pending = p.pending[:0]
	}()
	if len(p.pending) == 0 {
		return nil
	}
	var firstErr error
	stall := time.NewTimer(p.stallAfter)
	defer stall.Stop()
	stalled := false
	for _, f := range p.pending {
		var err error
		if stalled {
			// Past the stall: what is not answered by now is sent again.
			select {
			case <-f.Ok():
				continue
			case err = <-f.Err():
			default:
				err = errUnanswered
			}
		} else {
			select {
			case <-f.Ok():
				continue
			case err = <-f.Err():
			case <-stall.C:
				stalled = true
				err = errUnanswered
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err = p.retry(ctx, f.Msg(), err); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (p *Publisher) retry(ctx context.Context, msg *nats.Msg, err error) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; attempt <= p.retries; attempt++ {
		p.log.Warn("publish failed, retrying", "subject", msg.Subject, "attempt", attempt, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff *= 2
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = p.js.PublishMsg(cctx, msg)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("publish %s: %w", msg.Subject, err)
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
)

// The baseline's streams and consumer. They live beside the engine's on
// the same nats-server, under their own prefix, and are deleted after use.
const (
	BaselinePrefix  = "kbench"
	baselineEvents  = "KBENCH_EVENTS"
	baselineOffers  = "KBENCH_OFFERS"
	baselineDurable = "kbench-baseline"
)

var baselineSubjects = subjects{
	prefix:        BaselinePrefix,
	eventsStream:  baselineEvents,
	offersStream:  baselineOffers,
	durable:       baselineDurable,
	offersSubject: BaselinePrefix + ".offers.>",
}

// BaselineOptions configure the baseline consumer.
type BaselineOptions struct {
	// BatchSize is the most events handled per round (default 512, the
	// engine's engine.batch_size).
	BatchSize int
	// MaxAckPending bounds unacknowledged events (default 20000, the
	// engine's consumer.max_ack_pending).
	MaxAckPending int
	// PublishInFlight bounds unacknowledged publishes (default 4096, the
	// engine's engine.publish_in_flight).
	PublishInFlight int
	Logger          *slog.Logger
}

// Baseline is the transport limit: a consumer that does what the engine
// does with NATS and nothing else. It reads KBENCH_EVENTS through a durable
// pull consumer with explicit acks, takes the events already delivered (at
// most BatchSize, never waiting to fill a batch), decodes each, publishes
// one offer-shaped message per event to KBENCH_OFFERS with a Nats-Msg-Id,
// waits until the stream has stored them all, then acknowledges the
// events: the engine's pipeline without rules, state or policy.
type Baseline struct {
	opts   BaselineOptions
	js     jetstream.JetStream
	pub    *connectors.Publisher
	cc     jetstream.ConsumeContext
	in     chan jetstream.Msg
	stopCh chan struct{}
	done   chan struct{}
	err    error
	once   sync.Once
}

// createBaselineStreams creates (or recreates, empty) the baseline's
// streams with the engine's default stream settings.
func createBaselineStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, s := range []jetstream.StreamConfig{
		{Name: baselineEvents, Subjects: []string{BaselinePrefix + ".events.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Duplicates: 2 * time.Minute, MaxAge: 7 * 24 * time.Hour},
		{Name: baselineOffers, Subjects: []string{BaselinePrefix + ".offers.>"}, Storage: jetstream.FileStorage, Retention: jetstream.LimitsPolicy, Duplicates: time.Hour, MaxAge: 7 * 24 * time.Hour},
	} {
		if err := js.DeleteStream(ctx, s.Name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete stream %s: %w", s.Name, err)
		}
		if _, err := js.CreateStream(ctx, s); err != nil {
			return fmt.Errorf("create stream %s: %w", s.Name, err)
		}
	}
	return nil
}

// deleteBaselineStreams removes the baseline's streams.
func deleteBaselineStreams(ctx context.Context, js jetstream.JetStream) {
	for _, name := range []string{baselineEvents, baselineOffers} {
		_ = js.DeleteStream(ctx, name)
	}
}

// StartBaseline creates the baseline's streams and consumer on nc's server
// and starts consuming. Stop it with Stop.
func StartBaseline(ctx context.Context, nc *nats.Conn, opts BaselineOptions) (*Baseline, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 512
	}
	if opts.MaxAckPending <= 0 {
		opts.MaxAckPending = 20000
	}
	if opts.PublishInFlight <= 0 {
		opts.PublishInFlight = 4096
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(opts.PublishInFlight))
	if err != nil {
		return nil, err
	}
	if err := createBaselineStreams(ctx, js); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, baselineEvents, jetstream.ConsumerConfig{
		Durable:       baselineDurable,
		FilterSubject: BaselinePrefix + ".events.>",
		AckPolicy:     jetstream.AckAllPolicy, // as the engine's consumers
		AckWait:       30 * time.Second,
		MaxAckPending: opts.MaxAckPending,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("baseline consumer: %w", err)
	}
	b := &Baseline{
		opts:   opts,
		js:     js,
		pub:    connectors.NewPublisher(js, opts.Logger, 5),
		in:     make(chan jetstream.Msg, opts.MaxAckPending+opts.BatchSize),
		stopCh: make(chan struct{}),
		done:   make(chan struct{}),
	}
	b.cc, err = cons.Consume(func(m jetstream.Msg) {
		select {
		case b.in <- m:
		case <-b.stopCh:
		}
	}, jetstream.PullMaxMessages(2*opts.BatchSize))
	if err != nil {
		return nil, fmt.Errorf("baseline consume: %w", err)
	}
	go func() {
		defer close(b.done)
		b.err = b.loop()
	}()
	return b, nil
}

// Stop stops consuming and waits for the batch in hand.
func (b *Baseline) Stop() error {
	b.once.Do(func() {
		b.cc.Stop()
		close(b.stopCh)
	})
	<-b.done
	return b.err
}

func (b *Baseline) loop() error {
	batch := make([]jetstream.Msg, 0, b.opts.BatchSize)
	enc := connectors.NewEncoder()
	var buf []byte
	var ev Event
	ctx := context.Background()
	for {
		batch = batch[:0]
		select {
		case <-b.stopCh:
			return nil
		case m := <-b.in:
			batch = append(batch, m)
		}
	fill:
		for len(batch) < b.opts.BatchSize {
			select {
			case m := <-b.in:
				batch = append(batch, m)
			default:
				break fill
			}
		}
		now := time.Now().UnixMilli()
		for _, m := range batch {
			ev = Event{}
			if err := msgpack.Unmarshal(m.Data(), &ev); err != nil {
				_ = m.TermWithReason("decode")
				continue
			}
			o := connectors.Offer{
				ID: "o-" + ev.ID, RuleID: "baseline", RuleVersion: "000000000000", CustomerID: ev.CustomerID,
				Channel: "app_push", Product: "BASELINE", Template: "baseline", Priority: 50,
				EventID: ev.ID, EventType: ev.Type, EventTS: ev.TS, DecidedAt: now, ExpiresAt: now + 86_400_000,
			}
			var err error
			if buf, err = enc.Encode(buf[:0], &o, connectors.Msgpack); err != nil {
				return err
			}
			out := nats.NewMsg(BaselinePrefix + ".offers.app_push." + ev.CustomerID)
			out.Data = append([]byte(nil), buf...)
			out.Header.Set(jetstream.MsgIDHeader, o.ID)
			if err := b.pub.Publish(out); err != nil {
				return err
			}
		}
		fctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := b.pub.Flush(fctx)
		cancel()
		if err != nil {
			return fmt.Errorf("baseline publish: %w", err)
		}
		// One acknowledgement of the batch's last event covers it all, as
		// the engine acknowledges.
		_ = batch[len(batch)-1].Ack()
	}
}

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/engine/cluster"
	"github.com/kairos-engine/kairos/state"
)

// streamConfig turns a StreamConfig into a JetStream stream configuration
// on subjects.
func streamConfig(sc StreamConfig, replicas int, subjects ...string) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:       sc.Name,
		Subjects:   subjects,
		MaxAge:     mustDuration(sc.MaxAge),
		MaxBytes:   sc.MaxBytes,
		Duplicates: mustDuration(sc.DuplicateWindow),
		Replicas:   replicas,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	}
	if sc.Storage == "memory" {
		cfg.Storage = jetstream.MemoryStorage
	}
	switch sc.Retention {
	case "interest":
		cfg.Retention = jetstream.InterestPolicy
	case "workqueue":
		cfg.Retention = jetstream.WorkQueuePolicy
	}
	return cfg
}

// subjects are the subject spaces of a config.
type subjects struct {
	prefix       string
	events       string // <prefix>.events.>
	eventsPrefix string // <prefix>.events.
	batchPrefix  string // <prefix>.batch.
	offers       string // <prefix>.offers.
	dlq          string // <prefix>.dlq.
	decisions    string // <prefix>.decisions.
}

func newSubjects(prefix string) subjects {
	return subjects{
		prefix:       prefix,
		events:       prefix + ".events.>",
		eventsPrefix: prefix + ".events.",
		batchPrefix:  prefix + ".batch.",
		offers:       prefix + ".offers.",
		dlq:          prefix + ".dlq.",
		decisions:    prefix + ".decisions.",
	}
}

// ensureStreams creates or updates the streams; it is idempotent. It
// returns the events and batch streams' info.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg *Config, sub subjects) (events, batch *jetstream.StreamInfo, err error) {
	ev := streamConfig(cfg.Streams.Events, cfg.Streams.Replicas, sub.events)
	bt := streamConfig(cfg.Streams.Batch, cfg.Streams.Replicas, sub.batchPrefix+">")
	if cfg.Cluster.Enabled {
		// The server partitions events by customer (docs/scaling.md).
		ev.SubjectTransform = partitionTransform(sub.prefix, "events", cfg.Cluster.Partitions)
		bt.SubjectTransform = partitionTransform(sub.prefix, "batch", cfg.Cluster.Partitions)
	}
	for _, sc := range []jetstream.StreamConfig{
		ev,
		streamConfig(cfg.Streams.Offers, cfg.Streams.Replicas, sub.offers+">"),
		streamConfig(cfg.Streams.DLQ, cfg.Streams.Replicas, sub.dlq+">"),
		streamConfig(cfg.Streams.Decisions, cfg.Streams.Replicas, sub.decisions+">"),
		bt,
	} {
		// Retried when unanswered: instances of a cluster starting
		// together race to create the same streams.
		s, err := cluster.CreateOrUpdateStream(ctx, js, sc)
		if err != nil {
			return nil, nil, fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		switch sc.Name {
		case cfg.Streams.Events.Name:
			events = s.CachedInfo()
		case cfg.Streams.Batch.Name:
			batch = s.CachedInfo()
		}
	}
	return events, batch, nil
}

// ensureConsumer makes the durable consumer deliver from the first event
// the state has not applied. The state's watermark is the truth: when the
// consumer's position disagrees with it (after a crash, messages were
// delivered but not acknowledged), the consumer is recreated to start at
// watermark+1, so a customer's events are never applied out of order.
func ensureConsumer(ctx context.Context, js jetstream.JetStream, cfg *Config, src *source, w state.Watermark, log *slog.Logger) (jetstream.Consumer, error) {
	stream := src.name
	want := consumerConfig(cfg, src, w.Seq)
	c, err := js.Consumer(ctx, stream, src.durable)
	switch {
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		log.Info("creating consumer", "consumer", want.Durable, "start_seq", w.Seq+1)
		return js.CreateConsumer(ctx, stream, want)
	case err != nil:
		return nil, fmt.Errorf("consumer %s: %w", src.durable, err)
	}
	info := c.CachedInfo()
	inSync := info.AckFloor.Stream == w.Seq && info.NumAckPending == 0 && info.Delivered.Stream == w.Seq
	if w.Seq == 0 && info.Delivered.Stream > 0 {
		// The state is new (an empty data directory) but the consumer has
		// progressed: keep its position rather than re-run history, also
		// when the consumer is recreated below.
		log.Warn("state is empty but the consumer has progressed; continuing from the consumer's position", "consumer", want.Durable, "ack_floor", info.AckFloor.Stream)
		inSync = info.NumAckPending == 0
		want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		want.OptStartSeq = info.AckFloor.Stream + 1
	}
	if inSync && info.Config.AckPolicy == want.AckPolicy && info.Config.AckWait == want.AckWait && info.Config.MaxAckPending == want.MaxAckPending && info.Config.FilterSubject == want.FilterSubject {
		return c, nil
	}
	log.Info("recreating consumer at the state's watermark", "consumer", want.Durable, "start_seq", want.OptStartSeq, "ack_floor", info.AckFloor.Stream, "ack_pending", info.NumAckPending)
	if err := js.DeleteConsumer(ctx, stream, want.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("delete consumer %s: %w", want.Durable, err)
	}
	return js.CreateConsumer(ctx, stream, want)
}

// consumerConfig is the configuration of src's durable consumer,
// delivering from seq+1 (everything when seq is 0). It acknowledges all
// (AckAll): the engine acknowledges, after each batch, only the last
// event of each consumer, which covers every earlier delivery (see
// Engine.process).
func consumerConfig(cfg *Config, src *source, seq uint64) jetstream.ConsumerConfig {
	want := jetstream.ConsumerConfig{
		Durable:       src.durable,
		AckPolicy:     jetstream.AckAllPolicy,
		AckWait:       mustDuration(cfg.Consumer.AckWait),
		MaxAckPending: src.maxAckPending,
		MaxDeliver:    -1,
		FilterSubject: src.prefix + ">",
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if seq > 0 {
		want.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		want.OptStartSeq = seq + 1
	}
	return want
}

// resetConsumer (re)creates a partition's durable consumer to deliver from
// seq+1 (everything when seq is 0). It is deleted first: the events a
// former owner fetched and did not acknowledge come again at once, not
// after the ack wait.
func resetConsumer(ctx context.Context, js jetstream.JetStream, cfg *Config, src *source, seq uint64) (jetstream.Consumer, error) {
	want := consumerConfig(cfg, src, seq)
	if err := js.DeleteConsumer(ctx, src.name, src.durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("delete consumer %s: %w", src.durable, err)
	}
	c, err := js.CreateConsumer(ctx, src.name, want)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", src.durable, err)
	}
	return c, nil
}

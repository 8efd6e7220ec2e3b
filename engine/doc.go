// Package engine runs Kairos: it consumes customer events from JetStream,
// keeps each customer's windows and profile in package state, evaluates the
// rules of package rules, and publishes offers and dead letters through
// package connectors, exactly once across crashes. It is the one package
// that translates between those leaves. docs/contracts.md is the public
// contract and docs/configuration.md documents every Config field.
//
// # Pipeline
//
// A durable pull consumer on the events stream hands messages to a channel.
// The batch loop takes the messages already fetched, up to batch_size, and
// processes them as one batch:
//
//  1. Shard. A message at or below the watermark (the last committed
//     stream sequence) is a duplicate and is only acknowledged. The others
//     are routed by customer (FNV-1a of the subject's customer token) to a
//     worker, keeping stream order within each worker.
//  2. Evaluate. For each event, its worker checks the size, decodes
//     (msgpack, or JSON) and validates it against its subject, loads the
//     customer, merges a profile event into the profile, applies the event
//     to the windows, and evaluates the rules at the event's ts, with now
//     read once per batch. Matches become offers with deterministic ids;
//     bad events and failing rules become dead letters.
//  3. Commit. The changed customers, an outbox record for every offer,
//     decision and dead letter (all the batch's records in one value, an
//     outbox page: outbox.go), the deletion of the pages already
//     published, and the new watermark (stream name, creation time,
//     sequence) are written in one Badger transaction.
//  4. Publish. Every outbox record is published with its id as Nats-Msg-Id,
//     and the batch waits until the streams have stored them all.
//  5. Acknowledge. Events that are not decodable, invalid or oversize are
//     terminated (TermWithReason); then the last of the other deliveries of
//     each consumer is acked, which acks all before it (AckAll): applied
//     events, duplicates, and events with an eval dead letter (applied).
//
// Steps 4 and 5 of a batch run on a goroutine of their own (publish.go)
// while the loop takes, evaluates and commits the next batch; the loop
// waits for them before it hands over that next batch, and takes their
// end like a message when it has none. So batches are still published and
// acknowledged one at a time and in order, and a batch's outbox records
// are deleted only by a commit made after they were published. In
// simulations and cluster mode the loop runs steps 4 and 5 itself.
//
// An event is thus acknowledged only after its effects are durable. Acks
// are not confirmed: a lost ack causes a redelivery, which the watermark
// turns into a duplicate. A failure of the state or of NATS, never of an
// event, aborts the batch: its customers are dropped from the cache and it
// is retried from the committed state, with a pause growing from 100ms to
// 10s (a batch too big for one transaction is split in halves) until it
// succeeds or the engine stops.
//
// # Crash recovery
//
// At start, before consuming, Run reads the watermark (ignoring it if the
// events stream was recreated since), re-publishes what the outbox still
// holds (the streams drop what they already have), and aligns the consumer
// with the watermark: unless the consumer's ack floor and delivered
// sequence equal it, nothing is pending and its settings match, the
// consumer is recreated to deliver from watermark+1, so unacknowledged
// events come back in stream order and a customer's events are never
// applied out of order.
//
// # Goroutines and locks
//
// The hot path takes no lock. The consume callback only sends to the
// channel. The batch loop is one goroutine and owns the batch, the commit,
// the publisher, the acknowledgements and the outbox keys. Each worker owns
// a state.Shard, a rules.Evaluator, an event decoder and an offer encoder;
// a customer always goes to the same worker, so its state is touched by
// one goroutine. Workers run between the loop's hand-off and its wait (a
// small batch runs inline on the loop goroutine), and Commit runs only when
// no worker does. The publishing stage of the previous batch touches only
// its own copy of the batch's items and keys, the publisher (which the
// loop leaves to it meanwhile), the metrics and atomics; the loop's waiting
// for it orders the two. Other goroutines, such as the HTTP handlers, read
// atomics only. The engine holds no mutex, so there is no lock order.
//
// # Shutdown
//
// When the context of Run ends, the loop returns between batches: the batch
// in hand is finished (committed, published, acknowledged), or, if it is
// waiting to retry, left unacknowledged for redelivery; a batch whose
// publishing the stop cut short stays in the outbox for the next start.
// Then readiness drops, consuming stops (fetched but unprocessed events
// stay unacknowledged), a last commit deletes the published outbox
// records, and
// the NATS connection, the embedded server, the state and the HTTP server
// are closed, in that order. Run returns nil after a graceful stop.
package engine

// Package connectors holds what carries offers out of Kairos: the offer
// record and its wire encodings, and the JetStream publisher the engine
// uses to publish offers and dead letters exactly once.
//
// # Exactly-once publishing
//
// Every message the Publisher sends carries a Nats-Msg-Id header. The
// engine chooses that id deterministically (an offer's id is a hash of the
// rule and the event), stores the message in its outbox in the same commit
// as the state change that produced it, and re-publishes the outbox after a
// crash. The stream drops a message whose id it has already stored within
// its duplicate window, so a JetStream consumer of KAIROS_OFFERS sees each
// offer once. A plain core NATS subscription on kairos.offers.> is not
// deduplicated: after a crash it may see an offer a second time.
//
// connectors never imports the engine, the rules or the state.
package connectors

// Package bench generates realistic synthetic banking traffic and drives
// Kairos through NATS like any client: kairos demo uses its generator, and
// kairos bench (docs/bench.md) builds its load and measurements on it.
// bench never reaches into the engine's internals.
package bench

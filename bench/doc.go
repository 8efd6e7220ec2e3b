// Package bench generates realistic synthetic banking traffic and drives
// Kairos through NATS like any client: kairos demo uses its generator, and
// kairos bench (docs/bench.md) is Run.
//
// bench never reaches into the engine's internals, and does not import
// package engine (the engine's tests import bench). It talks to an engine
// through what any client has: subjects and streams, JetStream consumer
// info, the engine's /metrics, and, for engines it starts, the process.
//
//   - workload.go: the event generator (Zipf customers, an event mix with
//     realistic attributes, profiles). Its default workload is kairos
//     demo's and must not change.
//   - rulegen.go: GenerateRules, N realistic rules with windows, valid for
//     rules.Load.
//   - target.go: how an engine is started (Launcher: a child kairos run,
//     or in-process through cmd/kairos) and measured (Target).
//   - cluster.go: --instances and --sweep instances: N engines in cluster
//     mode against the bench's nats-server, the wait for the partitions to
//     spread, lag summed over the partition consumers, the ratio to one
//     instance.
//   - driver.go: the open-loop publisher, the offers consumer, latency by
//     event sequence number, consumer lag.
//   - baseline.go: the transport limit, a consumer that does the engine's
//     NATS work without rules.
//   - run.go: Run: points, runs, the --max search, sweeps, rounds
//     (--repeat: baseline and engine alternate; ratios are the rounds'
//     medians).
//   - hist.go, procstat.go, metrics.go, machine.go: measurements.
//   - report.go, plot.go, targets.go: report.json, report.md, the SVG plot,
//     and the targets of the bench issue.
package bench

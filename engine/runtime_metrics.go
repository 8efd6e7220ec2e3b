package engine

import (
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// runtimeGC selects the runtime/metrics of the garbage collector's CPU
// accounting (/cpu/classes/gc/..., next to the user and scavenger classes
// they are a share of) and its cycle count. client_golang's Go collector
// leaves them out by default. They tell how much of the process's CPU the
// collector takes, and how much of that were assists: the marking that a
// goroutine must do before it may allocate, which is what stalls a batch
// while a collection runs.
var runtimeGC = regexp.MustCompile(`^/cpu/classes/(gc/|scavenge/|user:)|^/gc/cycles/`)

// RuntimeCollectors returns the collectors of the Go runtime and of the
// process that kairos registers beside its own metrics: client_golang's
// defaults, plus the collector's CPU accounting (docs/metrics.md, "Go
// runtime and process").
func RuntimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(collectors.GoRuntimeMetricsRule{Matcher: runtimeGC})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
}

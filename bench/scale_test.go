package bench_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/bench"
)

// TestBenchInstances is kairos bench --sweep instances=1,2 --engine
// in-process, tiny: a nats-server in the test's process and one, then two
// engines in cluster mode against it. Both instances of the second point
// must own partitions, process events and emit offers; every offer they
// emitted must reach the bench, and they must be the offers one instance
// made of the same events.
func TestBenchInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two engines in cluster mode")
	}
	out := t.TempDir()
	var progress strings.Builder
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 1000, Rules: 20, Rate: 500, Duration: 2 * time.Second, Warmup: time.Second,
		Sweep: &bench.Sweep{Dim: "instances", Values: []int{1, 2}}, Partitions: 8, Launcher: inProcess{}, Out: out, Dir: t.TempDir(), Progress: &progress,
		Engine: bench.EngineOptions{Policy: "none"},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rep.Points) != 2 || len(rep.Points[1].Runs) != 1 {
		t.Fatalf("report %+v", rep.Points)
	}
	one, p := rep.Points[0], rep.Points[1]
	if !one.Cluster || one.Instances != 1 || len(one.PerInstance) != 1 || one.PerInstance[0].Partitions != 8 {
		t.Errorf("1-instance point %q: %+v", one.Label, one.PerInstance)
	}
	if !p.Cluster || p.Instances != 2 || rep.Setup.Cluster == "" || !strings.Contains(p.Label, "2 instances") {
		t.Errorf("point %q: cluster %v, %d instances; setup %+v", p.Label, p.Cluster, p.Instances, rep.Setup)
	}
	if len(p.PerInstance) != 2 {
		t.Fatalf("per instance %+v", p.PerInstance)
	}
	owned := 0
	for _, in := range p.PerInstance {
		owned += in.Partitions
		if in.Partitions != 4 || in.Events == 0 || in.Offers == 0 {
			t.Errorf("instance %+v: want 4 partitions, events and offers", in)
		}
	}
	if owned != 8 {
		t.Errorf("%d partitions owned, want 8", owned)
	}
	// No offer lost or duplicated between the engines and the bench, and
	// the same offers as one instance made of the same events.
	if p.OffersEmitted == 0 || p.OffersEmitted != p.OffersReceived {
		t.Errorf("offers emitted %d, received %d", p.OffersEmitted, p.OffersReceived)
	}
	if p.SameOffersAs1 == nil || !*p.SameOffersAs1 || p.OffersOfEvents != one.OffersOfEvents || p.OfferFingerprint != one.OfferFingerprint {
		t.Errorf("offers %d (%s), 1 instance: %d (%s)", p.OffersOfEvents, p.OfferFingerprint, one.OffersOfEvents, one.OfferFingerprint)
	}
	if p.ThroughputVs1 <= 0 {
		t.Errorf("no throughput ratio to 1 instance")
	}
	r := p.Runs[0]
	if r.Sent == 0 || r.ProcessedPerSec < 0.5*r.SentPerSec || r.ProcessedPerSec > 1.2*r.SentPerSec {
		t.Errorf("sent %.0f/s, processed %.0f/s (summed over the partition consumers)", r.SentPerSec, r.ProcessedPerSec)
	}
	if r.Offers == 0 || r.Latency.Count != r.Offers || r.Unmatched != 0 || r.PublishErrors != 0 || r.LagEnd < 0 {
		t.Errorf("run %+v", r)
	}
	if len(r.Instances) != 2 || r.Instances[0].Events == 0 || r.Instances[1].Events == 0 {
		t.Errorf("instances of the run %+v", r.Instances)
	}
	// The /metrics at the start of the measured time are read beside the
	// publisher, a little after it starts (more so under -race), so the
	// events counted from then may fall a few short of those sent.
	if r.Engine == nil || r.Engine.Events < 0.95*float64(r.Sent) {
		t.Errorf("engine stats summed over the instances %+v, %d sent", r.Engine, r.Sent)
	}
	if p.DiskBytes <= 0 || p.PerInstance[0].DiskBytes <= 0 || p.PerInstance[1].DiskBytes <= 0 || p.ChangelogBytes <= 0 {
		t.Errorf("disk %d (%+v), changelog %d", p.DiskBytes, p.PerInstance, p.ChangelogBytes)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Scale-out", "| bench-1 | 4 |", "| bench-2 | 4 |", "2 cluster"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(progress.String())
	}
}

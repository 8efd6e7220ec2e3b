package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Cluster mode (docs/scaling.md, engine/scale.go). With --instances N > 1,
// and for every point of --sweep instances=…, the bench starts one
// nats-server in its own process and N engines with cluster.enabled, each
// with its own configuration, data directory, HTTP port and log, and waits
// until the partitions are owned and spread evenly before any traffic.
// Publishers do not change: the events stream maps
// <prefix>.events.<type>.<customer> to
// <prefix>.part.events.<partition>.<type>.<customer> on the server, and
// each instance consumes the partitions it owns with one durable consumer
// per partition, <durable>-p<partition>. The bench's lag and processed
// counts sum over those consumers; CPU, RSS and disk over the instances.

// clusterTarget is the N engine instances of a point in cluster mode. It
// is a Target: the bench publishes to and consumes from the nats-server
// they share.
type clusterTarget struct {
	url string
	// shared says the instances run in the bench's process (in-process
	// launcher): their usage is the process's, counted once.
	shared bool
	insts  []*instance
}

// instance is one engine of a clusterTarget.
type instance struct {
	name string
	t    Target
}

var _ Target = (*clusterTarget)(nil)

func (c *clusterTarget) NATSURL() string    { return c.url }
func (c *clusterTarget) StateDir() string   { return "" }
func (c *clusterTarget) MetricsURL() string { return "" }

// Usage sums the instances' usage (peak RSS: the sum of each one's peak).
func (c *clusterTarget) Usage() (Usage, bool) {
	if c.shared {
		return c.insts[0].t.Usage()
	}
	var sum Usage
	for _, in := range c.insts {
		u, ok := in.t.Usage()
		if !ok {
			return Usage{}, false
		}
		sum.CPUSeconds += u.CPUSeconds
		sum.RSSBytes += u.RSSBytes
		sum.PeakRSSBytes += u.PeakRSSBytes
		sum.PageFaults += u.PageFaults
		sum.AnonRSSBytes += u.AnonRSSBytes
	}
	return sum, true
}

// usages is each instance's usage; nil when the instances share the
// bench's process or one cannot be measured.
func (c *clusterTarget) usages() []Usage {
	if c.shared {
		return nil
	}
	out := make([]Usage, len(c.insts))
	for i, in := range c.insts {
		u, ok := in.t.Usage()
		if !ok {
			return nil
		}
		out[i] = u
	}
	return out
}

// Stop stops every instance at once: each leaves the cluster, and none
// takes over the partitions of the others while they all stop.
func (c *clusterTarget) Stop(ctx context.Context) error {
	errs := make([]error, len(c.insts))
	var wg sync.WaitGroup
	for i, in := range c.insts {
		wg.Go(func() {
			if err := in.t.Stop(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", in.name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// launchCluster starts n engine instances in cluster mode against the
// nats-server at natsURL, one after the other (each ready before the
// next), under dir/instance-<i>, then waits until the partitions are
// spread over all of them.
func launchCluster(ctx context.Context, cfg *Config, n int, dir, rulesDir, natsURL string) (*clusterTarget, []int, error) {
	ct := &clusterTarget{url: natsURL, shared: cfg.Launcher.Mode() == "in-process"}
	fail := func(err error) (*clusterTarget, []int, error) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return nil, nil, errors.Join(err, ct.Stop(sctx))
	}
	for i := range n {
		name := "bench-" + strconv.Itoa(i+1)
		idir := filepath.Join(dir, "instance-"+strconv.Itoa(i+1))
		if err := os.MkdirAll(idir, 0o750); err != nil {
			return fail(err)
		}
		httpAddr, err := freeAddr()
		if err != nil {
			return fail(err)
		}
		ls := LaunchSpec{Dir: idir, ConfigFile: filepath.Join(idir, "kairos.yaml"), DataDir: filepath.Join(idir, "data"), NATSURL: natsURL, HTTPAddr: httpAddr}
		if err := writeEngineConfig(ls.ConfigFile, cfg.Engine, rulesDir, ls.DataDir, natsURL, httpAddr,
			&clusterSettings{instance: name, partitions: cfg.Partitions}); err != nil {
			return fail(err)
		}
		progress(cfg, "starting instance %s (%s, cluster mode, %d partitions)", name, cfg.Launcher.Mode(), cfg.Partitions)
		t, err := cfg.Launcher.Launch(ctx, ls)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		ct.insts = append(ct.insts, &instance{name: name, t: t})
	}
	owned, err := waitSpread(ctx, cfg, ct, 3*time.Minute)
	if err != nil {
		return fail(err)
	}
	return ct, owned, nil
}

// waitSpread waits until the instances own every partition between them,
// evenly (each P/N rounded down or up), on two reads in a row of their
// kairos_cluster_partitions_owned. It returns the partitions of each.
func waitSpread(ctx context.Context, cfg *Config, ct *clusterTarget, timeout time.Duration) ([]int, error) {
	n, parts := len(ct.insts), cfg.Partitions
	lo, hi := parts/n, (parts+n-1)/n
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	owned := make([]int, n)
	good, said := 0, time.Now()
	for {
		sum, even := 0, true
		for i, in := range ct.insts {
			owned[i] = -1
			if m, err := scrapeMetrics(ctx, in.t.MetricsURL()); err == nil {
				if v, ok := m["kairos_cluster_partitions_owned"]; ok {
					owned[i] = int(v)
				}
			}
			sum += owned[i]
			even = even && owned[i] >= lo && owned[i] <= hi
		}
		if sum == parts && even {
			if good++; good == 2 {
				return owned, nil
			}
		} else {
			good = 0
		}
		if time.Since(said) > 5*time.Second {
			progress(cfg, "waiting for the partitions to spread: owned %v of %d", owned, parts)
			said = time.Now()
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return owned, fmt.Errorf("partitions not spread over %d instances after %v: owned %v of %d", n, timeout, owned, parts)
			}
			return owned, ctx.Err()
		case <-t.C:
		}
	}
}

// partitionConsumer says whether a consumer is one of the engine's
// per-partition consumers, <durable>-p<N>.
func partitionConsumer(name, durable string) bool {
	rest, ok := strings.CutPrefix(name, durable+"-p")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// partitionedState is consumerState in cluster mode: the lag is summed
// over the partition consumers, and what is processed is what the stream
// holds minus that lag (the stream is read first, so an event stored
// between the two reads counts as not processed yet).
func partitionedState(ctx context.Context, js jetstream.JetStream, stream, durable string) (lag int64, done uint64, err error) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(cctx, stream)
	if err != nil {
		return 0, 0, err
	}
	last := s.CachedInfo().State.LastSeq
	l := s.ListConsumers(cctx)
	n := 0
	for info := range l.Info() {
		if partitionConsumer(info.Name, durable) {
			lag += int64(info.NumPending) + int64(info.NumAckPending)
			n++
		}
	}
	if err := l.Err(); err != nil {
		return 0, 0, err
	}
	if n == 0 {
		return 0, 0, fmt.Errorf("no %s-p<N> consumer on %s", durable, stream)
	}
	return lag, last - min(last, uint64(lag)), nil
}

// scaleRatios sets each point's throughput against the cluster-mode point
// with one instance of an instances sweep (the single-instance mode point
// of "single" included): with --max the highest rates within the SLO,
// otherwise processed events/s at the same target rate; and, at fixed
// rates, whether its offers are the same.
func scaleRatios(r *Report) {
	var one *Point
	for i := range r.Points {
		if r.Points[i].Cluster && r.Points[i].Instances == 1 {
			one = &r.Points[i]
			break
		}
	}
	if one == nil {
		return
	}
	for i := range r.Points {
		p := &r.Points[i]
		if r.Setup.Max {
			if p.Best >= 0 && one.Best >= 0 {
				p.ThroughputVs1 = float64(p.Runs[p.Best].TargetRate) / float64(one.Runs[one.Best].TargetRate)
			}
			continue
		}
		if slices.EqualFunc(p.Runs, one.Runs, func(x, y RunResult) bool { return x.TargetRate == y.TargetRate }) && p.OfferFingerprint != "" {
			same := p.OfferFingerprint == one.OfferFingerprint && p.OffersOfEvents == one.OffersOfEvents
			p.SameOffersAs1 = &same
		}
		// At the last rate both ran, run against run of the same round;
		// with --repeat, the median of the rounds.
		var at int
		var fs []float64
		for _, x := range p.Runs {
			for _, y := range one.Runs {
				if x.TargetRate == y.TargetRate && x.Round == y.Round && y.ProcessedPerSec > 0 {
					if x.TargetRate != at {
						at, fs = x.TargetRate, fs[:0]
					}
					fs = append(fs, x.ProcessedPerSec/y.ProcessedPerSec)
				}
			}
		}
		if len(fs) > 0 {
			p.ThroughputVs1 = median(fs, func(f float64) float64 { return f })
		}
	}
}

// instanceRuns is each instance's share of a run: its CPU over the
// measured time (u0 to u1, when measured per instance) and the events it
// processed and offers it emitted from the start of the measured time to
// the end of the drain (m0 to m1, its /metrics).
func instanceRuns(ct *clusterTarget, u0, u1 []Usage, m0, m1 []metricsSnapshot) []InstanceRun {
	out := make([]InstanceRun, len(ct.insts))
	for i, in := range ct.insts {
		r := InstanceRun{Name: in.name}
		if len(u0) == len(ct.insts) && len(u1) == len(ct.insts) {
			r.CPUSeconds = u1[i].CPUSeconds - u0[i].CPUSeconds
		}
		if i < len(m0) && i < len(m1) && m0[i] != nil && m1[i] != nil {
			r.Events = int64(m1[i]["kairos_engine_events_total"] - m0[i]["kairos_engine_events_total"])
			r.Offers = int64(m1[i]["kairos_offers_total"] - m0[i]["kairos_offers_total"])
		}
		out[i] = r
	}
	return out
}

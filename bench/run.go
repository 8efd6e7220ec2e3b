package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/kairos-engine/kairos/state"
)

// latencyDefinition is what every latency figure measures.
const latencyDefinition = "from the moment an event is due under the open-loop schedule (it is published then, unless the publisher fell behind) " +
	"to the moment the bench's ordered consumer on the offers stream receives an offer for it; the offer's event_id names the event " +
	"and a table indexed by the event's sequence number holds the time (no clock in the payload)"

// pointSpec is one engine of the report and the runs to make against it.
type pointSpec struct {
	label     string
	customers int
	rules     int
	rates     []int // empty with --max
	// instances is how many engines run; cluster says they run in cluster
	// mode (also with one, in an instances sweep).
	instances int
	cluster   bool
}

func plan(cfg *Config) []pointSpec {
	base := pointSpec{customers: cfg.Customers, rules: cfg.Rules, rates: []int{cfg.Rate}, instances: max(1, cfg.Instances), cluster: cfg.clustered()}
	if cfg.Max {
		base.rates = nil
	}
	label := func(p pointSpec) string {
		l := fmt.Sprintf("%d rules, %s customers", p.rules, FormatCount(p.customers))
		switch {
		case !p.cluster && cfg.Sweep != nil && cfg.Sweep.Dim == "instances":
			l += ", single-instance mode"
		case !p.cluster:
		case p.instances == 1:
			l += ", 1 instance"
		default:
			l += fmt.Sprintf(", %d instances", p.instances)
		}
		return l
	}
	if cfg.Sweep == nil {
		base.label = label(base)
		return []pointSpec{base}
	}
	var out []pointSpec
	switch cfg.Sweep.Dim {
	case "rate":
		base.rates = cfg.Sweep.Values
		base.label = label(base)
		out = append(out, base)
	case "rules":
		for _, v := range cfg.Sweep.Values {
			p := base
			p.rules = v
			p.label = label(p)
			out = append(out, p)
		}
	case "customers":
		for _, v := range cfg.Sweep.Values {
			p := base
			p.customers = v
			p.label = label(p)
			out = append(out, p)
		}
	case "instances":
		for _, v := range cfg.Sweep.Values {
			p := base
			p.instances = v
			if v == SingleInstance {
				p.instances, p.cluster = 1, false
			}
			p.label = label(p)
			out = append(out, p)
		}
	}
	return out
}

// Run runs the bench cfg describes: for each point it starts an engine
// (or uses the one at cfg.NATSURL), pre-loads profiles, runs the baseline
// and then the engine at each rate (or searches the highest rate within the
// SLO), stops the engine and measures its disk. It returns the report, and
// writes it to cfg.Out when set, also when a point fails (the error is
// then returned too).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := makeOutputDirs(&cfg); err != nil {
		return nil, err
	}
	cfg.engineRuns = new(atomic.Int64)
	if cfg.profilesChild() {
		cfg.Engine.Pprof = true
	}
	if cfg.Progress != nil {
		// The sampler and the run both write progress lines.
		cfg.Progress = &lockedWriter{w: cfg.Progress}
	}
	rep := newReport(&cfg)
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "kairos-bench-")
		if err != nil {
			return nil, err
		}
		dir = d
		if !cfg.Keep {
			defer os.RemoveAll(dir)
		}
	}
	baselines := map[string]*Point{} // baseline results by customers and rates, reused across a rules sweep
	var runErr error
	for i, spec := range plan(&cfg) {
		pdir := filepath.Join(dir, fmt.Sprintf("point-%d", i))
		pt, err := runPoint(ctx, &cfg, spec, pdir, baselines)
		if pt != nil {
			rep.Points = append(rep.Points, *pt)
		}
		if !cfg.Keep {
			_ = os.RemoveAll(pdir)
		}
		if err != nil {
			runErr = fmt.Errorf("%s: %w", spec.label, err)
			rep.Notes = append(rep.Notes, "The bench stopped early: "+runErr.Error())
			break
		}
	}
	scaleRatios(rep)
	rep.Finished = time.Now()
	rep.Machine.LoadEnd = loadAvg()
	rep.Targets = checkTargets(rep)
	rep.Notes = append(rep.Notes, notes(rep)...)
	if cfg.Out != "" {
		if err := rep.Write(cfg.Out); err != nil {
			return rep, errors.Join(runErr, err)
		}
	}
	return rep, runErr
}

func newReport(cfg *Config) *Report {
	g := NewGenerator(Workload{Customers: cfg.Customers, Skew: cfg.Skew, ZipfV: cfg.ZipfV})
	profiles := "every customer"
	switch {
	case cfg.Profiles < 0:
		profiles = "none"
	case cfg.Profiles > 0:
		profiles = strconv.Itoa(cfg.Profiles)
	}
	// Where the nats-server the bench starts runs, and how its CPU is
	// counted.
	natsWhere, natsCPU := "in its own process", "nats-server runs in the bench process and is not counted"
	if cfg.NATSExe != "" {
		natsWhere = "in a process of its own (kairos bench --nats-server-child)"
		natsCPU = "nats-server runs in a process of its own (--nats-process), counted apart from the bench process (\"+ nats-server\" in the bench CPU column)"
	}
	mode, scope, nats := "external", "not measured: the engine runs elsewhere", "NATS at "+cfg.NATSURL+" (external)"
	if cfg.Launcher != nil {
		mode, scope = cfg.Launcher.Mode(), cfg.Launcher.UsageScope()
		nats = "nats-server " + NATSVersion() + " with JetStream (file storage) started by the bench " + natsWhere + "; the engine connects over TCP"
		if cfg.Launcher.EmbedsNATS() {
			nats = "nats-server " + NATSVersion() + " embedded in the engine (file storage), the bench connects over TCP"
		} else {
			scope += "; " + natsCPU
		}
	}
	instances := ""
	if cfg.Launcher != nil && cfg.clustered() {
		nats = "nats-server " + NATSVersion() + " with JetStream (file storage) started by the bench " + natsWhere + "; the engine instances connect over TCP"
		instances = fmt.Sprintf("cluster mode: %d partitions; each instance a %s engine with its own data directory and HTTP port, all on this machine. "+
			"The points wait until the partitions are owned and spread evenly before any traffic", cfg.Partitions, mode)
		if mode == "in-process" {
			scope = "the whole bench process (/proc/self): every engine instance, the nats-server, the load generator and the offers consumer together"
		} else {
			scope = "the engine processes (kairos run instances, children of the bench; /proc/<pid>/stat and status), summed over the instances and also given per instance; " +
				"peak RSS is the sum of each instance's peak; " + natsCPU
		}
	}
	sweep := ""
	if cfg.Sweep != nil {
		vals := make([]string, len(cfg.Sweep.Values))
		for i, v := range cfg.Sweep.Values {
			vals[i] = FormatCount(v)
			if cfg.Sweep.Dim == "instances" && v == SingleInstance {
				vals[i] = "single"
			}
		}
		sweep = cfg.Sweep.Dim + "=" + strings.Join(vals, ",")
	}
	policy := "the engine's default (3 marketing offers a day, 5 a week per customer, one offer per event)"
	if cfg.Engine.Policy == "none" {
		policy = "no contact caps (one offer per event)"
	}
	repeat := 0
	if cfg.Repeat > 1 {
		repeat = cfg.Repeat
	}
	cmd := "kairos bench"
	if len(cfg.Args) > 0 {
		cmd += " " + strings.Join(cfg.Args, " ")
	}
	return &Report{
		Tool:    "kairos bench",
		Version: cfg.Version,
		Command: cmd,
		Started: time.Now(),
		Machine: MachineFacts(),
		Setup: Setup{
			Mode: mode, UsageScope: scope, NATS: nats, NATSProcess: cfg.NATSExe != "", Latency: latencyDefinition,
			Customers: cfg.Customers, Skew: cfg.Skew, ZipfV: cfg.ZipfV,
			TopShare: g.Share(1), Top1Share: g.Share(max(1, cfg.Customers/100)),
			Mix: FormatMix(cfg.Mix), Profiles: profiles, Rules: cfg.Rules, RuleAudience: cfg.RuleAudience, Seed: cfg.Seed, Policy: policy,
			Rate: cfg.Rate, Max: cfg.Max, SLO: cfg.SLO, Duration: cfg.Duration, Warmup: cfg.Warmup,
			Baseline: cfg.Baseline, Sweep: sweep, InFlight: cfg.InFlight, WaitIdle: cfg.WaitIdle, Repeat: repeat,
			Instances: max(1, cfg.Instances), Cluster: instances,
		},
	}
}

// external is an engine the bench did not start.
type external struct{ url, stateDir, metrics string }

func (e *external) NATSURL() string                { return e.url }
func (e *external) Usage() (Usage, bool)           { return Usage{}, false }
func (e *external) StateDir() string               { return e.stateDir }
func (e *external) MetricsURL() string             { return e.metrics }
func (e *external) Stop(ctx context.Context) error { return nil }

// pointRun is the state of one point while it runs.
type pointRun struct {
	cfg    *Config
	spec   pointSpec
	target Target
	js     jetstream.JetStream
	nc     *nats.Conn
	dir    string
	// baselineTarget is the baseline's process while it runs, nil when the
	// baseline runs in the bench's process.
	baselineTarget Target
	// cluster is the engine instances in cluster mode, nil otherwise.
	cluster *clusterTarget
	// round is the round being run with --repeat (from 1), 0 without.
	round int
	// natsPID is the nats-server's process with Config.NATSExe, else 0;
	// natsPprof the base URL of its /debug/pprof/ with
	// Config.NATSCPUProfile.
	natsPID   int
	natsPprof string
	// peakAnon is the largest anonymous RSS of the engine's process seen
	// while a run went (ourCPU); 0 in-process.
	peakAnon atomic.Int64
}

// makeOutputDirs makes the directories of --out and of the profiles, and
// checks that files can be made in them. Those are written after the
// measured time, so a path that cannot be written must fail the start,
// not the end of a long run.
func makeOutputDirs(cfg *Config) error {
	var dirs []string
	if cfg.Out != "" {
		dirs = append(dirs, cfg.Out)
	}
	for _, f := range []string{cfg.CPUProfile, cfg.Trace, cfg.MemProfile, cfg.NATSCPUProfile} {
		if f != "" {
			dirs = append(dirs, filepath.Dir(f))
		}
	}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return err
		}
		f, err := os.CreateTemp(d, ".kairos-bench-*")
		if err != nil {
			return fmt.Errorf("cannot write the bench's output: %w", err)
		}
		f.Close()
		os.Remove(f.Name())
	}
	return nil
}

func runPoint(ctx context.Context, cfg *Config, spec pointSpec, dir string, baselines map[string]*Point) (pt *Point, err error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	pt = &Point{Label: spec.label, Customers: spec.customers, Rules: spec.rules, Best: -1, BaselineBest: -1}
	if cfg.Launcher != nil {
		pt.Instances, pt.Cluster = spec.instances, spec.cluster
	}
	p := &pointRun{cfg: cfg, spec: spec, dir: dir}
	progress(cfg, "== %s", spec.label)

	// The engine.
	var ns *server.Server
	if cfg.Launcher != nil {
		types := make([]string, len(cfg.Mix))
		for i, m := range cfg.Mix {
			types[i] = m.Type
		}
		rulesDir := filepath.Join(dir, "rules")
		if err := WriteRules(rulesDir, RuleSpec{Rules: spec.rules, Types: types, Seed: cfg.Seed, Audience: cfg.RuleAudience}); err != nil {
			return nil, err
		}
		natsURL := ""
		if !cfg.Launcher.EmbedsNATS() || spec.cluster {
			if cfg.NATSExe != "" {
				nc, err := startNATSChild(cfg.NATSExe, filepath.Join(dir, "nats"), cfg.NATSCPUProfile != "", time.Minute)
				if err != nil {
					return nil, err
				}
				defer nc.stop()
				natsURL, p.natsPID, p.natsPprof = nc.url, nc.pid(), nc.pprof
			} else {
				ns, err = startNATS(filepath.Join(dir, "nats"), false)
				if err != nil {
					return nil, err
				}
				defer func() {
					ns.Shutdown()
					ns.WaitForShutdown()
				}()
				natsURL = ns.ClientURL()
			}
		}
		t0 := time.Now()
		if spec.cluster {
			progress(cfg, "starting %d engine instances (%s, cluster mode, %d rules)", spec.instances, cfg.Launcher.Mode(), spec.rules)
			ct, owned, err := launchCluster(ctx, cfg, spec.instances, dir, rulesDir, natsURL)
			if err != nil {
				return nil, err
			}
			p.cluster, p.target = ct, ct
			for i, in := range ct.insts {
				pt.PerInstance = append(pt.PerInstance, InstanceStats{Name: in.name, Partitions: owned[i]})
			}
			progress(cfg, "partitions owned: %v", owned)
		} else {
			httpAddr, err := freeAddr()
			if err != nil {
				return nil, err
			}
			ls := LaunchSpec{Dir: dir, ConfigFile: filepath.Join(dir, "kairos.yaml"), DataDir: filepath.Join(dir, "data"), NATSURL: natsURL, HTTPAddr: httpAddr}
			if err := writeEngineConfig(ls.ConfigFile, cfg.Engine, rulesDir, ls.DataDir, natsURL, httpAddr, nil); err != nil {
				return nil, err
			}
			if n := profileCount(cfg, spec); n > 0 && cfg.importsProfiles(spec) {
				progress(cfg, "importing %d profiles", n)
				pt.ProfileLoad, err = importProfiles(filepath.Join(ls.DataDir, "state"), stateCompression(ls.ConfigFile), cfg, spec, n)
				if err != nil {
					return nil, fmt.Errorf("import profiles: %w", err)
				}
				progress(cfg, "profiles: %d in %.1fs (%.0f/s)", n, pt.ProfileLoad.Seconds, pt.ProfileLoad.PerSecond)
			}
			progress(cfg, "starting the engine (%s, %d rules)", cfg.Launcher.Mode(), spec.rules)
			p.target, err = cfg.Launcher.Launch(ctx, ls)
			if err != nil {
				return nil, err
			}
		}
		pt.ReadySeconds = time.Since(t0).Seconds()
		if u, ok := p.target.Usage(); ok {
			pt.ReadyRSSBytes = u.RSSBytes
		}
	} else {
		p.target = &external{url: cfg.NATSURL, stateDir: cfg.StateDir, metrics: cfg.MetricsURL}
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		if u, ok := p.target.Usage(); ok {
			pt.PeakRSSBytes = u.PeakRSSBytes
		}
		pt.PeakAnonRSSBytes = p.peakAnon.Load()
		if p.cluster != nil {
			for i, u := range p.cluster.usages() {
				pt.PerInstance[i].PeakRSSBytes = u.PeakRSSBytes
				pt.PerInstance[i].CPUSeconds = u.CPUSeconds
			}
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		return p.target.Stop(sctx)
	}
	defer func() {
		if serr := stop(); serr != nil && err == nil {
			err = serr
		}
	}()

	nc, err := nats.Connect(p.target.NATSURL(), nats.Name("kairos-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return pt, fmt.Errorf("connect to %s: %w", p.target.NATSURL(), err)
	}
	defer nc.Close()
	p.nc = nc
	p.js, err = jetstream.New(nc)
	if err != nil {
		return pt, err
	}
	eng, err := p.engineSubjects(ctx)
	if err != nil {
		return pt, err
	}
	runID := strconv.FormatUint(cfg.Seed, 36) + "x" + strconv.FormatInt(time.Now().UnixNano()/1e6, 36)
	w := Workload{Customers: spec.customers, Skew: cfg.Skew, ZipfV: cfg.ZipfV, Seed: cfg.Seed, RunID: runID, Mix: cfg.Mix}
	d, err := newDriver(nc, eng, w, cfg.InFlight)
	if err != nil {
		return pt, err
	}
	if err := d.startOffers(ctx); err != nil {
		return pt, err
	}
	defer d.stop()

	// Profiles, as events.
	if pt.ProfileLoad != nil {
		d.markProfiled(pt.ProfileLoad.Count)
	} else if n := profileCount(cfg, spec); n > 0 {
		progress(cfg, "pre-loading %d profiles", n)
		t0 := time.Now()
		if err := d.preload(ctx, n, t0); err != nil {
			return pt, fmt.Errorf("pre-load profiles: %w", err)
		}
		if _, err := p.waitDrained(ctx, d); err != nil {
			return pt, fmt.Errorf("pre-load profiles: %w", err)
		}
		secs := time.Since(t0).Seconds()
		pt.ProfileLoad = &ProfileLoad{Method: ProfileEvents, Count: n, Seconds: secs, PerSecond: float64(n) / secs}
		progress(cfg, "profiles: %d in %.1fs (%.0f/s)", n, secs, float64(n)/secs)
	}

	// Each round: the transport limit while the engine idles, then the
	// engine. With one round, a later point with the same customers and
	// rates reuses this point's baseline; with more, every point
	// alternates its own, so that the rounds compare runs made side by
	// side.
	for round := 1; round <= cfg.Repeat && err == nil; round++ {
		if cfg.Repeat > 1 {
			p.round = round
			progress(cfg, "round %d of %d", round, cfg.Repeat)
		}
		if cfg.Baseline {
			key := fmt.Sprint(spec.customers, spec.rates)
			if prev, ok := baselines[key]; ok && cfg.Repeat == 1 {
				pt.BaselineRuns, pt.BaselineBest = prev.BaselineRuns, prev.BaselineBest
			} else {
				if err := p.baseline(ctx, pt, w); err != nil {
					return pt, fmt.Errorf("baseline: %w", err)
				}
				baselines[key] = pt
			}
		}
		if spec.rates == nil {
			pt.Runs, pt.Best, err = p.search(ctx, d, "engine")
			continue
		}
		for _, rate := range spec.rates {
			var r RunResult
			r, err = p.run(ctx, d, "engine", rate)
			pt.Runs = append(pt.Runs, r)
			if err != nil {
				break
			}
		}
		pt.Best = bestRun(pt.Runs)
	}
	pt.Ratio = ratio(pt, cfg.Max)
	if err != nil {
		return pt, err
	}

	// What the engines say they emitted, against what the bench received.
	pt.OffersReceived = d.received.Load()
	pt.OffersOfEvents = d.offers.Load()
	pt.OfferFingerprint = fmt.Sprintf("%016x", d.fingerprint.Load())
	if ms := p.scrapeEach(ctx, "engine"); len(ms) > 0 && !slices.ContainsFunc(ms, func(m metricsSnapshot) bool { return m == nil }) {
		for i, m := range ms {
			pt.OffersEmitted += int64(m["kairos_offers_total"])
			if i < len(pt.PerInstance) {
				pt.PerInstance[i].Events = int64(m["kairos_engine_events_total"])
				pt.PerInstance[i].Offers = int64(m["kairos_offers_total"])
			}
		}
	}
	if p.cluster != nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if s, err := p.js.Stream(cctx, "KAIROS_CHANGELOG"); err == nil {
			pt.ChangelogBytes = int64(s.CachedInfo().State.Bytes)
		}
		cancel()
	}

	if err := stop(); err != nil {
		return pt, err
	}
	pt.Events = int64(d.gen.Seq())
	if pt.ProfileLoad != nil {
		pt.Events += int64(pt.ProfileLoad.Count)
	}
	var dirs []string
	if p.cluster != nil {
		for _, in := range p.cluster.insts {
			dirs = append(dirs, in.t.StateDir())
		}
	} else if sd := p.target.StateDir(); sd != "" {
		dirs = append(dirs, sd)
	}
	for i, sd := range dirs {
		n, err := DiskUsage(sd)
		if err != nil {
			pt.DiskBytes = 0
			break
		}
		pt.DiskBytes += n
		if p.cluster != nil {
			pt.PerInstance[i].DiskBytes = n
		}
	}
	if pt.DiskBytes > 0 {
		pt.CustomersWithState = d.customersSeen()
		if pt.CustomersWithState > 0 {
			pt.DiskPerCustomer = float64(pt.DiskBytes) / float64(pt.CustomersWithState)
		}
	}
	return pt, nil
}

// engineSubjects finds the engine's streams by the subjects they hold.
func (p *pointRun) engineSubjects(ctx context.Context) (subjects, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pre := p.cfg.Prefix
	ev, err := p.js.StreamNameBySubject(cctx, pre+".events.login.C0")
	if err != nil {
		return subjects{}, fmt.Errorf("no stream holds %s.events.>: %w", pre, err)
	}
	of, err := p.js.StreamNameBySubject(cctx, pre+".offers.sms.C0")
	if err != nil {
		return subjects{}, fmt.Errorf("no stream holds %s.offers.>: %w", pre, err)
	}
	durable := p.cfg.Durable
	if p.cluster != nil {
		durable += "-p0" // one of the partition consumers, <durable>-p<N>
	}
	if _, err := p.js.Consumer(cctx, ev, durable); err != nil {
		return subjects{}, fmt.Errorf("the engine's consumer %s on %s: %w", durable, ev, err)
	}
	return subjects{prefix: pre, eventsStream: ev, offersStream: of, durable: p.cfg.Durable, offersSubject: pre + ".offers.>",
		partitioned: p.cluster != nil}, nil
}

// baseline runs the transport limit: the same traffic through Baseline.
func (p *pointRun) baseline(ctx context.Context, pt *Point, w Workload) (err error) {
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		deleteBaselineStreams(dctx, p.js)
	}()
	// Where the engine runs as its own process, so does the baseline.
	if br, ok := p.cfg.Launcher.(BaselineRunner); ok {
		progress(p.cfg, "starting the baseline consumer (child process)")
		t, err := br.StartBaseline(ctx, p.target.NATSURL(), filepath.Join(p.dir, "baseline"))
		if err != nil {
			return err
		}
		p.baselineTarget = t
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if serr := t.Stop(sctx); serr != nil && err == nil {
				err = serr
			}
			p.baselineTarget = nil
		}()
		if err := waitConsumer(ctx, p.js, baselineEvents, baselineDurable); err != nil {
			return fmt.Errorf("baseline consumer: %w", err)
		}
	} else {
		// The baseline consumer has a connection of its own, as the engine does.
		bnc, err := nats.Connect(p.target.NATSURL(), nats.Name("kairos-bench-baseline"))
		if err != nil {
			return err
		}
		defer bnc.Close()
		bl, err := StartBaseline(ctx, bnc, BaselineOptions{Logger: p.cfg.Logger})
		if err != nil {
			return err
		}
		defer func() {
			if serr := bl.Stop(); serr != nil && err == nil {
				err = serr
			}
		}()
	}
	w.RunID += "b"
	if p.round > 0 {
		// Each round's baseline streams are new, and so are its event ids.
		w.RunID += strconv.Itoa(p.round)
	}
	bd, err := newDriver(p.nc, baselineSubjects, w, p.cfg.InFlight)
	if err != nil {
		return err
	}
	if err := bd.startOffers(ctx); err != nil {
		return err
	}
	defer bd.stop()
	if p.spec.rates == nil {
		pt.BaselineRuns, pt.BaselineBest, err = p.search(ctx, bd, "baseline")
	} else {
		for _, rate := range p.spec.rates {
			var r RunResult
			r, err = p.run(ctx, bd, "baseline", rate)
			pt.BaselineRuns = append(pt.BaselineRuns, r)
			if err != nil {
				break
			}
		}
		pt.BaselineBest = bestRun(pt.BaselineRuns)
	}
	return err
}

// waitConsumer waits until a consumer exists (the baseline process made it).
func waitConsumer(ctx context.Context, js jetstream.JetStream, stream, durable string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if _, err := js.Consumer(ctx, stream, durable); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// bestRun is the index of the highest-rate run within the SLO, -1 if none.
func bestRun(runs []RunResult) int {
	best := -1
	for i, r := range runs {
		if r.WithinSLO && (best < 0 || r.TargetRate > runs[best].TargetRate) {
			best = i
		}
	}
	return best
}

// search finds the highest rate whose run stays within the SLO: it doubles
// the rate from MaxStart until a run fails, then bisects between the best
// passing and the lowest failing rate until they are within MaxPrecision.
func (p *pointRun) search(ctx context.Context, d *driver, side string) ([]RunResult, int, error) {
	cfg := p.cfg
	rate, good, bad := cfg.MaxStart, 0, 0
	var runs []RunResult
	for step := 0; step < cfg.MaxSteps; step++ {
		r, err := p.run(ctx, d, side, rate)
		runs = append(runs, r)
		if err != nil {
			return runs, bestRun(runs), err
		}
		if r.WithinSLO {
			good = max(good, rate)
		} else if bad == 0 || rate < bad {
			bad = rate
		}
		if r.Verdict == verdictNotDrained {
			break // the next run would start on a backlog
		}
		switch {
		case bad == 0:
			rate *= 2
		case good == 0:
			rate /= 2
		default:
			if float64(bad-good) <= cfg.MaxPrecision*float64(good) {
				return runs, bestRun(runs), nil
			}
			rate = (good + bad) / 2
		}
		rate = roundRate(rate)
		if rate < 100 || rate == good || rate == bad {
			break
		}
	}
	return runs, bestRun(runs), nil
}

// roundRate rounds to two significant digits, for readable steps.
func roundRate(r int) int {
	if r < 100 {
		return r
	}
	p := int(math.Pow(10, math.Floor(math.Log10(float64(r)))-1))
	return (r + p/2) / p * p
}

const (
	verdictOK         = "ok"
	verdictNotDrained = "not drained"
)

// defaultQuietCPUs is how few CPUs the rest of the machine may use in a
// second for that second to count as quiet, without --wait-idle.
const defaultQuietCPUs = 0.25

// run sends traffic at rate to one side for the warm-up and the measured
// time, then waits until everything sent was processed and its offers
// received.
func (p *pointRun) run(ctx context.Context, d *driver, side string, rate int) (RunResult, error) {
	cfg := p.cfg
	r := RunResult{Side: side, TargetRate: rate, Round: p.round}
	name := r.name()
	if cfg.WaitIdle > 0 {
		waited, quiet := p.waitIdle(ctx, side)
		r.WaitedIdleSec = waited.Seconds()
		if !quiet {
			r.Disturbed = true
		}
	}
	rec := NewRecorder()
	warm := NewRecorder()
	start := time.Now().Add(10 * time.Millisecond)
	warmEnd := start.Add(cfg.Warmup)
	end := warmEnd.Add(cfg.Duration)

	// A sampler reads the consumer's lag and prints progress every second.
	var (
		mu        sync.Mutex
		ticks     []Tick
		lagMax    int64
		measuring atomic.Bool
		cur       atomic.Pointer[Recorder]
		quiet     = NewRecorder()
		quietSecs atomic.Int64
	)
	quietCPUs := cfg.WaitIdle
	if quietCPUs <= 0 {
		quietCPUs = defaultQuietCPUs
	}
	cur.Store(warm)
	sctx, stopSampler := context.WithCancel(ctx)
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last := time.Now()
		lastSeq, lastOffers := d.pubSeq.Load(), d.offers.Load()
		ours := func() float64 { return p.ourCPU(side) }
		lastOurs := ours()
		lastBusy, _ := machineBusy()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				lag, _, _ := consumerState(sctx, p.js, d.sub)
				el := now.Sub(last).Seconds()
				seq, offers := d.pubSeq.Load(), d.offers.Load()
				var other float64
				busyOK := false
				if busy, ok := machineBusy(); ok {
					o := ours()
					other = max(0, busy-lastBusy-(o-lastOurs)) / el
					lastBusy, lastOurs, busyOK = busy, o, true
				}
				// A second in which the rest of the machine was quiet also
				// goes to the quiet histogram.
				var into *Recorder
				if measuring.Load() && busyOK && other < quietCPUs {
					into = quiet
					quietSecs.Add(1)
				}
				iv := cur.Load().Interval(into)
				tk := Tick{T: math.Round(now.Sub(warmEnd).Seconds()*10) / 10, SentPerS: float64(seq-lastSeq) / el, OffersPer: float64(offers-lastOffers) / el, Lag: lag, P50: iv.P50, P99: iv.P99}
				tk.Other = math.Round(other*100) / 100
				last, lastSeq, lastOffers = now, seq, offers
				mu.Lock()
				ticks = append(ticks, tk)
				if measuring.Load() {
					lagMax = max(lagMax, lag)
				}
				mu.Unlock()
				phase := "warm-up"
				if measuring.Load() {
					phase = "measure"
				} else if now.After(end) {
					phase = "drain"
				}
				progress(cfg, "%s %d/s %-7s t=%5.0fs sent %6.0f/s offers %6.0f/s lag %7d p50 %s p99 %s ms (other processes: %.1f CPUs)",
					name, rate, phase, tk.T, tk.SentPerS, tk.OffersPer, lag, ms(iv.P50), ms(iv.P99), tk.Other)
			}
		}
	}()
	defer func() {
		stopSampler()
		<-samplerDone
	}()

	d.measure(0, 0, warm)
	if cfg.Warmup > 0 {
		if _, err := d.publish(ctx, float64(rate), start, warmEnd, nil); err != nil {
			return r, err
		}
	}
	lo := d.gen.Seq() + 1
	pubErr0, other0 := d.pubErrors.Load(), d.other.Load()
	meas0 := d.measure(lo, 0, rec)
	cur.Store(rec)
	measuring.Store(true)
	// The figures at the start of the measured time are read beside the
	// publisher, which must not pause for them.
	type snapshot struct {
		ackFloor uint64
		err      error
		u, b, n  Usage
		uok, nok bool
		iu       []Usage
		m        []metricsSnapshot
		busy     float64
	}
	first := make(chan snapshot, 1)
	go func() {
		var s snapshot
		_, s.ackFloor, s.err = consumerState(ctx, p.js, d.sub)
		s.u, s.uok = p.usage(side)
		s.iu = p.instanceUsage(side)
		s.b, _ = ProcUsage(0)
		s.n, s.nok = p.natsUsage()
		s.busy, _ = machineBusy()
		s.m = p.scrapeEach(ctx, side)
		first <- s
	}()
	stopProfile := p.startProfile(side)
	late := NewRecorder()
	hi, err := d.publish(ctx, float64(rate), warmEnd, end, late)
	t1 := time.Now()
	measuring.Store(false)
	lagEnd, af1, lerr := consumerState(ctx, p.js, d.sub)
	u1, _ := p.usage(side)
	iu1 := p.instanceUsage(side)
	b1, _ := ProcUsage(0)
	n1, n1ok := p.natsUsage()
	busy1, busyOK := machineBusy()
	cpuProfiled, natsProfiled := stopProfile()
	if natsProfiled {
		cp, perr := readCPUProfile(cfg.NATSCPUProfile)
		if perr != nil {
			progress(cfg, "nats-cpuprofile: %v", perr)
		} else {
			cp.Scope = "the nats-server process alone (--nats-process, from its profiling port)"
			r.NATSCPUProfile = cp
		}
	}
	if cpuProfiled {
		cp, perr := readCPUProfile(cfg.CPUProfile)
		if perr != nil {
			progress(cfg, "cpuprofile: %v", perr)
		} else if cfg.profilesChild() {
			cp.Scope = "the engine process alone (kairos run, from its /debug/pprof/profile)"
		} else {
			cp.Scope = "the whole bench process: the engine, its embedded nats-server, the load generator and the offers consumer"
		}
		r.CPUProfile = cp
	}
	d.measure(lo, hi, rec)
	s0 := <-first
	if err != nil {
		return r, err
	}
	if err := errors.Join(s0.err, lerr); err != nil {
		return r, fmt.Errorf("consumer info: %w", err)
	}
	af0, u0, uok, b0, m0 := s0.ackFloor, s0.u, s0.uok, s0.b, s0.m
	secs := t1.Sub(warmEnd).Seconds()
	r.Seconds = secs
	r.Sent = int64(hi - lo)
	r.SentPerSec = float64(r.Sent) / secs
	r.ProcessedPerSec = float64(af1-min(af0, af1)) / secs
	r.LagEnd = lagEnd
	if uok {
		r.CPUSeconds = u1.CPUSeconds - u0.CPUSeconds
		if n := af1 - min(af0, af1); n > 0 {
			r.CPUMicrosPerEvent = r.CPUSeconds / float64(n) * 1e6
		}
		r.PeakRSSBytes = u1.PeakRSSBytes
		r.PageFaults = u1.PageFaults - u0.PageFaults
	}
	r.BenchCPUSeconds = b1.CPUSeconds - b0.CPUSeconds
	if s0.nok && n1ok {
		r.NATSCPUSeconds = n1.CPUSeconds - s0.n.CPUSeconds
	}
	if busyOK && s0.busy > 0 {
		// In-process, the engine's usage is the bench process's own.
		ours := r.BenchCPUSeconds + r.NATSCPUSeconds
		if p.cfg.Launcher != nil && p.cfg.Launcher.Mode() != "in-process" || side != "engine" {
			ours += r.CPUSeconds
		}
		r.OtherCPUSeconds = max(0, busy1-s0.busy-ours)
	}

	// Everything sent must be processed and its offers received.
	wctx, cancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	defer cancel()
	if err := d.waitPublished(wctx); err != nil {
		r.Verdict = verdictNotDrained
	}
	drained := false
	if r.Verdict == "" {
		drainStart := time.Now()
		drained, err = p.waitDrained(wctx, d)
		if err != nil && ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.DrainSec = time.Since(drainStart).Seconds()
		if drained {
			p.waitOffers(wctx, d)
		}
	}
	m1 := p.scrapeEach(ctx, side)
	r.Engine = engineStats(mergeSnapshots(m0), mergeSnapshots(m1))
	if p.cluster != nil && side == "engine" {
		r.Instances = instanceRuns(p.cluster, s0.iu, iu1, m0, m1)
	}
	var measured int64
	r.Latency, measured = d.recorded(rec)
	r.SendLate = late.Total()
	stopSampler()
	<-samplerDone
	r.QuietSeconds = int(quietSecs.Load())
	if r.QuietSeconds > 0 {
		r.QuietLatency = quiet.Total()
	}
	r.Offers = measured - meas0
	r.OffersPerSec = float64(r.Offers) / secs
	r.PublishErrors = d.pubErrors.Load() - pubErr0
	r.Unmatched = d.other.Load() - other0
	mu.Lock()
	r.Timeline = ticks
	r.LagMax = max(lagMax, lagEnd)
	mu.Unlock()

	behindPub := r.SentPerSec < 0.95*float64(rate)
	behindEng := r.ProcessedPerSec < 0.95*r.SentPerSec || lagEnd > int64(max(rate, 100))
	r.Sustained = drained && !behindPub && !behindEng && r.PublishErrors == 0
	r.AtCapacity = behindEng && !behindPub
	r.WithinSLO = r.Sustained && r.Latency.Count > 0 && r.Latency.P99 <= float64(cfg.SLO)/float64(time.Millisecond)
	switch {
	case !drained:
		r.Verdict = verdictNotDrained
	case r.PublishErrors > 0:
		r.Verdict = fmt.Sprintf("%d publish errors (%v)", r.PublishErrors, d.lastErr.Load())
	case behindPub:
		r.Verdict = "publisher behind"
	case behindEng:
		r.Verdict = fmt.Sprintf("%s behind (lag %d)", side, lagEnd)
	case r.Latency.Count == 0:
		r.Verdict = "no offers"
	case !r.WithinSLO:
		r.Verdict = "p99 over SLO"
	default:
		r.Verdict = verdictOK
	}
	progress(cfg, "%s %d/s: sent %.0f/s processed %.0f/s offers %.0f/s p50 %s p99 %s p99.9 %s max %s ms lag max %d — %s",
		name, rate, r.SentPerSec, r.ProcessedPerSec, r.OffersPerSec, ms(r.Latency.P50), ms(r.Latency.P99), ms(r.Latency.P999), ms(r.Latency.Max), r.LagMax, r.Verdict)
	return r, nil
}

// waitIdle waits until the rest of the machine has used less than
// cfg.WaitIdle CPUs for five seconds in a row, at most ten minutes. It
// reports how long it waited and whether the machine became quiet.
func (p *pointRun) waitIdle(ctx context.Context, side string) (time.Duration, bool) {
	const window, limit = 5, 10 * time.Minute
	start := time.Now()
	ours := func() float64 { return p.ourCPU(side) }
	busy0, ok := machineBusy()
	if !ok {
		return 0, true
	}
	o0, quiet, said := ours(), 0, false
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := time.Now()
	for quiet < window {
		select {
		case <-ctx.Done():
			return time.Since(start), false
		case now := <-t.C:
			busy1, _ := machineBusy()
			o1 := ours()
			other := (busy1 - busy0 - (o1 - o0)) / now.Sub(last).Seconds()
			busy0, o0, last = busy1, o1, now
			if other < p.cfg.WaitIdle {
				quiet++
				continue
			}
			quiet = 0
			if !said {
				progress(p.cfg, "waiting for the machine: other processes use %.1f CPUs (--wait-idle %.2f)", other, p.cfg.WaitIdle)
				said = true
			}
			if time.Since(start) > limit {
				progress(p.cfg, "the machine did not become idle in %v; running anyway", limit)
				return time.Since(start), false
			}
		}
	}
	return time.Since(start), true
}

// scrapeEach reads the metrics of each engine instance for engine runs
// (one in single-instance mode), nil for one it cannot read; nil when
// there is none to read.
func (p *pointRun) scrapeEach(ctx context.Context, side string) []metricsSnapshot {
	if side != "engine" {
		return nil
	}
	var urls []string
	if p.cluster != nil {
		for _, in := range p.cluster.insts {
			urls = append(urls, in.t.MetricsURL())
		}
	} else if u := p.target.MetricsURL(); u != "" {
		urls = append(urls, u)
	}
	out := make([]metricsSnapshot, len(urls))
	for i, u := range urls {
		if m, err := scrapeMetrics(ctx, u); err == nil {
			out[i] = m
		}
	}
	return out
}

// instanceUsage is each engine instance's usage in cluster mode, for
// engine runs; nil otherwise or when the instances share the bench's
// process.
func (p *pointRun) instanceUsage(side string) []Usage {
	if side != "engine" || p.cluster == nil {
		return nil
	}
	return p.cluster.usages()
}

// ourCPU is the CPU seconds used so far by the bench's process, by its
// nats-server's when that is a process of its own (--nats-process), and by
// side's, when that is another process: what is not the rest of the
// machine. Called every second while a run goes, it also keeps the engine
// process's largest anonymous RSS.
func (p *pointRun) ourCPU(side string) float64 {
	b, _ := ProcUsage(0)
	c := b.CPUSeconds
	if n, ok := p.natsUsage(); ok {
		c += n.CPUSeconds
	}
	if u, ok := p.usage(side); ok && (side != "engine" || p.cfg.Launcher == nil || p.cfg.Launcher.Mode() != "in-process") {
		c += u.CPUSeconds
		if side == "engine" && u.AnonRSSBytes > p.peakAnon.Load() {
			p.peakAnon.Store(u.AnonRSSBytes)
		}
	}
	return c
}

// usage is the engine's usage for engine runs, the baseline consumer's
// for baseline runs when it is a process of its own.
func (p *pointRun) usage(side string) (Usage, bool) {
	if side != "engine" {
		if p.baselineTarget != nil {
			return p.baselineTarget.Usage()
		}
		return Usage{}, false
	}
	return p.target.Usage()
}

// natsUsage is the usage of the nats-server's process when it has one
// (Config.NATSExe).
func (p *pointRun) natsUsage() (Usage, bool) {
	if p.natsPID == 0 {
		return Usage{}, false
	}
	u, err := ProcUsage(p.natsPID)
	return u, err == nil
}

// startProfile starts the CPU profile and the execution trace at the
// measured phase of engine run cfg.ProfileRun; the returned func stops them, writes the
// heap profile and tells whether the CPU profiles of the engine and of the
// nats-server were written. In-process, the engine's are of the bench's
// own process; with a child engine, of the engine's, through its
// /debug/pprof/. The nats-server's (--nats-cpuprofile) is of its process
// (--nats-process), through its profiling port.
func (p *pointRun) startProfile(side string) (stop func() (cpu, natsCPU bool)) {
	engine := p.cfg.CPUProfile != "" || p.cfg.Trace != "" || p.cfg.MemProfile != ""
	if !engine && p.cfg.NATSCPUProfile == "" || side != "engine" || p.cfg.engineRuns.Add(1) != int64(p.cfg.ProfileRun) {
		return func() (bool, bool) { return false, false }
	}
	stopNATS := func() bool { return false }
	if p.cfg.NATSCPUProfile != "" && p.natsPprof != "" {
		stopNATS = p.fetchNATSProfile()
	}
	stopEngine := func() bool { return false }
	switch {
	case !engine:
	case p.cfg.profilesChild():
		stopEngine = p.fetchProfiles()
	default:
		stopEngine = p.startOwnProfiles()
	}
	return func() (bool, bool) {
		cpu := stopEngine()
		return cpu, stopNATS()
	}
}

// profileFetch gives the seconds a profile fetched from a /debug/pprof/
// covers (the measured time, in whole seconds, from when it is asked
// for) and a client that waits that long.
func (p *pointRun) profileFetch() (secs string, client *http.Client) {
	secs = strconv.Itoa(max(1, int(math.Round(p.cfg.Duration.Seconds()))))
	return secs, &http.Client{Timeout: p.cfg.Duration + time.Minute}
}

// fetchNATSProfile takes the CPU profile of the nats-server process over
// the measured time (whole seconds, from now) from its /debug/pprof/; the
// returned func waits for it and tells whether it was written.
func (p *pointRun) fetchNATSProfile() func() bool {
	secs, client := p.profileFetch()
	done := make(chan bool, 1)
	go func() {
		err := fetchTo(client, p.natsPprof+"profile?seconds="+secs, "", p.cfg.NATSCPUProfile)
		if err != nil {
			progress(p.cfg, "nats-cpuprofile: %v", err)
		}
		done <- err == nil
	}()
	return func() bool { return <-done }
}

// startOwnProfiles starts the profiles of the bench's own process (an
// in-process engine); the returned func stops them and tells whether the
// CPU profile was written.
func (p *pointRun) startOwnProfiles() func() bool {
	var stops []func()
	start := func(name, path string, begin func(io.Writer) error, end func(io.Writer)) bool {
		if path == "" {
			return false
		}
		f, err := os.Create(path)
		if err != nil {
			progress(p.cfg, "%s: %v", name, err)
			return false
		}
		if err := begin(f); err != nil {
			f.Close()
			progress(p.cfg, "%s: %v", name, err)
			return false
		}
		stops = append(stops, func() {
			end(f)
			if err := f.Close(); err != nil {
				progress(p.cfg, "%s: %v", name, err)
			}
		})
		return true
	}
	cpuStarted := start("cpuprofile", p.cfg.CPUProfile, pprof.StartCPUProfile, func(io.Writer) { pprof.StopCPUProfile() })
	start("trace", p.cfg.Trace, trace.Start, func(io.Writer) { trace.Stop() })
	// The heap profile is written at the end: what the run left live (as
	// of the last collection) and what it allocated.
	start("memprofile", p.cfg.MemProfile, func(io.Writer) error { return nil }, func(w io.Writer) {
		if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
			progress(p.cfg, "memprofile: %v", err)
		}
	})
	return func() bool {
		for _, stop := range stops {
			stop()
		}
		return cpuStarted
	}
}

// waitDrained waits until the side's consumer has nothing pending or
// unacknowledged. It reports false when ctx ends first (and ctx's error
// only for the parent's cancellation).
func (p *pointRun) waitDrained(ctx context.Context, d *driver) (bool, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		lag, _, err := consumerState(ctx, p.js, d.sub)
		if err == nil && lag == 0 {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
	}
}

// waitOffers waits until the offers consumer has received the last
// message of the offers stream (at most 30 s).
func (p *pointRun) waitOffers(ctx context.Context, d *driver) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := p.js.Stream(ctx, d.sub.offersStream)
	if err != nil {
		return
	}
	last := s.CachedInfo().State.LastSeq
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for d.lastOff.Load() < last {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// fetchProfiles takes the profiles of a child engine from its
// /debug/pprof/: the CPU profile and the trace over the measured time
// (whole seconds, from now), the heap profile when stopped.
func (p *pointRun) fetchProfiles() func() bool {
	base := strings.TrimSuffix(p.target.MetricsURL(), "/metrics") + "/debug/pprof/"
	secs, client := p.profileFetch()
	// /debug/pprof/ is an admin path: behind the engine's token, if its
	// configuration (--engine-config) sets one.
	token, terr := httpToken(filepath.Join(p.dir, "kairos.yaml"), p.dir)
	fetch := func(name, path, url string) bool {
		err := terr
		if err == nil {
			err = fetchTo(client, url, token, path)
		}
		if err != nil {
			progress(p.cfg, "%s: %v", name, err)
		}
		return err == nil
	}
	var wg sync.WaitGroup
	var cpuOK bool
	if p.cfg.CPUProfile != "" {
		wg.Go(func() { cpuOK = fetch("cpuprofile", p.cfg.CPUProfile, base+"profile?seconds="+secs) })
	}
	if p.cfg.Trace != "" {
		wg.Go(func() { fetch("trace", p.cfg.Trace, base+"trace?seconds="+secs) })
	}
	return func() bool {
		wg.Wait()
		if p.cfg.MemProfile != "" {
			fetch("memprofile", p.cfg.MemProfile, base+"heap")
		}
		return cpuOK
	}
}

// httpToken is the bearer token of the engine configuration at path
// (http.token, or the content of http.token_file, relative to dir as the
// engine, started in dir, reads it), "" when it sets none.
func httpToken(path, dir string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var c struct {
		HTTP struct {
			Token     string `yaml:"token"`
			TokenFile string `yaml:"token_file"`
		} `yaml:"http"`
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if c.HTTP.TokenFile == "" {
		return c.HTTP.Token, nil
	}
	f := c.HTTP.TokenFile
	if !filepath.IsAbs(f) {
		f = filepath.Join(dir, f)
	}
	tok, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("http.token_file: %w", err)
	}
	return strings.TrimSpace(string(tok)), nil
}

// fetchTo writes the body of a GET of url, with the bearer token when not
// empty, to the file path; an answer other than 200 is an error with its
// first line.
func fetchTo(client *http.Client, url, token, path string) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return fmt.Errorf("%s: %s: %s", url, resp.Status, line)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", url, err)
	}
	return f.Close()
}

// ratio compares the engine with the baseline of the same point.
//
// Latency is compared at one target rate both sides ran at: the highest
// at which both kept within the SLO, else the highest at which both
// sustained the rate, else the lowest (at overload, latency measures the
// backlog, not the system). Throughput is, without --max, the ratio of
// processed events/s at the compared rate; with --max, the ratio of the
// highest rates within the SLO, 0 when the engine had none and undefined
// (0, said in Basis) when the baseline had none.
func ratio(pt *Point, maxMode bool) *Ratio {
	if len(pt.BaselineRuns) == 0 || len(pt.Runs) == 0 {
		return nil
	}
	// Runs pair by rate and round: with --repeat, a round's engine runs
	// with the baseline runs of the same round.
	type key struct{ rate, round int }
	byKey := map[key]RunResult{}
	for _, b := range pt.BaselineRuns {
		if b.Latency.Count > 0 {
			byKey[key{b.TargetRate, b.Round}] = b
		}
	}
	type pair struct{ e, b RunResult }
	var common []pair
	for _, e := range pt.Runs {
		if b, ok := byKey[key{e.TargetRate, e.Round}]; ok && e.Latency.Count > 0 {
			common = append(common, pair{e, b})
		}
	}
	pick := func(keep func(pair) bool) (pair, bool) {
		var best pair
		found := false
		for _, c := range common {
			if keep(c) && (!found || c.e.TargetRate > best.e.TargetRate) {
				best, found = c, true
			}
		}
		return best, found
	}
	c, ok := pick(func(c pair) bool { return c.e.WithinSLO && c.b.WithinSLO })
	if !ok {
		c, ok = pick(func(c pair) bool { return c.e.Sustained && c.b.Sustained })
	}
	if !ok && len(common) > 0 {
		c, ok = common[0], true
		for _, x := range common {
			if x.e.TargetRate < c.e.TargetRate {
				c = x
			}
		}
	}
	r := &Ratio{Basis: "processed events/s at the compared rate"}
	if ok {
		r.AtRate = c.e.TargetRate
		var rounds []RoundRatio
		for _, x := range common {
			if x.e.TargetRate != r.AtRate {
				continue
			}
			rr := RoundRatio{Round: x.e.Round, P50: x.e.Latency.P50 / x.b.Latency.P50, P99: x.e.Latency.P99 / x.b.Latency.P99}
			if x.b.ProcessedPerSec > 0 {
				rr.Throughput = x.e.ProcessedPerSec / x.b.ProcessedPerSec
			}
			rounds = append(rounds, rr)
		}
		r.P50 = median(rounds, func(x RoundRatio) float64 { return x.P50 })
		r.P99 = median(rounds, func(x RoundRatio) float64 { return x.P99 })
		r.Throughput = median(rounds, func(x RoundRatio) float64 { return x.Throughput })
		if len(rounds) > 1 {
			r.Rounds = rounds
			r.Basis += ", median of the rounds"
		}
	}
	if maxMode {
		// The transport limit is the baseline's highest rate within the
		// SLO; without one there is nothing to compare with.
		r.Throughput = 0
		switch {
		case pt.BaselineBest < 0:
			r.Basis = "none: the baseline kept no rate within the SLO"
		case pt.Best < 0:
			r.Basis = "highest rates within the SLO (the engine had none)"
		default:
			r.Throughput = float64(pt.Runs[pt.Best].TargetRate) / float64(pt.BaselineRuns[pt.BaselineBest].TargetRate)
			r.Basis = "highest rates within the SLO"
		}
	}
	return r
}

// median is the median of f over xs (the mean of the middle two for an
// even count), 0 for none.
func median[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func progress(cfg *Config, format string, args ...any) {
	if cfg.Progress == nil {
		return
	}
	fmt.Fprintf(cfg.Progress, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// profileCount is the number of customers of a point that get a profile.
func profileCount(cfg *Config, spec pointSpec) int {
	n := cfg.Profiles
	switch {
	case n < 0:
		return 0
	case n == 0 || n > spec.customers:
		return spec.customers
	}
	return n
}

// stateCompression reads state.compression from an engine's kairos.yaml
// ("" when it has none, or cannot be read: the engine then fails on it
// itself).
func stateCompression(configFile string) string {
	var c struct {
		State struct {
			Compression string `yaml:"compression"`
		} `yaml:"state"`
	}
	if b, err := os.ReadFile(configFile); err == nil {
		_ = yaml.Unmarshal(b, &c)
	}
	return c.State.Compression
}

// importProfiles writes the profiles of customers 0…n-1 into the state
// directory of an engine that has not started, in bulk
// (state.Store.ImportProfiles, as kairos profiles import --data does).
func importProfiles(stateDir, compression string, cfg *Config, spec pointSpec, n int) (*ProfileLoad, error) {
	t0 := time.Now()
	g := NewGenerator(Workload{Customers: spec.customers, Skew: cfg.Skew, ZipfV: cfg.ZipfV, Seed: cfg.Seed, Mix: cfg.Mix})
	store, err := state.Open(state.Options{Dir: stateDir, GCInterval: -1, Compression: compression, CompactOnClose: true})
	if err != nil {
		return nil, err
	}
	i := 0
	got, err := store.ImportProfiles(func() (state.ProfileRow, error) {
		if i == n {
			return state.ProfileRow{}, io.EOF
		}
		i++
		return state.ProfileRow{ID: CustomerID(i - 1), Attrs: g.Profile(i - 1)}, nil
	}, nil)
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	return &ProfileLoad{Method: ProfileImport, Count: got, Seconds: secs, PerSecond: float64(got) / secs}, nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/engine"
)

// cmdBench runs kairos bench (docs/bench.md): it starts an engine (a child
// kairos run by default), drives it through NATS and reports latency and
// throughput.
func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	var cfg bench.Config
	customers := countFlag(100_000)
	fs.Var(&customers, "customers", "distinct customers, Zipf-distributed (10k, 1M, 10M…)")
	fs.Float64Var(&cfg.Skew, "skew", 1.1, "Zipf exponent s > 1 of customer activity")
	fs.Float64Var(&cfg.ZipfV, "zipf-v", 100, "Zipf offset v >= 1: customer k is drawn with weight (v+k)^-s; larger flattens the head")
	mix := fs.String("mix", bench.FormatMix(bench.BenchMix), "event mix, type=weight,…")
	profiles := fs.String("profiles", "all", "profiles pre-loaded before the runs: all, none, or a count")
	fs.StringVar(&cfg.ProfileLoad, "profile-load", "", "how: import (bulk into the engine's state before it starts; the default for one engine the bench starts) or events (profile events through the engine; the default and only way in cluster mode and with --nats-url)")
	fs.IntVar(&cfg.Rules, "rules", 100, "generated rules (a tenth triggered per event type)")
	fs.StringVar(&cfg.RuleAudience, "rule-audience", bench.AudienceTargeted, "rules beyond the first 100: targeted (waves for cohorts of customers) or all (every rule for every customer)")
	seed := fs.Uint64("seed", 1, "seed of the traffic and the rules")
	fs.IntVar(&cfg.Rate, "rate", 5000, "open-loop rate of a run, events/s")
	fs.BoolVar(&cfg.Max, "max", false, "search the highest rate whose p99 stays within --slo")
	fs.DurationVar(&cfg.SLO, "slo", 10*time.Millisecond, "p99 objective of --max")
	fs.IntVar(&cfg.MaxStart, "max-start", 5000, "first rate --max tries; it doubles, then bisects")
	fs.IntVar(&cfg.MaxSteps, "max-steps", 8, "most runs --max makes")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured time of each run")
	fs.DurationVar(&cfg.Warmup, "warmup", 10*time.Second, "unmeasured traffic before each run")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 2*time.Minute, "longest wait for the engine to catch up after a run")
	fs.BoolVar(&cfg.Baseline, "baseline", false, "also run the same traffic through a no-rules consumer (the transport limit)")
	fs.IntVar(&cfg.Repeat, "repeat", 1, "rounds of each point's runs; with --baseline the baseline's and the engine's alternate, and the ratio to the baseline is the rounds' median")
	fs.Float64Var(&cfg.WaitIdle, "wait-idle", 0, "on a shared machine: hold each run until other processes use fewer than this many CPUs for 5 s (at most 10 min)")
	sweep := fs.String("sweep", "", "rules=10,100,1000,10000 | customers=10k,1M,10M | rate=1000,5000,20000 | instances=single,1,2,3 (single: one engine without cluster mode)")
	fs.IntVar(&cfg.Instances, "instances", 1, "engine instances; above 1 they run in cluster mode against a nats-server the bench starts")
	fs.IntVar(&cfg.Partitions, "partitions", 32, "cluster.partitions of the instances in cluster mode")
	mode := fs.String("engine", "child", "child (kairos run as a child process) or in-process")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "drive an engine already running behind this NATS (publish and consume only)")
	fs.StringVar(&cfg.Prefix, "prefix", "kairos", "the engine's subject prefix")
	fs.StringVar(&cfg.Durable, "durable", "kairos-engine", "the engine's consumer on the events stream (for lag)")
	fs.StringVar(&cfg.StateDir, "state-dir", "", "with --nats-url: the engine's state directory, for disk use")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "with --nats-url: the engine's /metrics URL, for its batch and match figures")
	fs.StringVar(&cfg.Engine.Policy, "policy", "default", "contact policy: default (3 a day, 5 a week) or none (no caps)")
	fs.IntVar(&cfg.Engine.CacheCustomers, "cache-customers", 0, "engine state.cache_customers (0: the engine's default)")
	fs.StringVar(&cfg.Engine.Base, "engine-config", "", "kairos.yaml to start the engine's configuration from")
	fs.IntVar(&cfg.InFlight, "in-flight", 8192, "publisher's bound on unacknowledged publishes")
	fs.StringVar(&cfg.Out, "out", "", "write report.json, report.md and latency SVGs to this directory")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "CPU profile of one engine run's measured time (--profile-run; the first by default), summarised by component in the report: of the engine process (child, through its /debug/pprof/), or of the whole bench process with --engine in-process")
	fs.StringVar(&cfg.Trace, "trace", "", "execution trace (go tool trace) of the same engine run's measured time and process as --cpuprofile")
	fs.StringVar(&cfg.NATSCPUProfile, "nats-cpuprofile", "", "CPU profile of the nats-server process (--nats-process) over the same engine run's measured time as --cpuprofile, summarised in the report by part of the server")
	fs.StringVar(&cfg.MemProfile, "memprofile", "", "heap profile at the end of the same engine run's measured time as --cpuprofile, of the same process")
	fs.IntVar(&cfg.ProfileRun, "profile-run", 1, "which engine run --cpuprofile, --trace and --memprofile are of, from 1 in the order they run: with --repeat and one point, the round (history builds up over rounds)")
	fs.StringVar(&cfg.Dir, "dir", "", "working directory for engine data (default a temporary one)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the working directory")
	quiet := fs.Bool("quiet", false, "no progress lines")
	// Hidden: kairos bench --baseline starts this process as the baseline
	// consumer when the engine runs as a child process.
	baselineOnly := fs.Bool(bench.BaselineFlag, false, "internal: run only the baseline consumer against --nats-url")
	natsProcess := fs.Bool("nats-process", false, "run the nats-server the bench starts in a process of its own, so that its CPU is measured apart from the load generator's (with --engine child or cluster mode)")
	// Hidden: kairos bench --nats-process starts this process as its
	// nats-server.
	natsOnly := fs.String(bench.NATSServerFlag, "", "internal: run only the bench's nats-server, storing under this directory")
	natsPprof := fs.Bool(bench.NATSProfilingFlag, false, "internal: with --"+bench.NATSServerFlag+", serve /debug/pprof/ on a free port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	if *baselineOnly {
		return runBaselineConsumer(ctx, cfg.NATSURL)
	}
	if *natsOnly != "" {
		return bench.ServeNATS(ctx, *natsOnly, *natsPprof, os.Stdin, stdout)
	}
	if cfg.Repeat < 1 {
		// bench.Config takes 0 as its default, one round; a flag of 0 is a mistake.
		return fmt.Errorf("--repeat %d: give 1 or more rounds", cfg.Repeat)
	}
	cfg.Customers = int(customers)
	cfg.Seed = *seed
	var err error
	if cfg.Mix, err = bench.ParseMix(*mix); err != nil {
		return err
	}
	switch *profiles {
	case "all":
	case "none", "0":
		cfg.Profiles = -1
	default:
		n, err := bench.ParseCount(*profiles)
		if err != nil {
			return fmt.Errorf("--profiles: %w", err)
		}
		cfg.Profiles = n
	}
	if *sweep != "" {
		if cfg.Sweep, err = bench.ParseSweep(*sweep); err != nil {
			return err
		}
	}
	if cfg.NATSURL == "" {
		switch *mode {
		case "child":
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the kairos binary: %w", err)
			}
			cfg.Launcher = &bench.ChildLauncher{Exe: exe}
		case "in-process":
			cfg.Launcher = inProcess{}
		default:
			return fmt.Errorf("--engine %q: use child or in-process", *mode)
		}
	}
	if *natsProcess {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the kairos binary: %w", err)
		}
		cfg.NATSExe = exe
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.Version = version
	cfg.Args = args
	rep, err := bench.Run(ctx, cfg)
	if rep != nil {
		fmt.Fprintln(stdout)
		rep.Table(stdout)
		if cfg.Out != "" {
			fmt.Fprintf(stdout, "report written to %s\n", filepath.Join(cfg.Out, "report.md"))
		}
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return err
}

// runBaselineConsumer is the baseline's process: it consumes until ctx
// ends (the bench sends SIGINT).
func runBaselineConsumer(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("kairos-bench-baseline"))
	if err != nil {
		return err
	}
	defer nc.Close()
	bl, err := bench.StartBaseline(ctx, nc, bench.BaselineOptions{})
	if err != nil {
		return err
	}
	<-ctx.Done()
	return bl.Stop()
}

// countFlag is an int flag that takes k and M suffixes.
type countFlag int

func (c *countFlag) String() string { return bench.FormatCount(int(*c)) }
func (c *countFlag) Set(s string) error {
	n, err := bench.ParseCount(s)
	*c = countFlag(n)
	return err
}

// inProcess runs the engine in the bench's process with its embedded
// nats-server (engine.New and Run), so that runtime/pprof can profile it.
type inProcess struct{}

func (inProcess) Mode() string     { return "in-process" }
func (inProcess) EmbedsNATS() bool { return true }
func (inProcess) UsageScope() string {
	return "the whole bench process (/proc/self): the engine, its embedded nats-server, the load generator and the offers consumer together"
}

func (inProcess) Launch(ctx context.Context, spec bench.LaunchSpec) (bench.Target, error) {
	cfg, err := engine.LoadConfig(spec.ConfigFile)
	if err != nil {
		return nil, err
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(spec.Dir, "engine.log"))
	if err != nil {
		return nil, err
	}
	e, err := engine.New(engine.Options{Config: cfg, Logger: engine.NewLogger(logf, cfg.Log)})
	if err != nil {
		logf.Close()
		return nil, err
	}
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &inProcessEngine{e: e, cancel: cancel, done: make(chan error, 1), log: logf, stateDir: filepath.Join(cfg.Data, "state")}
	go func() { t.done <- e.Run(ectx) }()
	select {
	case <-e.Ready():
		return t, nil
	case err := <-t.done:
		cancel()
		logf.Close()
		return nil, fmt.Errorf("engine: %w", err)
	case <-ctx.Done():
		cancel()
		<-t.done
		logf.Close()
		return nil, ctx.Err()
	}
}

type inProcessEngine struct {
	e        *engine.Engine
	cancel   context.CancelFunc
	done     chan error
	log      *os.File
	stateDir string
}

func (t *inProcessEngine) NATSURL() string    { return t.e.NATSURL() }
func (t *inProcessEngine) StateDir() string   { return t.stateDir }
func (t *inProcessEngine) MetricsURL() string { return "http://" + t.e.HTTPAddr() + "/metrics" }
func (t *inProcessEngine) Usage() (bench.Usage, bool) {
	u, err := bench.ProcUsage(0)
	return u, err == nil
}

func (t *inProcessEngine) Stop(ctx context.Context) error {
	defer t.log.Close()
	t.cancel()
	select {
	case err := <-t.done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("engine did not stop: %w", ctx.Err())
	}
}

package bench

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Config is one invocation of kairos bench. The zero value of a field is
// its default (Defaults fills them in); docs/bench.md lists them.
type Config struct {
	// Workload.
	Customers int        // distinct customers (default 100,000; up to 10,000,000)
	Skew      float64    // Zipf exponent s > 1 (default 1.1)
	ZipfV     float64    // Zipf offset v >= 1 (default 100)
	Mix       []MixEntry // event mix (default BenchMix)
	// Profiles is how many customers get a profile before the measured
	// runs: 0 (the default) is every customer, -1 none.
	Profiles int
	// ProfileLoad is how they get it: ProfileImport writes them into the
	// engine's state before it starts, as `kairos profiles import --data`
	// does; ProfileEvents publishes a profile event per customer through
	// the engine. "" is import for a point with one engine in
	// single-instance mode that the bench starts, events otherwise (the
	// only way in cluster mode and with --nats-url).
	ProfileLoad string
	Rules       int // generated rules (default 100)
	// RuleAudience is RuleSpec.Audience of the generated rules (default
	// AudienceTargeted).
	RuleAudience string
	Seed         uint64 // default 1

	// Load.
	Rate     int           // open-loop events/s of a run (default 5,000)
	Duration time.Duration // measured time of a run (default 30s)
	Warmup   time.Duration // unmeasured traffic before each run (default 10s)
	Max      bool          // search the highest rate whose p99 is within SLO
	SLO      time.Duration // p99 objective of --max (default 10ms)
	// MaxStart is the first rate --max tries (default 5,000), MaxSteps the
	// most runs it makes (default 8), and MaxPrecision the relative gap
	// between the best passing and the lowest failing rate at which it
	// stops (default 0.1).
	MaxStart     int
	MaxSteps     int
	MaxPrecision float64
	// DrainTimeout bounds the wait for the engine to catch up after a run
	// (default 2m).
	DrainTimeout time.Duration
	Baseline     bool // measure the transport limit in the same run
	// Repeat is how many rounds each point makes (default 1): with
	// Baseline, the baseline's runs and the engine's alternate round by
	// round, and the point's ratio to the baseline is the median of the
	// rounds' ratios. A single run's p99 at a low rate rests on a few dozen
	// events, so one stall in it decides the ratio; rounds show the spread.
	Repeat int
	// WaitIdle, when positive, holds each run until the rest of the
	// machine has used less than this many CPUs for 5 s in a row (at most
	// 10 minutes), for shared machines.
	WaitIdle float64
	Sweep    *Sweep // optional

	// Engine.
	Launcher Launcher      // how to start the engine; nil with NATSURL
	Engine   EngineOptions // its kairos.yaml
	// NATSURL drives an engine that is already running, through this NATS:
	// the bench only publishes and consumes.
	NATSURL string
	// NATSExe, when set, runs the nats-server the bench starts in a
	// process of its own (`NATSExe bench --nats-server-child DIR`, the
	// kairos binary) instead of the bench's, so that its CPU is measured
	// apart from the load generator's (RunResult.NATSCPUSeconds). Only
	// for engines that do not embed their nats-server (the child
	// launcher, cluster mode).
	NATSExe string
	// Prefix is the engine's subject prefix (default kairos) and Durable
	// its consumer on the events stream (default kairos-engine).
	Prefix  string
	Durable string
	// StateDir is the Badger directory of an external engine, for its disk
	// use (optional).
	StateDir string
	// MetricsURL is the /metrics of an external engine (optional).
	MetricsURL string
	InFlight   int // the publisher's bound on unacknowledged publishes (default 8192)
	// Instances is how many engines the bench starts (default 1). Above
	// one, and for every point of an instances sweep, they run in cluster
	// mode (cluster.go) against a nats-server the bench starts.
	Instances int
	// Partitions is cluster.partitions in cluster mode (default 32).
	Partitions int

	// Output.
	Out        string // directory for report.json, report.md and the plots; "" writes none
	CPUProfile string // CPU profile of one engine run's measured phase (ProfileRun): of a child engine, or in-process of the bench's process
	Trace      string // execution trace of the same phase and process
	MemProfile string // heap profile of the same process at the end of the same phase
	// NATSCPUProfile is the CPU profile of the nats-server process
	// (NATSExe) over the same engine run's measured phase.
	NATSCPUProfile string
	// ProfileRun is which engine run, counted from 1 in the order they
	// run, the profiles are of (default 1): with --repeat and one point,
	// the round.
	ProfileRun int
	Progress   io.Writer // progress lines; nil is none
	Logger     *slog.Logger
	// Dir is where points keep their engine data (default a temporary
	// directory, removed afterwards).
	Dir string
	// Keep leaves Dir in place.
	Keep bool
	// Version and Args describe the invocation in the report.
	Version string
	Args    []string

	engineRuns *atomic.Int64 // engine runs begun with profiles asked for, for ProfileRun
}

// The ways of pre-loading profiles (Config.ProfileLoad).
const (
	ProfileImport = "import"
	ProfileEvents = "events"
)

// importsProfiles says whether a point imports its profiles (ProfileLoad).
func (c *Config) importsProfiles(spec pointSpec) bool {
	return c.ProfileLoad != ProfileEvents && c.Launcher != nil && !spec.cluster
}

// clustered says whether the points run engines in cluster mode.
func (c *Config) clustered() bool {
	return c.Instances > 1 || c.Sweep != nil && c.Sweep.Dim == "instances"
}

// SingleInstance is the value "single" of an instances sweep: one engine
// in single-instance mode (no cluster mode).
const SingleInstance = 0

// Sweep varies one dimension over a list of values; each is a point of
// the report.
type Sweep struct {
	Dim    string // rules, customers, rate or instances
	Values []int
}

// ParseSweep reads dim=v1,v2,... where values may end in k (thousands) or
// M (millions): "customers=10k,1M,10M". An instances sweep may also list
// "single" (stored as SingleInstance): one engine in single-instance mode,
// beside the cluster-mode points.
func ParseSweep(s string) (*Sweep, error) {
	dim, list, ok := strings.Cut(s, "=")
	if !ok {
		return nil, fmt.Errorf("--sweep %q: want dim=v1,v2,... (rules, customers, rate or instances)", s)
	}
	switch dim {
	case "rules", "customers", "rate", "instances":
	default:
		return nil, fmt.Errorf("--sweep %q: can sweep rules, customers, rate or instances", s)
	}
	sw := &Sweep{Dim: dim}
	for _, v := range strings.Split(list, ",") {
		if dim == "instances" && strings.TrimSpace(v) == "single" {
			sw.Values = append(sw.Values, SingleInstance)
			continue
		}
		n, err := ParseCount(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("--sweep %s: %w", dim, err)
		}
		sw.Values = append(sw.Values, n)
	}
	return sw, nil
}

// ParseCount reads a positive whole number with an optional k or M suffix.
func ParseCount(s string) (int, error) {
	mult := 1
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1000, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1_000_000, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive count (such as 500, 10k or 1M)", s)
	}
	return n * mult, nil
}

// FormatCount writes n as ParseCount reads it, shortest form.
func FormatCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.Itoa(n/1000) + "k"
	}
	return strconv.Itoa(n)
}

// Defaults fills in unset fields.
func (c *Config) Defaults() {
	if c.Customers == 0 {
		c.Customers = 100_000
	}
	if c.ProfileRun == 0 {
		c.ProfileRun = 1
	}
	if c.Skew == 0 {
		c.Skew = 1.1
	}
	if c.ZipfV == 0 {
		c.ZipfV = 100
	}
	if len(c.Mix) == 0 {
		c.Mix = BenchMix
	}
	if c.Rules == 0 {
		c.Rules = 100
	}
	if c.RuleAudience == "" {
		c.RuleAudience = AudienceTargeted
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Rate == 0 {
		c.Rate = 5000
	}
	if c.Duration == 0 {
		c.Duration = 30 * time.Second
	}
	if c.SLO == 0 {
		c.SLO = 10 * time.Millisecond
	}
	if c.MaxStart == 0 {
		c.MaxStart = 5000
	}
	if c.MaxSteps == 0 {
		c.MaxSteps = 8
	}
	if c.MaxPrecision == 0 {
		c.MaxPrecision = 0.1
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = 2 * time.Minute
	}
	if c.Prefix == "" {
		c.Prefix = "kairos"
	}
	if c.Durable == "" {
		c.Durable = "kairos-engine"
	}
	if c.InFlight == 0 {
		c.InFlight = 8192
	}
	if c.Instances == 0 {
		c.Instances = 1
	}
	if c.Repeat == 0 {
		c.Repeat = 1
	}
	if c.Partitions == 0 {
		c.Partitions = 32
	}
	if c.Engine.Policy == "" {
		c.Engine.Policy = "default"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate checks a defaulted configuration and returns every problem.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Customers < 2 || c.Customers > 100_000_000 {
		bad("--customers must be 2 to 100M")
	}
	if c.Skew <= 1 {
		bad("--skew must be above 1")
	}
	if c.ZipfV < 1 {
		bad("--zipf-v must be at least 1")
	}
	if c.Profiles < -1 {
		bad("--profiles must be all, none or a count")
	}
	if c.Rules < 1 {
		bad("--rules must be at least 1")
	}
	switch c.ProfileLoad {
	case "", ProfileEvents:
	case ProfileImport:
		if c.NATSURL != "" || c.clustered() {
			bad("--profile-load import needs one engine the bench starts (not --nats-url or cluster mode): use events")
		}
	default:
		bad("--profile-load must be %s or %s", ProfileImport, ProfileEvents)
	}
	if c.RuleAudience != AudienceTargeted && c.RuleAudience != AudienceAll {
		bad("--rule-audience must be %s or %s", AudienceTargeted, AudienceAll)
	}
	if c.Rate < 1 {
		bad("--rate must be at least 1 event/s")
	}
	if c.Duration < time.Second {
		bad("--duration must be at least 1s")
	}
	if c.Warmup < 0 {
		bad("--warmup must not be negative")
	}
	if c.MaxSteps < 1 || c.MaxPrecision <= 0 || c.MaxStart < 1 {
		bad("--max-steps, --max-start and the precision must be positive")
	}
	if c.Launcher == nil && c.NATSURL == "" {
		bad("no engine: give a launcher or --nats-url")
	}
	if c.NATSExe != "" && (c.NATSURL != "" || c.Launcher != nil && c.Launcher.EmbedsNATS() && !c.clustered()) {
		bad("--nats-process needs a nats-server the bench starts: not with --nats-url or --engine in-process (whose engine embeds it)")
	}
	if c.NATSCPUProfile != "" && c.NATSExe == "" {
		bad("--nats-cpuprofile needs --nats-process: it profiles the nats-server's own process")
	}
	if c.NATSURL != "" && c.Sweep != nil && c.Sweep.Dim != "rate" {
		bad("--sweep %s needs the bench to start the engine; with --nats-url only rate can be swept", c.Sweep.Dim)
	}
	if c.Sweep != nil && c.Sweep.Dim == "rate" && c.Max {
		bad("--sweep rate and --max both choose the rate; use one")
	}
	for _, f := range []struct{ flag, path string }{{"--cpuprofile", c.CPUProfile}, {"--trace", c.Trace}, {"--memprofile", c.MemProfile}} {
		switch {
		case f.path == "":
		case c.Launcher == nil:
			bad("%s needs an engine the bench starts (not --nats-url): it profiles the engine's process", f.flag)
		case c.profilesChild() && (c.Instances > 1 || c.Sweep != nil && c.Sweep.Dim == "instances"):
			bad("%s with a child engine profiles one engine process: not with --instances or --sweep instances (use --engine in-process)", f.flag)
		}
	}
	if c.Repeat < 1 || c.Repeat > 100 {
		bad("--repeat must be 1 to 100")
	}
	switch {
	case c.ProfileRun < 1:
		bad("--profile-run must be 1 or more")
	case c.ProfileRun > 1 && c.CPUProfile == "" && c.Trace == "" && c.MemProfile == "" && c.NATSCPUProfile == "":
		bad("--profile-run needs --cpuprofile, --trace, --memprofile or --nats-cpuprofile")
	case c.ProfileRun > c.Repeat && c.Sweep == nil && !c.Max:
		bad("--profile-run %d: there are %d engine runs (--repeat)", c.ProfileRun, c.Repeat)
	}
	if c.Repeat > 1 && c.Max {
		bad("--repeat and --max: a search makes many runs already; repeat fixed rates (--rate, --sweep rate)")
	}
	if c.Instances < 1 || c.Instances > 64 {
		bad("--instances must be 1 to 64")
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		bad("--partitions must be 1 to 1024")
	}
	if c.Sweep != nil && c.Sweep.Dim == "instances" {
		for _, v := range c.Sweep.Values {
			if v > 64 {
				bad("--sweep instances: %d is more than 64 instances", v)
			}
		}
		if c.Instances != 1 {
			bad("--sweep instances and --instances both choose the instances; use one")
		}
	}
	if c.Instances > 1 && c.Launcher == nil {
		bad("--instances needs the bench to start the engines; not with --nats-url")
	}
	if c.Engine.Policy != "default" && c.Engine.Policy != "none" {
		bad("--policy must be default or none")
	}
	return errors.Join(errs...)
}

// profilesChild says the profiles (--cpuprofile, --trace, --memprofile)
// are of a child engine process, read from its /debug/pprof/ (http.pprof,
// which the bench then turns on), rather than of the bench's own process.
func (c *Config) profilesChild() bool {
	return (c.CPUProfile != "" || c.Trace != "" || c.MemProfile != "") && c.Launcher != nil && c.Launcher.Mode() != "in-process"
}

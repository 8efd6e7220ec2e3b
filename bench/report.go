package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything a bench invocation measured. report.json is this
// struct; report.md and the terminal table are written from it.
type Report struct {
	Tool     string    `json:"tool"`
	Version  string    `json:"version"`
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Setup    Setup     `json:"setup"`
	Points   []Point   `json:"points"`
	Targets  []Check   `json:"targets"`
	Notes    []string  `json:"notes,omitempty"`
}

// Setup describes how the bench ran.
type Setup struct {
	// Mode is child (kairos run as a child process against the bench's
	// nats-server), in-process (the engine and its embedded nats-server in
	// the bench process) or external (--nats-url: an engine already
	// running; the bench only publishes and consumes).
	Mode       string `json:"mode"`
	UsageScope string `json:"usage_scope"`
	NATS       string `json:"nats"`
	// NATSProcess says that the nats-server ran in a process of its own
	// (--nats-process), its CPU measured apart (RunResult.NATSCPUSeconds).
	NATSProcess bool `json:"nats_process,omitempty"`
	// Latency is what the latency figures measure.
	Latency   string  `json:"latency"`
	Customers int     `json:"customers"`
	Skew      float64 `json:"zipf_s"`
	ZipfV     float64 `json:"zipf_v"`
	TopShare  float64 `json:"top_customer_share"`
	Top1Share float64 `json:"top_1pct_share"`
	Mix       string  `json:"mix"`
	Profiles  string  `json:"profiles"`
	Rules     int     `json:"rules"`
	// RuleAudience is how rules beyond the first 100 choose their
	// customers (RuleSpec.Audience).
	RuleAudience string        `json:"rule_audience"`
	Seed         uint64        `json:"seed"`
	Policy       string        `json:"policy"`
	Rate         int           `json:"rate,omitempty"`
	Max          bool          `json:"max"`
	SLO          time.Duration `json:"slo_ns"`
	Duration     time.Duration `json:"duration_ns"`
	Warmup       time.Duration `json:"warmup_ns"`
	Baseline     bool          `json:"baseline"`
	// Repeat is the rounds of each point (--repeat), 0 for one.
	Repeat   int     `json:"repeat,omitempty"`
	Sweep    string  `json:"sweep,omitempty"`
	InFlight int     `json:"publish_in_flight"`
	WaitIdle float64 `json:"wait_idle_cpus,omitempty"`
	// Instances is --instances (1 unless set; an instances sweep sets it
	// per point); Cluster describes cluster mode, "" when the engine ran
	// as a single instance.
	Instances int    `json:"instances"`
	Cluster   string `json:"cluster,omitempty"`
}

// Point is one engine (one rule set, one customer population) and the
// runs made against it.
type Point struct {
	Label     string `json:"label"`
	Customers int    `json:"customers"`
	Rules     int    `json:"rules"`
	// Instances is how many engines ran (0 for an engine the bench did
	// not start); Cluster says they ran in cluster mode.
	Instances int  `json:"instances"`
	Cluster   bool `json:"cluster,omitempty"`
	// PerInstance is each instance's partitions, usage, disk, and events
	// and offers over the whole point, in cluster mode.
	PerInstance []InstanceStats `json:"per_instance,omitempty"`
	// ThroughputVs1 is, in an instances sweep, this point's throughput
	// over the 1-instance point's: with --max the highest rates within the
	// SLO, otherwise processed events/s at the same target rate.
	ThroughputVs1 float64 `json:"throughput_vs_1_instance,omitempty"`
	// OffersEmitted is the offers the engines counted over the point
	// (kairos_offers_total, summed over the instances), OffersReceived the
	// offers the bench's consumer received from the offers stream over the
	// same time: equal when no offer was lost or duplicated on the way.
	OffersEmitted  int64 `json:"offers_emitted,omitempty"`
	OffersReceived int64 `json:"offers_received"`
	// OffersOfEvents is the offers received for the point's own events
	// (warm-ups and runs), and OfferFingerprint an order-independent hash
	// of them (event sequence number and rule): two points that sent the
	// same events (same seed, rates and durations) and decided the same
	// have the same fingerprint.
	OffersOfEvents   int64  `json:"offers_of_events"`
	OfferFingerprint string `json:"offer_fingerprint,omitempty"`
	// SameOffersAs1 is, in an instances sweep at fixed rates, whether the
	// point's offers are those of the 1-instance point (nil: not compared).
	SameOffersAs1 *bool `json:"same_offers_as_1_instance,omitempty"`
	// ChangelogBytes is the size of the changelog stream (cluster mode)
	// at the end of the point.
	ChangelogBytes int64 `json:"changelog_bytes,omitempty"`
	// ProfileLoad is the pre-load of profiles: published as fast as the
	// publisher's window allows, timed until the engine acknowledged the
	// last one.
	ProfileLoad *ProfileLoad `json:"profile_load,omitempty"`
	// ReadyRSSBytes is the engine's RSS once ready (rules compiled, before
	// traffic); ReadySeconds how long the start took.
	ReadyRSSBytes int64   `json:"ready_rss_bytes,omitempty"`
	ReadySeconds  float64 `json:"ready_seconds,omitempty"`
	// PeakRSSBytes is the engine's peak RSS over the whole point.
	PeakRSSBytes int64 `json:"peak_rss_bytes,omitempty"`
	// PeakAnonRSSBytes is the largest anonymous part of the engine's RSS
	// seen while the runs went, sampled every second (child mode only):
	// the rest of the RSS is file pages mapped into the process, Badger's
	// tables and logs, which the kernel may take back.
	PeakAnonRSSBytes int64 `json:"peak_anon_rss_bytes,omitempty"`
	// DiskBytes is the Badger state directory after the engine stopped,
	// DiskPerCustomer that over CustomersWithState (profiled or sent an
	// event).
	DiskBytes          int64 `json:"disk_bytes,omitempty"`
	CustomersWithState int   `json:"customers_with_state,omitempty"`
	// Events is every event the point sent (profiles, warm-ups and runs),
	// which the disk use depends on as much as on the customers.
	Events          int64       `json:"events"`
	DiskPerCustomer float64     `json:"disk_bytes_per_customer,omitempty"`
	Runs            []RunResult `json:"runs"`
	Best            int         `json:"best"` // index in Runs of the highest rate within the SLO, -1 if none
	BaselineRuns    []RunResult `json:"baseline_runs,omitempty"`
	BaselineBest    int         `json:"baseline_best"`
	Ratio           *Ratio      `json:"ratio_to_baseline,omitempty"`
}

// InstanceStats is one engine instance of a cluster-mode point.
type InstanceStats struct {
	Name string `json:"name"`
	// Partitions is how many it owned when the traffic started.
	Partitions int `json:"partitions"`
	// CPUSeconds is its CPU time over the whole point (start, profiles,
	// runs and drains), PeakRSSBytes its peak RSS; both 0 when the
	// instances share the bench's process.
	CPUSeconds   float64 `json:"cpu_seconds,omitempty"`
	PeakRSSBytes int64   `json:"peak_rss_bytes,omitempty"`
	// DiskBytes is its Badger state directory after it stopped.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	// Events and Offers are what it processed and emitted over the point
	// (its /metrics at the end).
	Events int64 `json:"events"`
	Offers int64 `json:"offers"`
}

// InstanceRun is one instance's share of a run in cluster mode.
type InstanceRun struct {
	Name string `json:"name"`
	// CPUSeconds is its CPU time over the measured time (0 when the
	// instances share the bench's process).
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
	// Events and Offers are what it processed and emitted from the start
	// of the measured time to the end of the drain (its /metrics).
	Events int64 `json:"events"`
	Offers int64 `json:"offers"`
}

// ProfileLoad is the timing of the profile pre-load.
type ProfileLoad struct {
	// Method is ProfileImport (bulk, into the state before the engine
	// started) or ProfileEvents (profile events through the engine).
	Method    string  `json:"method"`
	Count     int     `json:"count"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
}

// RunResult is traffic at one target rate against one side (the engine or the
// baseline).
type RunResult struct {
	Side       string `json:"side"` // engine or baseline
	TargetRate int    `json:"target_rate"`
	// Round is the run's round with --repeat (from 1), 0 without.
	Round   int     `json:"round,omitempty"`
	Seconds float64 `json:"seconds"` // measured time
	// Sent is events published during the measured time; SentPerSec their
	// rate (below the target when the publisher fell behind).
	Sent       int64   `json:"sent"`
	SentPerSec float64 `json:"sent_per_sec"`
	// ProcessedPerSec is the rate at which the consumer's ack floor moved
	// during the measured time: events fully processed, offers stored.
	ProcessedPerSec float64 `json:"processed_per_sec"`
	// Offers is offers received for events sent in the measured time,
	// OffersPerSec that over the measured time.
	Offers       int64       `json:"offers"`
	OffersPerSec float64     `json:"offers_per_sec"`
	Latency      Percentiles `json:"latency"`
	// SendLate is how late the publisher sent the measured events against
	// their schedule: part of their latency, and the load generator's own.
	SendLate Percentiles `json:"send_late"`
	// QuietLatency is the latency of offers received in the measured
	// seconds during which the rest of the machine used fewer CPUs than
	// --wait-idle (or 0.25); QuietSeconds counts those seconds. On a shared
	// machine it is the better estimate of Kairos's own latency.
	QuietLatency Percentiles `json:"quiet_latency"`
	QuietSeconds int         `json:"quiet_seconds"`
	// LagMax and LagEnd are the consumer's backlog (pending + ack pending)
	// at its largest and at the end of the measured time.
	LagMax   int64   `json:"lag_max"`
	LagEnd   int64   `json:"lag_end"`
	DrainSec float64 `json:"drain_seconds"` // time to catch up after the run
	// CPUSeconds is the engine's CPU time during the measured time (scope:
	// Setup.UsageScope), CPUMicrosPerEvent that per event processed in the
	// same time.
	CPUSeconds        float64 `json:"cpu_seconds,omitempty"`
	CPUMicrosPerEvent float64 `json:"cpu_us_per_event,omitempty"`
	// PageFaults counts the engine's page faults during the measured time
	// (same scope). A fault costs microseconds of system time, more in a
	// virtual machine: the engine pays them when its heap grows and when
	// Badger takes fresh memory for a memtable or a table builder.
	PageFaults int64 `json:"page_faults,omitempty"`
	// BenchCPUSeconds is the bench process's CPU time during the measured
	// time: the load generator and offers consumer, and in child mode the
	// nats-server, in baseline runs the baseline consumer too.
	BenchCPUSeconds float64 `json:"bench_cpu_seconds,omitempty"`
	// NATSCPUSeconds is the nats-server's CPU time during the measured
	// time, when it runs as a process of its own (--nats-process); it is
	// then not part of BenchCPUSeconds.
	NATSCPUSeconds float64 `json:"nats_cpu_seconds,omitempty"`
	// OtherCPUSeconds is the CPU time the rest of the machine used during
	// the measured time: everything busy minus the bench, the engine and the
	// baseline (when each is measured). On a shared machine it says how
	// much the run was disturbed.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// WaitedIdleSec is how long --wait-idle held the run; Disturbed says
	// the machine never became idle and the run went ahead anyway.
	WaitedIdleSec float64 `json:"waited_idle_seconds,omitempty"`
	Disturbed     bool    `json:"disturbed,omitempty"`
	PeakRSSBytes  int64   `json:"peak_rss_bytes,omitempty"`
	PublishErrors int64   `json:"publish_errors,omitempty"`
	// CPUProfile summarises --cpuprofile, on the run it was taken of.
	CPUProfile *CPUProfile `json:"cpu_profile,omitempty"`
	// NATSCPUProfile summarises --nats-cpuprofile, on the same run.
	NATSCPUProfile *CPUProfile `json:"nats_cpu_profile,omitempty"`
	Unmatched      int64       `json:"unmatched_offers,omitempty"`
	// Engine is what the engine's /metrics say about the run, when read
	// (summed over the instances in cluster mode).
	Engine *EngineStats `json:"engine,omitempty"`
	// Instances is each instance's share of the run, in cluster mode.
	Instances []InstanceRun `json:"instances,omitempty"`
	Sustained bool          `json:"sustained"`
	// AtCapacity says the side fell behind a publisher that kept up: what
	// it processed is what it can, its capacity at this point.
	AtCapacity bool   `json:"at_capacity,omitempty"`
	WithinSLO  bool   `json:"within_slo"`
	Verdict    string `json:"verdict"`
	Timeline   []Tick `json:"timeline"`
}

// Tick is one second of a run, for the lag-over-time view. T is seconds
// since the measured time began (negative during the warm-up).
type Tick struct {
	T         float64 `json:"t"`
	SentPerS  float64 `json:"sent_per_s"`
	OffersPer float64 `json:"offers_per_s"`
	Lag       int64   `json:"lag"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	// Other is the CPUs the rest of the machine kept busy in that second.
	Other float64 `json:"other_cpus"`
}

// Ratio compares the engine with the transport limit measured in the same
// invocation.
type Ratio struct {
	// Throughput is the engine's best rate within the SLO over the
	// baseline's (--max), or processed events/s over the baseline's at the
	// same target rate.
	Throughput float64 `json:"throughput"`
	// P50 and P99 are the engine's latency over the baseline's, at the same
	// target rate (with --max: at the highest rate both were run at).
	P50    float64 `json:"p50"`
	P99    float64 `json:"p99"`
	AtRate int     `json:"at_rate"`
	// Basis says what Throughput compares.
	Basis string `json:"throughput_basis"`
	// Rounds are the ratios of each round at AtRate with --repeat; the
	// figures above are then their medians.
	Rounds []RoundRatio `json:"rounds,omitempty"`
}

// RoundRatio is one round's engine over its baseline at Ratio.AtRate.
type RoundRatio struct {
	Round      int     `json:"round"`
	Throughput float64 `json:"throughput"`
	P50        float64 `json:"p50"`
	P99        float64 `json:"p99"`
}

// name is the run's side, with its round under --repeat: "engine" or
// "engine, round 2".
func (x *RunResult) name() string {
	if x.Round == 0 {
		return x.Side
	}
	return fmt.Sprintf("%s, round %d", x.Side, x.Round)
}

// Check is one target of the bench issue, and whether this report
// measured it.
type Check struct {
	Target   string `json:"target"`
	Status   string `json:"status"` // met, missed, not measured
	Measured string `json:"measured"`
	How      string `json:"how,omitempty"` // the invocation that measures it, when not measured
}

// Write writes report.json, report.md and the SVG plots into dir.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o640); err != nil {
		return err
	}
	plots := map[int]string{}
	for i := range r.Points {
		name := "latency.svg"
		if len(r.Points) > 1 {
			name = "latency-" + safeName(r.Points[i].Label) + ".svg"
		}
		var slo time.Duration
		if r.Setup.Max {
			slo = r.Setup.SLO
		}
		if svg := plotPoint(&r.Points[i], slo); svg != nil {
			if err := os.WriteFile(filepath.Join(dir, name), svg, 0o640); err != nil {
				return err
			}
			plots[i] = name
		}
	}
	var md strings.Builder
	r.Markdown(&md, plots)
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(md.String()), 0o640)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, s)
}

// Table writes the terminal summary: one line per run.
func (r *Report) Table(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "point\tside\tinstances\ttarget/s\tsent/s\tprocessed/s\toffers/s\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\tquiet p50/p99 (s)\tlag max\tcpu s\tother cpu s\tverdict\t")
	for _, p := range r.Points {
		for _, runs := range [][]RunResult{p.BaselineRuns, p.Runs} {
			for _, x := range runs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%.1f\t%s\t\n",
					p.Label, x.name(), instancesCell(p, x), x.TargetRate, x.SentPerSec, x.ProcessedPerSec, x.OffersPerSec,
					ms(x.Latency.P50), ms(x.Latency.P90), ms(x.Latency.P99), ms(x.Latency.P999), ms(x.Latency.Max), quietCell(x),
					x.LagMax, cpu(x.CPUSeconds), x.OtherCPUSeconds, x.Verdict)
			}
		}
	}
	tw.Flush()
	for _, p := range r.Points {
		var parts []string
		if p.Best >= 0 && r.Setup.Max {
			parts = append(parts, fmt.Sprintf("engine max %d events/s within p99 %v", p.Runs[p.Best].TargetRate, r.Setup.SLO))
		}
		if p.BaselineBest >= 0 && r.Setup.Max && len(p.BaselineRuns) > 0 {
			parts = append(parts, fmt.Sprintf("baseline max %d events/s", p.BaselineRuns[p.BaselineBest].TargetRate))
		}
		if p.Ratio != nil {
			parts = append(parts, fmt.Sprintf("engine/baseline: throughput %.2f, p50 %.2fx, p99 %.2fx at %d/s", p.Ratio.Throughput, p.Ratio.P50, p.Ratio.P99, p.Ratio.AtRate))
		}
		if p.ProfileLoad != nil {
			parts = append(parts, fmt.Sprintf("profiles %d in %.1fs (%.0f/s)", p.ProfileLoad.Count, p.ProfileLoad.Seconds, p.ProfileLoad.PerSecond))
		}
		if p.PeakRSSBytes > 0 {
			parts = append(parts, "peak RSS "+peakRSS(&p))
		}
		if p.DiskPerCustomer > 0 {
			parts = append(parts, fmt.Sprintf("disk %.0f B/customer", p.DiskPerCustomer))
		}
		for _, x := range p.Runs {
			if cp := x.CPUProfile; cp != nil {
				cells := make([]string, 0, 4)
				for _, c := range cp.Components[:min(4, len(cp.Components))] {
					cells = append(cells, fmt.Sprintf("%s %.0f%%", c.Name, 100*c.Share))
				}
				parts = append(parts, fmt.Sprintf("CPU at %d/s (--cpuprofile): %s", x.TargetRate, strings.Join(cells, ", ")))
			}
			if cp := x.NATSCPUProfile; cp != nil {
				cells := make([]string, 0, 4)
				for _, c := range cp.NATSServer[:min(3, len(cp.NATSServer))] {
					cells = append(cells, fmt.Sprintf("%s %.0f%%", c.Name, 100*c.Share))
				}
				cells = append(cells, fmt.Sprintf("system calls %.0f%%", 100*cp.Syscalls))
				parts = append(parts, fmt.Sprintf("nats-server CPU at %d/s (--nats-cpuprofile): %s", x.TargetRate, strings.Join(cells, ", ")))
			}
		}
		if p.Cluster {
			parts = append(parts, clusterSummary(&p)...)
		} else {
			if p.ThroughputVs1 > 0 {
				parts = append(parts, fmt.Sprintf("throughput %.2f× the 1-instance cluster-mode point", p.ThroughputVs1))
			}
			if p.SameOffersAs1 != nil {
				parts = append(parts, "same offers as the 1-instance cluster-mode point: "+yesNo(*p.SameOffersAs1))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(w, "%s: %s\n", p.Label, strings.Join(parts, "; "))
		}
	}
	for _, c := range r.Targets {
		if c.Status != "not measured" {
			fmt.Fprintf(w, "target %-6s %s — %s\n", c.Status+":", c.Target, c.Measured)
		}
	}
}

// quietCell is "p50 / p99 (seconds)" of the quiet seconds, "-" if none.
func quietCell(x RunResult) string {
	if x.QuietSeconds == 0 || x.QuietLatency.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("%s / %s (%d)", ms(x.QuietLatency.P50), ms(x.QuietLatency.P99), x.QuietSeconds)
}

func ms(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func cpu(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// benchCPU is the bench CPU cell: the bench process's CPU seconds and,
// with the nats-server in a process of its own (--nats-process), its CPU
// seconds and per event processed.
func benchCPU(x RunResult) string {
	c := cpu(x.BenchCPUSeconds)
	if x.NATSCPUSeconds <= 0 {
		return c
	}
	c += fmt.Sprintf(" + nats-server %.1f", x.NATSCPUSeconds)
	if us := x.natsMicrosPerEvent(); us > 0 {
		c += fmt.Sprintf(" (%.0f µs/event)", us)
	}
	return c
}

// natsMicrosPerEvent is the nats-server's CPU per event processed, when
// its process was measured (--nats-process); else 0.
func (x *RunResult) natsMicrosPerEvent() float64 {
	n := x.ProcessedPerSec * x.Seconds
	if x.NATSCPUSeconds <= 0 || n <= 0 {
		return 0
	}
	return x.NATSCPUSeconds / n * 1e6
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// Markdown writes report.md; plots names the SVG of each point index.
func (r *Report) Markdown(w io.Writer, plots map[int]string) {
	s := r.Setup
	fmt.Fprintf(w, "# kairos bench report\n\n")
	fmt.Fprintf(w, "`%s`\n\n", r.Command)
	fmt.Fprintf(w, "%s to %s, kairos %s.\n\n", r.Started.Format(time.RFC3339), r.Finished.Format(time.RFC3339), r.Version)
	m := r.Machine
	dirty := ""
	if m.GitDirty {
		dirty = " (with uncommitted changes)"
	}
	fmt.Fprintf(w, "**Machine**: %d CPUs (%s), %s memory, %s/%s, %s, nats-server %s, nats.go %s, git %s%s; load average %.2f at the start, %.2f at the end.\n\n",
		m.CPUs, m.CPUModel, gib(m.MemoryBytes), m.OS, m.Arch, m.GoVersion, m.NATSServer, m.NATSClient, orDash(m.GitCommit), dirty, m.LoadStart, m.LoadEnd)
	fmt.Fprintf(w, "**Setup**: mode %s. %s.\n\n", s.Mode, s.NATS)
	fmt.Fprintf(w, "- Workload: %d customers, Zipf s=%.2f v=%.0f (the most active customer sends %.2f%% of events, the top 1%% %.0f%%); mix %s; profiles pre-loaded: %s; seed %d.\n",
		s.Customers, s.Skew, s.ZipfV, 100*s.TopShare, 100*s.Top1Share, s.Mix, s.Profiles, s.Seed)
	fmt.Fprintf(w, "- Rules: %d generated rules (bench.GenerateRules), a tenth of them triggered by each event type; audience beyond the first 100: %s; contact policy: %s.\n", s.Rules, s.RuleAudience, s.Policy)
	load := fmt.Sprintf("open loop at %d events/s", s.Rate)
	if s.Max {
		load = fmt.Sprintf("--max: highest rate whose p99 stays within %v", s.SLO)
	}
	if s.Sweep != "" {
		load += "; sweep " + s.Sweep
	}
	rounds := ""
	if s.Repeat > 1 {
		rounds = fmt.Sprintf("; %d rounds (--repeat) against the same engine, whose contact histories carry over", s.Repeat)
		if s.Baseline {
			rounds += ", each round the baseline's runs then the engine's"
		}
	}
	fmt.Fprintf(w, "- Load: %s; each run %v measured after %v of warm-up%s; publisher in-flight window %d.\n", load, s.Duration, s.Warmup, rounds, s.InFlight)
	if s.Cluster != "" {
		fmt.Fprintf(w, "- Engines: %s.\n", s.Cluster)
	}
	if s.WaitIdle > 0 {
		fmt.Fprintf(w, "- Shared machine: each run waited until other processes used fewer than %.2f CPUs for 5 s (--wait-idle).\n", s.WaitIdle)
	}
	fmt.Fprintf(w, "- Latency: %s.\n", s.Latency)
	fmt.Fprintf(w, "- CPU and RSS: %s.\n\n", s.UsageScope)

	fmt.Fprintf(w, "## Results\n\n")
	fmt.Fprintf(w, "| point | side | instances | target/s | sent/s | processed/s | offers/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | quiet p50 / p99 ms (s) | lag max | CPU s | bench CPU s | other CPU s | verdict |\n")
	fmt.Fprintf(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	for _, p := range r.Points {
		for _, runs := range [][]RunResult{p.BaselineRuns, p.Runs} {
			for _, x := range runs {
				fmt.Fprintf(w, "| %s | %s | %s | %d | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s | %d | %s | %s | %.1f | %s |\n",
					p.Label, x.name(), instancesCell(p, x), x.TargetRate, x.SentPerSec, x.ProcessedPerSec, x.OffersPerSec,
					ms(x.Latency.P50), ms(x.Latency.P90), ms(x.Latency.P99), ms(x.Latency.P999), ms(x.Latency.Max), quietCell(x),
					x.LagMax, cpu(x.CPUSeconds), benchCPU(x), x.OtherCPUSeconds, x.Verdict)
			}
		}
	}
	fmt.Fprintln(w)
	r.scaleOutMarkdown(w)
	for i, p := range r.Points {
		fmt.Fprintf(w, "### %s\n\n", p.Label)
		fmt.Fprintf(w, "- %d customers, %d rules.\n", p.Customers, p.Rules)
		if p.ReadySeconds > 0 {
			fmt.Fprintf(w, "- Engine ready in %.1f s with RSS %s.\n", p.ReadySeconds, mib(p.ReadyRSSBytes))
		}
		if p.ProfileLoad != nil {
			how := "published as profile events, timed from the first publish to the engine's acknowledgement of the last"
			if p.ProfileLoad.Method == ProfileImport {
				how = "imported in bulk into the engine's state before it started (as `kairos profiles import --data`), timed from opening the state to closing it, the compaction at the close included"
			}
			fmt.Fprintf(w, "- Profiles: %d in %.1f s (%.0f/s), %s.\n", p.ProfileLoad.Count, p.ProfileLoad.Seconds, p.ProfileLoad.PerSecond, how)
		}
		if s.Max && p.Best >= 0 {
			fmt.Fprintf(w, "- Highest rate within p99 %v: **%d events/s** (p99 %s ms).\n", s.SLO, p.Runs[p.Best].TargetRate, ms(p.Runs[p.Best].Latency.P99))
		} else if s.Max {
			fmt.Fprintf(w, "- No rate tried kept p99 within %v.\n", s.SLO)
		}
		if s.Max && len(p.BaselineRuns) > 0 && p.BaselineBest >= 0 {
			fmt.Fprintf(w, "- Transport limit (baseline) within p99 %v: **%d events/s**.\n", s.SLO, p.BaselineRuns[p.BaselineBest].TargetRate)
		}
		if p.Ratio != nil {
			fmt.Fprintf(w, "- Engine / baseline: throughput %.2f (%s); latency at %d events/s p50 %.2f×, p99 %.2f×.\n", p.Ratio.Throughput, p.Ratio.Basis, p.Ratio.AtRate, p.Ratio.P50, p.Ratio.P99)
			if len(p.Ratio.Rounds) > 0 {
				cells := make([]string, len(p.Ratio.Rounds))
				for i, rr := range p.Ratio.Rounds {
					cells[i] = fmt.Sprintf("round %d p99 %.2f× (p50 %.2f×, throughput %.2f)", rr.Round, rr.P99, rr.P50, rr.Throughput)
				}
				fmt.Fprintf(w, "- Rounds, each engine run against the baseline run of its round at the same rate: %s.\n", strings.Join(cells, "; "))
			}
		}
		if p.PeakRSSBytes > 0 {
			fmt.Fprintf(w, "- Engine peak RSS %s.\n", peakRSS(&p))
		}
		sendLateMarkdown(w, &p)
		if p.DiskBytes > 0 {
			fmt.Fprintf(w, "- Badger state after the engine stopped: %s for %d customers with state, %.0f bytes per customer, after %d events (%.1f per customer).\n",
				mib(p.DiskBytes), p.CustomersWithState, p.DiskPerCustomer, p.Events, float64(p.Events)/float64(max(1, p.CustomersWithState)))
		}
		if p.OffersEmitted > 0 || p.OffersReceived > 0 {
			by := "the engine"
			if p.Cluster {
				by = fmt.Sprintf("the %d instances", p.Instances)
			}
			fmt.Fprintf(w, "- Offers over the point: %d emitted by %s (kairos_offers_total), %d received by the bench from the offers stream.\n",
				p.OffersEmitted, by, p.OffersReceived)
		}
		if p.Cluster {
			instanceMarkdown(w, &p)
		}
		if name, ok := plots[i]; ok {
			fmt.Fprintf(w, "\n![latency percentiles against rate](%s)\n", name)
		}
		var internals []RunResult
		for _, x := range p.Runs {
			if x.Engine != nil {
				internals = append(internals, x)
			}
		}
		if len(internals) > 0 {
			fmt.Fprintf(w, "\nWhat the engine's /metrics say about each run (from the start of the measured time until the engine caught up")
			cl, clHead, clSep := "", "", ""
			if p.Cluster {
				fmt.Fprintf(w, "; summed over the instances, batch and commit figures are their means")
				clHead, clSep = " changelog ms |", "--:|"
			}
			fmt.Fprintf(w, "):\n\n")
			fmt.Fprintf(w, "| target/s | rule matches/event | offers emitted/event | suppressed/event | batch size | batch ms |%s commit ms | commit bytes/event | commit keys/event | cache hits | CPU µs/event | collections | collector's CPU (assists) | page faults/s |\n|--:|--:|--:|--:|--:|--:|%s--:|--:|--:|--:|--:|--:|--:|--:|\n", clHead, clSep)
			for _, x := range internals {
				e := x.Engine
				if p.Cluster {
					cl = fmt.Sprintf(" %.1f |", e.ChangelogMillisMean)
				}
				fmt.Fprintf(w, "| %s | %.2f | %.3f | %.3f | %.0f | %.1f |%s %.1f | %.0f | %.2f | %.0f%% | %.0f | %s |\n", rateCell(&x), e.MatchesPerEvent, e.EmittedPerEvent, e.SuppressedPerEvent,
					e.BatchSizeMean, e.BatchMillisMean, cl, e.CommitMillisMean, e.CommitBytesPerEvent, e.CommitKeysPerEvent, 100*e.CacheHitRatio, x.CPUMicrosPerEvent, runtimeCells(&x))
			}
			fmt.Fprintf(w, "\nThe collector's CPU is its share of the engine's busy CPU by the Go runtime's own accounting, assists the share of that which goroutines spent marking before they could allocate (the stalls of a collection). Page faults are the engine process's over the measured time, from /proc.\n")
		}
		for _, x := range p.Runs {
			if x.CPUProfile != nil {
				cpuProfileMarkdown(w, &x, "the", "--cpuprofile", x.CPUProfile)
			}
			if x.NATSCPUProfile != nil {
				cpuProfileMarkdown(w, &x, "nats-server's", "--nats-cpuprofile", x.NATSCPUProfile)
			}
		}
		for _, x := range append(append([]RunResult{}, p.BaselineRuns...), p.Runs...) {
			if len(x.Timeline) == 0 {
				continue
			}
			fmt.Fprintf(w, "\n<details><summary>%s at %d/s: second by second</summary>\n\n", x.name(), x.TargetRate)
			fmt.Fprintf(w, "| t s | sent/s | offers/s | lag | p50 ms | p99 ms | other CPUs |\n|--:|--:|--:|--:|--:|--:|--:|\n")
			for _, t := range x.Timeline {
				fmt.Fprintf(w, "| %.0f | %.0f | %.0f | %d | %s | %s | %.2f |\n", t.T, t.SentPerS, t.OffersPer, t.Lag, ms(t.P50), ms(t.P99), t.Other)
			}
			fmt.Fprintf(w, "\n</details>\n")
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "## Targets\n\n| target | status | measured |\n|---|---|---|\n")
	for _, c := range r.Targets {
		m := c.Measured
		if c.How != "" {
			m += " (" + c.How + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", c.Target, c.Status, m)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintf(w, "\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// peakRSS gives a point's peak RSS, with its largest anonymous part
// while the runs went when that was sampled.
func peakRSS(p *Point) string {
	if p.PeakAnonRSSBytes <= 0 {
		return mib(p.PeakRSSBytes)
	}
	return fmt.Sprintf("%s (anonymous at most %s under load; the rest is Badger's files mapped)", mib(p.PeakRSSBytes), mib(p.PeakAnonRSSBytes))
}

// runtimeCells gives the collections, the collector's CPU and the page
// faults of a run's engine; "—" for what was not measured.
func runtimeCells(x *RunResult) string {
	gc, share, faults := "—", "—", "—"
	if e := x.Engine; e != nil && e.GCShare > 0 {
		gc = fmt.Sprintf("%.0f", e.GCCycles)
		share = fmt.Sprintf("%.1f%% (%.0f%%)", 100*e.GCShare, 100*e.AssistShare)
	}
	if x.PageFaults > 0 && x.Seconds > 0 {
		faults = fmt.Sprintf("%.0f", float64(x.PageFaults)/x.Seconds)
	}
	return gc + " | " + share + " | " + faults
}

// cpuProfileMarkdown writes where whose CPU ("the", "nats-server's") in
// profile cp (of flag, taken of run x) went: by component, by part of
// nats-server when it has samples there, and the functions with the most
// CPU of their own.
func cpuProfileMarkdown(w io.Writer, x *RunResult, whose, flag string, cp *CPUProfile) {
	fmt.Fprintf(w, "\nWhere %s CPU went in the %s run at %d/s (`%s %s`: %.1f s of CPU sampled in %.1f s of measured time, "+
		"%s; each sample counted to the innermost frame of a known component; %.1f%% of it in system calls):\n\n",
		whose, x.name(), x.TargetRate, flag, cp.File, cp.Seconds, cp.WallSeconds, orDash(cp.Scope), 100*cp.Syscalls)
	fmt.Fprintf(w, "| component | CPU s | share |\n|---|--:|--:|\n")
	for _, c := range cp.Components {
		fmt.Fprintf(w, "| %s | %.2f | %.1f%% |\n", c.Name, c.Seconds, 100*c.Share)
	}
	if len(cp.NATSServer) > 0 {
		fmt.Fprintf(w, "\nnats-server's part by the type of its innermost frame (its system calls included):\n\n| part | CPU s | share |\n|---|--:|--:|\n")
		for _, c := range cp.NATSServer {
			fmt.Fprintf(w, "| `%s` | %.2f | %.1f%% |\n", c.Name, c.Seconds, 100*c.Share)
		}
	}
	fmt.Fprintf(w, "\n<details><summary>the %d functions with the most CPU of their own</summary>\n\n| function | CPU s | share |\n|---|--:|--:|\n", len(cp.Top))
	for _, c := range cp.Top {
		fmt.Fprintf(w, "| `%s` | %.2f | %.1f%% |\n", c.Name, c.Seconds, 100*c.Share)
	}
	fmt.Fprintf(w, "\n</details>\n")
}

// rateCell is a run's target rate, with its round under --repeat.
func rateCell(x *RunResult) string {
	if x.Round == 0 {
		return strconv.Itoa(x.TargetRate)
	}
	return fmt.Sprintf("%d (round %d)", x.TargetRate, x.Round)
}

func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// instancesCell is the instances column: "1" for a single engine, "N
// cluster" in cluster mode, "-" for the baseline or an engine the bench did
// not start.
func instancesCell(p Point, x RunResult) string {
	switch {
	case x.Side != "engine" || p.Instances == 0:
		return "-"
	case p.Cluster:
		return fmt.Sprintf("%d cluster", p.Instances)
	}
	return "1"
}

// clusterSummary is the terminal summary of a cluster-mode point.
func clusterSummary(p *Point) []string {
	var parts []string
	if p.ThroughputVs1 > 0 {
		parts = append(parts, fmt.Sprintf("throughput %.2f× the 1-instance point", p.ThroughputVs1))
	}
	var owned, events []string
	var total int64
	for _, in := range p.PerInstance {
		total += in.Events
	}
	for _, in := range p.PerInstance {
		owned = append(owned, fmt.Sprint(in.Partitions))
		if total > 0 {
			events = append(events, fmt.Sprintf("%.0f%%", 100*float64(in.Events)/float64(total)))
		}
	}
	parts = append(parts, "partitions "+strings.Join(owned, "/"))
	if len(events) > 0 {
		parts = append(parts, "events "+strings.Join(events, "/"))
	}
	parts = append(parts, fmt.Sprintf("offers emitted %d, received %d", p.OffersEmitted, p.OffersReceived))
	if p.SameOffersAs1 != nil {
		parts = append(parts, "same offers as the 1-instance point: "+yesNo(*p.SameOffersAs1))
	}
	if p.ChangelogBytes > 0 {
		parts = append(parts, "changelog "+mib(p.ChangelogBytes))
	}
	return parts
}

// scaleOutMarkdown writes the section comparing the cluster-mode points
// of an instances sweep (or of --instances), with what the comparison can
// and cannot show on this machine.
func (r *Report) scaleOutMarkdown(w io.Writer) {
	pts := r.Points
	if !slices.ContainsFunc(pts, func(p Point) bool { return p.Cluster }) {
		return
	}
	fmt.Fprintf(w, "## Scale-out\n\n")
	fmt.Fprintf(w, "| instances | target/s | processed/s | × 1 instance | p50 ms | p99 ms | engines CPU s | CPU µs/event | bench CPU s | other CPU s | peak RSS (sum) | offers emitted / received | same offers as 1 instance | verdict |\n")
	fmt.Fprintf(w, "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|\n")
	for _, p := range pts {
		ratio := "-"
		if p.ThroughputVs1 > 0 {
			ratio = fmt.Sprintf("%.2f", p.ThroughputVs1)
		}
		peak := "-"
		if p.PeakRSSBytes > 0 {
			peak = mib(p.PeakRSSBytes)
		}
		same := "-"
		if p.SameOffersAs1 != nil {
			same = fmt.Sprintf("%s (%d offers, %s)", yesNo(*p.SameOffersAs1), p.OffersOfEvents, p.OfferFingerprint)
		}
		inst := fmt.Sprint(p.Instances)
		if !p.Cluster {
			inst = "1 (single-instance mode)"
		}
		for _, x := range p.Runs {
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %.0f | %s | %.1f | %s | %d / %d | %s | %s |\n",
				inst, rateCell(&x), x.ProcessedPerSec, ratio, ms(x.Latency.P50), ms(x.Latency.P99), cpu(x.CPUSeconds),
				x.CPUMicrosPerEvent, benchCPU(x), x.OtherCPUSeconds, peak, p.OffersEmitted, p.OffersReceived, same, x.Verdict)
		}
	}
	fmt.Fprintf(w, "\nEvery instance, the nats-server, the load generator and the offers consumer ran on this machine's %d CPUs. "+
		"Adding instances here adds no CPU: it splits the same cores between more processes, each with its own batch loop, "+
		"Badger and per-partition consumers, and adds cluster mode's own work — a consumer per owned partition instead of one, "+
		"a changelog write (customer records and partition marks, fenced) with every commit, lease renewals. "+
		"What this measures is that the partitions split the traffic between the instances (events and offers per instance below), "+
		"that no offer is lost or duplicated on the way (emitted against received), and what cluster mode costs per event (CPU µs/event). "+
		"It does not measure scale-out: linear scaling needs cores (and disks) per instance, which this machine does not have.\n\n", r.Machine.CPUs)
	if slices.ContainsFunc(pts, func(p Point) bool { return !p.Cluster }) {
		fmt.Fprintf(w, "The single-instance mode point runs one engine without cluster mode (one consumer on the events stream, no changelog, no leases): "+
			"what separates it from the 1-instance point is the cost of cluster mode itself.\n\n")
	}
	fmt.Fprintf(w, "At a rate every point sustains, processed/s is the offered rate and its ratio to 1 instance is about 1 by construction: "+
		"capacity shows only where a point falls behind the offered rate, or with --max. "+
		"Same offers as 1 instance compares the offers received for the point's own events (event and rule, an order-independent fingerprint) with the 1-instance point's, "+
		"when both sent the same events (same seed, rates and durations).\n\n")
}

// instanceMarkdown writes a cluster-mode point's instances.
func instanceMarkdown(w io.Writer, p *Point) {
	if len(p.PerInstance) == 0 {
		return
	}
	if p.ChangelogBytes > 0 {
		fmt.Fprintf(w, "- Changelog stream at the end: %s.\n", mib(p.ChangelogBytes))
	}
	var total int64
	for _, in := range p.PerInstance {
		total += in.Events
	}
	fmt.Fprintf(w, "\n| instance | partitions | events (share) | offers | CPU s (whole point) | peak RSS | disk |\n|---|--:|--:|--:|--:|--:|--:|\n")
	for _, in := range p.PerInstance {
		share := 0.0
		if total > 0 {
			share = 100 * float64(in.Events) / float64(total)
		}
		peak, disk := "-", "-"
		if in.PeakRSSBytes > 0 {
			peak = mib(in.PeakRSSBytes)
		}
		if in.DiskBytes > 0 {
			disk = mib(in.DiskBytes)
		}
		fmt.Fprintf(w, "| %s | %d | %d (%.0f%%) | %d | %s | %s | %s |\n", in.Name, in.Partitions, in.Events, share, in.Offers, cpu(in.CPUSeconds), peak, disk)
	}
	for _, x := range p.Runs {
		if len(x.Instances) == 0 {
			continue
		}
		var parts []string
		for _, in := range x.Instances {
			s := fmt.Sprintf("%s %d events, %d offers", in.Name, in.Events, in.Offers)
			if in.CPUSeconds > 0 {
				s += fmt.Sprintf(", %.1f CPU s", in.CPUSeconds)
			}
			parts = append(parts, s)
		}
		fmt.Fprintf(w, "\nAt %d events/s (CPU over the measured time; events and offers until the drain ended): %s.\n", x.TargetRate, strings.Join(parts, "; "))
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// sendLateMarkdown says how late the publisher sent events in each run:
// the part of the latency that is the load generator's, not the engine's
// or the transport's.
func sendLateMarkdown(w io.Writer, p *Point) {
	var cells []string
	for _, runs := range [][]RunResult{p.Runs, p.BaselineRuns} {
		for _, x := range runs {
			if x.SendLate.Count > 0 {
				cells = append(cells, fmt.Sprintf("%s at %d/s p99 %s ms (max %s)", x.name(), x.TargetRate, ms(x.SendLate.P99), ms(x.SendLate.Max)))
			}
		}
	}
	if len(cells) > 0 {
		fmt.Fprintf(w, "- Publisher lateness (each event sent against its schedule; part of every latency above): %s.\n", strings.Join(cells, "; "))
	}
}

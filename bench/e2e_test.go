package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/engine"
)

// inProcess starts the engine in the test's process, as kairos bench
// --engine in-process does (cmd/kairos/bench.go).
type inProcess struct{}

func (inProcess) Mode() string       { return "in-process" }
func (inProcess) EmbedsNATS() bool   { return true }
func (inProcess) UsageScope() string { return "the test process" }

func (inProcess) Launch(ctx context.Context, spec bench.LaunchSpec) (bench.Target, error) {
	cfg, err := engine.LoadConfig(spec.ConfigFile)
	if err != nil {
		return nil, err
	}
	e, err := engine.New(engine.Options{Config: cfg})
	if err != nil {
		return nil, err
	}
	ectx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t := &target{e: e, cancel: cancel, done: make(chan error, 1), state: filepath.Join(spec.DataDir, "state")}
	go func() { t.done <- e.Run(ectx) }()
	select {
	case <-e.Ready():
		return t, nil
	case err := <-t.done:
		cancel()
		return nil, err
	}
}

type target struct {
	e      *engine.Engine
	cancel context.CancelFunc
	done   chan error
	state  string
}

func (t *target) NATSURL() string    { return t.e.NATSURL() }
func (t *target) StateDir() string   { return t.state }
func (t *target) MetricsURL() string { return "http://" + t.e.HTTPAddr() + "/metrics" }
func (t *target) Usage() (bench.Usage, bool) {
	u, err := bench.ProcUsage(0)
	return u, err == nil
}
func (t *target) Stop(ctx context.Context) error {
	t.cancel()
	select {
	case err := <-t.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkReport checks that a report of one point with one engine run at
// rate is sane, and that its files were written.
func checkReport(t *testing.T, rep *bench.Report, out string, rate int, baseline bool) {
	t.Helper()
	if len(rep.Points) != 1 {
		t.Fatalf("%d points, want 1", len(rep.Points))
	}
	p := rep.Points[0]
	if p.Customers != 1000 || p.Rules != 20 || p.ProfileLoad == nil || p.ProfileLoad.Count != 1000 || p.ProfileLoad.PerSecond <= 0 {
		t.Errorf("point %+v", p)
	}
	if len(p.Runs) != 1 {
		t.Fatalf("%d engine runs, want 1", len(p.Runs))
	}
	r := p.Runs[0]
	l := r.Latency
	if r.TargetRate != rate || r.SentPerSec < 0.9*float64(rate) || r.SentPerSec > 1.1*float64(rate) {
		t.Errorf("sent %.0f/s at target %d/s", r.SentPerSec, rate)
	}
	// A loaded machine (or -race) may leave the engine behind: the test is
	// about the measurements, not about meeting a target.
	if r.ProcessedPerSec < 0.5*float64(rate) || r.ProcessedPerSec > 1.2*float64(rate) {
		t.Errorf("engine processed %.0f/s at %d/s", r.ProcessedPerSec, rate)
	}
	if r.Offers == 0 || l.Count != r.Offers || r.OffersPerSec <= 0 || r.OffersPerSec > r.SentPerSec {
		t.Errorf("offers %d (%.0f/s), latency count %d", r.Offers, r.OffersPerSec, l.Count)
	}
	if l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.P999 > l.Max || l.Max > 5000 {
		t.Errorf("implausible latency %+v", l)
	}
	if r.SendLate.Count != r.Sent || r.SendLate.P99 > r.SendLate.Max {
		t.Errorf("publisher lateness %+v for %d events sent, latency %+v", r.SendLate, r.Sent, r.Latency)
	}
	if r.Verdict == "" || r.Sustained != (r.Verdict == "ok" || r.Verdict == "p99 over SLO") || r.LagMax < 0 || r.PublishErrors != 0 || r.CPUSeconds <= 0 || r.CPUMicrosPerEvent <= 0 || r.PeakRSSBytes <= 0 {
		t.Errorf("run %+v", r)
	}
	if e := r.Engine; e == nil || e.Events <= 0 || e.MatchesPerEvent <= 0 || e.BatchSizeMean <= 0 || e.BatchMillisMean <= 0 || e.CommitMillisMean <= 0 {
		t.Errorf("engine stats from /metrics: %+v", e)
	}
	// A child engine may not collect in a short run; in-process
	// TestBenchEndToEnd makes sure it does.
	if e := r.Engine; e != nil && (e.GCCycles < 0 || e.GCShare < 0 || e.GCShare >= 1 || e.AssistShare < 0 || e.AssistShare > 1 || (e.GCCycles > 0) != (e.GCShare > 0)) {
		t.Errorf("the collector from /metrics: %+v", e)
	}
	if p.DiskBytes <= 0 || p.CustomersWithState < 1000 || p.DiskPerCustomer <= 0 || p.PeakRSSBytes <= 0 {
		t.Errorf("disk %d for %d customers (%.0f B each), peak RSS %d", p.DiskBytes, p.CustomersWithState, p.DiskPerCustomer, p.PeakRSSBytes)
	}
	if baseline {
		if len(p.BaselineRuns) != 1 || p.BaselineRuns[0].Latency.Count == 0 || p.Ratio == nil || p.Ratio.P99 <= 0 || p.Ratio.Throughput <= 0 {
			t.Errorf("baseline %+v, ratio %+v", p.BaselineRuns, p.Ratio)
		}
	}
	if m := rep.Machine; m.CPUs < 1 || m.MemoryBytes <= 0 || m.GoVersion == "" || m.NATSServer == "" {
		t.Errorf("machine %+v", m)
	}
	if len(rep.Targets) < 10 {
		t.Errorf("%d targets checked", len(rep.Targets))
	}
	for _, f := range []string{"report.json", "report.md", "latency.svg"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(out, "report.json"))
	var back bench.Report
	if err := json.Unmarshal(b, &back); err != nil || back.Points[0].Runs[0].Latency != l {
		t.Errorf("report.json: %v", err)
	}
}

// TestBenchEndToEnd is a short kairos bench against an engine in the
// test's process: --duration 3s --customers 1000 --rules 20 --baseline,
// with --cpuprofile, --trace and --memprofile.
func TestBenchEndToEnd(t *testing.T) {
	// The report's collector figures need collections in the measured 3
	// s. In-process the engine, nats-server and the generator share one
	// heap, but whether it grows enough for a collection in so short a
	// window depends on how little they allocate: collect every 200 ms.
	stop := make(chan struct{})
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); <-collected }()
	out, diag := t.TempDir(), t.TempDir()
	var progress strings.Builder
	cpu, trc, mem := filepath.Join(diag, "cpu.prof"), filepath.Join(diag, "trace.out"), filepath.Join(diag, "heap.prof")
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 1000, Rules: 20, Rate: 1000, Duration: 3 * time.Second, Warmup: time.Second,
		Baseline: true, Launcher: inProcess{}, Out: out, Dir: t.TempDir(), Progress: &progress,
		Engine:     bench.EngineOptions{Policy: "none"},
		CPUProfile: cpu, Trace: trc, MemProfile: mem,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	checkReport(t, rep, out, 1000, true)
	if e := rep.Points[0].Runs[0].Engine; e == nil || e.GCCycles <= 0 || e.GCShare <= 0 {
		t.Errorf("no collections in-process: %+v", e)
	}
	if !strings.Contains(progress.String(), "engine 1000/s measure") {
		t.Errorf("no progress lines:\n%s", progress.String())
	}
	// The CPU profile is summarised in the report: in-process, the engine
	// and nats-server are in the profiled process.
	cp := rep.Points[0].Runs[0].CPUProfile
	if cp == nil || cp.File != cpu || cp.Seconds <= 0 {
		t.Fatalf("cpu profile summary %+v", cp)
	}
	comps := map[string]bool{}
	for _, c := range cp.Components {
		comps[c.Name] = true
		// About 100 samples: which of the engine's packages gets one
		// is chance, that one of them does is not.
		if strings.HasPrefix(c.Name, "kairos ") && !strings.HasPrefix(c.Name, "kairos bench") {
			comps["kairos"] = true
		}
	}
	for _, want := range []string{"nats-server", "kairos", "Badger"} {
		if !comps[want] {
			t.Errorf("no CPU counted to %s: %+v", want, cp.Components)
		}
	}
	if md, err := os.ReadFile(filepath.Join(out, "report.md")); err != nil || !strings.Contains(string(md), "Where the CPU went in the engine run at 1000/s") {
		t.Errorf("report.md has no CPU profile summary (%v)", err)
	}
	// Profiles are gzipped protocol buffers; an execution trace starts
	// with its header.
	for f, magic := range map[string]string{cpu: "\x1f\x8b", mem: "\x1f\x8b", trc: "go 1."} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 1000 || !strings.HasPrefix(string(b), magic) {
			t.Errorf("%s: %d bytes, %q…, %v", filepath.Base(f), len(b), b[:min(len(b), 8)], err)
		}
	}
}

// TestProfileRun profiles the second of two rounds (--repeat 2
// --profile-run 2): the report has the profile on that round only.
func TestProfileRun(t *testing.T) {
	cpu := filepath.Join(t.TempDir(), "cpu.prof")
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 500, Rules: 10, Rate: 500, Duration: time.Second, Warmup: 500 * time.Millisecond,
		Repeat: 2, ProfileRun: 2, CPUProfile: cpu,
		Launcher: inProcess{}, Dir: t.TempDir(), Engine: bench.EngineOptions{Policy: "none"},
	})
	if err != nil {
		t.Fatal(err)
	}
	runs := rep.Points[0].Runs
	if len(runs) != 2 || runs[0].CPUProfile != nil || runs[1].CPUProfile == nil || runs[1].CPUProfile.Seconds <= 0 {
		t.Fatalf("profiles of the rounds: %d runs, %+v", len(runs), runs)
	}
}

// TestBenchChildProcess runs the built kairos binary as kairos bench does
// by default: the engine and the baseline consumer child processes,
// nats-server in the bench.
func TestBenchChildProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kairos binary")
	}
	bin := bench.KairosBinary(t)
	out, diag := t.TempDir(), t.TempDir()
	cpu, trc, mem := filepath.Join(diag, "cpu.prof"), filepath.Join(diag, "trace.out"), filepath.Join(diag, "heap.prof")
	// An engine behind a token, as in production: /debug/pprof/ is an
	// admin path, and the bench must send the token from the config.
	base := filepath.Join(diag, "kairos.yaml")
	if err := os.WriteFile(base, []byte("http:\n  token: bench-e2e-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 1000, Rules: 20, Rate: 2000, Duration: 3 * time.Second, Warmup: time.Second,
		Baseline: true, Launcher: &bench.ChildLauncher{Exe: bin}, Out: out, Dir: t.TempDir(),
		Engine:     bench.EngineOptions{Base: base},
		CPUProfile: cpu, Trace: trc, MemProfile: mem,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, out, 2000, true)
	// The profiles are the engine's, from its /debug/pprof/: its CPU went
	// to the engine and Badger, hardly any to nats-server, which runs in
	// the bench's process (its package's background goroutines exist in
	// every process that links it; in-process nats-server takes a third).
	cp := rep.Points[0].Runs[0].CPUProfile
	if cp == nil || cp.Seconds <= 0 || !strings.Contains(cp.Scope, "engine process alone") {
		t.Fatalf("cpu profile summary %+v", cp)
	}
	comps := map[string]float64{}
	for _, c := range cp.Components {
		comps[c.Name] = c.Share
	}
	if comps["kairos engine"] == 0 || comps["Badger"] == 0 || comps["nats-server"] > 0.05 {
		t.Errorf("child engine's CPU by component: %+v", cp.Components)
	}
	for f, magic := range map[string]string{cpu: "\x1f\x8b", mem: "\x1f\x8b", trc: "go 1."} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 1000 || !strings.HasPrefix(string(b), magic) {
			t.Errorf("%s: %d bytes, %q…, %v", filepath.Base(f), len(b), b[:min(len(b), 8)], err)
		}
	}
	// The baseline ran as a process of its own: its CPU was measured.
	if b := rep.Points[0].BaselineRuns[0]; b.CPUSeconds <= 0 {
		t.Errorf("baseline process CPU %v", b.CPUSeconds)
	}
	// The engine's anonymous memory was sampled while the runs went.
	if p := rep.Points[0]; p.PeakAnonRSSBytes <= 0 || p.PeakAnonRSSBytes > p.PeakRSSBytes {
		t.Errorf("peak anonymous RSS %d, peak RSS %d", p.PeakAnonRSSBytes, p.PeakRSSBytes)
	}
	if rep.Setup.Mode != "child" || !strings.Contains(rep.Setup.UsageScope, "engine process alone") || !strings.Contains(rep.Setup.UsageScope, "nats-server runs in the bench process") {
		t.Errorf("setup %+v", rep.Setup)
	}
}

// TestBenchRounds runs a point in two rounds (--repeat 2 --baseline):
// baseline and engine alternate, each round's engine run pairs with its
// own baseline run, and the report names the rounds.
func TestBenchRounds(t *testing.T) {
	out := t.TempDir()
	var progress strings.Builder
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 1000, Rules: 20, Rate: 500, Duration: time.Second, Warmup: 500 * time.Millisecond,
		Baseline: true, Repeat: 2, Launcher: inProcess{}, Out: out, Dir: t.TempDir(), Progress: &progress,
		Engine: bench.EngineOptions{Policy: "none"},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	p := rep.Points[0]
	if len(p.BaselineRuns) != 2 || len(p.Runs) != 2 {
		t.Fatalf("%d baseline and %d engine runs, want 2 and 2", len(p.BaselineRuns), len(p.Runs))
	}
	for i := range 2 {
		for _, x := range []bench.RunResult{p.BaselineRuns[i], p.Runs[i]} {
			// Latencies, not their verdict: the p99 is this machine's.
			if x.Round != i+1 || x.Latency.Count == 0 || x.ProcessedPerSec <= 0 {
				t.Errorf("%s run %d: round %d, %d latencies, %.0f processed/s", x.Side, i, x.Round, x.Latency.Count, x.ProcessedPerSec)
			}
		}
	}
	// The rounds alternate: round 2's baseline comes after round 1's engine.
	log := progress.String()
	if a, b := strings.Index(log, "engine, round 1 500/s:"), strings.Index(log, "baseline, round 2 500/s:"); a < 0 || b < a {
		t.Errorf("rounds not alternated:\n%s", log)
	}
	r := p.Ratio
	if r == nil || len(r.Rounds) != 2 || r.Rounds[0].Round != 1 || r.Rounds[1].Round != 2 {
		t.Fatalf("ratio %+v", r)
	}
	for i, rr := range r.Rounds {
		if want := p.Runs[i].Latency.P99 / p.BaselineRuns[i].Latency.P99; rr.P99 != want {
			t.Errorf("round %d p99 ratio %v, want %v (its own baseline's)", rr.Round, rr.P99, want)
		}
	}
	if want := (r.Rounds[0].P99 + r.Rounds[1].P99) / 2; r.P99 != want {
		t.Errorf("p99 ratio %v, want the rounds' median %v", r.P99, want)
	}
	if rep.Setup.Repeat != 2 {
		t.Errorf("setup repeat %d", rep.Setup.Repeat)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| engine, round 2 |", "engine, round 1 at 500/s: second by second", "- Rounds, each engine run against the baseline run of its round at the same rate: round 1 p99", "2 rounds"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
}

// TestBenchNATSProcess runs the built kairos binary with --nats-process:
// the nats-server in a process of its own, its CPU measured apart from
// the bench's in every run, and gone with the bench's runs.
func TestBenchNATSProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the kairos binary")
	}
	bin := bench.KairosBinary(t)
	out, dir := t.TempDir(), t.TempDir()
	rep, err := bench.Run(t.Context(), bench.Config{
		Customers: 1000, Rules: 20, Rate: 1000, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
		Baseline: true, Launcher: &bench.ChildLauncher{Exe: bin}, NATSExe: bin, Out: out, Dir: dir, Keep: true,
		NATSCPUProfile: filepath.Join(out, "nats.prof"),
	})
	if err != nil {
		t.Fatal(err)
	}
	p := rep.Points[0]
	for _, x := range append(p.BaselineRuns, p.Runs...) {
		if x.NATSCPUSeconds <= 0 || x.BenchCPUSeconds <= 0 || x.ProcessedPerSec <= 0 {
			t.Errorf("%s run: nats-server CPU %v s, bench CPU %v s, %v processed/s", x.Side, x.NATSCPUSeconds, x.BenchCPUSeconds, x.ProcessedPerSec)
		}
	}
	// --nats-cpuprofile: the server's process profiled over the engine
	// run, summarised by part of the server.
	if x := p.BaselineRuns[0]; x.NATSCPUProfile != nil {
		t.Errorf("the baseline run has a nats-server profile: the profile is of an engine run")
	}
	cp := p.Runs[0].NATSCPUProfile
	switch {
	case cp == nil:
		t.Fatal("the engine run has no nats-server profile")
	case cp.Seconds <= 0 || len(cp.NATSServer) == 0 || !strings.Contains(cp.Scope, "nats-server process"):
		t.Errorf("nats-server profile %+v", cp)
	case cp.Components[0].Name != "nats-server":
		t.Errorf("the nats-server process's profile is led by %q: %+v", cp.Components[0].Name, cp.Components)
	}
	if !rep.Setup.NATSProcess || !strings.Contains(rep.Setup.NATS, "a process of its own") || !strings.Contains(rep.Setup.UsageScope, "--nats-process") {
		t.Errorf("setup %+v", rep.Setup)
	}
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), " + nats-server ") || !strings.Contains(string(md), "Where nats-server's CPU went in the engine run") {
		t.Errorf("report.md gives no nats-server CPU or profile:\n%s", md)
	}
	// The server stored the streams under the point's directory, and its
	// process ended with the point.
	stores, _ := filepath.Glob(filepath.Join(dir, "*", "nats", "jetstream"))
	if len(stores) != 1 {
		t.Errorf("nats-server stores %v", stores)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		if b, err := os.ReadFile(f); err == nil && bytes.Contains(b, []byte(bench.NATSServerFlag)) && bytes.Contains(b, []byte(dir)) {
			t.Errorf("the nats-server process outlived the bench's run: %s %q", f, b)
		}
	}
}

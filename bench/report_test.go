package bench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func run(side string, rate int, p50, p99 float64, ok bool) RunResult {
	r := RunResult{Side: side, TargetRate: rate, Seconds: 10, Sent: int64(rate) * 10, SentPerSec: float64(rate), ProcessedPerSec: float64(rate),
		Latency:   Percentiles{Count: 100, P50: p50, P90: (p50 + p99) / 2, P99: p99, P999: p99 * 1.5, Max: p99 * 2, Mean: p50},
		Sustained: ok, WithinSLO: ok && p99 <= 10, Verdict: verdictOK}
	if !r.WithinSLO {
		r.Verdict = "p99 over SLO"
	}
	return r
}

func sampleReport() *Report {
	pt := Point{
		Label: "100 rules, 1M customers", Customers: 1_000_000, Rules: 100, Instances: 1,
		ProfileLoad:   &ProfileLoad{Count: 1_000_000, Seconds: 20, PerSecond: 50_000},
		ReadyRSSBytes: 39 << 20, PeakRSSBytes: 900 << 20, DiskBytes: 250_000_000, CustomersWithState: 1_000_000, DiskPerCustomer: 250,
		Runs:         []RunResult{run("engine", 5000, 1.2, 1.8, true), run("engine", 10000, 1.5, 3, true), run("engine", 20000, 2, 6, true), run("engine", 40000, 9, 40, false)},
		BaselineRuns: []RunResult{run("baseline", 5000, 0.8, 1.2, true), run("baseline", 10000, 0.9, 1.5, true), run("baseline", 20000, 1, 2, true), run("baseline", 40000, 1.2, 3, true)},
	}
	pt.Best, pt.BaselineBest = bestRun(pt.Runs), bestRun(pt.BaselineRuns)
	pt.Ratio = ratio(&pt, true)
	pt.Runs[0].SendLate = Percentiles{Count: 75000, P50: 0.4, P99: 1.1, Max: 4.3}
	pt.Runs[0].Timeline = []Tick{{T: -1, SentPerS: 5000, Lag: 3}, {T: 0, SentPerS: 5000, OffersPer: 400, Lag: 2, P50: 1.2, P99: 1.9}}
	small := Point{Label: "10 rules, 1M customers", Customers: 1_000_000, Rules: 10, ReadyRSSBytes: 38 << 20, Best: -1, BaselineBest: -1}
	r := &Report{
		Tool: "kairos bench", Version: "test", Command: "kairos bench --max --baseline",
		Started: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC), Finished: time.Date(2026, 11, 22, 10, 5, 0, 0, time.UTC),
		Machine: Machine{CPUs: 2, CPUModel: "test cpu", MemoryBytes: 24 << 30, GoVersion: "go1.26", NATSServer: "2.15.2"},
		Setup:   Setup{Mode: "child", Max: true, SLO: 10 * time.Millisecond, Baseline: true, Customers: 1_000_000, Rules: 100, Mix: FormatMix(BenchMix)},
		Points:  []Point{pt, small},
	}
	r.Targets = checkTargets(r)
	return r
}

func TestTargets(t *testing.T) {
	r := sampleReport()
	got := map[string]Check{}
	for _, c := range r.Targets {
		got[c.Target] = c
	}
	for target, want := range map[string]string{
		"≥ 50,000 events/s sustained, 100 rules, 1M customers":     Missed, // 20k within the SLO
		"≥ 60% of the transport limit (baseline), same run":        Missed, // 20k of 40k
		"p99 ≤ 2 ms at 5k events/s":                                Met,
		"p99 ≤ 5 ms at 20k events/s":                               Missed,
		"p99 within 2× of the transport limit's at 1,000 events/s": NotMeasured,
		"10,000 rules: ≥ 10,000 events/s with p99 ≤ 10 ms":         NotMeasured,
		"memory per loaded rule ≤ 20 KB":                           Met, // 1 MiB over 90 rules
		"throughput at 10M customers ≥ 80% of that at 100k":        NotMeasured,
		"disk ≤ 300 bytes per customer (default bench rules)":      Met,
		"1M profiles imported in ≤ 10 s":                           Missed, // 20 s
	} {
		c, ok := got[target]
		if !ok {
			t.Errorf("no target %q", target)
			continue
		}
		if c.Status != want {
			t.Errorf("%s: %s (%s), want %s", target, c.Status, c.Measured, want)
		}
		if c.Status == NotMeasured && c.How == "" {
			t.Errorf("%s: not measured without the invocation that measures it", target)
		}
	}
	if pr := r.Points[0].Ratio; pr == nil || pr.Throughput != 0.5 || pr.AtRate != 20000 {
		t.Errorf("ratio %+v, want throughput 0.5 at 20000/s", pr)
	}
	if m := got["≥ 50,000 events/s sustained, 100 rules, 1M customers"].Measured; strings.Contains(m, "nats-server") {
		t.Errorf("the transport's share without a nats-server process: %s", m)
	}
	// With the nats-server's CPU measured, the throughput target says what
	// the server alone would take at 50,000 events/s: from the run at the
	// highest rate, 30 µs per event here.
	x := &r.Points[0].Runs[0]
	x.NATSCPUSeconds, x.ProcessedPerSec, x.Seconds, x.TargetRate = 6, 20000, 10, 20000
	low := &r.Points[0].Runs[1]
	low.NATSCPUSeconds, low.ProcessedPerSec, low.Seconds, low.TargetRate = 9, 1000, 10, 1000
	for _, c := range checkTargets(r) {
		if strings.HasPrefix(c.Target, "≥ 50,000") && !strings.Contains(c.Measured, "nats-server alone spent 30 µs of CPU per event at 20000/s (engine run, its own process): at 50k events/s that is 1.5 CPUs of this machine's 2") {
			t.Errorf("50,000 target: %s", c.Measured)
		}
	}
}

func TestReportWrite(t *testing.T) {
	r := sampleReport()
	dir := t.TempDir()
	if err := r.Write(dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Machine.CPUs != 2 || len(back.Points) != 2 || back.Points[0].Runs[2].Latency.P99 != 6 || back.Setup.SLO != 10*time.Millisecond {
		t.Fatalf("report.json does not round-trip: %+v", back)
	}
	for _, key := range []string{`"p99_ms"`, `"nats_server_version"`, `"cpus"`, `"ratio_to_baseline"`, `"targets"`, `"disk_bytes_per_customer"`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("report.json has no %s", key)
		}
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# kairos bench report", "| 100 rules, 1M customers | engine | 1 | 20000 |", "Highest rate within p99 10ms: **20000 events/s**",
		"Transport limit (baseline) within p99 10ms: **40000 events/s**", "## Targets",
		"Publisher lateness (each event sent against its schedule; part of every latency above): engine at 5000/s p99 1.10 ms (max 4.30).", "| p99 ≤ 2 ms at 5k events/s | met |", "latency-100-rules--1M-customers.svg"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	// The plot is well-formed SVG with a line per percentile and side.
	svg, err := os.ReadFile(filepath.Join(dir, "latency-100-rules--1M-customers.svg"))
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	polylines := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("latency SVG is not XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			polylines++
		}
	}
	if polylines != 8 {
		t.Errorf("%d polylines, want 8 (4 percentiles × engine and baseline)", polylines)
	}
	if _, err := os.Stat(filepath.Join(dir, "latency-10-rules--1M-customers.svg")); err == nil {
		t.Error("a point without runs got a plot")
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	sampleReport().Table(&b)
	out := b.String()
	for _, want := range []string{"target/s", "p99.9 ms", "engine max 20000 events/s", "baseline max 40000 events/s", "target met:", "target missed:"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestPlan(t *testing.T) {
	cfg := Config{Launcher: &ChildLauncher{}}
	cfg.Defaults()
	if ps := plan(&cfg); len(ps) != 1 || ps[0].rates[0] != 5000 || ps[0].label != "100 rules, 100k customers" {
		t.Fatalf("default plan %+v", ps)
	}
	cfg.Sweep, _ = ParseSweep("rules=10,100")
	if ps := plan(&cfg); len(ps) != 2 || ps[1].rules != 100 || ps[0].rules != 10 {
		t.Fatalf("rules sweep %+v", ps)
	}
	cfg.Sweep, _ = ParseSweep("rate=1k,5k")
	if ps := plan(&cfg); len(ps) != 1 || len(ps[0].rates) != 2 {
		t.Fatalf("rate sweep %+v", ps)
	}
	cfg.Max = true
	if err := cfg.Validate(); err == nil {
		t.Fatal("--max with a rate sweep accepted")
	}
	// The profiles are of one engine process: a child engine's (through
	// its /debug/pprof/), or the bench's own in-process; never of an
	// engine the bench did not start, nor of several child engines.
	cfg = Config{Launcher: &ChildLauncher{}, CPUProfile: "c", Trace: "t", MemProfile: "m"}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil || !cfg.profilesChild() {
		t.Errorf("profiles of a child engine: %v", err)
	}
	// --profile-run picks a run that exists, of profiles asked for.
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Launcher: &ChildLauncher{}, CPUProfile: "c", ProfileRun: 3, Repeat: 2}, "there are 2 engine runs"},
		{Config{Launcher: &ChildLauncher{}, ProfileRun: 2, Repeat: 2}, "--profile-run needs --cpuprofile"},
		{Config{Launcher: &ChildLauncher{}, CPUProfile: "c", ProfileRun: -1}, "--profile-run must be 1 or more"},
	} {
		tc.cfg.Defaults()
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
	ok := Config{Launcher: &ChildLauncher{}, CPUProfile: "c", ProfileRun: 3, Repeat: 3}
	ok.Defaults()
	if err := ok.Validate(); err != nil {
		t.Errorf("--repeat 3 --profile-run 3: %v", err)
	}
	cfg.Instances = 2
	err := cfg.Validate()
	for _, flag := range []string{"--cpuprofile", "--trace", "--memprofile"} {
		if err == nil || !strings.Contains(err.Error(), flag+" with a child engine profiles one engine process") {
			t.Errorf("%s with two child engines: %v", flag, err)
		}
	}
	cfg = Config{NATSURL: "nats://127.0.0.1:1", CPUProfile: "c"}
	cfg.Defaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--cpuprofile needs an engine the bench starts") {
		t.Errorf("--cpuprofile with --nats-url: %v", err)
	}
	// Rounds: 1 to 100, and not with a search.
	for _, c := range []Config{{Launcher: &ChildLauncher{}, Repeat: 101}, {Launcher: &ChildLauncher{}, Repeat: 2, Max: true}} {
		c.Defaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--repeat") {
			t.Errorf("repeat %d, max %v: %v", c.Repeat, c.Max, err)
		}
	}
	for in, want := range map[int]int{149: 150, 5000: 5000, 7512: 7500, 37500: 38000, 60: 60} {
		if got := roundRate(in); got != want {
			t.Errorf("roundRate(%d) = %d, want %d", in, got, want)
		}
	}
}

func TestSplitLabels(t *testing.T) {
	got := splitLabels(`outcome="emitted",rule="a,b",x="q\"uo,te"`)
	want := []string{`outcome="emitted"`, `rule="a,b"`, `x="q\"uo,te"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("splitLabels = %q, want %q", got, want)
	}
}

// TestRatioRounds pairs each engine run with the baseline run of its own
// round and takes the median of the rounds; the 1,000 events/s target is
// judged on that median.
func TestRatioRounds(t *testing.T) {
	pt := Point{Label: "100 rules, 100k customers", Customers: 100_000, Rules: 100}
	// Engine p99s 3, 10, 4 against baselines 2, 2, 2.5: 1.5×, 5×, 1.6×.
	for i, x := range []struct{ e, b float64 }{{3, 2}, {10, 2}, {4, 2.5}} {
		e, b := run("engine", 1000, 1, x.e, true), run("baseline", 1000, 0.5, x.b, true)
		e.Round, b.Round = i+1, i+1
		pt.Runs, pt.BaselineRuns = append(pt.Runs, e), append(pt.BaselineRuns, b)
	}
	r := ratio(&pt, false)
	if r == nil || len(r.Rounds) != 3 || r.AtRate != 1000 {
		t.Fatalf("ratio %+v", r)
	}
	for i, want := range []float64{1.5, 5, 1.6} {
		if r.Rounds[i].Round != i+1 || r.Rounds[i].P99 != want {
			t.Errorf("round %d: %+v, want p99 ratio %v", i+1, r.Rounds[i], want)
		}
	}
	if r.P99 != 1.6 || r.P50 != 2 || r.Throughput != 1 {
		t.Errorf("medians p99 %v p50 %v throughput %v, want 1.6, 2, 1", r.P99, r.P50, r.Throughput)
	}
	pt.Ratio = r
	rep := &Report{Setup: Setup{Baseline: true, Repeat: 3}, Points: []Point{pt}}
	for _, c := range checkTargets(rep) {
		if c.Target != "p99 within 2× of the transport limit's at 1,000 events/s" {
			continue
		}
		if c.Status != Met || !strings.Contains(c.Measured, "median 1.6× over 3 rounds, 2 within 2×") {
			t.Errorf("1,000 events/s target: %s, %s", c.Status, c.Measured)
		}
	}
	// Two rounds over 2× of three: missed.
	pt.Runs[2].Latency.P99 = 6
	rep.Points[0] = pt
	for _, c := range checkTargets(rep) {
		if c.Target == "p99 within 2× of the transport limit's at 1,000 events/s" && c.Status != Missed {
			t.Errorf("median 2.4×: %s, %s", c.Status, c.Measured)
		}
	}
	// A fixed-rate p99 target must hold in every round, and says which
	// round missed it.
	a, b := run("engine", 5000, 1, 1.5, true), run("engine", 5000, 1, 3, true)
	a.Round, b.Round = 1, 2
	rep.Points[0].Runs = append(rep.Points[0].Runs, a, b)
	for _, c := range checkTargets(rep) {
		if c.Target == "p99 ≤ 2 ms at 5k events/s" && (c.Status != Missed || !strings.Contains(c.Measured, "round 2: p99 3.00 ms")) {
			t.Errorf("5,000 events/s target over two rounds: %s, %s", c.Status, c.Measured)
		}
	}
	if median([]float64{3, 1, 2, 10}, func(f float64) float64 { return f }) != 2.5 {
		t.Error("median of an even count is not the mean of the middle two")
	}
}

// TestNotes: the notes say where the baseline ran, and point a report
// with a missed target and no profile to --cpuprofile.
func TestNotes(t *testing.T) {
	r := sampleReport() // child mode, with the baseline, targets missed
	text := strings.Join(notes(r), "\n")
	for _, want := range []string{"The baseline consumer runs as a process of its own", "run the same command with --cpuprofile FILE"} {
		if !strings.Contains(text, want) {
			t.Errorf("notes lack %q:\n%s", want, text)
		}
	}
	r.Points[0].Runs[0].CPUProfile = &CPUProfile{Seconds: 1}
	if text := strings.Join(notes(r), "\n"); strings.Contains(text, "--cpuprofile") {
		t.Errorf("a profiled report is pointed to --cpuprofile:\n%s", text)
	}
	// A run whose engine's level 0 stalled says so, with the seconds.
	if strings.Contains(text, "level 0") {
		t.Errorf("notes of a report without stalls name level 0:\n%s", text)
	}
	r.Points[0].Runs[0].Engine = &EngineStats{Events: 1, L0StallSeconds: 3.2}
	if text := strings.Join(notes(r), "\n"); !strings.Contains(text, "Badger's level 0 was full") || !strings.Contains(text, "(3.2 s)") {
		t.Errorf("notes of a run whose level 0 stalled:\n%s", text)
	}
	r.Points[0].Runs[0].Engine = nil
	// With the nats-server in a process of its own, the notes and the
	// bench CPU cells say where its CPU is.
	r.Setup.NATSProcess = true
	x := &r.Points[0].Runs[0]
	x.BenchCPUSeconds, x.NATSCPUSeconds, x.ProcessedPerSec, x.Seconds = 2, 3, 1000, 10
	if text := strings.Join(notes(r), "\n"); !strings.Contains(text, "a nats-server in a process of its own (--nats-process)") || !strings.Contains(text, "nats-server (its CPU given apart)") {
		t.Errorf("notes with --nats-process:\n%s", text)
	}
	if got, want := benchCPU(*x), "2.0 + nats-server 3.0 (300 µs/event)"; got != want {
		t.Errorf("bench CPU cell %q, want %q", got, want)
	}
	x.NATSCPUSeconds = 0
	if got := benchCPU(*x); got != "2.0" {
		t.Errorf("bench CPU cell without a nats-server process: %q", got)
	}
	r.Setup.Mode = "external"
	r.Points[0].Runs[0].CPUProfile = nil
	if text := strings.Join(notes(r), "\n"); strings.Contains(text, "--cpuprofile") {
		t.Errorf("an engine the bench did not start cannot be profiled:\n%s", text)
	}
}

// TestMakeOutputDirs: the directories of --out and of the profiles are
// made before the run, and one that cannot be made fails it.
func TestMakeOutputDirs(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Out: filepath.Join(dir, "out"), Trace: filepath.Join(dir, "a", "b", "trace.out"), CPUProfile: filepath.Join(dir, "cpu.prof")}
	if err := makeOutputDirs(&cfg); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"out", "a/b"} {
		if ents, err := os.ReadDir(filepath.Join(dir, d)); err != nil || len(ents) != 0 {
			t.Errorf("%s: %v, %d entries left", d, err, len(ents))
		}
	}
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = Config{MemProfile: filepath.Join(file, "mem.prof")}
	if err := makeOutputDirs(&cfg); err == nil {
		t.Error("a profile under a file was accepted")
	}
}

// TestCustomersTarget: without --max, the 10M target is judged on what
// both points processed at one offered rate beyond their capacity; when
// the 100k point kept up, only a miss can be told.
func TestCustomersTarget(t *testing.T) {
	point := func(customers int, runs ...RunResult) Point {
		return Point{Label: FormatCount(customers) + " customers", Customers: customers, Rules: 100, Runs: runs, Best: -1, BaselineBest: -1}
	}
	behind := func(rate int, processed float64) RunResult {
		r := run("engine", rate, 100, 900, false)
		r.ProcessedPerSec, r.AtCapacity, r.Verdict = processed, true, "engine behind (lag 9000)"
		return r
	}
	kept := func(rate int) RunResult { return run("engine", rate, 2, 40, true) }
	const target = "throughput at 10M customers ≥ 80% of that at 100k"
	for _, tc := range []struct {
		name       string
		small, big Point
		status     string
		measured   string
	}{
		{"both beyond capacity", point(100_000, kept(10000), behind(20000, 16000)), point(10_000_000, behind(10000, 9000), behind(20000, 12000)),
			Missed, "75% of the events/s processed at 100k customers (12k against 16k at 20k/s offered"},
		{"both beyond, within 80%", point(100_000, behind(20000, 15000)), point(10_000_000, behind(20000, 12750)), Met, "85%"},
		{"100k kept up, 10M far behind", point(100_000, kept(15000)), point(10_000_000, behind(15000, 9000)), Missed, "at most 60%"},
		{"100k kept up, 10M close", point(100_000, kept(15000)), point(10_000_000, behind(15000, 13500)), NotMeasured, "rerun at a rate beyond both"},
		{"both kept up", point(100_000, kept(5000)), point(10_000_000, kept(5000)), NotMeasured, "needs both points beyond"},
	} {
		rep := &Report{Points: []Point{tc.small, tc.big}}
		for _, c := range checkTargets(rep) {
			if c.Target == target && (c.Status != tc.status || !strings.Contains(c.Measured, tc.measured)) {
				t.Errorf("%s: %s, %q; want %s, %q", tc.name, c.Status, c.Measured, tc.status, tc.measured)
			}
		}
	}
	// Rounds: the median of the rounds' ratios.
	small := point(100_000, behind(20000, 16000), behind(20000, 15000), behind(20000, 14000))
	big := point(10_000_000, behind(20000, 8000), behind(20000, 13500), behind(20000, 12600))
	for i := range 3 {
		small.Runs[i].Round, big.Runs[i].Round = i+1, i+1
	}
	if c := capacityRatio(&small, &big, 2); c.rate != 20000 || !c.exact || c.ratio != 0.9 || c.disturbed != nil {
		t.Errorf("over rounds: %+v, want the median ratio 0.9 (0.5, 0.9, 0.9)", c)
	}

	// A run that shared the machine with other processes settles nothing:
	// not a pass, and not a miss either (which side lost what?).
	for _, tc := range []struct {
		name       string
		small, big Point
		run        string
	}{
		{"100k disturbed", point(100_000, disturbedRun(behind(20000, 12900))), point(10_000_000, behind(20000, 13900)), "100k customers engine at 20000/s"},
		{"10M disturbed", point(100_000, behind(20000, 19000)), point(10_000_000, disturbedRun(behind(20000, 9000))), "10M customers engine at 20000/s"},
	} {
		rep := &Report{Points: []Point{tc.small, tc.big}, Machine: Machine{CPUs: 2}}
		for _, c := range checkTargets(rep) {
			if c.Target == target && (c.Status != NotMeasured || !strings.Contains(c.Measured, "other processes used more than a fifth of the machine's CPU during "+tc.run+":")) {
				t.Errorf("%s: %s, %q; want %s, naming the disturbed run", tc.name, c.Status, c.Measured, NotMeasured)
			}
		}
	}
}

// disturbedRun is x during which other processes used 6.4 CPU-seconds of
// its 10 (a fifth of two CPUs is 4).
func disturbedRun(x RunResult) RunResult {
	x.OtherCPUSeconds = 6.4
	return x
}

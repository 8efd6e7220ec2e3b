package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// transportShare says what the nats-server alone would take of this
// machine at rate, from the CPU per event of its process (--nats-process)
// in the run at the highest rate, "" when no run measured it.
func transportShare(r *Report, rate int) string {
	var best *RunResult
	for i := range r.Points {
		for _, runs := range [][]RunResult{r.Points[i].BaselineRuns, r.Points[i].Runs} {
			for j := range runs {
				x := &runs[j]
				if x.natsMicrosPerEvent() > 0 && (best == nil || x.TargetRate > best.TargetRate) {
					best = x
				}
			}
		}
	}
	if best == nil {
		return ""
	}
	us := best.natsMicrosPerEvent()
	s := fmt.Sprintf("nats-server alone spent %.0f µs of CPU per event at %d/s (%s run, its own process): at %s events/s that is %.1f CPUs",
		us, best.TargetRate, best.Side, FormatCount(rate), us*1e-6*float64(rate))
	if c := r.Machine.CPUs; c > 0 {
		s += fmt.Sprintf(" of this machine's %d", c)
	}
	return s
}

// Status of a target.
const (
	Met         = "met"
	Missed      = "missed"
	NotMeasured = "not measured"
)

// checkTargets judges the report against the targets of the bench issue
// (docs/bench.md#targets). A target the report has no run for is "not
// measured", with the invocation that measures it.
func checkTargets(r *Report) []Check {
	var out []Check
	add := func(target string, ok bool, measured bool, m, how string) {
		c := Check{Target: target, Measured: m}
		switch {
		case !measured:
			c.Status, c.How = NotMeasured, how
		case ok:
			c.Status = Met
		default:
			c.Status = Missed
		}
		out = append(out, c)
	}
	pts := r.Points
	slo := float64(r.Setup.SLO) / 1e6

	// Throughput at 100 rules and 1M customers.
	{
		best, at := 0.0, ""
		for _, p := range pts {
			if p.Rules != 100 {
				continue
			}
			if v := bestSustained(p.Runs); v > best || at == "" && v > 0 {
				best, at = v, fmt.Sprintf("%s customers", FormatCount(p.Customers))
				if p.Customers >= 1_000_000 {
					at += " (target population)"
				}
			}
		}
		big := slices.ContainsFunc(pts, func(p Point) bool { return p.Rules == 100 && p.Customers >= 1_000_000 && bestSustained(p.Runs) > 0 })
		m := "no sustained run with 100 rules"
		if best > 0 {
			m = fmt.Sprintf("highest sustained rate %s events/s at %s", FormatCount(int(best)), at)
		}
		if t := transportShare(r, 50000); t != "" {
			m += "; " + t
		}
		add("≥ 50,000 events/s sustained, 100 rules, 1M customers", best >= 50000, big && r.Setup.Max, m,
			"kairos bench --max --customers 1M --baseline")
	}
	// Share of the transport limit.
	{
		var ratios []string
		ok, measured := true, false
		for _, p := range pts {
			if p.Ratio == nil || !r.Setup.Max || p.BaselineBest < 0 {
				if p.Ratio != nil && r.Setup.Max {
					ratios = append(ratios, fmt.Sprintf("%s: the baseline kept no rate within the SLO, so there is no limit to compare with", p.Label))
				}
				continue
			}
			measured = true
			ok = ok && p.Ratio.Throughput >= 0.6
			ratios = append(ratios, fmt.Sprintf("%.0f%% (%s; %s)", 100*p.Ratio.Throughput, p.Label, p.Ratio.Basis))
		}
		m := "needs --max with --baseline"
		if len(ratios) > 0 {
			m = join(ratios)
		}
		add("≥ 60% of the transport limit (baseline), same run", ok, measured, m, "kairos bench --max --baseline")
	}
	// Latency at fixed rates.
	for _, t := range []struct {
		rate  int
		limit float64
	}{{5000, 2}, {20000, 5}} {
		runs := runsAt(pts, "engine", t.rate, func(p Point) bool { return p.Rules == 100 })
		ok, m := true, fmt.Sprintf("no engine run at %s events/s with 100 rules", FormatCount(t.rate))
		var parts []string
		for _, x := range runs {
			ok = ok && x.Latency.P99 <= t.limit && x.Sustained
			q := ""
			if x.QuietSeconds > 0 && x.QuietLatency.Count > 0 {
				q = fmt.Sprintf("; %s ms over the %d s the rest of the machine was quiet", ms(x.QuietLatency.P99), x.QuietSeconds)
			}
			round := ""
			if x.Round > 0 {
				round = fmt.Sprintf("round %d: ", x.Round)
			}
			parts = append(parts, fmt.Sprintf("%sp99 %s ms (%s%s)", round, ms(x.Latency.P99), x.Verdict, q))
		}
		if len(runs) > 0 {
			m = join(parts)
		}
		add(fmt.Sprintf("p99 ≤ %g ms at %s events/s", t.limit, FormatCount(t.rate)), ok, len(runs) > 0, m,
			fmt.Sprintf("kairos bench --rate %d", t.rate))
	}
	// Latency at 1,000 events/s against the baseline.
	{
		var parts []string
		ok, measured := true, false
		for _, p := range pts {
			// Each engine run against the baseline run of its round; with
			// --repeat the verdict is the median round's.
			var fs []float64
			var cells []string
			bs := runsAt([]Point{p}, "baseline", 1000, nil)
			for _, e := range runsAt([]Point{p}, "engine", 1000, nil) {
				i := slices.IndexFunc(bs, func(b RunResult) bool { return b.Round == e.Round })
				if i < 0 {
					continue
				}
				b := bs[i]
				if b.Latency.P99 == 0 || e.Latency.Count == 0 {
					continue
				}
				f := e.Latency.P99 / b.Latency.P99
				fs = append(fs, f)
				cells = append(cells, fmt.Sprintf("p99 %s ms vs baseline %s ms: %.1f×", ms(e.Latency.P99), ms(b.Latency.P99), f))
			}
			switch {
			case len(fs) == 0:
				continue
			case len(fs) == 1:
				parts = append(parts, cells[0])
			default:
				within := 0
				for _, f := range fs {
					if f <= 2 {
						within++
					}
				}
				parts = append(parts, fmt.Sprintf("median %.1f× over %d rounds, %d within 2× (%s)", median(fs, func(f float64) float64 { return f }), len(fs), within, strings.Join(cells, "; ")))
			}
			measured = true
			ok = ok && median(fs, func(f float64) float64 { return f }) <= 2
		}
		m := "needs a run at 1,000 events/s with --baseline"
		if measured {
			m = join(parts)
		}
		add("p99 within 2× of the transport limit's at 1,000 events/s", ok, measured, m, "kairos bench --rate 1000 --baseline")
	}
	// 10,000 rules.
	{
		var best float64
		var p99 float64
		measured := false
		for _, p := range pts {
			if p.Rules < 10000 {
				continue
			}
			for _, x := range p.Runs {
				measured = true
				if x.Sustained && x.Latency.P99 <= 10 && float64(x.TargetRate) > best {
					best, p99 = float64(x.TargetRate), x.Latency.P99
				}
			}
		}
		m := "no run with 10,000 rules"
		if measured {
			m = fmt.Sprintf("highest rate with p99 ≤ 10 ms: %s events/s", FormatCount(int(best)))
			if best > 0 {
				m += fmt.Sprintf(" (p99 %s ms)", ms(p99))
			}
		}
		add("10,000 rules: ≥ 10,000 events/s with p99 ≤ 10 ms", best >= 10000, measured, m, "kairos bench --rules 10000 --rate 10000")
		_ = slo
	}
	// Memory per rule.
	{
		var lo, hi *Point
		for i := range pts {
			p := &pts[i]
			if p.ReadyRSSBytes == 0 {
				continue
			}
			if lo == nil || p.Rules < lo.Rules {
				lo = p
			}
			if hi == nil || p.Rules > hi.Rules {
				hi = p
			}
		}
		measured := lo != nil && hi != nil && hi.Rules > lo.Rules
		m := "needs engines with different rule counts (--sweep rules=...)"
		per := 0.0
		if measured {
			per = float64(hi.ReadyRSSBytes-lo.ReadyRSSBytes) / float64(hi.Rules-lo.Rules)
			m = fmt.Sprintf("%.1f KB per rule (RSS at ready %s with %d rules, %s with %d)", per/1000, mib(hi.ReadyRSSBytes), hi.Rules, mib(lo.ReadyRSSBytes), lo.Rules)
		}
		add("memory per loaded rule ≤ 20 KB", per <= 20000, measured, m, "kairos bench --sweep rules=10,10000")
	}
	// Customers.
	{
		var small, big *Point
		for i := range pts {
			p := &pts[i]
			if p.Customers <= 100_000 && (small == nil || p.Customers > small.Customers) {
				small = p
			}
			if p.Customers >= 10_000_000 && big == nil {
				big = p
			}
		}
		measured := small != nil && big != nil && r.Setup.Max && small.Best >= 0
		m := "needs both points beyond their capacity at one rate, or --max"
		f := 0.0
		switch {
		case measured:
			if big.Best >= 0 {
				f = float64(big.Runs[big.Best].TargetRate) / float64(small.Runs[small.Best].TargetRate)
			}
			m = fmt.Sprintf("%.0f%% of the rate within the SLO at %s customers (--max)", 100*f, FormatCount(small.Customers))
		case small != nil && big != nil:
			c := capacityRatio(small, big, r.Machine.CPUs)
			f = c.ratio
			switch {
			case c.rate == 0:
			case len(c.disturbed) > 0:
				// What other processes took is missing from one side
				// of the ratio, and not from the other.
				m = fmt.Sprintf("%.0f%% (%s against %s events/s at %s/s offered), but other processes used more than a fifth of the machine's CPU during %s: rerun on a quiet machine",
					100*f, FormatCount(int(c.big)), FormatCount(int(c.small)), FormatCount(c.rate), join(c.disturbed))
			case c.exact:
				measured = true
				m = fmt.Sprintf("%.0f%% of the events/s processed at %s customers (%s against %s at %s/s offered, both beyond their capacity)",
					100*f, FormatCount(small.Customers), FormatCount(int(c.big)), FormatCount(int(c.small)), FormatCount(c.rate))
			case f < 0.8:
				// The small point kept up, so its capacity is higher still.
				measured = true
				m = fmt.Sprintf("at most %.0f%% of that at %s customers (%s against %s events/s processed at %s/s offered; the %s point kept up, so its capacity is higher)",
					100*f, FormatCount(small.Customers), FormatCount(int(c.big)), FormatCount(int(c.small)), FormatCount(c.rate), FormatCount(small.Customers))
			default:
				m = fmt.Sprintf("the %s point kept up with %s/s offered, where the 10M point processed %.0f%% of it: rerun at a rate beyond both capacities",
					FormatCount(small.Customers), FormatCount(c.rate), 100*f)
			}
		}
		add("throughput at 10M customers ≥ 80% of that at 100k", f >= 0.8, measured, m,
			"kairos bench --sweep customers=100k,10M --rate R --wait-idle 0.3, with R beyond both points' capacity (or --max)")

		m, ok, measured := "no point with 10M customers", false, false
		if big != nil && big.PeakRSSBytes > 0 {
			measured = true
			ok = big.PeakRSSBytes <= 2<<30
			m = "peak RSS " + peakRSS(big)
		}
		add("RSS ≤ 2 GiB at 10M customers", ok, measured, m, "kairos bench --customers 10M")

		var dp *Point
		for i := range pts {
			if p := &pts[i]; p.Rules == 100 && p.DiskPerCustomer > 0 && (dp == nil || p.Customers > dp.Customers) {
				dp = p
			}
		}
		m, ok, measured = "no disk measurement with 100 rules", false, false
		if dp != nil {
			measured = true
			ok = dp.DiskPerCustomer <= 300
			m = fmt.Sprintf("%.0f bytes per customer at %s customers, after %.1f events per customer", dp.DiskPerCustomer, FormatCount(dp.Customers), float64(dp.Events)/float64(max(1, dp.CustomersWithState)))
		}
		add("disk ≤ 300 bytes per customer (default bench rules)", ok, measured, m, "kairos bench --customers 10M")
	}
	// Profiles.
	{
		var pl *ProfileLoad
		for _, p := range pts {
			if p.ProfileLoad != nil && (pl == nil || p.ProfileLoad.Count > pl.Count) {
				pl = p.ProfileLoad
			}
		}
		m, measured, ok := "no profiles pre-loaded", false, false
		if pl != nil {
			m = fmt.Sprintf("%d profiles in %.1f s (%.0f/s; 1M would take %.1f s)", pl.Count, pl.Seconds, pl.PerSecond, 1e6/pl.PerSecond)
			measured = pl.Count >= 1_000_000
			ok = pl.PerSecond >= 100_000
		}
		add("1M profiles imported in ≤ 10 s", ok, measured, m, "kairos bench --customers 1M (profiles are pre-loaded)")
	}
	return out
}

// bestSustained is the highest processed rate among sustained runs.
func bestSustained(runs []RunResult) float64 {
	best := 0.0
	for _, x := range runs {
		if x.Sustained {
			best = math.Max(best, float64(x.TargetRate))
		}
	}
	return best
}

// runsAt returns the runs of side at rate (within 1%) in points that keep.
func runsAt(pts []Point, side string, rate int, keep func(Point) bool) []RunResult {
	var out []RunResult
	for _, p := range pts {
		if keep != nil && !keep(p) {
			continue
		}
		runs := p.Runs
		if side == "baseline" {
			runs = p.BaselineRuns
		}
		for _, x := range runs {
			if math.Abs(float64(x.TargetRate-rate)) <= 0.01*float64(rate) {
				out = append(out, x)
			}
		}
	}
	return out
}

func join(parts []string) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	return s
}

// notes says what the figures include and where a reader could be misled.
func notes(r *Report) []string {
	var n []string
	// Where the nats-server ran, and whose CPU it is.
	natsAt, natsCPU := "a nats-server in the bench process", "nats-server"
	if r.Setup.NATSProcess {
		natsAt, natsCPU = "a nats-server in a process of its own (--nats-process)", "nats-server (its CPU given apart)"
	}
	switch {
	case r.Setup.Cluster != "" && r.Setup.Mode == "child":
		n = append(n, "Cluster mode: each engine instance runs as a child process (kairos run) against "+natsAt+"; engine CPU and RSS are summed over the instance processes; "+natsCPU+", the load generator and the offers consumer are bench CPU.")
	case r.Setup.Cluster != "" && r.Setup.Mode == "in-process":
		n = append(n, "Cluster mode, in-process: the engine instances, the nats-server, the load generator and the offers consumer share one process; CPU and RSS figures count all of them.")
	case r.Setup.Mode == "child":
		n = append(n, "The engine runs as a child process (kairos run) against "+natsAt+", so engine CPU and RSS are the engine's alone; "+natsCPU+", the load generator and the offers consumer share the same cores (bench CPU).")
	case r.Setup.Mode == "in-process":
		n = append(n, "In-process mode: the engine, its embedded nats-server, the load generator and the offers consumer share one process; CPU and RSS figures count all of them.")
	}
	switch {
	case r.Setup.Baseline && r.Setup.Mode == "child":
		n = append(n, "The baseline consumer runs as a process of its own (kairos bench --baseline-consumer), as the engine does, on the same nats-server while the engine idles: its latency and throughput are the transport limit of this setup.")
	case r.Setup.Baseline:
		n = append(n, "The baseline consumer runs in the bench process (its own NATS connection) on the same nats-server, while the engine idles: its latency and throughput are the transport limit of this setup.")
	}
	if r.Machine.LoadStart > float64(r.Machine.CPUs)/2 {
		n = append(n, fmt.Sprintf("The machine was not idle: the load average was %.1f on %d CPUs when the bench started (%.1f at the end, the bench's own load included). Other work competed with the bench; treat the figures as provisional.", r.Machine.LoadStart, r.Machine.CPUs, r.Machine.LoadEnd))
	}
	var shared []string
	for _, p := range r.Points {
		for _, runs := range [][]RunResult{p.BaselineRuns, p.Runs} {
			for _, x := range runs {
				if disturbed(x, r.Machine.CPUs) {
					shared = append(shared, fmt.Sprintf("%s (%.0f%% of the machine)", runLabel(&p, &x), 100*x.OtherCPUSeconds/(x.Seconds*float64(r.Machine.CPUs))))
				}
			}
		}
	}
	if len(shared) > 0 {
		n = append(n, "Other processes used more than a fifth of the machine's CPU during: "+join(shared)+". Those figures say as much about the machine as about Kairos.")
	}
	var stalled []string
	for _, p := range r.Points {
		for _, x := range p.Runs {
			if e := x.Engine; e != nil && e.L0StallSeconds > 0 {
				stalled = append(stalled, fmt.Sprintf("%s (%.1f s)", runLabel(&p, &x), e.L0StallSeconds))
			}
		}
	}
	if len(stalled) > 0 {
		n = append(n, "Badger's level 0 was full and held the engine's memtable flushes back, then its commits, during: "+join(stalled)+
			". Its compaction was behind the writes there (kairos_state_l0_stall_seconds_total: stalls of more than a second, counted when they end).")
	}
	missed := slices.ContainsFunc(r.Targets, func(c Check) bool { return c.Status == Missed })
	profiled := slices.ContainsFunc(r.Points, func(p Point) bool {
		return slices.ContainsFunc(p.Runs, func(x RunResult) bool { return x.CPUProfile != nil })
	})
	profilable := r.Setup.Mode == "in-process" || r.Setup.Mode == "child" && r.Setup.Cluster == ""
	if missed && !profiled && profilable {
		n = append(n, "Where the time goes: run the same command with --cpuprofile FILE for the engine's CPU by component and by function in this report (docs/bench.md, where the time goes).")
	}
	if r.Machine.CPUs <= 4 {
		n = append(n, fmt.Sprintf("All processes share %d CPUs: the engine, nats-server and the load generator compete for them, as they would not in production.", r.Machine.CPUs))
	}
	return n
}

// disturbed tells whether other processes used more than a fifth of the
// machine's CPU during run x: its figures then say as much about the
// machine as about Kairos.
func disturbed(x RunResult, cpus int) bool {
	return x.Seconds > 0 && cpus > 0 && x.OtherCPUSeconds > 0.2*x.Seconds*float64(cpus)
}

// runLabel names run x of point p in a sentence.
func runLabel(p *Point, x *RunResult) string {
	return fmt.Sprintf("%s %s at %d/s", p.Label, x.name(), x.TargetRate)
}

// capacityCompare is capacityRatio's answer.
type capacityCompare struct {
	rate       int     // offered rate compared; 0 when none qualifies
	small, big float64 // events/s processed (medians over rounds)
	ratio      float64 // big over small
	exact      bool    // the small point was beyond its capacity too
	disturbed  []string
}

// capacityRatio compares what two points processed at the highest offered
// rate at which the big point fell behind (AtCapacity): its capacity,
// against the small point's at the same rate and round, medians over the
// rounds. When the small point fell behind too the ratio is one of
// capacities (exact); when it kept up the ratio is only an upper bound,
// which settles a miss but not a pass. Runs compared that other
// processes disturbed (on a machine of cpus CPUs) are named in disturbed.
func capacityRatio(small, big *Point, cpus int) capacityCompare {
	rate := 0
	for _, b := range big.Runs {
		if b.AtCapacity {
			rate = max(rate, b.TargetRate)
		}
	}
	var smalls, bigs, ratios []float64
	var dist []string
	exact := true
	for _, b := range big.Runs {
		if b.TargetRate != rate || !b.AtCapacity {
			continue
		}
		for _, s := range small.Runs {
			if s.TargetRate == rate && s.Round == b.Round && s.ProcessedPerSec > 0 {
				smalls, bigs = append(smalls, s.ProcessedPerSec), append(bigs, b.ProcessedPerSec)
				ratios = append(ratios, b.ProcessedPerSec/s.ProcessedPerSec)
				exact = exact && s.AtCapacity
				if disturbed(s, cpus) {
					dist = append(dist, runLabel(small, &s))
				}
				if disturbed(b, cpus) {
					dist = append(dist, runLabel(big, &b))
				}
			}
		}
	}
	if len(smalls) == 0 {
		return capacityCompare{}
	}
	id := func(v float64) float64 { return v }
	return capacityCompare{rate: rate, small: median(smalls, id), big: median(bigs, id), ratio: median(ratios, id), exact: exact, disturbed: dist}
}

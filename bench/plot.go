package bench

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"slices"
	"strconv"
	"time"
)

// Plot geometry, in SVG user units.
const (
	plotW, plotH             = 760, 440
	marginL, marginR         = 70, 170
	marginT, marginB         = 44, 52
	innerW, innerH   float64 = plotW - marginL - marginR, plotH - marginT - marginB
)

var percentileSeries = []struct {
	name  string
	color string
	get   func(Percentiles) float64
}{
	{"p50", "#1f77b4", func(p Percentiles) float64 { return p.P50 }},
	{"p90", "#2ca02c", func(p Percentiles) float64 { return p.P90 }},
	{"p99", "#ff7f0e", func(p Percentiles) float64 { return p.P99 }},
	{"p99.9", "#d62728", func(p Percentiles) float64 { return p.P999 }},
}

// plotPoint draws the latency percentiles of a point's runs against their
// target rate: the engine in solid lines, the baseline dashed, on a
// logarithmic latency axis, with the SLO as a grey line. It returns nil
// when no run has latencies.
func plotPoint(p *Point, slo time.Duration) []byte {
	type series struct {
		runs   []RunResult
		dashed bool
		label  string
	}
	sides := []series{{sorted(p.Runs), false, "engine"}, {sorted(p.BaselineRuns), true, "baseline"}}
	var xmax float64
	ymin, ymax := math.Inf(1), math.Inf(-1)
	for _, s := range sides {
		for _, r := range s.runs {
			if r.Latency.Count == 0 {
				continue
			}
			xmax = max(xmax, float64(r.TargetRate))
			for _, ps := range percentileSeries {
				v := ps.get(r.Latency)
				if v > 0 {
					ymin, ymax = min(ymin, v), max(ymax, v)
				}
			}
		}
	}
	if xmax == 0 || math.IsInf(ymin, 1) {
		return nil
	}
	sloMs := float64(slo) / float64(time.Millisecond)
	if slo > 0 {
		ymin, ymax = min(ymin, sloMs), max(ymax, sloMs)
	}
	lo, hi := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if hi <= lo {
		hi = lo + 1
	}
	xstep := niceStep(xmax * 1.05 / 5)
	xtop := math.Ceil(xmax*1.05/xstep) * xstep
	X := func(v float64) float64 { return marginL + innerW*v/xtop }
	Y := func(v float64) float64 { return marginT + innerH*(1-(math.Log10(v)-lo)/(hi-lo)) }

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="15" font-weight="bold">Event → offer latency against rate: %s</text>`+"\n", marginL, html.EscapeString(p.Label))
	// Grid and axes.
	for e := lo; e <= hi; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if e == hi && m > 1 {
				break
			}
			y := Y(v)
			stroke := "#eee"
			if m == 1 {
				stroke = "#ccc"
			}
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s"/>`+"\n", marginL, y, marginL+innerW, y, stroke)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`+"\n", marginL-6, y, trimFloat(v))
		}
	}
	for v := 0.0; v <= xtop+xstep/2; v += xstep {
		x := X(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, marginT, x, marginT+innerH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, marginT+innerH+18, FormatCount(int(v)))
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.0f" height="%.0f" fill="none" stroke="#333"/>`+"\n", marginL, marginT, innerW, innerH)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">target rate (events/s)</text>`+"\n", marginL+innerW/2, plotH-10)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">latency (ms, log scale)</text>`+"\n", marginT+innerH/2)
	if slo > 0 {
		y := Y(sloMs)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#888" stroke-dasharray="2 3"/>`+"\n", marginL, y, marginL+innerW, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#666" text-anchor="end">SLO %s ms</text>`+"\n", marginL+innerW-4, y-4, trimFloat(sloMs))
	}
	// Lines and markers.
	for _, s := range sides {
		for _, ps := range percentileSeries {
			var pts [][2]float64
			for _, r := range s.runs {
				v := ps.get(r.Latency)
				if r.Latency.Count == 0 || v <= 0 {
					continue
				}
				pts = append(pts, [2]float64{X(float64(r.TargetRate)), Y(v)})
			}
			if len(pts) == 0 {
				continue
			}
			dash := ""
			if s.dashed {
				dash = ` stroke-dasharray="6 4"`
			}
			if len(pts) > 1 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", ps.color, dash, joinPts(pts))
			}
			for _, pt := range pts {
				x, y := pt[0], pt[1]
				if s.dashed {
					fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="6" height="6" fill="white" stroke="%s"/>`+"\n", x-3, y-3, ps.color)
				} else {
					fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", x, y, ps.color)
				}
			}
		}
	}
	// Legend.
	lx, ly := float64(plotW-marginR+16), float64(marginT+6)
	for i, ps := range percentileSeries {
		y := ly + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/>`+"\n", lx, y, lx+24, y, ps.color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" dominant-baseline="middle">%s</text>`+"\n", lx+30, y, ps.name)
	}
	y := ly + float64(len(percentileSeries))*18 + 10
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333" stroke-width="2"/><text x="%.0f" y="%.0f" dominant-baseline="middle">engine</text>`+"\n", lx, y, lx+24, y, lx+30, y)
	if len(p.BaselineRuns) > 0 {
		y += 18
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333" stroke-width="2" stroke-dasharray="6 4"/><text x="%.0f" y="%.0f" dominant-baseline="middle">baseline</text>`+"\n", lx, y, lx+24, y, lx+30, y)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func sorted(runs []RunResult) []RunResult {
	s := slices.Clone(runs)
	slices.SortStableFunc(s, func(a, b RunResult) int { return a.TargetRate - b.TargetRate })
	return s
}

func joinPts(pts [][2]float64) string {
	var b bytes.Buffer
	for i, p := range pts {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", p[0], p[1])
	}
	return b.String()
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

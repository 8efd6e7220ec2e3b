package bench

import (
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency histograms record microseconds from 1µs to 10 minutes with three
// significant digits (HDR: any value is reported within 0.1%).
const (
	histMin    = 1
	histMax    = int64(10 * time.Minute / time.Microsecond)
	histDigits = 3
)

// Percentiles summarises a latency distribution. Durations are in
// milliseconds in JSON, the unit the targets use.
type Percentiles struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Recorder is a latency histogram safe for concurrent use, with a second
// histogram that Interval empties for the progress line.
type Recorder struct {
	mu       sync.Mutex
	total    *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram
	clipped  int64
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{
		total:    hdrhistogram.New(histMin, histMax, histDigits),
		interval: hdrhistogram.New(histMin, histMax, histDigits),
	}
}

// Record adds one latency. Values outside the histogram's range are
// clamped to it and counted in Clipped.
func (r *Recorder) Record(d time.Duration) {
	us := d.Microseconds()
	r.mu.Lock()
	if us < histMin || us > histMax {
		r.clipped++
		us = min(max(us, histMin), histMax)
	}
	_ = r.total.RecordValue(us)
	_ = r.interval.RecordValue(us)
	r.mu.Unlock()
}

// Total summarises everything recorded.
func (r *Recorder) Total() Percentiles {
	r.mu.Lock()
	defer r.mu.Unlock()
	return summarise(r.total)
}

// Interval summarises what was recorded since the last Interval and
// starts a new interval. into, when not nil, receives the interval's
// values too.
func (r *Recorder) Interval(into *Recorder) Percentiles {
	r.mu.Lock()
	p := summarise(r.interval)
	var snap *hdrhistogram.Histogram
	if into != nil && into != r {
		snap = hdrhistogram.Import(r.interval.Export())
	}
	r.interval.Reset()
	r.mu.Unlock()
	if snap != nil {
		into.mu.Lock()
		into.total.Merge(snap)
		into.mu.Unlock()
	}
	return p
}

// Clipped is how many values fell outside the histogram's range.
func (r *Recorder) Clipped() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.clipped
}

func summarise(h *hdrhistogram.Histogram) Percentiles {
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Percentiles{
		Count: h.TotalCount(),
		P50:   ms(h.ValueAtQuantile(50)),
		P90:   ms(h.ValueAtQuantile(90)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
		Mean:  h.Mean() / 1000,
	}
}

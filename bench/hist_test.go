package bench

import (
	"math"
	"sync"
	"testing"
	"time"
)

func TestRecorderPercentiles(t *testing.T) {
	r := NewRecorder()
	// 1..1000 µs once each: p50 is 500 µs, p99 990 µs, max 1000 µs.
	for i := 1; i <= 1000; i++ {
		r.Record(time.Duration(i) * time.Microsecond)
	}
	p := r.Total()
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"p50", p.P50, 0.5}, {"p90", p.P90, 0.9}, {"p99", p.P99, 0.99}, {"p99.9", p.P999, 0.999}, {"max", p.Max, 1.0}, {"mean", p.Mean, 0.5005},
	} {
		if math.Abs(c.got-c.want) > 0.002*c.want+0.001 {
			t.Errorf("%s = %v ms, want %v ms", c.name, c.got, c.want)
		}
	}
	if p.Count != 1000 {
		t.Errorf("count %d, want 1000", p.Count)
	}
	if !(p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.P999 && p.P999 <= p.Max) {
		t.Errorf("percentiles out of order: %+v", p)
	}
}

func TestRecorderInterval(t *testing.T) {
	r := NewRecorder()
	quiet := NewRecorder()
	r.Record(2 * time.Millisecond)
	if iv := r.Interval(quiet); iv.Count != 1 || math.Abs(iv.P50-2) > 0.01 {
		t.Fatalf("first interval %+v", iv)
	}
	if iv := r.Interval(nil); iv.Count != 0 || iv.P99 != 0 {
		t.Fatalf("an interval with nothing recorded: %+v", iv)
	}
	r.Record(40 * time.Millisecond)
	if iv := r.Interval(nil); iv.Count != 1 || math.Abs(iv.Max-40) > 0.05 {
		t.Fatalf("second interval %+v", iv)
	}
	if tot := r.Total(); tot.Count != 2 {
		t.Fatalf("total keeps both: %+v", tot)
	}
	// Only the first interval was handed on.
	if q := quiet.Total(); q.Count != 1 || math.Abs(q.Max-2) > 0.01 {
		t.Fatalf("the interval handed on: %+v", q)
	}
}

func TestRecorderClipsAndIsConcurrent(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				r.Record(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	r.Record(-time.Second)     // a clock step backwards
	r.Record(20 * time.Minute) // beyond the range
	if got := r.Total().Count; got != 4002 {
		t.Fatalf("count %d, want 4002", got)
	}
	if r.Clipped() != 2 {
		t.Fatalf("clipped %d, want 2", r.Clipped())
	}
	if mx := r.Total().Max; math.Abs(mx-600_000) > 600 {
		t.Fatalf("max %v ms, want the range's top, 600000", mx)
	}
}

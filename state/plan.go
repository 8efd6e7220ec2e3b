package state

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// AggKind is the aggregate function of a window.
type AggKind uint8

// The aggregate functions.
const (
	Count AggKind = iota + 1
	Sum
	Min
	Max
	Avg
	Distinct
	Since
)

var aggNames = [...]string{Count: "count", Sum: "sum", Min: "min", Max: "max", Avg: "avg", Distinct: "distinct", Since: "since"}

// String returns the lower-case name of the aggregate ("count", "sum", ...).
func (k AggKind) String() string {
	if k >= Count && k <= Since {
		return aggNames[k]
	}
	return "AggKind(" + strconv.Itoa(int(k)) + ")"
}

// AggSpec is one aggregate the rules need. Type "*" means every event type.
// Attr is "" for Count and Since. Window is 0 for Since (it uses the plan
// horizon).
type AggSpec struct {
	Kind       AggKind
	Type, Attr string
	Window     time.Duration
}

func (s AggSpec) String() string {
	switch s.Kind {
	case Count:
		return fmt.Sprintf("count(%q, %s)", s.Type, s.Window)
	case Since:
		return fmt.Sprintf("since(%q)", s.Type)
	default:
		return fmt.Sprintf("%s(%q, %q, %s)", s.Kind, s.Type, s.Attr, s.Window)
	}
}

// valueKind is what a series stores beside each timestamp.
type valueKind uint8

const (
	kindNone   valueKind = iota + 1 // Count, Since: timestamps only
	kindNumber                      // Sum, Min, Max, Avg: float64
	kindHash                        // Distinct: 64-bit hash of the value
)

func (k AggKind) valueKind() valueKind {
	switch k {
	case Count, Since:
		return kindNone
	case Distinct:
		return kindHash
	default:
		return kindNumber
	}
}

// seriesDef is the identity and retention of one series of a plan.
type seriesDef struct {
	typ, attr string
	kind      valueKind
	retention int64 // ms
}

// seriesKey is the identity of a series.
type seriesKey struct {
	typ, attr string
	kind      valueKind
}

// Plan is the compiled set of aggregates: Value(p, i, ...) evaluates
// specs[i]. A Plan is immutable and safe for concurrent use.
type Plan struct {
	specs   []AggSpec
	horizon time.Duration
	series  []seriesDef
	index   map[seriesKey]int // series by identity
	// Per spec: index into series and window in ms (the horizon for Since).
	specSeries []int
	windows    []int64
	// maxRetention is the largest series retention in ms.
	maxRetention int64
}

// NewPlan compiles specs. horizon is the longest look-back the rules may
// use; every window must fit in it, and Since looks back exactly that far.
// NewPlan returns every problem found, joined.
func NewPlan(specs []AggSpec, horizon time.Duration) (*Plan, error) {
	p := &Plan{
		specs:      append([]AggSpec(nil), specs...),
		horizon:    horizon,
		specSeries: make([]int, len(specs)),
		windows:    make([]int64, len(specs)),
		index:      make(map[seriesKey]int),
	}
	var errs []error
	bad := func(i int, s AggSpec, format string, args ...any) {
		errs = append(errs, fmt.Errorf("state: aggregate %d %s: %s", i, s, fmt.Sprintf(format, args...)))
	}
	if horizon < 0 {
		errs = append(errs, fmt.Errorf("state: negative horizon %s", horizon))
	}
	for i, s := range specs {
		if s.Kind < Count || s.Kind > Since {
			bad(i, s, "unknown aggregate kind %d", uint8(s.Kind))
			continue
		}
		if s.Type == "" {
			bad(i, s, "event type is empty (use \"*\" for every type)")
		}
		switch s.Kind {
		case Count, Since:
			if s.Attr != "" {
				bad(i, s, "%s takes no attribute, got %q", s.Kind, s.Attr)
			}
		default:
			if s.Attr == "" {
				bad(i, s, "%s needs an attribute", s.Kind)
			}
		}
		w := s.Window
		if s.Kind == Since {
			if w != 0 {
				bad(i, s, "since takes no window (it looks back over the horizon), got %s", w)
			}
			w = horizon
			if w < time.Millisecond {
				bad(i, s, "since needs a horizon of at least 1ms, got %s", horizon)
			}
		} else {
			switch {
			case w <= 0:
				bad(i, s, "window must be positive, got %s", w)
			case w < time.Millisecond:
				bad(i, s, "window must be at least 1ms, got %s", w)
			case w > horizon:
				bad(i, s, "window %s exceeds the horizon %s", w, horizon)
			}
		}
		ms := w.Milliseconds()
		d := seriesDef{typ: s.Type, attr: s.Attr, kind: s.Kind.valueKind(), retention: ms}
		j := p.seriesIndex(d.typ, d.attr, d.kind)
		if j < 0 {
			j = len(p.series)
			p.series = append(p.series, d)
			p.index[seriesKey{d.typ, d.attr, d.kind}] = j
		} else if ms > p.series[j].retention {
			p.series[j].retention = ms
		}
		p.specSeries[i] = j
		p.windows[i] = ms
		p.maxRetention = max(p.maxRetention, ms)
	}
	// A customer's series refer to the plan's by a uint16.
	if len(p.series) > math.MaxUint16 {
		errs = append(errs, fmt.Errorf("state: %d distinct window series (event type, attribute and kind), more than %d", len(p.series), math.MaxUint16))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

func (p *Plan) seriesIndex(typ, attr string, kind valueKind) int {
	if i, ok := p.index[seriesKey{typ, attr, kind}]; ok {
		return i
	}
	return -1
}

// Len returns the number of aggregates.
func (p *Plan) Len() int { return len(p.specs) }

// Horizon returns the horizon the plan was built with.
func (p *Plan) Horizon() time.Duration { return p.horizon }

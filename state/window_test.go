package state_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/state"
	"github.com/kairos-engine/kairos/state/statetest"
)

// t0 is an arbitrary event time in Unix ms.
const t0 = int64(1_700_000_000_000)

const (
	sec  = int64(1000)
	hour = 3600 * sec
)

var (
	inf = math.Inf(1)
	nan = math.NaN()
)

type check struct {
	agg  int
	at   int64
	want float64
}

type step struct {
	typ    string
	ts     int64
	attrs  map[string]any
	checks []check // evaluated right after this event is applied
}

func mustPlan(t testing.TB, horizon time.Duration, specs ...state.AggSpec) *state.Plan {
	t.Helper()
	p, err := state.NewPlan(specs, horizon)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sameFloat(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b))
}

func TestWindows(t *testing.T) {
	count := func(typ string, w time.Duration) state.AggSpec {
		return state.AggSpec{Kind: state.Count, Type: typ, Window: w}
	}
	agg := func(k state.AggKind, typ, attr string, w time.Duration) state.AggSpec {
		return state.AggSpec{Kind: k, Type: typ, Attr: attr, Window: w}
	}
	since := func(typ string) state.AggSpec { return state.AggSpec{Kind: state.Since, Type: typ} }
	amount := func(v any) map[string]any { return map[string]any{"amount": v} }

	tests := []struct {
		name    string
		horizon time.Duration
		specs   []state.AggSpec
		steps   []step
		checks  []check // evaluated after all steps
	}{
		{
			name:    "an event exactly one window old is out, one a millisecond younger is in",
			horizon: 2 * time.Hour,
			specs:   []state.AggSpec{count("view", time.Hour)},
			steps:   []step{{typ: "view", ts: t0 - hour}, {typ: "view", ts: t0 - hour + 1}, {typ: "view", ts: t0}},
			checks:  []check{{0, t0, 2}, {0, t0 + 1, 1}},
		},
		{
			name:    "events after the evaluation time are not counted",
			horizon: time.Hour,
			specs:   []state.AggSpec{count("view", time.Hour)},
			steps:   []step{{typ: "view", ts: t0}, {typ: "view", ts: t0 + 5}},
			checks:  []check{{0, t0, 1}, {0, t0 + 4, 1}, {0, t0 + 5, 2}, {0, t0 - 1, 0}},
		},
		{
			name:    "an out-of-order event is inserted in time order",
			horizon: time.Hour,
			specs:   []state.AggSpec{agg(state.Sum, "buy", "amount", time.Hour), agg(state.Max, "buy", "amount", time.Hour)},
			steps: []step{
				{typ: "buy", ts: t0, attrs: amount(1)},
				{typ: "buy", ts: t0 + 10, attrs: amount(100)},
				{typ: "buy", ts: t0 + 5, attrs: amount(10)},
			},
			checks: []check{{0, t0 + 5, 11}, {1, t0 + 5, 10}, {0, t0 + 10, 111}, {0, t0 + 4, 1}},
		},
		{
			name:    "an event older than the retention is not inserted",
			horizon: time.Hour,
			specs:   []state.AggSpec{count("view", time.Hour)},
			steps:   []step{{typ: "view", ts: t0}, {typ: "view", ts: t0 - hour}, {typ: "view", ts: t0 - hour + 1}},
			checks:  []check{{0, t0, 2}, {0, t0 - hour + 1, 1}, {0, t0 - hour, 0}},
		},
		{
			name:    "entries are evicted once a newer event pushes them out of the retention",
			horizon: 3 * time.Hour,
			specs:   []state.AggSpec{count("view", time.Hour)},
			steps:   []step{{typ: "view", ts: t0}, {typ: "view", ts: t0 + 2*hour}},
			// Without eviction the first event would still count at t0.
			checks: []check{{0, t0, 0}, {0, t0 + 2*hour, 1}},
		},
		{
			name:    "type star takes every event type",
			horizon: time.Hour,
			specs:   []state.AggSpec{count("*", time.Hour), count("view", time.Hour)},
			steps:   []step{{typ: "view", ts: t0}, {typ: "buy", ts: t0 + 1}, {typ: "login", ts: t0 + 2}},
			checks:  []check{{0, t0 + 2, 3}, {1, t0 + 2, 1}},
		},
		{
			name:    "sum takes every Go number type and ignores other values",
			horizon: time.Hour,
			specs:   []state.AggSpec{agg(state.Sum, "buy", "amount", time.Hour), agg(state.Avg, "buy", "amount", time.Hour)},
			steps: []step{
				{typ: "buy", ts: t0, attrs: amount(10)},
				{typ: "buy", ts: t0, attrs: amount("20")},
				{typ: "buy", ts: t0, attrs: amount(nil)},
				{typ: "buy", ts: t0, attrs: amount(true)},
				{typ: "buy", ts: t0, attrs: nil},
				{typ: "buy", ts: t0, attrs: amount(math.NaN())},
				{typ: "buy", ts: t0, attrs: amount(int8(-5))},
				{typ: "buy", ts: t0, attrs: amount(uint64(7))},
				{typ: "buy", ts: t0, attrs: amount(float32(1.5))},
				{typ: "buy", ts: t0, attrs: amount(int16(1))},
				{typ: "buy", ts: t0, attrs: amount(int32(1))},
				{typ: "buy", ts: t0, attrs: amount(int64(1))},
				{typ: "buy", ts: t0, attrs: amount(uint(1))},
				{typ: "buy", ts: t0, attrs: amount(uint8(1))},
				{typ: "buy", ts: t0, attrs: amount(uint16(1))},
				{typ: "buy", ts: t0, attrs: amount(uint32(1))},
				{typ: "buy", ts: t0, attrs: amount(0.5)},
			},
			checks: []check{{0, t0, 21}, {1, t0, 1.75}},
		},
		{
			name:    "distinct treats 1 and 1.0 as one value and the string 1 as another",
			horizon: time.Hour,
			specs:   []state.AggSpec{agg(state.Distinct, "view", "sku", time.Hour)},
			steps: []step{
				{typ: "view", ts: t0, attrs: map[string]any{"sku": 1}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": 1.0}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": uint8(1)}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": float32(1)}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": "1"}, checks: []check{{0, t0, 2}}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": true}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": "true"}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": 0.0}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": math.Copysign(0, -1)}},
				{typ: "view", ts: t0, attrs: map[string]any{"sku": []int{1}}}, // not counted
				{typ: "view", ts: t0, attrs: map[string]any{}},                // not counted
			},
			checks: []check{{0, t0, 5}},
		},
		{
			name:    "min, max and avg are NaN on an empty window, count, sum and distinct 0",
			horizon: time.Hour,
			specs: []state.AggSpec{
				agg(state.Min, "buy", "amount", time.Hour), agg(state.Max, "buy", "amount", time.Hour),
				agg(state.Avg, "buy", "amount", time.Hour), count("buy", time.Hour),
				agg(state.Sum, "buy", "amount", time.Hour), agg(state.Distinct, "buy", "amount", time.Hour),
			},
			steps:  []step{{typ: "buy", ts: t0, attrs: amount(3)}},
			checks: []check{{0, t0 - 1, nan}, {1, t0 - 1, nan}, {2, t0 - 1, nan}, {3, t0 - 1, 0}, {4, t0 - 1, 0}, {5, t0 - 1, 0}, {0, t0 + hour, nan}},
		},
		{
			name:    "min, max and avg over the window",
			horizon: 2 * time.Hour,
			specs: []state.AggSpec{
				agg(state.Min, "buy", "amount", time.Hour), agg(state.Max, "buy", "amount", time.Hour),
				agg(state.Avg, "buy", "amount", time.Hour), agg(state.Avg, "buy", "amount", 2*time.Hour),
			},
			steps: []step{
				{typ: "buy", ts: t0, attrs: amount(-4)},
				{typ: "buy", ts: t0 + hour, attrs: amount(2)},
				{typ: "buy", ts: t0 + hour + 1, attrs: amount(8)},
			},
			checks: []check{{0, t0 + hour + 1, 2}, {1, t0 + hour + 1, 8}, {2, t0 + hour + 1, 5}, {3, t0 + hour + 1, 2}},
		},
		{
			name:    "since without a previous event is +Inf, then the gap to the previous event",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view")},
			steps: []step{
				{typ: "view", ts: t0, checks: []check{{0, t0, inf}}},
				{typ: "view", ts: t0 + 1500, checks: []check{{0, t0 + 1500, 1500}}},
				{typ: "view", ts: t0 + 1600, checks: []check{{0, t0 + 1600, 100}}},
			},
		},
		{
			name:    "since between events with equal timestamps is 0",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view")},
			steps: []step{
				{typ: "view", ts: t0, checks: []check{{0, t0, inf}}},
				{typ: "view", ts: t0, checks: []check{{0, t0, 0}}},
			},
		},
		{
			name:    "an out-of-order event goes after entries with an equal timestamp",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view"), count("view", time.Hour)},
			steps: []step{
				{typ: "view", ts: t0 + 10},
				{typ: "view", ts: t0, checks: []check{{0, t0, inf}, {1, t0, 1}}},
				{typ: "view", ts: t0, checks: []check{{0, t0, 0}, {1, t0, 2}}},
				{typ: "view", ts: t0 + 4, checks: []check{{0, t0 + 4, 4}, {1, t0 + 4, 3}}},
			},
		},
		{
			name:    "since of another type counts an event at the same time as previous",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view"), since("buy")},
			steps: []step{
				{typ: "view", ts: t0},
				{typ: "buy", ts: t0, checks: []check{{0, t0, 0}, {1, t0, inf}}},
				{typ: "buy", ts: t0 + 7, checks: []check{{0, t0 + 7, 7}, {1, t0 + 7, 7}}},
			},
		},
		{
			name:    "since is +Inf once the previous event is a horizon or more ago",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view"), count("buy", time.Hour)},
			steps: []step{
				{typ: "view", ts: t0},
				{typ: "buy", ts: t0 + hour - 1, checks: []check{{0, t0 + hour - 1, float64(hour - 1)}}},
				{typ: "buy", ts: t0 + hour, checks: []check{{0, t0 + hour, inf}}},
			},
		},
		{
			name:    "a late event that is not inserted is not excluded from since",
			horizon: time.Hour,
			specs:   []state.AggSpec{since("view")},
			steps: []step{
				{typ: "view", ts: t0},
				{typ: "view", ts: t0 - hour, checks: []check{{0, t0 - hour, inf}, {0, t0, 0}}},
			},
		},
		{
			name:    "count and since share one series with the longer retention",
			horizon: 2 * time.Hour,
			specs:   []state.AggSpec{count("view", time.Hour), since("view")},
			steps: []step{
				{typ: "view", ts: t0},
				{typ: "view", ts: t0 + hour + 30*sec, checks: []check{{0, t0 + hour + 30*sec, 1}, {1, t0 + hour + 30*sec, float64(hour + 30*sec)}}},
			},
		},
		{
			name:    "distinct over more than 64 entries",
			horizon: time.Hour,
			specs:   []state.AggSpec{agg(state.Distinct, "view", "sku", time.Hour), count("view", time.Hour)},
			steps: func() []step {
				var s []step
				for i := range 200 {
					s = append(s, step{typ: "view", ts: t0 + int64(i), attrs: map[string]any{"sku": "sku-" + string(rune('a'+i%70))}})
				}
				return s
			}(),
			checks: []check{{0, t0 + 199, 70}, {1, t0 + 199, 200}, {0, t0 + 63, 64}, {0, t0 + 99, 70}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPlan(t, tt.horizon, tt.specs...)
			s := statetest.Open(t, state.Options{GCInterval: -1})
			c, err := s.Shard(0).Load("alice")
			if err != nil {
				t.Fatal(err)
			}
			run := func(cs []check) {
				t.Helper()
				for _, ck := range cs {
					if got := c.Value(p, ck.agg, ck.at); !sameFloat(got, ck.want) {
						t.Errorf("%s at t0%+d: got %v, want %v", tt.specs[ck.agg].Kind, ck.at-t0, got, ck.want)
					}
				}
			}
			for i, st := range tt.steps {
				c.Apply(p, st.typ, st.ts, st.attrs)
				if !c.Dirty() {
					t.Fatalf("step %d: customer not dirty after Apply", i)
				}
				run(st.checks)
			}
			run(tt.checks)

			// The same values after a commit and a fresh load from Badger
			// (checks after all steps only: a reload forgets the current
			// event).
			b := s.NewBatch()
			b.Put(c)
			if err := s.Commit(b); err != nil {
				t.Fatal(err)
			}
			s.Invalidate("alice")
			if c, err = s.Shard(0).Load("alice"); err != nil {
				t.Fatal(err)
			}
			run(tt.checks)
		})
	}
}

func TestSeriesOverflow(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := statetest.Open(t, state.Options{GCInterval: -1, MaxSeriesEntries: 3, Metrics: state.NewMetrics(reg)})
	p := mustPlan(t, time.Hour,
		state.AggSpec{Kind: state.Count, Type: "view", Window: time.Hour},
		state.AggSpec{Kind: state.Sum, Type: "view", Attr: "n", Window: time.Hour},
	)
	c, err := s.Shard(0).Load("bob")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		c.Apply(p, "view", t0+int64(i), map[string]any{"n": i})
	}
	if got := c.Value(p, 0, t0+10); got != 3 {
		t.Errorf("count: got %v, want 3 (the cap)", got)
	}
	if got := c.Value(p, 1, t0+10); got != 2+3+4 {
		t.Errorf("sum: got %v, want the newest three, 9", got)
	}
	// An out-of-order event older than everything kept is dropped at once.
	c.Apply(p, "view", t0-1, map[string]any{"n": 100})
	if got := c.Value(p, 1, t0+10); got != 9 {
		t.Errorf("sum after an old event: got %v, want 9", got)
	}
	// Count and sum series each dropped 2, then 1 each.
	if got := metricValue(t, reg, "kairos_state_series_overflow_total"); got != 6 {
		t.Errorf("series_overflow_total: got %v, want 6", got)
	}
}

func TestNewPlanErrors(t *testing.T) {
	tests := []struct {
		name    string
		specs   []state.AggSpec
		horizon time.Duration
		want    string // substring of the error, "" for none
	}{
		{"a valid plan", []state.AggSpec{{Kind: state.Sum, Type: "buy", Attr: "amount", Window: time.Hour}, {Kind: state.Since, Type: "*"}}, time.Hour, ""},
		{"an empty plan with no horizon", nil, 0, ""},
		{"a window longer than the horizon", []state.AggSpec{{Kind: state.Count, Type: "buy", Window: 2 * time.Hour}}, time.Hour, "exceeds the horizon"},
		{"a zero window", []state.AggSpec{{Kind: state.Count, Type: "buy"}}, time.Hour, "window must be positive"},
		{"a negative window", []state.AggSpec{{Kind: state.Count, Type: "buy", Window: -time.Second}}, time.Hour, "window must be positive"},
		{"a sub-millisecond window", []state.AggSpec{{Kind: state.Count, Type: "buy", Window: time.Microsecond}}, time.Hour, "at least 1ms"},
		{"an unknown kind", []state.AggSpec{{Kind: 0, Type: "buy", Window: time.Hour}}, time.Hour, "unknown aggregate kind 0"},
		{"a kind past the last", []state.AggSpec{{Kind: state.Since + 1, Type: "buy", Window: time.Hour}}, time.Hour, "unknown aggregate kind 8"},
		{"sum without attribute", []state.AggSpec{{Kind: state.Sum, Type: "buy", Window: time.Hour}}, time.Hour, "sum needs an attribute"},
		{"distinct without attribute", []state.AggSpec{{Kind: state.Distinct, Type: "buy", Window: time.Hour}}, time.Hour, "distinct needs an attribute"},
		{"count with an attribute", []state.AggSpec{{Kind: state.Count, Type: "buy", Attr: "x", Window: time.Hour}}, time.Hour, "count takes no attribute"},
		{"since with a window", []state.AggSpec{{Kind: state.Since, Type: "buy", Window: time.Hour}}, time.Hour, "since takes no window"},
		{"since without a horizon", []state.AggSpec{{Kind: state.Since, Type: "buy"}}, 0, "since needs a horizon"},
		{"an empty type", []state.AggSpec{{Kind: state.Count, Window: time.Hour}}, time.Hour, "event type is empty"},
		{"a negative horizon", nil, -time.Hour, "negative horizon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := state.NewPlan(tt.specs, tt.horizon)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if p.Len() != len(tt.specs) || p.Horizon() != tt.horizon {
					t.Errorf("Len %d Horizon %s, want %d %s", p.Len(), p.Horizon(), len(tt.specs), tt.horizon)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAggKindString(t *testing.T) {
	want := []string{"AggKind(0)", "count", "sum", "min", "max", "avg", "distinct", "since", "AggKind(8)"}
	for k, w := range want {
		if got := state.AggKind(k).String(); got != w {
			t.Errorf("AggKind(%d): got %q, want %q", k, got, w)
		}
	}
}

func TestUntrackedEventLeavesCustomerClean(t *testing.T) {
	s := statetest.Open(t, state.Options{})
	p := mustPlan(t, 24*time.Hour, state.AggSpec{Kind: state.Count, Type: "login", Window: time.Hour})
	c, err := s.Shard(0).Load("C1")
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(p, "page_view", t0, nil)
	if c.Dirty() {
		t.Fatal("an event no series takes dirtied the customer")
	}
	c.Apply(p, "login", t0, nil)
	if !c.Dirty() {
		t.Fatal("a tracked event did not dirty the customer")
	}
}

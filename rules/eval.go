package rules

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
)

// Event is the event a rule is evaluated on.
type Event struct {
	ID         string
	CustomerID string
	Type       string
	TS         int64 // event time, unix milliseconds
	Attrs      map[string]any
}

// Windows serves a customer's window aggregates, at the event's time, by
// their index in RuleSet.Aggregates. Count and distinct are whole numbers;
// min, max and avg are NaN over an empty window; since is in milliseconds,
// +Inf when there is no previous event.
type Windows interface {
	Value(i int) float64
}

// Contacts serves the customer's contact history at decision time: the
// offers sent to the customer whose decided_at is within window before
// Input.Now (now - window < decided_at <= now). Nil in Input means an empty
// history. It serves contacts() and offers(); windows are positive and no
// longer than the rule set's Horizon.
type Contacts interface {
	// Contacts returns the number of marketing offers sent within window.
	Contacts(window time.Duration) int
	// Offers returns the number of offers of the rule with Rule.Index rule,
	// of any kind, sent within window.
	Offers(rule int, window time.Duration) int
}

// Input is everything a rule sees.
type Input struct {
	Event    Event
	Profile  map[string]any // nil is an empty profile
	Now      time.Time
	Windows  Windows
	Contacts Contacts // nil is an empty contact history
}

// Match is a rule whose condition held, with its evaluated parameters.
type Match struct {
	Rule   *Rule
	Params map[string]any // nil when the rule has none
}

// Evaluator evaluates a rule set. It holds reusable evaluation state, so use
// one per goroutine.
type Evaluator struct {
	rs  *RuleSet
	act activation
	// cand is the candidate bitmap of an indexed type (index.go).
	cand []uint64
	// noGuards runs every rule's program, its guards unchecked: tests
	// compare the two ways.
	noGuards bool
}

// NewEvaluator returns an evaluator of rs.
func (rs *RuleSet) NewEvaluator() *Evaluator {
	e := &Evaluator{rs: rs, cand: make([]uint64, rs.indexWords)}
	if len(rs.macros) > 0 {
		e.act.macros = rs.macros
		e.act.macroIndex = rs.macroIndex
		e.act.macroVals = make([]ref.Val, len(rs.macros))
		e.act.touched = make([]int, 0, len(rs.macros))
	}
	return e
}

// Evaluate runs the enabled rules that in.Event's type triggers, highest
// priority first, and appends those that match to dst. A rule that fails is
// reported in errs and does not stop the others. ctx cancels rules that
// iterate; straight-line rules run to completion in microseconds.
func (e *Evaluator) Evaluate(ctx context.Context, in *Input, dst []Match) (matches []Match, errs []*EvalError) {
	list := e.rs.For(in.Event.Type)
	if len(list) == 0 {
		return dst, nil
	}
	a := &e.act
	a.ev.ev = &in.Event
	a.ev.ts = types.Timestamp{Time: time.UnixMilli(in.Event.TS).UTC()}
	a.profile = in.Profile
	if a.profile == nil {
		a.profile = emptyMap
	}
	a.now = types.Timestamp{Time: in.Now.UTC()}
	a.windows = in.Windows
	a.contacts = in.Contacts
	a.ctx = ctx
	defer a.reset()
	attrs, profile := in.Event.Attrs, in.Profile
	// With an index, visit only the rules whose index guard may hold
	// (index.go), in the list's order.
	var cand []uint64
	if ix := e.rs.indexFor(in.Event.Type); ix != nil && !e.noGuards {
		cand = e.cand[:ix.words]
		ix.candidates(cand, attrs, profile)
	}
	for pos := 0; pos < len(list); pos++ {
		if cand != nil {
			if pos = nextCandidate(cand, pos); pos < 0 {
				break
			}
		}
		r := list[pos]
		if len(r.guards) > 0 && !e.noGuards && guardsFalse(r, attrs, profile, in.Windows) {
			// when is false: a guard, a top-level conjunct, is (guard.go).
			continue
		}
		ok, err := e.when(ctx, r)
		if err != nil {
			errs = append(errs, &EvalError{Rule: r, Err: err})
			continue
		}
		if !ok {
			continue
		}
		m := Match{Rule: r}
		if len(r.params) > 0 {
			m.Params = make(map[string]any, len(r.params))
			var perr error
			for _, p := range r.params {
				v, err := e.eval(ctx, p.prog, p.tracked)
				if err != nil {
					perr = fmt.Errorf("offer.params.%s: %w", p.name, err)
					break
				}
				m.Params[p.name] = native(v)
			}
			if perr != nil {
				errs = append(errs, &EvalError{Rule: r, Err: perr})
				continue
			}
		}
		dst = append(dst, m)
	}
	return dst, errs
}

func (e *Evaluator) when(ctx context.Context, r *Rule) (bool, error) {
	v, err := e.eval(ctx, r.when, r.tracked)
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("when: got %s, want bool", v.Type().TypeName())
	}
	return bool(b), nil
}

func (e *Evaluator) eval(ctx context.Context, p cel.Program, tracked bool) (ref.Val, error) {
	var (
		v   ref.Val
		err error
	)
	if tracked {
		v, _, err = p.ContextEval(ctx, &e.act)
	} else {
		v, _, err = p.Eval(&e.act)
	}
	if err != nil {
		return nil, err
	}
	if types.IsError(v) {
		return nil, v.(*types.Err)
	}
	return v, nil
}

// activation resolves the rule language's variables for one event. A
// macro is evaluated the first time it is read, with the activation
// itself, and its value kept until reset: each macro runs at most once per
// event, whichever rules and comprehensions read it.
type activation struct {
	ev       eventVal
	profile  map[string]any
	now      ref.Val
	windows  Windows
	contacts Contacts
	offer    map[string]any // conversion conditions only
	ctx      context.Context

	macros     []*macro       // the rule set's, by index
	macroIndex map[string]int // name to index
	macroVals  []ref.Val      // by index; nil until evaluated for this event
	touched    []int          // indexes with a value, to clear them in reset
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		return &a.ev, true
	case "profile":
		return a.profile, true
	case "now":
		return a.now, true
	case windowsVar:
		return a.windows, a.windows != nil
	case contactsVar:
		return a.contacts, a.contacts != nil
	case conversionVar:
		return a.offer, a.offer != nil
	}
	if i, ok := a.macroIndex[name]; ok {
		return a.macro(i), true
	}
	return nil, false
}

// macro returns the value of macro i for the current event, evaluating it
// on first use. An error is kept as the value, like any other, and names
// the macro.
func (a *activation) macro(i int) ref.Val {
	if v := a.macroVals[i]; v != nil {
		return v
	}
	m := a.macros[i]
	var (
		v   ref.Val
		err error
	)
	if m.tracked {
		v, _, err = m.prog.ContextEval(a.ctx, a)
	} else {
		v, _, err = m.prog.Eval(a)
	}
	if err == nil && types.IsError(v) {
		err = v.(*types.Err)
	}
	if err != nil {
		v = types.WrapErr(fmt.Errorf("%s: %w", m.label, err))
	}
	a.macroVals[i] = v
	a.touched = append(a.touched, i)
	return v
}

func (a *activation) Parent() interpreter.Activation { return nil }

// reset drops what the activation holds of the last event, keeping the
// rule set's macros and the slices for their values.
func (a *activation) reset() {
	for _, i := range a.touched {
		a.macroVals[i] = nil
	}
	a.touched = a.touched[:0]
	a.ev, a.profile, a.now, a.windows, a.contacts, a.ctx = eventVal{}, nil, nil, nil, nil, nil
}

// windowCall is the planned form of a window function call: it reads one
// aggregate by index.
type windowCall struct {
	id   int64
	kind AggKind
	idx  int
}

func (w *windowCall) ID() int64 { return w.id }

func (w *windowCall) Exec(f *interpreter.ExecutionFrame) ref.Val { return w.Eval(f) }

func (w *windowCall) Eval(act interpreter.Activation) ref.Val {
	raw, ok := act.ResolveName(windowsVar)
	if !ok || w.idx < 0 {
		return types.WrapErr(errNoWindows)
	}
	v := raw.(Windows).Value(w.idx)
	switch w.kind {
	case Count, Distinct:
		return types.Int(int64(v))
	case Since:
		if math.IsInf(v, 1) || v >= float64(maxDuration/time.Millisecond) {
			return types.Duration{Duration: maxDuration}
		}
		return types.Duration{Duration: time.Duration(v * float64(time.Millisecond))}
	}
	return types.Double(v)
}

// contactCall is the planned form of a contacts() or offers() call: it
// reads the contact history with a fixed window and rule index.
type contactCall struct {
	id     int64
	rule   int // Rule.Index for offers(); -1 for contacts()
	window time.Duration
}

func (c *contactCall) ID() int64 { return c.id }

func (c *contactCall) Exec(f *interpreter.ExecutionFrame) ref.Val { return c.Eval(f) }

func (c *contactCall) Eval(act interpreter.Activation) ref.Val {
	raw, ok := act.ResolveName(contactsVar)
	if !ok {
		return types.IntZero
	}
	h := raw.(Contacts)
	if c.rule < 0 {
		return types.Int(h.Contacts(c.window))
	}
	return types.Int(h.Offers(c.rule, c.window))
}

// native converts a CEL value to plain Go values: string, int64, uint64,
// float64, bool, []byte, []any, map[string]any; timestamps become RFC 3339
// strings and durations their Go string.
func native(v ref.Val) any {
	switch t := v.(type) {
	case types.String:
		return string(t)
	case types.Int:
		return int64(t)
	case types.Uint:
		return uint64(t)
	case types.Double:
		return float64(t)
	case types.Bool:
		return bool(t)
	case types.Bytes:
		return []byte(t)
	case types.Null:
		return nil
	case types.Timestamp:
		return t.Time.UTC().Format(time.RFC3339Nano)
	case types.Duration:
		return t.Duration.String()
	case traits.Mapper:
		out := map[string]any{}
		it := t.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			out[fmt.Sprint(native(k))] = native(t.Get(k))
		}
		return out
	case traits.Lister:
		n := int(t.Size().(types.Int))
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			out = append(out, native(t.Get(types.Int(i))))
		}
		return out
	}
	return v.Value()
}

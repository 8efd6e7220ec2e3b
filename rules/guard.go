package rules

import (
	"math"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// This file finds static guards in a rule's when and checks them before the
// rule's program runs.
//
// A guard is a top-level conjunct of when (nested && flattened) that reads
// one event attribute or profile field and compares it with a literal:
//
//	event.attrs.K == "s"    event.attrs.K != "s"    event.attrs.K in ["a", "b"]
//	event.attrs.K < 5       (<, <=, >, >=, ==, != with an int, uint or double)
//	has(event.attrs.K)      "K" in event.attrs
//
// in either operand order, with event.attrs["K"] for event.attrs.K, and the
// same on profile; `in` also takes a string list of the rule set. A conjunct
// that names a macro contributes the macro's own guards. A window function
// compared with a number is one too (count("login", "7d") == 3, sum(...)
// >= 500.0; not since()): its value comes from the evaluation's Windows, as
// the program would read it.
//
// CEL's && is commutative and absorbs errors: false && error is false.
// So when any guard is definitely false, the whole when is false, and not
// running the program gives exactly the result running it would. A guard
// says "definitely false" only in the cases where CEL's answer is certain
// and plain: the key is present (absent, for has), the value is a string
// against a string literal, or a number compared by value without loss
// (no NaN, no int beyond ±2^53 against a double). Any other case (absent
// key, bool, list, map, null, a type CEL might convert differently) leaves
// the rule to its program, so its errors and results stay what they were.
//
// Programs that iterate run with cost tracking, and exceeding the cost
// limit or a cancelled context is an error of the whole program, not a
// value && can absorb. For those, only the guards evaluated before any
// other conjunct are kept (&& evaluates its terms left to right and stops
// at the first false), so a skip never hides such an error.

// guardSrc is the map a guard reads.
type guardSrc uint8

const (
	srcAttrs guardSrc = iota
	srcProfile
	srcWindow // an aggregate of the customer's windows, by index
)

// guardKind is the test a guard makes.
type guardKind uint8

const (
	guardHas   guardKind = iota + 1 // false when the key is absent
	guardStrEq                      // false when a string other than str
	guardStrNe                      // false when the string str
	guardStrIn                      // false when a string not in strs
	guardNum                        // false when a number for which `value op num` does not hold
)

// cmpOp is a comparison, with the value on the left.
type cmpOp uint8

const (
	opEq cmpOp = iota + 1
	opNe
	opLt
	opLe
	opGt
	opGe
)

// flip returns the operator with its operands swapped: 5 < x is x > 5.
func (o cmpOp) flip() cmpOp {
	switch o {
	case opLt:
		return opGt
	case opLe:
		return opGe
	case opGt:
		return opLt
	case opGe:
		return opLe
	}
	return o
}

// holds reports whether the operator holds for a comparison result c
// (-1, 0, 1).
func (o cmpOp) holds(c int) bool {
	switch o {
	case opEq:
		return c == 0
	case opNe:
		return c != 0
	case opLt:
		return c < 0
	case opLe:
		return c <= 0
	case opGt:
		return c > 0
	case opGe:
		return c >= 0
	}
	return true
}

var cmpOps = map[string]cmpOp{
	operators.Equals:        opEq,
	operators.NotEquals:     opNe,
	operators.Less:          opLt,
	operators.LessEquals:    opLe,
	operators.Greater:       opGt,
	operators.GreaterEquals: opGe,
}

// numKind is the CEL type of a number.
type numKind uint8

const (
	numInt numKind = iota + 1
	numUint
	numDouble
)

// number is a CEL int, uint or double.
type number struct {
	kind numKind
	i    int64
	u    uint64
	f    float64
}

// guard is one static guard of a rule.
type guard struct {
	src  guardSrc
	kind guardKind
	op   cmpOp
	key  string
	str  string
	strs []string
	set  map[string]struct{} // strs, when there are many
	num  number
	// agg and aggKind are the aggregate a srcWindow guard compares.
	agg     int
	aggKind AggKind
}

// manyStrings is the list length from which guardStrIn looks strings up
// in a map rather than scanning the list.
const manyStrings = 8

// maxExactInt is the largest integer every smaller one of which a float64
// holds exactly: CEL compares an int with a double by converting the int.
const maxExactInt = 1 << 53

// guardsFalse reports whether a guard of r is definitely false for the
// event attributes, profile and windows: then r's when is false.
func guardsFalse(r *Rule, attrs, profile map[string]any, w Windows) bool {
	for i := range r.guards {
		if r.guards[i].isFalse(attrs, profile, w) {
			return true
		}
	}
	return false
}

// isFalse reports whether CEL would certainly evaluate the guard to false.
func (g *guard) isFalse(attrs, profile map[string]any, w Windows) bool {
	if g.src == srcWindow {
		if w == nil {
			return false // an error in CEL
		}
		// The value as windowCall gives it to the program.
		v := w.Value(g.agg)
		n := number{kind: numDouble, f: v}
		if g.aggKind == Count || g.aggKind == Distinct {
			n = number{kind: numInt, i: int64(v)}
		}
		c, exact := compareNumbers(n, g.num)
		return exact && !g.op.holds(c)
	}
	m := attrs
	if g.src == srcProfile {
		m = profile
	}
	v, ok := m[g.key]
	if g.kind == guardHas {
		return !ok
	}
	if !ok {
		return false // an error in CEL, maybe absorbed, maybe not
	}
	switch g.kind {
	case guardStrEq, guardStrNe, guardStrIn:
		s, isStr := guardString(v)
		if !isStr {
			return false
		}
		switch g.kind {
		case guardStrEq:
			return s != g.str
		case guardStrNe:
			return s == g.str
		}
		return !g.contains(s)
	case guardNum:
		n, isNum := guardNumber(v)
		if !isNum {
			return false
		}
		c, exact := compareNumbers(n, g.num)
		return exact && !g.op.holds(c)
	}
	return false
}

func (g *guard) contains(s string) bool {
	if g.set != nil {
		_, ok := g.set[s]
		return ok
	}
	for _, x := range g.strs {
		if x == s {
			return true
		}
	}
	return false
}

// guardString returns v as the string CEL sees, if it is one of the types
// CEL's type adapter turns into a CEL string.
func guardString(v any) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case types.String:
		return string(s), true
	}
	return "", false
}

// guardNumber returns v as the number CEL sees, if it is one of the types
// CEL's type adapter turns into a CEL int, uint or double.
func guardNumber(v any) (number, bool) {
	switch n := v.(type) {
	case int64:
		return number{kind: numInt, i: n}, true
	case float64:
		return number{kind: numDouble, f: n}, true
	case int:
		return number{kind: numInt, i: int64(n)}, true
	case int32:
		return number{kind: numInt, i: int64(n)}, true
	case uint64:
		return number{kind: numUint, u: n}, true
	case uint:
		return number{kind: numUint, u: uint64(n)}, true
	case uint32:
		return number{kind: numUint, u: uint64(n)}, true
	case float32:
		return number{kind: numDouble, f: float64(n)}, true
	case types.Int:
		return number{kind: numInt, i: int64(n)}, true
	case types.Uint:
		return number{kind: numUint, u: uint64(n)}, true
	case types.Double:
		return number{kind: numDouble, f: float64(n)}, true
	}
	return number{}, false
}

// compareNumbers compares a and b by value, as CEL does, and reports
// whether the comparison is one whose CEL result is certain: not when a
// double is NaN (CEL's ordering fails on it) or when an int or uint beyond
// ±2^53 meets a double (CEL converts the int to a double, rounding it).
func compareNumbers(a, b number) (int, bool) {
	if a.kind != numDouble && b.kind != numDouble {
		return compareInts(a, b), true
	}
	x, okA := exactFloat(a)
	y, okB := exactFloat(b)
	if !okA || !okB {
		return 0, false
	}
	switch {
	case x < y:
		return -1, true
	case x > y:
		return 1, true
	}
	return 0, true
}

// exactFloat returns n as a float64 when that is exact and not NaN.
func exactFloat(n number) (float64, bool) {
	switch n.kind {
	case numInt:
		if n.i > maxExactInt || n.i < -maxExactInt {
			return 0, false
		}
		return float64(n.i), true
	case numUint:
		if n.u > maxExactInt {
			return 0, false
		}
		return float64(n.u), true
	}
	return n.f, !math.IsNaN(n.f)
}

// compareInts compares two ints or uints exactly.
func compareInts(a, b number) int {
	switch {
	case a.kind == numInt && b.kind == numInt:
		return cmp3(a.i < b.i, a.i > b.i)
	case a.kind == numUint && b.kind == numUint:
		return cmp3(a.u < b.u, a.u > b.u)
	case a.kind == numInt: // b uint
		if a.i < 0 {
			return -1
		}
		return cmp3(uint64(a.i) < b.u, uint64(a.i) > b.u)
	}
	// a uint, b int
	return -compareInts(b, a)
}

func cmp3(less, greater bool) int {
	switch {
	case less:
		return -1
	case greater:
		return 1
	}
	return 0
}

// guardFinder finds the guards of checked expressions.
type guardFinder struct {
	// strLists are the string lists of the rule set, by name.
	strLists map[string][]string
	// aggIndex is the rule set's aggregates by value (RuleSet.aggIndex):
	// a window function call's index, once its expression compiled.
	aggIndex map[Aggregate]int
	// macroGuards are the guards of the macros, by name; a macro is
	// absent when it has none or has errors.
	macroGuards map[string][]guard
}

// find returns the guards of a checked boolean expression. tracked says
// whether its program runs with cost tracking.
func (gf *guardFinder) find(e ast.Expr, tracked bool) []guard {
	var out []guard
	for _, x := range conjuncts(e, nil) {
		g, isGuard := gf.guard(x)
		if isGuard {
			out = append(out, g)
			continue
		}
		if x.Kind() == ast.IdentKind {
			// A macro (the only kind of bool identifier): it runs as its
			// own program and its errors, cost limit included, are
			// values that && absorbs; reading it costs 1.
			out = append(out, gf.macroGuards[x.AsIdent()]...)
			continue
		}
		if tracked {
			// What follows runs after a conjunct whose cost is not
			// bounded by a constant.
			break
		}
	}
	return out
}

// conjuncts appends the top-level conjuncts of e, nested && flattened, in
// evaluation order.
func conjuncts(e ast.Expr, out []ast.Expr) []ast.Expr {
	if e.Kind() == ast.CallKind {
		if call := e.AsCall(); call.FunctionName() == operators.LogicalAnd && !call.IsMemberFunction() {
			for _, a := range call.Args() {
				out = conjuncts(a, out)
			}
			return out
		}
	}
	return append(out, e)
}

// guard returns the guard that the conjunct x is, if it is one.
func (gf *guardFinder) guard(x ast.Expr) (guard, bool) {
	switch x.Kind() {
	case ast.SelectKind:
		// has(m.K), after macro expansion a test-only select.
		sel := x.AsSelect()
		if !sel.IsTestOnly() {
			return guard{}, false
		}
		if src, ok := guardMap(sel.Operand()); ok {
			return guard{src: src, kind: guardHas, key: sel.FieldName()}, true
		}
		return guard{}, false
	case ast.CallKind:
	default:
		return guard{}, false
	}
	call := x.AsCall()
	args := call.Args()
	if call.IsMemberFunction() || len(args) != 2 {
		return guard{}, false
	}
	fn := call.FunctionName()
	if fn == operators.In {
		return gf.inGuard(args[0], args[1])
	}
	op, isCmp := cmpOps[fn]
	if !isCmp {
		return guard{}, false
	}
	lhs, rhs := args[0], args[1]
	if g, isWindow := gf.windowGuard(lhs, rhs, op); isWindow {
		return g, true
	}
	if g, isWindow := gf.windowGuard(rhs, lhs, op.flip()); isWindow {
		return g, true
	}
	src, key, ok := guardRead(lhs)
	if !ok {
		src, key, ok = guardRead(rhs)
		if !ok {
			return guard{}, false
		}
		lhs, rhs = rhs, lhs
		op = op.flip()
	}
	if rhs.Kind() != ast.LiteralKind {
		return guard{}, false
	}
	g := guard{src: src, key: key, op: op}
	switch lit := rhs.AsLiteral().(type) {
	case types.String:
		switch op {
		case opEq:
			g.kind = guardStrEq
		case opNe:
			g.kind = guardStrNe
		default:
			return guard{}, false // string ordering: not a guard
		}
		g.str = string(lit)
	case types.Int:
		g.kind, g.num = guardNum, number{kind: numInt, i: int64(lit)}
	case types.Uint:
		g.kind, g.num = guardNum, number{kind: numUint, u: uint64(lit)}
	case types.Double:
		if math.IsNaN(float64(lit)) {
			return guard{}, false
		}
		g.kind, g.num = guardNum, number{kind: numDouble, f: float64(lit)}
	default:
		return guard{}, false
	}
	return g, true
}

// windowGuard returns the guard that `call op lit` is when call is a window
// function with constant arguments (since() excepted) of a known aggregate
// and lit a number literal.
func (gf *guardFinder) windowGuard(call, lit ast.Expr, op cmpOp) (guard, bool) {
	if call.Kind() != ast.CallKind || lit.Kind() != ast.LiteralKind {
		return guard{}, false
	}
	c := call.AsCall()
	wf, ok := windowFuncByName(c.FunctionName())
	if !ok || c.IsMemberFunction() || wf.kind == Since || len(c.Args()) != len(wf.params) {
		return guard{}, false
	}
	vals := make([]string, len(c.Args()))
	for i, a := range c.Args() {
		if vals[i], ok = stringLiteral(a); !ok {
			return guard{}, false
		}
	}
	agg, err := aggregateOf(wf, vals)
	if err != nil {
		return guard{}, false
	}
	idx, ok := gf.aggIndex[agg]
	if !ok {
		return guard{}, false
	}
	g := guard{src: srcWindow, kind: guardNum, op: op, agg: idx, aggKind: wf.kind}
	switch n := lit.AsLiteral().(type) {
	case types.Int:
		g.num = number{kind: numInt, i: int64(n)}
	case types.Uint:
		g.num = number{kind: numUint, u: uint64(n)}
	case types.Double:
		if math.IsNaN(float64(n)) {
			return guard{}, false
		}
		g.num = number{kind: numDouble, f: float64(n)}
	default:
		return guard{}, false
	}
	return g, true
}

// inGuard returns the guard that `elem in coll` is, if it is one: a read
// in a list of string literals or a string list of the set, or a key
// literal in event.attrs or profile.
func (gf *guardFinder) inGuard(elem, coll ast.Expr) (guard, bool) {
	if key, ok := stringLiteral(elem); ok {
		if src, ok := guardMap(coll); ok {
			return guard{src: src, kind: guardHas, key: key}, true
		}
		return guard{}, false
	}
	src, key, ok := guardRead(elem)
	if !ok {
		return guard{}, false
	}
	var strs []string
	switch coll.Kind() {
	case ast.ListKind:
		l := coll.AsList()
		if len(l.OptionalIndices()) > 0 {
			return guard{}, false
		}
		for _, x := range l.Elements() {
			s, ok := stringLiteral(x)
			if !ok {
				return guard{}, false
			}
			strs = append(strs, s)
		}
	case ast.IdentKind:
		if strs, ok = gf.strLists[coll.AsIdent()]; !ok {
			return guard{}, false
		}
	default:
		return guard{}, false
	}
	g := guard{src: src, kind: guardStrIn, key: key, strs: strs}
	if len(strs) > manyStrings {
		g.set = make(map[string]struct{}, len(strs))
		for _, s := range strs {
			g.set[s] = struct{}{}
		}
	}
	return g, true
}

// guardRead reports whether x reads a key of event.attrs or profile by a
// constant name: m.K or m["K"].
func guardRead(x ast.Expr) (guardSrc, string, bool) {
	switch x.Kind() {
	case ast.SelectKind:
		sel := x.AsSelect()
		if sel.IsTestOnly() {
			return 0, "", false
		}
		if src, ok := guardMap(sel.Operand()); ok {
			return src, sel.FieldName(), true
		}
	case ast.CallKind:
		call := x.AsCall()
		args := call.Args()
		if call.FunctionName() != operators.Index || call.IsMemberFunction() || len(args) != 2 {
			return 0, "", false
		}
		key, ok := stringLiteral(args[1])
		if !ok {
			return 0, "", false
		}
		if src, ok := guardMap(args[0]); ok {
			return src, key, true
		}
	}
	return 0, "", false
}

// guardMap reports whether x is event.attrs or profile, at the top level
// of an expression, where no comprehension binds either name.
func guardMap(x ast.Expr) (guardSrc, bool) {
	if isEventAttrs(x, nil) {
		return srcAttrs, true
	}
	if x.Kind() == ast.IdentKind && x.AsIdent() == "profile" {
		return srcProfile, true
	}
	return 0, false
}

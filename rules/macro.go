package rules

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// This file compiles a rule set's lists and macros (doc.go says why they
// are built this way).
//
// Lists become CEL constants of the set's environment: the checker knows
// their element type, the planner inlines their value, and the constant
// folder can see through them.
//
// Macros become variables of the set's environment, declared with the type
// each has when checked on its own, and are evaluated lazily, at most once
// per event: the first read of a macro during an Evaluate runs its program
// and keeps the value until the event is done. Each macro is parsed, checked,
// its window and contact calls checked and its cost estimated once, at its
// own position, so its errors point into the macro.

// list is a list of a rule set.
type list struct {
	def *ListDef
	f   *File
}

// macro is a macro of a rule set.
type macro struct {
	def     *MacroDef
	f       *File
	direct  []string // the lists and macros it names
	reach   []string // every list and macro it reads, directly or through macros, sorted
	parsed  *cel.Ast
	checked *cel.Ast
	typ     *cel.Type // nil when it does not check
	level   int       // 0 when it names no other macro, else one more than theirs
	cost    uint64    // estimated, of the macro alone
	reads             // of the macro alone
	facts   facts
	failed  bool     // has errors, or names a macro that refers to itself
	errs    []*Error // its errors, to name the rules that use it
	prog    cel.Program
	tracked bool
	label   string // names it in evaluation errors
}

func (m *macro) site() site {
	return site{f: m.f, macro: m.def.Name, e: m.def.Expr}
}

// facts are what Lint needs to know about an expression.
type facts struct {
	attrs []attrUse // reads of event.attrs
	calls []callUse // window and offers() calls
}

// attrUse is a read of one event attribute: event.attrs.name,
// event.attrs["name"], has(event.attrs.name) or "name" in event.attrs.
type attrUse struct {
	name string
	pos  Pos
	site site
}

// callUse is a window function call, or an offers() call.
type callUse struct {
	fn   string
	agg  Aggregate // window functions
	rule string    // offers()
	pos  Pos       // of the attr argument, the rule argument, or else the call
	site site
}

// definitions collects the lists and macros of every file, checks their
// names, compiles them in the order their uses require, and extends the
// compiler's environment with them.
func (c *compiler) definitions(files []*File) {
	type def struct {
		d    listOrMacro
		file int
		l    *ListDef
		m    *MacroDef
		f    *File
	}
	var all []def
	for i, f := range files {
		for _, l := range f.Lists {
			all = append(all, def{d: listOrMacro{"list", l.Name, l.Pos}, file: i, l: l, f: f})
		}
		for _, m := range f.Macros {
			all = append(all, def{d: listOrMacro{"macro", m.Name, m.Pos}, file: i, m: m, f: f})
		}
	}
	if len(all) == 0 {
		return
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.d.pos.Line != b.d.pos.Line {
			return a.d.pos.Line < b.d.pos.Line
		}
		return a.d.pos.Col < b.d.pos.Col
	})
	vars := map[string]bool{"event": true, "profile": true, "now": true}
	funcs := map[string]bool{}
	for name := range c.env.Functions() {
		funcs[name] = true
	}
	seen := map[string]listOrMacro{}
	for _, d := range all {
		if why := nameClash(d.d.name, vars, funcs); why != "" {
			c.errs = append(c.errs, d.d.err("cannot be used as a name: %s", why))
			continue
		}
		if prev, dup := seen[d.d.name]; dup {
			if prev.what == d.d.what {
				c.errs = append(c.errs, d.d.err("already defined at %s", prev.pos))
			} else {
				c.errs = append(c.errs, d.d.err("name already taken by the %s defined at %s", prev.what, prev.pos))
			}
			continue
		}
		seen[d.d.name] = d.d
		c.rs.defs[d.d.name] = true
		if d.l != nil {
			l := &list{def: d.l, f: d.f}
			c.lists[d.l.Name] = l
			c.rs.lists = append(c.rs.lists, l)
		} else {
			m := &macro{def: d.m, f: d.f, label: fmt.Sprintf("macro %s (%s)", d.m.Name, d.m.Pos)}
			c.macros[d.m.Name] = m
			c.rs.macros = append(c.rs.macros, m)
		}
	}

	// Lists are constants, and their lengths known to the cost estimator.
	var opts []cel.EnvOption
	c.sizes = map[string]uint64{}
	for _, l := range c.rs.lists {
		t, v := l.def.celValue()
		opts = append(opts, cel.Constant(l.def.Name, t, v))
		c.sizes[l.def.Name] = uint64(len(l.def.Values))
		if l.def.Type == ListString {
			strs := make([]string, len(l.def.Values))
			for i, v := range l.def.Values {
				strs[i] = v.(string)
			}
			c.guards.strLists[l.def.Name] = strs
		}
	}

	// Parse the macros and find which lists and macros each names.
	for _, m := range c.rs.macros {
		s := m.site()
		if strings.TrimSpace(s.e.Src) == "" {
			c.fail(s, s.e.Pos, "is empty")
			continue
		}
		parsed, iss := c.env.Parse(s.e.Src)
		if iss != nil && iss.Err() != nil {
			c.celErrors(s, iss)
			continue
		}
		m.parsed = parsed
		m.direct = directUses(parsed.NativeRep().Expr(), c.rs.defs)
	}
	for _, m := range c.rs.macros {
		m.reach = c.reach(m)
	}
	c.cycles()

	// Check the macros in levels: those that name no other macro first, in
	// the environment with the lists, then those that name only these, in
	// the environment that declares them too, and so on. A macro with errors
	// is declared as dyn, so that what uses it is not reported again.
	byLevel := map[int][]*macro{}
	maxLevel := 0
	leveled := map[*macro]bool{}
	for _, m := range c.rs.macros {
		if m.failed {
			opts = append(opts, cel.Variable(m.def.Name, cel.DynType))
			continue
		}
		l := c.level(m, leveled)
		byLevel[l] = append(byLevel[l], m)
		maxLevel = max(maxLevel, l)
	}
	env, err := c.env.Extend(opts...)
	if err != nil {
		c.errs = append(c.errs, &Error{Pos: Pos{File: files[0].Name}, Msg: fmt.Sprintf("declaring lists and macros: %v", err), Kind: ErrCompile})
		return
	}
	for l := 0; l <= maxLevel; l++ {
		var vars []cel.EnvOption
		for _, m := range byLevel[l] {
			c.checkMacro(env, m)
			t := m.typ
			if t == nil {
				t = cel.DynType
			}
			vars = append(vars, cel.Variable(m.def.Name, t))
		}
		if len(vars) == 0 {
			continue
		}
		if env, err = env.Extend(vars...); err != nil {
			c.errs = append(c.errs, &Error{Pos: Pos{File: files[0].Name}, Msg: fmt.Sprintf("declaring macros: %v", err), Kind: ErrCompile})
			return
		}
	}
	c.env = env
}

// celValue returns the list's CEL type and value.
func (l *ListDef) celValue() (*cel.Type, ref.Val) {
	a := types.DefaultTypeAdapter
	switch l.Type {
	case ListString:
		vals := make([]string, len(l.Values))
		for i, v := range l.Values {
			vals[i] = v.(string)
		}
		return cel.ListType(cel.StringType), types.NewStringList(a, vals)
	case ListInt:
		vals := make([]int64, len(l.Values))
		for i, v := range l.Values {
			vals[i] = v.(int64)
		}
		return cel.ListType(cel.IntType), a.NativeToValue(vals)
	case ListDouble:
		vals := make([]float64, len(l.Values))
		for i, v := range l.Values {
			vals[i] = v.(float64)
		}
		return cel.ListType(cel.DoubleType), a.NativeToValue(vals)
	case ListBool:
		vals := make([]bool, len(l.Values))
		for i, v := range l.Values {
			vals[i] = v.(bool)
		}
		return cel.ListType(cel.BoolType), a.NativeToValue(vals)
	}
	return cel.ListType(cel.DynType), a.NativeToValue([]any{})
}

// reach returns every list and macro m reads, directly or through other
// macros, sorted; m itself only if it refers to itself.
func (c *compiler) reach(m *macro) []string {
	seen := map[string]bool{}
	var walk func(names []string)
	walk = func(names []string) {
		for _, n := range names {
			if seen[n] {
				continue
			}
			seen[n] = true
			if d := c.macros[n]; d != nil {
				walk(d.direct)
			}
		}
	}
	walk(m.direct)
	return sortedKeys(seen)
}

// cycles reports each set of macros that refer to each other once, at the
// first of them in file order, and marks them all failed.
func (c *compiler) cycles() {
	for _, m := range c.rs.macros {
		if m.failed || !slices.Contains(m.reach, m.def.Name) {
			continue
		}
		path := c.cyclePath(m)
		for _, n := range path {
			c.macros[n].failed = true
		}
		c.fail(m.site(), m.def.Pos, "macros must not refer to themselves: %s", strings.Join(path, " -> "))
		// Other macros of the same cycle are now failed: not reported again.
	}
}

// cyclePath returns a shortest path of macro names from m back to m.
func (c *compiler) cyclePath(m *macro) []string {
	prev := map[string]string{}
	queue := []string{m.def.Name}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, d := range c.macros[n].direct {
			if c.macros[d] == nil {
				continue
			}
			if d == m.def.Name {
				path := []string{d}
				for x := n; x != m.def.Name; x = prev[x] {
					path = append(path, x)
				}
				path = append(path, m.def.Name)
				slices.Reverse(path)
				return path
			}
			if _, seen := prev[d]; !seen {
				prev[d] = n
				queue = append(queue, d)
			}
		}
	}
	return []string{m.def.Name}
}

// level returns 0 for a macro that names no other working macro, else one
// more than the highest level of those it names. Cycles are failed by now.
func (c *compiler) level(m *macro, done map[*macro]bool) int {
	if done[m] {
		return m.level
	}
	done[m] = true
	m.level = 0
	for _, n := range m.direct {
		if d := c.macros[n]; d != nil && !d.failed {
			m.level = max(m.level, c.level(d, done)+1)
		}
	}
	return m.level
}

// checkMacro type-checks a macro on its own, checks its window and contact
// calls and estimates its cost.
func (c *compiler) checkMacro(env *cel.Env, m *macro) {
	s := m.site()
	checked, iss := env.Check(m.parsed)
	if iss != nil && iss.Err() != nil {
		c.celErrors(s, iss)
		return
	}
	m.typ = checked.OutputType()
	nat := checked.NativeRep()
	rd, ok := c.plannedCalls(s, nat)
	if !ok {
		return
	}
	est, err := env.EstimateCost(checked, estimator{sizes: c.sizes})
	if err != nil {
		c.fail(s, s.e.Pos, "estimating its cost: %v", err)
		return
	}
	_, viaFailed, depCost := c.closure(m.direct)
	if total := est.Max + depCost; !viaFailed && total > c.opts.CostLimit {
		c.fail(s, s.e.Pos, "estimated cost %d exceeds the limit %d (inputs assumed up to %d elements)", total, c.opts.CostLimit, inputSizeBound)
		return
	}
	m.checked, m.cost, m.reads, m.facts = checked, est.Max, rd, exprFacts(s, nat)
	m.parsed = nil
	// A macro that is a guard, or a conjunction with some, is false when
	// one of them is: a rule naming it as a conjunct has them too.
	if g := c.guards.find(nat.Expr(), hasComprehension(nat.Expr())); len(g) > 0 {
		c.guards.macroGuards[m.def.Name] = g
	}
}

// closure returns every list and macro that an expression naming direct
// reads, sorted; whether any of those macros has errors; and the sum of
// their estimated costs.
func (c *compiler) closure(direct []string) (names []string, failed bool, cost uint64) {
	set := map[string]bool{}
	for _, n := range direct {
		set[n] = true
		if m := c.macros[n]; m != nil {
			for _, x := range m.reach {
				set[x] = true
			}
		}
	}
	names = sortedKeys(set)
	for _, n := range names {
		if m := c.macros[n]; m != nil {
			failed = failed || m.failed
			cost += m.cost
		}
	}
	return names, failed, cost
}

// planMacros plans the programs of the macros, once every enabled rule has
// registered the aggregates it reads through them.
func (c *compiler) planMacros() {
	for i, m := range c.rs.macros {
		if m.failed || m.checked == nil {
			continue
		}
		prog, tracked, err := c.plan(m.checked)
		if err != nil {
			c.fail(m.site(), m.def.Expr.Pos, "%v", err)
			continue
		}
		m.prog, m.tracked = prog, tracked
		c.rs.macroIndex[m.def.Name] = i
	}
}

// nameMacroUsers adds to each error in a macro the rules that use it.
func (c *compiler) nameMacroUsers() {
	for _, m := range c.rs.macros {
		users := c.usedBy[m.def.Name]
		if len(users) == 0 {
			continue
		}
		q := make([]string, 0, 3)
		for _, u := range users[:min(3, len(users))] {
			q = append(q, fmt.Sprintf("%q", u))
		}
		note := " (used by rule " + q[0] + ")"
		if len(users) > 1 {
			note = " (used by rules " + strings.Join(q, ", ")
			if more := len(users) - len(q); more > 0 {
				note += fmt.Sprintf(" and %d more", more)
			}
			note += ")"
		}
		for _, e := range m.errs {
			e.Msg += note
		}
	}
}

// directUses returns the names of defs that e names, sorted, leaving out
// names that a comprehension around them binds.
func directUses(e ast.Expr, defs map[string]bool) []string {
	if len(defs) == 0 {
		return nil
	}
	set := map[string]bool{}
	scopedVisit(e, nil, func(x ast.Expr, bound []string) {
		if x.Kind() == ast.IdentKind && defs[x.AsIdent()] && !slices.Contains(bound, x.AsIdent()) {
			set[x.AsIdent()] = true
		}
	})
	return sortedKeys(set)
}

// exprFacts collects the event attribute reads, window calls and offers()
// calls of a checked expression whose calls are known to be valid.
func exprFacts(s site, a *ast.AST) facts {
	var out facts
	scopedVisit(a.Expr(), nil, func(x ast.Expr, bound []string) {
		if name, ok := attrRead(x, bound); ok {
			out.attrs = append(out.attrs, attrUse{name: name, pos: s.exprPos(a, x), site: s})
			return
		}
		if x.Kind() != ast.CallKind || x.AsCall().IsMemberFunction() {
			return
		}
		call := x.AsCall()
		args := call.Args()
		vals := make([]string, len(args))
		for i, arg := range args {
			v, ok := stringLiteral(arg)
			if !ok {
				return
			}
			vals[i] = v
		}
		if call.FunctionName() == "offers" && len(vals) == 2 {
			out.calls = append(out.calls, callUse{fn: "offers", rule: vals[0], pos: s.exprPos(a, args[0]), site: s})
			return
		}
		wf, ok := windowFuncByName(call.FunctionName())
		if !ok || len(vals) != len(wf.params) {
			return
		}
		use := callUse{fn: wf.name, agg: Aggregate{Kind: wf.kind, Type: vals[0]}, pos: s.exprPos(a, x), site: s}
		if len(vals) == 3 {
			use.agg.Attr = vals[1]
			use.pos = s.exprPos(a, args[1])
		}
		out.calls = append(out.calls, use)
	})
	return out
}

// attrRead reports whether x reads an event attribute by a constant name,
// and which.
func attrRead(x ast.Expr, bound []string) (string, bool) {
	switch x.Kind() {
	case ast.SelectKind:
		if sel := x.AsSelect(); isEventAttrs(sel.Operand(), bound) {
			return sel.FieldName(), true
		}
	case ast.CallKind:
		call := x.AsCall()
		args := call.Args()
		if len(args) != 2 {
			return "", false
		}
		switch call.FunctionName() {
		case operators.Index:
			if isEventAttrs(args[0], bound) {
				return stringLiteral(args[1])
			}
		case operators.In:
			if isEventAttrs(args[1], bound) {
				return stringLiteral(args[0])
			}
		}
	}
	return "", false
}

func isEventAttrs(x ast.Expr, bound []string) bool {
	if x.Kind() != ast.SelectKind || x.AsSelect().FieldName() != "attrs" {
		return false
	}
	op := x.AsSelect().Operand()
	return op.Kind() == ast.IdentKind && op.AsIdent() == "event" && !slices.Contains(bound, "event")
}

func stringLiteral(x ast.Expr) (string, bool) {
	if x.Kind() != ast.LiteralKind {
		return "", false
	}
	s, ok := x.AsLiteral().(types.String)
	return string(s), ok
}

// scopedVisit calls fn on every node of e, before its children, with the
// names bound by the comprehensions around the node.
func scopedVisit(e ast.Expr, bound []string, fn func(x ast.Expr, bound []string)) {
	fn(e, bound)
	switch e.Kind() {
	case ast.CallKind:
		call := e.AsCall()
		if call.IsMemberFunction() {
			scopedVisit(call.Target(), bound, fn)
		}
		for _, a := range call.Args() {
			scopedVisit(a, bound, fn)
		}
	case ast.SelectKind:
		scopedVisit(e.AsSelect().Operand(), bound, fn)
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			scopedVisit(x, bound, fn)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			me := en.AsMapEntry()
			scopedVisit(me.Key(), bound, fn)
			scopedVisit(me.Value(), bound, fn)
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			scopedVisit(f.AsStructField().Value(), bound, fn)
		}
	case ast.ComprehensionKind:
		cx := e.AsComprehension()
		scopedVisit(cx.IterRange(), bound, fn)
		scopedVisit(cx.AccuInit(), bound, fn)
		inner := append(slices.Clip(bound), cx.IterVar(), cx.AccuVar())
		if cx.HasIterVar2() {
			inner = append(inner, cx.IterVar2())
		}
		scopedVisit(cx.LoopCondition(), inner, fn)
		scopedVisit(cx.LoopStep(), inner, fn)
		scopedVisit(cx.Result(), append(slices.Clip(bound), cx.AccuVar()), fn)
	}
}

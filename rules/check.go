package rules

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/parser"
)

// This file is what kairos rules check reports beyond load errors: the
// lint of a rule set, findings and their text.

// Severity is how serious a finding is.
type Severity uint8

// Severities. An error stops a rule set loading; a warning does not.
const (
	SeverityError Severity = iota + 1
	SeverityWarning
)

func (s Severity) String() string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return fmt.Sprintf("Severity(%d)", s)
}

// Lint checks. Each warning names the check that found it.
const (
	CheckNeverFires   = "never-fires"   // a when that constant folding reduces to false
	CheckAlwaysFails  = "always-fails"  // part of a when or param that fails whenever it is evaluated
	CheckOverlap      = "overlap"       // two live rules that can fire on one event for one product
	CheckUnknownAttr  = "unknown-attr"  // an attribute no event type of the rule has in the catalogue
	CheckNonNumeric   = "non-numeric"   // sum, min, max or avg over an attribute that is not a number
	CheckUnused       = "unused"        // a list or macro that no rule uses
	CheckShadowOffers = "shadow-offers" // offers() of a shadow rule, which sends none
)

// Finding is one problem found in a rule set: an error, which stops it
// loading, or a warning.
type Finding struct {
	Severity Severity
	// Check names the check that found a warning (CheckNeverFires, ...);
	// empty for errors.
	Check string
	Pos   Pos
	// RuleID, Macro or List names what the finding is about; all are
	// empty for a problem with a file as a whole.
	RuleID string
	Macro  string
	List   string
	Msg    string
	// Snippet, when set, is the source line and a caret under the column.
	Snippet string
	// Related is a second position the finding is about, such as the other
	// rule of an overlapping pair; zero otherwise.
	Related Pos
	// Err is the error of an error finding, an *Error: decide with
	// errors.Is against ErrInvalid, ErrCompile and ErrCatalogue.
	Err error
}

// String returns the finding as kairos rules check prints it: an error as
// Error.Error does, file:line:col: rule "id": message, and a warning as
// file:line:col: warning: rule "id": message [check]; either followed by
// the source line and a caret when there is one.
func (f Finding) String() string {
	var b strings.Builder
	if p := f.Pos.String(); p != "" {
		b.WriteString(p)
		b.WriteString(": ")
	}
	if f.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	writeSubject(&b, f.RuleID, f.Macro, f.List)
	b.WriteString(f.Msg)
	if f.Check != "" {
		fmt.Fprintf(&b, " [%s]", f.Check)
	}
	if f.Snippet != "" {
		b.WriteString("\n")
		b.WriteString(f.Snippet)
	}
	return b.String()
}

func errorFinding(e *Error) Finding {
	return Finding{Severity: SeverityError, Pos: e.Pos, RuleID: e.RuleID, Macro: e.Macro, List: e.List, Msg: e.Msg, Snippet: e.Snippet, Err: e}
}

// Report is the result of Check.
type Report struct {
	// RuleSet is the compiled set; nil when there is an error.
	RuleSet *RuleSet
	// Findings are every error and warning, in file, line and column order.
	Findings []Finding
}

// Count returns the number of findings of a severity.
func (r *Report) Count(s Severity) int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == s {
			n++
		}
	}
	return n
}

// Failed reports whether the check failed: on any error, or, when strict,
// on any warning.
func (r *Report) Failed(strict bool) bool {
	return r.Count(SeverityError) > 0 || strict && r.Count(SeverityWarning) > 0
}

// Check reads, parses and compiles rule files and directories as Load
// does, then lints what compiled. It reports every problem at once: the
// errors Load would return and the warnings of Lint. Warnings are found
// in the rules that compiled even when others have errors.
func Check(opts Options, paths ...string) *Report {
	files, err := LoadFiles(paths...)
	var errs Errors
	if err != nil {
		errs = append(errs, err.(Errors)...)
	}
	rs, cerrs, ierr := compile(files, opts)
	if ierr != nil {
		errs = append(errs, &Error{Msg: ierr.Error(), Kind: ErrCompile})
	}
	errs = append(errs, cerrs...)
	sortErrors(errs)
	rep := &Report{}
	for _, e := range errs {
		rep.Findings = append(rep.Findings, errorFinding(e))
	}
	if rs != nil {
		rep.Findings = append(rep.Findings, rs.lint(len(errs) == 0)...)
	}
	sortFindings(rep.Findings)
	if len(errs) == 0 {
		rep.RuleSet = rs
	}
	return rep
}

// Lint returns the warnings about a compiled rule set: rules that can
// never fire, parts of expressions that always fail, pairs of live rules
// that can fire on the same event for the same product, attributes the
// event catalogue does not list, aggregates of non-numeric attributes,
// unused lists and macros, and offers() of shadow rules. The engine may
// log them at load; kairos rules check prints them.
func (rs *RuleSet) Lint() []Finding {
	fs := rs.lint(true)
	sortFindings(fs)
	return fs
}

// lint lints rs; complete is false for the partial set of a rule set with
// errors, where a list or macro may look unused only because the rules
// that use it did not compile.
func (rs *RuleSet) lint(complete bool) []Finding {
	l := &linter{rs: rs, byID: map[string]*Rule{}, rules: map[*Rule]*ruleFacts{}}
	for _, r := range rs.rules {
		l.byID[r.ID] = r
		l.rules[r] = rs.ruleFacts(r)
	}
	l.constantMacros()
	never := map[*Rule]bool{}
	for _, r := range rs.rules {
		if r.Enabled && l.fold(r) {
			never[r] = true
		}
	}
	l.overlaps(never)
	l.attrs()
	l.shadowOffers()
	if complete {
		l.unused()
	}
	return l.out
}

type linter struct {
	rs *RuleSet
	// rules are what the lint needs of each compiled rule: not kept with
	// the rules, to keep a loaded set small, but compiled again.
	rules map[*Rule]*ruleFacts
	// byID finds the set's rules by id.
	byID map[string]*Rule
	// consts are the values of the lists and of the macros that fold to a
	// constant, by name.
	consts map[string]ref.Val
	out    []Finding
}

// ruleFacts are the checked condition of a rule and the facts of its
// expressions.
type ruleFacts struct {
	when  *cel.Ast
	facts facts
}

// ruleFacts checks a compiled rule's expressions again, in the set's
// environment, for the lint.
func (rs *RuleSet) ruleFacts(r *Rule) *ruleFacts {
	out := &ruleFacts{}
	add := func(field string, e Expr) *cel.Ast {
		checked, iss := rs.env.Compile(e.Src)
		if iss != nil && iss.Err() != nil {
			return nil // cannot happen: the rule compiled
		}
		fs := exprFacts(site{f: r.file, rule: r.ID, field: field, e: e}, checked.NativeRep())
		out.facts.attrs = append(out.facts.attrs, fs.attrs...)
		out.facts.calls = append(out.facts.calls, fs.calls...)
		return checked
	}
	out.when = add("when", r.When)
	for _, p := range r.Offer.Params {
		add("offer.params."+p.Name, p.Expr)
	}
	return out
}

func (l *linter) warn(check string, s site, pos Pos, format string, args ...any) {
	f := Finding{Severity: SeverityWarning, Check: check, Pos: pos, RuleID: s.rule, Macro: s.macro, Msg: fmt.Sprintf(format, args...)}
	if s.f != nil {
		f.Snippet = s.f.snippet(pos)
	}
	l.out = append(l.out, f)
}

// constantMacros folds the macros, those that name no other first, and
// keeps the values of those that reduce to a literal, so that rules can be
// folded through them.
func (l *linter) constantMacros() {
	l.consts = map[string]ref.Val{}
	for _, li := range l.rs.lists {
		_, l.consts[li.def.Name] = li.def.celValue()
	}
	ms := slices.Clone(l.rs.macros)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].level < ms[j].level })
	for _, m := range ms {
		if m.checked == nil || m.failed {
			continue
		}
		out := l.foldExpr(m.site(), m.checked)
		if out == nil {
			continue
		}
		if e := out.NativeRep().Expr(); e.Kind() == ast.LiteralKind {
			l.consts[m.def.Name] = e.AsLiteral()
		}
	}
}

// optimize inlines the constants into a checked expression and folds it.
// The folder makes as many passes as the expression is deep: each pass
// folds the calls whose arguments are all literals, and calls it cannot
// evaluate, such as the window functions, stay candidates of every pass.
func (l *linter) optimize(a *cel.Ast) (*cel.Ast, *cel.Issues) {
	depth := 0
	ast.MatchDescendants(ast.NavigateAST(a.NativeRep()), func(e ast.NavigableExpr) bool {
		depth = max(depth, e.Depth())
		return false
	})
	folding, err := cel.NewConstantFoldingOptimizer(cel.MaxConstantFoldIterations(depth + 1))
	if err != nil {
		return nil, nil
	}
	opt, err := cel.NewStaticOptimizer(inliner{l.consts}, folding)
	if err != nil {
		return nil, nil
	}
	return opt.Optimize(l.rs.env, a)
}

// inliner replaces the names of lists and constant macros by their values.
// Giving them to the folder as known values instead would make it try to
// evaluate every variable of the expression on each of its passes.
type inliner struct {
	consts map[string]ref.Val
}

func (in inliner) Optimize(ctx *cel.OptimizerContext, a *ast.AST) *ast.AST {
	var targets []ast.Expr
	scopedVisit(a.Expr(), nil, func(x ast.Expr, bound []string) {
		if x.Kind() != ast.IdentKind || slices.Contains(bound, x.AsIdent()) {
			return
		}
		if _, ok := in.consts[x.AsIdent()]; ok {
			targets = append(targets, x)
		}
	})
	for _, x := range targets {
		v := in.consts[x.AsIdent()]
		lister, ok := v.(traits.Lister)
		if !ok {
			ctx.UpdateExpr(x, ctx.NewLiteral(v))
			continue
		}
		var elems []ast.Expr
		for it := lister.Iterator(); it.HasNext() == types.True; {
			elems = append(elems, ctx.NewLiteral(it.Next()))
		}
		ctx.UpdateExpr(x, ctx.NewList(elems, nil))
	}
	return a
}

// fold folds a rule's condition, warns when it is constant false or a
// part of it always fails, and reports whether it is constant false.
func (l *linter) fold(r *Rule) bool {
	rf := l.rules[r]
	if rf.when == nil {
		return false
	}
	s := site{f: r.file, rule: r.ID, field: "when", e: r.When}
	out := l.foldExpr(s, rf.when)
	if out == nil {
		return false
	}
	e := out.NativeRep().Expr()
	if e.Kind() != ast.LiteralKind || e.AsLiteral() != types.False {
		return false
	}
	l.warn(CheckNeverFires, s, r.When.Pos, "when is always false: the rule can never fire")
	return true
}

// foldExpr folds a checked expression and warns about each call left with
// only literal arguments: the folder could not evaluate it, so it fails
// whenever it is evaluated, such as 100 / 0. It returns the folded
// expression, or nil when it cannot be folded.
func (l *linter) foldExpr(s site, a *cel.Ast) *cel.Ast {
	out, iss := l.optimize(a)
	if iss != nil && iss.Err() != nil || out == nil {
		return nil
	}
	nat := out.NativeRep()
	ast.PostOrderVisit(nat.Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() != ast.CallKind {
			return
		}
		call := x.AsCall()
		if _, ok := windowFuncByName(call.FunctionName()); ok {
			return
		}
		if _, ok := contactFuncByName(call.FunctionName()); ok {
			return
		}
		if call.IsMemberFunction() && call.Target().Kind() != ast.LiteralKind {
			return
		}
		for _, arg := range call.Args() {
			if arg.Kind() != ast.LiteralKind {
				return
			}
		}
		msg := l.evalError(x, nat.SourceInfo())
		if msg == "" {
			return
		}
		pos := s.e.Pos
		if loc := nat.SourceInfo().GetStartLocation(x.ID()); loc.Line() > 0 {
			pos = s.f.exprPos(s.e, loc.Line(), loc.Column())
		}
		l.warn(CheckAlwaysFails, s, pos, "%s", s.at("this part fails whenever it is evaluated: "+msg))
	}))
	return out
}

// evalError evaluates a constant expression and returns its error, or ""
// when it does not fail.
func (l *linter) evalError(x ast.Expr, info *ast.SourceInfo) string {
	src, err := parser.Unparse(x, info)
	if err != nil {
		return ""
	}
	checked, iss := l.rs.env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return ""
	}
	prog, err := l.rs.env.Program(checked)
	if err != nil {
		return ""
	}
	if _, _, err = prog.Eval(cel.NoVars()); err != nil {
		return err.Error()
	}
	return ""
}

// overlaps warns about each pair of enabled live rules that can fire on
// the same event for the same product: their on lists share an event type
// (or one is "*") and neither condition is constant false. The later rule
// carries the warning.
func (l *linter) overlaps(never map[*Rule]bool) {
	byProduct := map[string][]*Rule{}
	var products []string
	for _, r := range l.rs.rules {
		if !r.Enabled || r.Mode != Live || never[r] || r.Offer.Product == "" {
			continue
		}
		if byProduct[r.Offer.Product] == nil {
			products = append(products, r.Offer.Product)
		}
		byProduct[r.Offer.Product] = append(byProduct[r.Offer.Product], r)
	}
	for _, p := range products {
		rs := byProduct[p]
		for j := 1; j < len(rs); j++ {
			for i := 0; i < j; i++ {
				a, b := rs[i], rs[j]
				shared, ok := sharedTypes(a.On, b.On)
				if !ok {
					continue
				}
				f := Finding{
					Severity: SeverityWarning, Check: CheckOverlap, Pos: b.Pos, RuleID: b.ID, Related: a.Pos,
					Msg: fmt.Sprintf("can fire on the same event as rule %q (%s) for product %q (%s); the contact policy's arbitration decides which offer is sent",
						a.ID, a.Pos, p, shared),
				}
				l.out = append(l.out, f)
			}
		}
	}
}

// sharedTypes describes the event types on which both on lists trigger.
func sharedTypes(a, b []string) (string, bool) {
	aAll, bAll := slices.Contains(a, "*"), slices.Contains(b, "*")
	switch {
	case aAll && bAll:
		return "both on every event type", true
	case aAll:
		return "on " + strings.Join(b, ", "), true
	case bAll:
		return "on " + strings.Join(a, ", "), true
	}
	var both []string
	for _, t := range a {
		if slices.Contains(b, t) {
			both = append(both, t)
		}
	}
	return "on " + strings.Join(both, ", "), len(both) > 0
}

// attrs checks event attribute reads and aggregated attributes against the
// catalogue, where it describes the attributes of the event types.
func (l *linter) attrs() {
	cat := l.rs.opts.Catalogue
	if cat == nil {
		return
	}
	// The event types each macro can be evaluated on: those of the rules
	// that use it.
	macroTypes := map[string][]string{}
	for _, r := range l.rs.rules {
		for _, n := range r.Uses {
			if l.rs.defs[n] {
				macroTypes[n] = append(macroTypes[n], r.On...)
			}
		}
	}
	check := func(on []string, fs facts) {
		attrs, described := cat.attrsOf(on)
		if described {
			seen := map[string]bool{} // one warning per attribute and expression
			for _, u := range fs.attrs {
				key := u.site.field + "\x00" + u.name
				if _, ok := attrs[u.name]; !ok && !seen[key] {
					seen[key] = true
					l.warn(CheckUnknownAttr, u.site, u.pos, "%s", u.site.at(fmt.Sprintf("attribute %q is not in the event catalogue for %s%s",
						u.name, strings.Join(slices.Compact(slices.Sorted(slices.Values(on))), ", "), suggest(u.name, sortedKeys(attrs)))))
				}
			}
		}
		for _, c := range fs.calls {
			if c.agg.Attr == "" {
				continue
			}
			attrs, described := cat.attrsOf([]string{c.agg.Type})
			if !described {
				continue
			}
			t, ok := attrs[c.agg.Attr]
			switch {
			case !ok:
				l.warn(CheckUnknownAttr, c.site, c.pos, "%s", c.site.at(fmt.Sprintf("%s(): attribute %q is not in the event catalogue for %s%s",
					c.fn, c.agg.Attr, c.agg.Type, suggest(c.agg.Attr, sortedKeys(attrs)))))
			case t != AttrNumber && t != AttrAny && c.agg.Kind != Distinct:
				always := "NaN"
				if c.agg.Kind == Sum {
					always = "0.0"
				}
				l.warn(CheckNonNumeric, c.site, c.pos, "%s", c.site.at(fmt.Sprintf("%s(): attribute %q of %s is a %s in the event catalogue, and %s() takes only numbers: it is always %s",
					c.fn, c.agg.Attr, c.agg.Type, t, c.fn, always)))
			}
		}
	}
	for _, r := range l.rs.rules {
		check(r.On, l.rules[r].facts)
	}
	for _, m := range l.rs.macros {
		if on := macroTypes[m.def.Name]; len(on) > 0 {
			check(on, m.facts)
		} else if m.checked != nil {
			check(nil, facts{calls: m.facts.calls}) // its window calls name their own types
		}
	}
}

// attrsOf returns the attributes that events of any of the types may
// carry, and whether the catalogue describes them all: false when a type
// is not in it or its attributes are not described.
func (c *Catalogue) attrsOf(on []string) (map[string]AttrType, bool) {
	if len(on) == 0 {
		return nil, false
	}
	out := map[string]AttrType{}
	add := func(t string) bool {
		spec := c.Events[t]
		if spec == nil || spec.Attrs == nil {
			return false
		}
		for k, v := range spec.Attrs {
			if prev, ok := out[k]; ok && prev != v {
				v = AttrAny // the types disagree: either may come
			}
			out[k] = v
		}
		return true
	}
	for _, t := range on {
		if t == "*" {
			for _, t := range c.Types() {
				if !add(t) {
					return nil, false
				}
			}
			continue
		}
		if !add(t) {
			return nil, false
		}
	}
	return out, true
}

func suggest(s string, candidates []string) string {
	if c := closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// shadowOffers warns about offers() calls naming a shadow rule: its offers
// are never sent, so they never count.
func (l *linter) shadowOffers() {
	check := func(calls []callUse) {
		for _, c := range calls {
			if r := l.byID[c.rule]; c.fn == "offers" && r != nil && r.Mode == Shadow {
				l.warn(CheckShadowOffers, c.site, c.pos, "%s", c.site.at(fmt.Sprintf("offers(): rule %q is in shadow mode: its offers are never sent, so this counts 0", c.rule)))
			}
		}
	}
	for _, r := range l.rs.rules {
		check(l.rules[r].facts.calls)
	}
	for _, m := range l.rs.macros {
		check(m.facts.calls)
	}
}

// unused warns about lists and macros that no rule uses, directly or
// through a macro.
func (l *linter) unused() {
	used := map[string]bool{}
	for _, r := range l.rs.rules {
		for _, n := range r.Uses {
			used[n] = true
		}
	}
	for _, li := range l.rs.lists {
		if !used[li.def.Name] {
			l.out = append(l.out, Finding{Severity: SeverityWarning, Check: CheckUnused, Pos: li.def.Pos, List: li.def.Name, Msg: "no rule uses it"})
		}
	}
	for _, m := range l.rs.macros {
		if !used[m.def.Name] {
			l.out = append(l.out, Finding{Severity: SeverityWarning, Check: CheckUnused, Pos: m.def.Pos, Macro: m.def.Name, Msg: "no rule uses it"})
		}
	}
}

func sortFindings(fs []Finding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i].Pos, fs[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return fs[i].Severity < fs[j].Severity
	})
}

// FormatFindings writes findings as kairos rules check prints them, one
// after the other, then a count: "2 error(s)", "1 warning(s)" or
// "2 error(s), 1 warning(s)". It writes nothing when there are none.
func FormatFindings(w io.Writer, fs []Finding) {
	var nerr, nwarn int
	for _, f := range fs {
		fmt.Fprintln(w, f.String())
		if f.Severity == SeverityError {
			nerr++
		} else {
			nwarn++
		}
	}
	switch {
	case nerr > 0 && nwarn > 0:
		fmt.Fprintf(w, "%d error(s), %d warning(s)\n", nerr, nwarn)
	case nerr > 0:
		fmt.Fprintf(w, "%d error(s)\n", nerr)
	case nwarn > 0:
		fmt.Fprintf(w, "%d warning(s)\n", nwarn)
	}
}

// FormatSummary writes the one-line summary of a rule set that kairos
// rules check prints when it passes.
func FormatSummary(w io.Writer, rs *RuleSet) {
	enabled, shadow := 0, 0
	for _, r := range rs.rules {
		if r.Enabled {
			enabled++
			if r.Mode == Shadow {
				shadow++
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "ok: %d rules (%d enabled", len(rs.rules), enabled)
	if shadow > 0 {
		fmt.Fprintf(&b, ", %d in shadow mode", shadow)
	}
	b.WriteString(")")
	if n := len(rs.lists); n > 0 {
		fmt.Fprintf(&b, ", %d list%s", n, plural(n))
	}
	if n := len(rs.macros); n > 0 {
		fmt.Fprintf(&b, ", %d macro%s", n, plural(n))
	}
	fmt.Fprintf(&b, ", %d window aggregates, event types: %v", len(rs.aggs), rs.Types())
	fmt.Fprintln(w, b.String())
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// FormatTable writes a table of the rules of a set, in file order: id,
// kind, mode (or disabled), event types, estimated cost and the number of
// window aggregates each reads, then the cost limit.
func FormatTable(w io.Writer, rs *RuleSet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tKIND\tMODE\tON\tCOST\tAGGREGATES")
	for _, r := range rs.rules {
		mode := r.Mode.String()
		if !r.Enabled {
			mode = "disabled"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", r.ID, r.Kind, mode, strings.Join(r.On, ","), r.Cost, r.numAggs)
	}
	tw.Flush()
	fmt.Fprintf(w, "cost: estimated worst case of the condition, params and macros used; each expression may cost at most %d\n", rs.opts.CostLimit)
}

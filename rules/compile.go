package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"
)

// Defaults of Options.
const (
	DefaultHorizon   = 90 * 24 * time.Hour
	DefaultCostLimit = 1_000_000
)

// Options bound what a rule set may ask for.
type Options struct {
	// Horizon is the longest window a rule may use (default 90d).
	Horizon time.Duration
	// CostLimit is the most a rule's condition or parameter may cost, in CEL
	// cost units, as estimated at load and, for rules that iterate, tracked
	// at evaluation (default 1,000,000).
	CostLimit uint64
	// Catalogue, when set, lists the event types rules may name in on and
	// in window functions; naming another is an error (ErrCatalogue). With
	// attributes described, Lint also warns about attributes no event type
	// of a rule carries.
	Catalogue *Catalogue
}

func (o *Options) defaults() {
	if o.Horizon <= 0 {
		o.Horizon = DefaultHorizon
	}
	if o.CostLimit == 0 {
		o.CostLimit = DefaultCostLimit
	}
}

// Aggregate is one window aggregate a rule set needs per customer. Type is
// an event type or "*"; Attr is empty for count and since; Window is zero
// for since (it looks back as far as the horizon).
type Aggregate struct {
	Kind   AggKind
	Type   string
	Attr   string
	Window time.Duration
}

func (a Aggregate) String() string {
	switch a.Kind {
	case Count:
		return fmt.Sprintf("count(%q, %q)", a.Type, FormatDuration(a.Window))
	case Since:
		return fmt.Sprintf("since(%q)", a.Type)
	}
	return fmt.Sprintf("%s(%q, %q, %q)", a.Kind, a.Type, a.Attr, FormatDuration(a.Window))
}

// Rule is a compiled rule.
type Rule struct {
	RuleDef
	// Version identifies the rule's definition: a hash of everything that
	// decides what it does, the lists and macros it uses included. It
	// changes when the rule, or a list or macro it uses, is edited.
	Version string
	// Cost is the estimated worst-case cost of the condition and parameters.
	Cost uint64
	// Aggregates are the indexes (in RuleSet.Aggregates) the rule reads.
	Aggregates []int
	// Index is the rule's position in RuleSet.Rules, for callers that keep
	// per-rule data in a slice. Contacts.Offers names rules by it.
	Index int
	// Uses are the names of the lists and macros the rule reads, directly
	// or through macros, sorted.
	Uses []string

	when    cel.Program
	tracked bool    // evaluated with cost tracking and cancellation
	guards  []guard // of when: if one is definitely false, so is when (guard.go)
	params  []compiledParam

	convWhere   cel.Program // nil: every conversion event counts
	convTracked bool

	// What Lint and the check summary need.
	file    *File
	numAggs int // distinct aggregates read, whether enabled or not
}

type compiledParam struct {
	name    string
	prog    cel.Program
	tracked bool
}

// RuleSet is an immutable set of compiled rules, indexed by event type. It
// is safe for concurrent use; evaluate through an Evaluator per goroutine.
type RuleSet struct {
	rules   []*Rule // every rule, in file order
	byType  map[string][]*Rule
	anyType []*Rule
	// index holds the indexes of byType's long lists (index.go), anyIndex
	// that of anyType; indexWords is the longest bitmap among them.
	index      map[string]*ruleIndex
	anyIndex   *ruleIndex
	indexWords int
	aggs       []Aggregate
	aggIndex   map[Aggregate]int
	opts       Options
	// contactHorizon is the longest contact-history span the enabled rules need.
	contactHorizon time.Duration
	// env is the set's CEL environment: the base one with the set's lists
	// declared as constants and its macros as variables.
	env        *cel.Env
	lists      []*list         // in file order
	macros     []*macro        // in file order; a macro's index is its evaluation slot
	macroIndex map[string]int  // macro name to index in macros
	defs       map[string]bool // names of every list and macro
	// conversions are the enabled rules by their conversion event type.
	conversions       map[string][]*Rule
	conversionHorizon time.Duration
}

// Rules returns every rule of the set (enabled or not) in file order.
func (rs *RuleSet) Rules() []*Rule { return rs.rules }

// Aggregates returns the window aggregates the enabled rules read; the
// Windows given to an evaluation must serve exactly these, by index.
func (rs *RuleSet) Aggregates() []Aggregate { return rs.aggs }

// Horizon returns the longest window the set may use.
func (rs *RuleSet) Horizon() time.Duration { return rs.opts.Horizon }

// ContactHorizon returns the longest span of contact history the enabled
// rules need: the longest of their contacts() and offers() windows,
// cooldowns and max_per_customer periods; 0 when they need none. A
// max_per_customer without a period (ever) does not count: it needs a
// lifetime count, not a span of history.
func (rs *RuleSet) ContactHorizon() time.Duration { return rs.contactHorizon }

// For returns the enabled rules an event type triggers, highest priority
// first, ties by rule id. Shadow rules are included like live ones: the
// caller decides what to do with their matches by Rule.Mode.
func (rs *RuleSet) For(eventType string) []*Rule {
	if r, ok := rs.byType[eventType]; ok {
		return r
	}
	return rs.anyType
}

// Types returns the event types named in the enabled rules' on lists.
func (rs *RuleSet) Types() []string { return sortedKeys(rs.byType) }

// Lists returns the set's list definitions, in file order.
func (rs *RuleSet) Lists() []*ListDef {
	out := make([]*ListDef, len(rs.lists))
	for i, l := range rs.lists {
		out[i] = l.def
	}
	return out
}

// Macros returns the set's macro definitions, in file order.
func (rs *RuleSet) Macros() []*MacroDef {
	out := make([]*MacroDef, len(rs.macros))
	for i, m := range rs.macros {
		out[i] = m.def
	}
	return out
}

// Load reads, parses and compiles rule files and directories. On any error
// it returns every problem found, as Errors, and no rule set.
func Load(opts Options, paths ...string) (*RuleSet, error) {
	files, err := LoadFiles(paths...)
	rs, cerr := Compile(files, opts)
	if err != nil {
		errs := err.(Errors)
		if cerr != nil {
			errs = append(errs, cerr.(Errors)...)
		}
		sortErrors(errs)
		return nil, errs
	}
	return rs, cerr
}

// Compile compiles parsed rule files into a rule set. It reports every
// problem, as Errors.
func Compile(files []*File, opts Options) (*RuleSet, error) {
	rs, errs, err := compile(files, opts)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rs, nil
}

// compile compiles what it can: the set it returns holds the rules that
// compiled, and errs every problem, sorted. Such a partial set is only
// linted, never evaluated. err is a failure of the environment.
func compile(files []*File, opts Options) (*RuleSet, Errors, error) {
	opts.defaults()
	e, err := env()
	if err != nil {
		return nil, nil, fmt.Errorf("rules: CEL environment: %w", err)
	}
	c := &compiler{
		env:       e,
		opts:      opts,
		rs:        &RuleSet{byType: map[string][]*Rule{}, aggIndex: map[Aggregate]int{}, opts: opts, macroIndex: map[string]int{}, defs: map[string]bool{}},
		ruleIndex: map[string]int{},
		lists:     map[string]*list{},
		macros:    map[string]*macro{},
		usedBy:    map[string][]string{},
		guards:    guardFinder{strLists: map[string][]string{}, macroGuards: map[string][]guard{}},
	}
	c.guards.aggIndex = c.rs.aggIndex
	// Number the rules before compiling any expression, so that offers()
	// can name a rule defined later. Any rule that fails to compile fails
	// the whole set, so these are the indexes in RuleSet.Rules.
	type fileDef struct {
		f   *File
		def *RuleDef
	}
	var defs []fileDef
	seen := map[string]Pos{}
	for _, f := range files {
		for _, def := range f.Rules {
			if prev, dup := seen[def.ID]; dup {
				c.errs = append(c.errs, &Error{Pos: def.Pos, RuleID: def.ID, Msg: "duplicate rule id, first defined at " + prev.String(), Kind: ErrInvalid})
				continue
			}
			seen[def.ID] = def.Pos
			c.ruleIndex[def.ID] = len(defs)
			defs = append(defs, fileDef{f, def})
		}
	}
	// Lists and macros next: they extend the environment rules compile in.
	c.definitions(files)
	for i, d := range defs {
		if r := c.rule(d.f, d.def); r != nil {
			r.Index = i
			c.rs.rules = append(c.rs.rules, r)
		}
	}
	c.planMacros()
	c.nameMacroUsers()
	c.rs.env = c.env
	sortErrors(c.errs)
	c.index()
	c.indexConversions()
	return c.rs, c.errs, nil
}

type compiler struct {
	env       *cel.Env // the base environment, extended with the lists and macros
	opts      Options
	rs        *RuleSet
	ruleIndex map[string]int // rule id to Rule.Index
	errs      Errors
	lists     map[string]*list
	macros    map[string]*macro
	usedBy    map[string][]string // list or macro name to the ids of the rules that use it
	sizes     map[string]uint64   // list name to its length, for cost estimation
	guards    guardFinder
}

// site is where an expression is written: a field of a rule, or a macro.
type site struct {
	f     *File
	rule  string // rule id, or empty in a macro
	macro string
	field string // "when", "offer.params.x"; empty for a macro
	e     Expr
}

// at prefixes a message with the field, when there is one.
func (s site) at(msg string) string {
	if s.field == "" {
		return msg
	}
	return s.field + ": " + msg
}

func (c *compiler) fail(s site, pos Pos, format string, args ...any) *Error {
	e := &Error{Pos: pos, RuleID: s.rule, Macro: s.macro, Msg: fmt.Sprintf(format, args...), Snippet: s.f.snippet(pos), Kind: ErrCompile}
	c.errs = append(c.errs, e)
	if m := c.macros[s.macro]; m != nil {
		m.errs = append(m.errs, e)
		m.failed = true
	}
	return e
}

func (c *compiler) rule(f *File, def *RuleDef) *Rule {
	r := &Rule{RuleDef: *def, file: f}
	nerr := len(c.errs)
	if cat := c.opts.Catalogue; cat != nil {
		for i, t := range def.On {
			if !cat.knows(t) {
				pos := def.Pos
				if i < len(def.onPos) {
					pos = def.onPos[i]
				}
				c.errs = append(c.errs, &Error{Pos: pos, RuleID: def.ID, Msg: "on: " + cat.unknownType(t), Kind: ErrCatalogue})
			}
		}
	}
	var used []Aggregate
	uses := map[string]bool{}
	span := def.Cooldown
	if def.MaxPerCustomer != nil {
		span = max(span, def.MaxPerCustomer.Per)
	}
	add := func(x compiledExpr) {
		used = append(used, x.aggs...)
		span = max(span, x.contactSpan)
		r.Cost += x.cost
	}
	s := site{f: f, rule: def.ID, field: "when", e: def.When}
	x, ok := c.expr(s, true, def.Enabled)
	if ok {
		r.when, r.tracked = x.prog, x.tracked
		r.guards = c.guards.find(x.checked.Expr(), x.tracked)
		add(x)
	}
	for _, n := range x.uses {
		uses[n] = true
	}
	for _, p := range def.Offer.Params {
		s := site{f: f, rule: def.ID, field: "offer.params." + p.Name, e: p.Expr}
		x, ok := c.expr(s, false, def.Enabled)
		if ok {
			r.params = append(r.params, compiledParam{name: p.Name, prog: x.prog, tracked: x.tracked})
			add(x)
		}
		for _, n := range x.uses {
			uses[n] = true
		}
	}
	// What the macros read counts once for the rule, however often it
	// names them: a macro is evaluated at most once per event.
	r.Uses = sortedKeys(uses)
	for _, n := range r.Uses {
		c.usedBy[n] = append(c.usedBy[n], def.ID)
		if m := c.macros[n]; m != nil {
			r.Cost += m.cost
			used = append(used, m.aggs...)
			span = max(span, m.contactSpan)
		}
	}
	if len(c.errs) > nerr {
		return nil
	}
	if def.Enabled {
		for _, a := range used {
			r.Aggregates = append(r.Aggregates, c.aggregate(a))
		}
		slices.Sort(r.Aggregates)
		r.Aggregates = slices.Compact(r.Aggregates)
		c.rs.contactHorizon = max(c.rs.contactHorizon, span)
	}
	distinct := map[Aggregate]bool{}
	for _, a := range used {
		distinct[a] = true
	}
	r.numAggs = len(distinct)
	if !c.compileConversion(f, r) {
		return nil
	}
	r.Version = c.version(def, r.Uses)
	return r
}

func (c *compiler) aggregate(a Aggregate) int {
	if i, ok := c.rs.aggIndex[a]; ok {
		return i
	}
	i := len(c.rs.aggs)
	c.rs.aggs = append(c.rs.aggs, a)
	c.rs.aggIndex[a] = i
	return i
}

// compiledExpr is one compiled expression and what it reads.
type compiledExpr struct {
	prog    cel.Program
	checked *ast.AST
	tracked bool     // evaluated with cost tracking and cancellation
	cost    uint64   // of the expression itself, without the macros it uses
	uses    []string // the lists and macros it reads, directly or not
	reads
}

// reads is what an expression reads besides its variables.
type reads struct {
	aggs        []Aggregate   // window aggregates, one per call
	contactSpan time.Duration // longest window of its contacts() and offers() calls
}

// expr compiles one expression of a rule: parse, type-check, check the
// window and contact calls, estimate the cost and plan the program.
// register says whether to register its aggregates (the rule is enabled).
func (c *compiler) expr(s site, wantBool, register bool) (compiledExpr, bool) {
	field := s.field
	if strings.TrimSpace(s.e.Src) == "" {
		c.fail(s, s.e.Pos, "%s is empty", field)
		return compiledExpr{}, false
	}
	parsed, iss := c.env.Parse(s.e.Src)
	if iss != nil && iss.Err() != nil {
		c.celErrors(s, iss)
		return compiledExpr{}, false
	}
	uses, viaFailed, macroCost := c.closure(directUses(parsed.NativeRep().Expr(), c.rs.defs))
	checked, iss := c.env.Check(parsed)
	if iss != nil && iss.Err() != nil {
		c.celErrors(s, iss)
		return compiledExpr{uses: uses}, false
	}
	// A macro with errors has type dyn here: its own errors are reported,
	// and checks of the type or cost of what uses it would only echo them.
	if wantBool && !viaFailed && checked.OutputType() != cel.BoolType {
		c.fail(s, s.e.Pos, "%s must evaluate to bool, but its type is %s (compare the value, e.g. `event.attrs.flag == true`)", field, checked.OutputType())
		return compiledExpr{uses: uses}, false
	}
	nat := checked.NativeRep()
	rd, ok := c.plannedCalls(s, nat)
	if !ok {
		return compiledExpr{uses: uses}, false
	}
	est, err := c.env.EstimateCost(checked, estimator{sizes: c.sizes})
	if err != nil {
		c.fail(s, s.e.Pos, "%s: estimating its cost: %v", field, err)
		return compiledExpr{uses: uses}, false
	}
	total := est.Max + macroCost
	if !viaFailed && total > c.opts.CostLimit {
		if macroCost > 0 {
			c.fail(s, s.e.Pos, "%s: estimated cost %d (%d of it in macros) exceeds the limit %d (inputs assumed up to %d elements)", field, total, macroCost, c.opts.CostLimit, inputSizeBound)
		} else {
			c.fail(s, s.e.Pos, "%s: estimated cost %d exceeds the limit %d (inputs assumed up to %d elements)", field, est.Max, c.opts.CostLimit, inputSizeBound)
		}
		return compiledExpr{uses: uses}, false
	}
	if register {
		for _, a := range rd.aggs {
			c.aggregate(a)
		}
	}
	prog, tracked, err := c.plan(checked)
	if err != nil {
		c.fail(s, s.e.Pos, "%s: %v", field, err)
		return compiledExpr{uses: uses}, false
	}
	return compiledExpr{prog: prog, checked: nat, tracked: tracked, cost: est.Max, uses: uses, reads: rd}, true
}

// plan plans a checked expression with the decorator, and with cost
// tracking when it iterates.
func (c *compiler) plan(checked *cel.Ast) (cel.Program, bool, error) {
	tracked := hasComprehension(checked.NativeRep().Expr())
	popts := []cel.ProgramOption{cel.CustomDecorator(c.decorator())}
	if tracked {
		popts = append(popts, cel.CostLimit(c.opts.CostLimit), cel.InterruptCheckFrequency(100))
	}
	prog, err := c.env.Program(checked, popts...)
	return prog, tracked, err
}

func (c *compiler) celErrors(s site, iss *cel.Issues) {
	for _, ce := range iss.Errors() {
		c.celError(s, ce)
	}
}

func (c *compiler) celError(s site, ce *common.Error) {
	loc := ce.Location
	pos := s.e.Pos
	if loc != nil && loc.Line() > 0 {
		pos = s.f.exprPos(s.e, loc.Line(), loc.Column())
	}
	msg := strings.TrimPrefix(ce.Message, "ERROR: ")
	c.fail(s, pos, "%s", s.at(msg))
}

// exprPos returns the position in the file of a node of an expression.
func (s site) exprPos(a *ast.AST, x ast.Expr) Pos {
	loc := a.SourceInfo().GetStartLocation(x.ID())
	if loc.Line() <= 0 {
		return s.e.Pos
	}
	return s.f.exprPos(s.e, loc.Line(), loc.Column())
}

// plannedCalls finds the window and contact function calls in a checked
// expression and checks that their arguments are constants within the
// limits. It reports the first problem of each call.
func (c *compiler) plannedCalls(s site, a *ast.AST) (reads, bool) {
	var out reads
	ok := true
	fail := func(x ast.Expr, format string, args ...any) {
		c.fail(s, s.exprPos(a, x), "%s", s.at(fmt.Sprintf(format, args...)))
		ok = false
	}
	// constArgs returns the call's arguments, which must be string literals.
	constArgs := func(name string, params []string, args []ast.Expr) ([]string, bool) {
		vals := make([]string, len(args))
		for i, arg := range args {
			var str types.String
			isStr := false
			if arg.Kind() == ast.LiteralKind {
				str, isStr = arg.AsLiteral().(types.String)
			}
			if !isStr {
				fail(arg, "%s(): argument %d (%s) must be a constant string", name, i+1, params[i])
				return nil, false
			}
			vals[i] = string(str)
		}
		return vals, true
	}
	// window checks a window argument: a positive duration within the horizon.
	window := func(name string, arg ast.Expr, str string) (time.Duration, bool) {
		d, err := ParseDuration(str)
		switch {
		case err != nil:
			fail(arg, "%s(): window: %v", name, err)
		case d <= 0:
			fail(arg, "%s(): window must be positive", name)
		case d > c.opts.Horizon:
			fail(arg, "%s(): window %s is longer than the horizon %s", name, str, FormatDuration(c.opts.Horizon))
		default:
			return d, true
		}
		return 0, false
	}
	ast.PostOrderVisit(a.Expr(), ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() != ast.CallKind {
			return
		}
		call := x.AsCall()
		if call.IsMemberFunction() {
			return
		}
		args := call.Args()
		if cf, isContact := contactFuncByName(call.FunctionName()); isContact {
			vals, good := constArgs(cf.name, cf.params, args)
			if !good {
				return
			}
			if len(vals) == 2 {
				if _, known := c.ruleIndex[vals[0]]; !known {
					fail(args[0], "%s(): unknown rule %q", cf.name, vals[0])
					return
				}
			}
			if d, good := window(cf.name, args[len(args)-1], vals[len(vals)-1]); good {
				out.contactSpan = max(out.contactSpan, d)
			}
			return
		}
		wf, isWindow := windowFuncByName(call.FunctionName())
		if !isWindow {
			return
		}
		vals, good := constArgs(wf.name, wf.params, args)
		if !good {
			return
		}
		agg := Aggregate{Kind: wf.kind, Type: vals[0]}
		if agg.Type != "*" && !eventTypeRe.MatchString(agg.Type) {
			fail(args[0], "%s(): event type %q must match [a-z0-9_]+ or be \"*\"", wf.name, agg.Type)
			return
		}
		if cat := c.opts.Catalogue; !cat.knows(agg.Type) {
			c.fail(s, s.exprPos(a, args[0]), "%s", s.at(fmt.Sprintf("%s(): %s", wf.name, cat.unknownType(agg.Type)))).Kind = ErrCatalogue
			ok = false
			return
		}
		if len(vals) == 3 {
			agg.Attr = vals[1]
			if agg.Attr == "" {
				fail(args[1], "%s(): attr must not be empty", wf.name)
				return
			}
		}
		if len(vals) >= 2 {
			d, good := window(wf.name, args[len(args)-1], vals[len(vals)-1])
			if !good {
				return
			}
			agg.Window = d
		}
		out.aggs = append(out.aggs, agg)
	}))
	return out, ok
}

func hasComprehension(e ast.Expr) bool {
	found := false
	ast.PostOrderVisit(e, ast.NewExprVisitor(func(x ast.Expr) {
		if x.Kind() == ast.ComprehensionKind {
			found = true
		}
	}))
	return found
}

// decorator replaces each window function call with an instruction that
// reads the aggregate's value by its index, and each contact function call
// with one that reads the contact history with its window and rule index,
// so evaluation does no lookup by name. The aggregates of the expression
// are registered, and its calls checked, before it is planned.
func (c *compiler) decorator() interpreter.InterpretableDecorator {
	constArgs := func(name string, args []interpreter.InterpretableV2) ([]string, error) {
		vals := make([]string, len(args))
		for k, a := range args {
			cst, ok := a.(interpreter.InterpretableConst)
			if !ok {
				return nil, fmt.Errorf("%s(): argument %d is not a constant", name, k+1)
			}
			s, ok := cst.Value().(types.String)
			if !ok {
				return nil, fmt.Errorf("%s(): argument %d is not a string", name, k+1)
			}
			vals[k] = string(s)
		}
		return vals, nil
	}
	return func(i interpreter.Interpretable) (interpreter.Interpretable, error) {
		call, ok := i.(interpreter.InterpretableCall)
		if !ok {
			return i, nil
		}
		if cf, ok := contactFuncByName(call.Function()); ok {
			vals, err := constArgs(cf.name, call.Args())
			if err != nil {
				return nil, err
			}
			cc := &contactCall{id: call.ID(), rule: -1}
			if len(vals) == 2 {
				if cc.rule, ok = c.ruleIndex[vals[0]]; !ok {
					return nil, fmt.Errorf("%s(): unknown rule %q", cf.name, vals[0])
				}
			}
			if cc.window, err = ParseDuration(vals[len(vals)-1]); err != nil {
				return nil, err
			}
			return cc, nil
		}
		wf, ok := windowFuncByName(call.Function())
		if !ok {
			return i, nil
		}
		vals, err := constArgs(wf.name, call.Args())
		if err != nil {
			return nil, err
		}
		agg, err := aggregateOf(wf, vals)
		if err != nil {
			return nil, err
		}
		idx, ok := c.rs.aggIndex[agg]
		if !ok {
			idx = -1 // a disabled rule: compiled and checked, never evaluated
		}
		return &windowCall{id: call.ID(), kind: wf.kind, idx: idx}, nil
	}
}

// aggregateOf is the aggregate a window function call with these constant
// arguments reads (type, then attr, then window, as wf.params has them).
func aggregateOf(wf windowFunc, vals []string) (Aggregate, error) {
	agg := Aggregate{Kind: wf.kind, Type: vals[0]}
	if len(vals) == 3 {
		agg.Attr = vals[1]
	}
	if len(vals) >= 2 {
		d, err := ParseDuration(vals[len(vals)-1])
		if err != nil {
			return Aggregate{}, err
		}
		agg.Window = d
	}
	return agg, nil
}

// index builds the per-type lists of enabled rules, highest priority first.
func (c *compiler) index() {
	rs := c.rs
	var types []string
	seenType := map[string]bool{}
	for _, r := range rs.rules {
		if !r.Enabled {
			continue
		}
		for _, t := range r.On {
			if t == "*" {
				rs.anyType = append(rs.anyType, r)
			} else if !seenType[t] {
				seenType[t] = true
				types = append(types, t)
			}
		}
	}
	for _, t := range types {
		var list []*Rule
		for _, r := range rs.rules {
			if r.Enabled && (slices.Contains(r.On, t) || slices.Contains(r.On, "*")) {
				list = append(list, r)
			}
		}
		sortRules(list)
		rs.byType[t] = list
		if ix := newRuleIndex(list); ix != nil {
			if rs.index == nil {
				rs.index = map[string]*ruleIndex{}
			}
			rs.index[t] = ix
			rs.indexWords = max(rs.indexWords, ix.words)
		}
	}
	sortRules(rs.anyType)
	if rs.anyIndex = newRuleIndex(rs.anyType); rs.anyIndex != nil {
		rs.indexWords = max(rs.indexWords, rs.anyIndex.words)
	}
}

// indexFor returns the index of For(eventType), or nil.
func (rs *RuleSet) indexFor(eventType string) *ruleIndex {
	if _, ok := rs.byType[eventType]; ok {
		return rs.index[eventType]
	}
	return rs.anyIndex
}

func sortRules(list []*Rule) {
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].Offer.Priority != list[j].Offer.Priority {
			return list[i].Offer.Priority > list[j].Offer.Priority
		}
		return list[i].ID < list[j].ID
	})
}

func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i].Pos, es[j].Pos
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// version hashes the parts of a rule definition that decide what it does,
// with the definitions of the lists and macros it uses.
func (c *compiler) version(d *RuleDef, uses []string) string {
	h := sha256.New()
	w := func(parts ...string) {
		for _, p := range parts {
			h.Write([]byte(strconv.Itoa(len(p))))
			h.Write([]byte{':'})
			h.Write([]byte(p))
		}
	}
	w(d.ID, strings.Join(d.On, ","), d.When.Src)
	o := d.Offer
	w(strings.Join(o.Channels, ","), o.Product, o.Template, strconv.Itoa(o.Priority), o.TTL.String())
	for _, p := range o.Params {
		w(p.Name, p.Expr.Src)
	}
	writePolicy(d, w)
	if cv := d.Conversion; cv != nil {
		// "#conversion" cannot be a param name either.
		w("#conversion", cv.Event, cv.Where.Src, cv.Within.String())
	}
	// Names starting with # cannot be param names, so none of these can be
	// mistaken for a param; nothing is written for a rule without them, so
	// that it keeps the version it had before they existed.
	for _, n := range uses {
		if l := c.lists[n]; l != nil {
			w(append([]string{"#list", n}, l.def.canonical()...)...)
		} else if m := c.macros[n]; m != nil {
			w("#macro", n, m.def.Expr.Src)
		}
	}
	if d.Mode != Live {
		w("#mode", d.Mode.String())
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Package rules reads, checks, compiles and evaluates Kairos trigger rules.
//
// It is the rule format apart from the runtime: it never touches NATS,
// Badger or a connector, so kairos rules check runs without starting
// anything. The caller supplies a customer's history through the Windows
// interface and the offers already sent to the customer through Contacts,
// and receives Matches; the engine translates between these and its state
// and offers. docs/rules.md is the reference for rule authors.
//
// # Rule files
//
// A rule file is YAML with up to three keys. rules is a list of rules, each
// with id, description, on (event types, or "*" for all), when (a CEL
// condition), offer (channels, product, template, priority, params as CEL
// expressions, ttl), enabled and mode (live or shadow), plus the
// contact-policy fields kind, cooldown, max_per_customer, budget and
// holdout (policy.go), which this package checks and the engine's contact
// policy applies. lists names constant lists of scalars and macros names CEL
// sub-expressions (defs.go); every rule of the set may use those of any of
// its files. ParseFile walks yaml.Node trees so that every value keeps its
// position; unknown and repeated fields and values of the wrong YAML type
// are errors. LoadFiles expands directories to their *.yaml and *.yml
// files; Load parses and compiles. Every problem is returned at once, as
// Errors, each written file:line:col: rule "id": message (or macro "name":,
// list "name":); a CEL error is mapped from its place in the expression back
// to the file and carries the source line with a caret. Decide with
// errors.Is against ErrInvalid, ErrCompile, ErrCatalogue and ErrDuration.
//
// # Lists and macros
//
// A list becomes a constant of the set's CEL environment (cel.Constant),
// typed list(string), list(int), list(double), list(bool) or, when empty,
// list(dyn). The checker then knows its element type ("a" in ints is a
// compile error at the rule), the planner inlines its value, the cost
// estimator knows its length, and the constant folder of Lint can see
// through it.
//
// A macro becomes a variable of the set's environment, declared with the
// type it has when checked on its own, and is evaluated lazily: the first
// read of a macro while an event is evaluated runs the macro's program, with
// the same activation, and keeps the value (an error included) in the
// Evaluator until the event is done. We chose this over substituting the
// macro's text or AST into each rule because:
//
//   - errors stay where they are written: each macro is parsed, checked, its
//     window and contact calls checked and its cost estimated once, at its
//     own YAML position, and the message names the rules that use it
//     ("(used by rules "a", "b")"); a substituted AST would carry offsets
//     into another source, and every rule would repeat the macro's errors;
//   - a macro shared by many rules runs once per event, not once per rule,
//     and evaluation stays allocation-free beyond the macro's own program:
//     its value is a slot of a slice reset by a list of touched indexes;
//   - it is hygienic: a comprehension variable of a rule named like a
//     variable the macro reads (profile), or like the macro, does not change
//     what the macro sees, as it would after textual substitution.
//
// The cost of a rule's expression is its own estimate plus that of each
// macro it reads, directly or through other macros, counted once; a macro's
// window and contact calls count as the using rule's aggregates and contact
// history. Macros may use lists and other macros; they are checked in
// levels (those naming no other macro first) and cycles are errors. An
// evaluation error inside a macro names it and its position
// ("macro payroll (rules/defs.yaml:6:3): no such key: tags"). A macro with
// errors is declared as dyn so that the rules using it report only their
// own errors. Rule.Uses lists the lists and macros a rule reads, and
// Rule.Version hashes their definitions too, so that editing a list or
// macro changes the version of exactly the rules that use it.
//
// # Modes
//
// Mode is Live (the default) or Shadow. This package treats both alike:
// shadow rules are compiled, indexed by For and evaluated like live ones,
// and a Match carries the Rule, whose Mode the engine reads to record the
// offer as a shadow decision instead of sending it. A shadow mode is part
// of the version; live mode is not, so existing rules keep their versions.
//
// # Checking and lint
//
// Check loads files as Load does and adds the warnings of RuleSet.Lint on
// the rules that compiled, as Findings with a Severity, a position and, for
// warnings, the name of the check: a when that constant folding
// (cel.NewConstantFoldingOptimizer, after inlining the lists and the macros
// that fold to constants) reduces to false; a part of an expression that
// fails whenever evaluated (100 / 0); two enabled live rules that can fire
// on one event for one product; with an event catalogue (Options.Catalogue,
// catalogue.go), attributes that no event type of a rule carries and sums
// of non-numeric attributes; unused lists and macros; and offers() of a
// shadow rule. FormatFindings, FormatSummary and FormatTable write what
// kairos rules check prints. With a catalogue, an event type it does not
// list in on or in a window function is an error of Compile itself.
//
// # One CEL environment
//
// env.go declares the only environment rules are compiled in, built once:
// event (the object type kairos.Event: id, customer_id, type, ts as a
// timestamp, attrs as map(string, dyn)), profile as map(string, dyn), now as
// a timestamp, the window functions count, sum, min, max, avg, distinct and
// since, the contact-history functions contacts and offers, the strings
// extension, cross-type numeric comparisons, and UTC as the default time
// zone. A rule set with lists or macros extends it with them (Env.Extend),
// and nothing else. No other package imports cel-go.
//
// # Compilation
//
// Compile numbers the rules (Rule.Index, their place in RuleSet.Rules)
// before compiling any expression, so that offers() may name a rule defined
// later, then compiles the lists and macros. It parses and type-checks each expression (a when must be bool),
// then walks the checked AST for window and contact function calls. Their
// arguments must be constant strings, so every aggregate a rule set needs —
// kind, event type, attribute, window no longer than Options.Horizon — is
// known at load: the enabled rules' distinct aggregates are numbered and
// listed by RuleSet.Aggregates, and each Rule records the indexes it reads.
// Contact calls are not aggregates: an offers() rule id must name a rule of
// the set, and RuleSet.ContactHorizon reports the longest span of contact
// history the enabled rules read, through these calls, cooldowns and
// max_per_customer periods. The cost of each expression is estimated, with
// inputs assumed to hold up to 1000 elements, against Options.CostLimit;
// expressions with comprehensions are also planned with run-time cost
// tracking. The program is planned with a decorator that replaces each
// window call by an instruction reading Windows.Value(index), and each
// contact call by one reading Contacts.Contacts(window) or
// Contacts.Offers(rule index, window), so evaluation does no lookup by name.
// Rule.Version hashes the parts of a rule that decide what it does,
// contact-policy fields, mode and the lists and macros it uses included.
//
// # Evaluation
//
// RuleSet.For returns the enabled rules an event type triggers, live and
// shadow, highest priority first, ties by id. Evaluator.Evaluate runs them
// on an Input (event, profile, now, windows, contacts), evaluates the params
// of those that match into plain Go values, and reports each failing rule as
// an EvalError without stopping the others.
//
// Before running a rule's when, Evaluate checks its static guards (guard.go):
// top-level conjuncts such as event.attrs.k == "s", profile.k in ["a"],
// event.attrs.k >= 5 or has(profile.k), found at compile time in the checked
// expression. When one is certainly false for the input, so is the when, and
// the rule is skipped with the result its program would have given; in any
// doubt (a missing key, another type, NaN) the program runs.
//
// # Concurrency
//
// A RuleSet is immutable and safe for concurrent use. An Evaluator holds
// reusable evaluation state, the values of the macros for the current event
// among them: use one per goroutine.
package rules

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
// A rule file is YAML with one key, rules: a list of rules, each with id,
// description, on (event types, or "*" for all), when (a CEL condition),
// offer (channels, product, template, priority, params as CEL expressions,
// ttl) and enabled, plus the contact-policy fields kind, cooldown,
// max_per_customer, budget and holdout (policy.go), which this package
// checks and the engine's contact policy applies. ParseFile walks yaml.Node
// trees so that every value keeps its position; unknown and repeated fields
// and values of the wrong YAML type are errors. LoadFiles expands
// directories to their *.yaml and *.yml files; Load parses and compiles.
// Every problem is returned at once, as Errors, each written file:line:col:
// rule "id": message; a CEL error is mapped from its place in the expression
// back to the file and carries the source line with a caret. Decide with
// errors.Is against ErrInvalid, ErrCompile, ErrEval and ErrDuration.
//
// # One CEL environment
//
// env.go declares the only environment rules are compiled in, built once:
// event (the object type kairos.Event: id, customer_id, type, ts as a
// timestamp, attrs as map(string, dyn)), profile as map(string, dyn), now as
// a timestamp, the window functions count, sum, min, max, avg, distinct and
// since, the contact-history functions contacts and offers, the strings
// extension, cross-type numeric comparisons, and UTC as the default time
// zone. No other file imports cel-go.
//
// # Compilation
//
// Compile numbers the rules (Rule.Index, their place in RuleSet.Rules)
// before compiling any expression, so that offers() may name a rule defined
// later. It parses and type-checks each expression (a when must be bool),
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
// contact-policy fields included.
//
// # Evaluation
//
// RuleSet.For returns the enabled rules an event type triggers, highest
// priority first, ties by id. Evaluator.Evaluate runs them on an Input
// (event, profile, now, windows, contacts), evaluates the params of those
// that match into plain Go values, and reports each failing rule as an
// EvalError without stopping the others.
//
// # Concurrency
//
// A RuleSet is immutable and safe for concurrent use. An Evaluator holds
// reusable evaluation state: use one per goroutine.
package rules

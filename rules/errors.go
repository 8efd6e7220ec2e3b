package rules

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Decide with errors.Is; the texts may change.
var (
	// ErrInvalid marks a rule file that does not follow the rule file format.
	ErrInvalid = errors.New("invalid rule file")
	// ErrCompile marks a CEL expression that does not parse, type-check or fit the limits.
	ErrCompile = errors.New("rule does not compile")
	// ErrEval marks a rule whose evaluation failed for one event.
	ErrEval = errors.New("rule evaluation failed")
	// ErrDuration marks a malformed duration string.
	ErrDuration = errors.New("invalid duration")
	// ErrCatalogue marks an event type that the event catalogue
	// (Options.Catalogue) does not list, or a malformed catalogue.
	ErrCatalogue = errors.New("not in the event catalogue")
)

// Pos is a position in a rule file. Line and Col are 1-based; zero means unknown.
type Pos struct {
	File string
	Line int
	Col  int
}

func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Col == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem in a rule file, at a position.
type Error struct {
	Pos    Pos
	RuleID string // empty when the error is not inside a rule
	// Macro or List names the macro or list the error is in, when it is
	// not inside a rule.
	Macro string
	List  string
	Msg   string
	// Snippet, when set, is the source line and a caret under the column.
	Snippet string
	// Kind is ErrInvalid, ErrCompile or ErrCatalogue.
	Kind error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pos.String())
	b.WriteString(": ")
	writeSubject(&b, e.RuleID, e.Macro, e.List)
	b.WriteString(e.Msg)
	if e.Snippet != "" {
		b.WriteString("\n")
		b.WriteString(e.Snippet)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }

// writeSubject writes what a message is about: a rule, a macro or a list.
func writeSubject(b *strings.Builder, ruleID, macro, list string) {
	switch {
	case ruleID != "":
		fmt.Fprintf(b, "rule %q: ", ruleID)
	case macro != "":
		fmt.Fprintf(b, "macro %q: ", macro)
	case list != "":
		fmt.Fprintf(b, "list %q: ", list)
	}
}

// Errors is every problem found while loading rule files, in file and line order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap lets errors.Is and errors.As see every error in the list.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// err returns es as an error, or nil when it is empty.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// EvalError is the failure of one rule on one event.
type EvalError struct {
	Rule *Rule
	Err  error
}

func (e *EvalError) Error() string   { return fmt.Sprintf("rule %q: %v", e.Rule.ID, e.Err) }
func (e *EvalError) Unwrap() []error { return []error{ErrEval, e.Err} }

package rules

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file holds what a rule file defines besides rules: its mode field,
// and the named lists and macros that every rule of the set may use.
// Their compilation is in macro.go.

// Mode says what the engine does with a rule's offers.
type Mode uint8

// Rule modes. The zero value is Live, the default.
const (
	// Live rules' offers go through the contact policy and are sent.
	Live Mode = iota
	// Shadow rules are evaluated on live traffic like live ones; the engine
	// records what they would have offered and sends nothing.
	Shadow
)

var modeNames = [...]string{"live", "shadow"}

// String returns the mode as written in a rule file.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", m)
}

func (p *fileParser) mode(v *yaml.Node, r *RuleDef) {
	s, ok := p.str(v, r.ID, "mode")
	if !ok {
		return
	}
	for i, name := range modeNames {
		if s == name {
			r.Mode = Mode(i)
			return
		}
	}
	p.errorf(p.pos(v), r.ID, "mode must be live or shadow, got %q", s)
}

// ListDef is a named constant list, as written under lists: in a rule file.
type ListDef struct {
	Name string
	// Values are all strings, all int64, all float64 or all bool; Type says which.
	Values []any
	Type   ListType
	Pos    Pos // where the name is written
}

// ListType is the element type of a list.
type ListType uint8

// List element types. An empty list has ListAny.
const (
	ListAny ListType = iota
	ListString
	ListInt
	ListDouble
	ListBool
)

var listTypeNames = [...]string{"dyn", "string", "int", "double", "bool"}

// String returns the CEL name of the element type.
func (t ListType) String() string {
	if int(t) < len(listTypeNames) {
		return listTypeNames[t]
	}
	return fmt.Sprintf("ListType(%d)", t)
}

// MacroDef is a named CEL sub-expression, as written under macros: in a
// rule file.
type MacroDef struct {
	Name string
	Expr Expr
	Pos  Pos // where the name is written
}

// defNameRe is the syntax of list and macro names: CEL identifiers.
var defNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// defs walks the mapping under lists: or macros:, checking each name and
// that no name is given twice in the file.
func (p *fileParser) defs(n *yaml.Node, what string, each func(k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errorf(p.pos(n), "", "%ss must be a mapping of name to %s, got %s", what, defShape[what], kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !defNameRe.MatchString(k.Value) {
			p.defErrorf(what, k.Value, p.pos(k), "name must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
			continue
		}
		each(k, v)
	}
}

var defShape = map[string]string{"list": "a list of values", "macro": "a CEL expression"}

func (p *fileParser) defErrorf(what, name string, pos Pos, format string, args ...any) {
	e := &Error{Pos: pos, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalid}
	if what == "list" {
		e.List = name
	} else {
		e.Macro = name
	}
	p.errs = append(p.errs, e)
}

func (p *fileParser) lists(n *yaml.Node) {
	p.defs(n, "list", func(k, v *yaml.Node) {
		if v.Kind != yaml.SequenceNode {
			p.defErrorf("list", k.Value, p.pos(v), "must be a list of strings, numbers or booleans, got %s", kindName(v))
			return
		}
		l := &ListDef{Name: k.Value, Pos: p.pos(k)}
		nerr := len(p.errs)
		var strs, ints, floats, bools int
		for _, e := range v.Content {
			switch {
			case e.Kind != yaml.ScalarNode || e.Tag == "!!null":
				p.defErrorf("list", l.Name, p.pos(e), "items must be strings, numbers or booleans, got %s", kindName(e))
			case e.Tag == "!!int":
				ints++
			case e.Tag == "!!float":
				floats++
			case e.Tag == "!!bool":
				bools++
			default:
				strs++
			}
		}
		if len(p.errs) > nerr {
			return
		}
		switch {
		case len(v.Content) == 0:
			l.Type = ListAny
		case strs > 0:
			// As for other string fields, a scalar is taken as its text when
			// the list holds strings: [CARD-GOLD, 2026] is two strings.
			l.Type = ListString
		case bools > 0 && ints+floats > 0:
			p.defErrorf("list", l.Name, p.pos(v), "items must be all strings, all numbers or all booleans")
			return
		case bools > 0:
			l.Type = ListBool
		case floats > 0:
			l.Type = ListDouble
		default:
			l.Type = ListInt
		}
		for _, e := range v.Content {
			val, err := listValue(l.Type, e)
			if err != nil {
				p.defErrorf("list", l.Name, p.pos(e), "%v", err)
				continue
			}
			l.Values = append(l.Values, val)
		}
		if len(p.errs) == nerr {
			p.file.Lists = append(p.file.Lists, l)
		}
	})
}

func listValue(t ListType, e *yaml.Node) (any, error) {
	switch t {
	case ListString:
		return e.Value, nil
	case ListBool:
		var b bool
		err := e.Decode(&b)
		return b, err
	case ListInt:
		var n int64
		if err := e.Decode(&n); err != nil {
			return nil, fmt.Errorf("%s does not fit a 64-bit integer", e.Value)
		}
		return n, nil
	}
	var f float64
	if err := e.Decode(&f); err != nil || math.IsNaN(f) {
		return nil, fmt.Errorf("%s is not a usable number", e.Value)
	}
	return f, nil
}

func (p *fileParser) macros(n *yaml.Node) {
	p.defs(n, "macro", func(k, v *yaml.Node) {
		if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
			p.defErrorf("macro", k.Value, p.pos(v), "must be a CEL expression in a string, got %s", kindName(v))
			return
		}
		p.file.Macros = append(p.file.Macros, &MacroDef{Name: k.Value, Pos: p.pos(k), Expr: Expr{Src: v.Value, Pos: p.pos(v), node: v}})
	})
}

// canonical returns a list's type, length and values for a rule's version
// hash.
func (l *ListDef) canonical() []string {
	out := []string{l.Type.String(), strconv.Itoa(len(l.Values))}
	for _, v := range l.Values {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case int64:
			out = append(out, strconv.FormatInt(x, 10))
		case float64:
			out = append(out, strconv.FormatFloat(x, 'g', -1, 64))
		case bool:
			out = append(out, strconv.FormatBool(x))
		}
	}
	return out
}

// reservedNames are the identifiers a list or macro may not take besides
// the environment's variables and functions: CEL's reserved words, its
// parse-time macros, type names and the namespaces of type and function
// names.
var reservedNames = map[string]bool{
	// Reserved words of the CEL grammar.
	"true": true, "false": true, "null": true, "in": true, "as": true, "break": true, "const": true,
	"continue": true, "else": true, "for": true, "function": true, "if": true, "import": true,
	"let": true, "loop": true, "package": true, "namespace": true, "return": true, "var": true,
	"void": true, "while": true,
	// Parse-time macros.
	"has": true, "all": true, "exists": true, "exists_one": true, "map": true, "filter": true,
	// Types and namespaces.
	"int": true, "uint": true, "double": true, "bool": true, "string": true, "bytes": true,
	"list": true, "null_type": true, "type": true, "dyn": true, "google": true, "kairos": true,
	"strings": true, "math": true, "cel": true,
}

// listOrMacro is a list or macro definition, for checks common to both.
type listOrMacro struct {
	what string // "list" or "macro"
	name string
	pos  Pos
}

func (d listOrMacro) err(format string, args ...any) *Error {
	e := &Error{Pos: d.pos, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalid}
	if d.what == "list" {
		e.List = d.name
	} else {
		e.Macro = d.name
	}
	return e
}

// nameClash says why name cannot be a list or macro name in env, or "".
func nameClash(name string, vars map[string]bool, funcs map[string]bool) string {
	switch {
	case strings.HasPrefix(name, "__"):
		return "names starting with __ are reserved"
	case vars[name]:
		return fmt.Sprintf("%s is a variable of the rule language", name)
	case funcs[name]:
		return fmt.Sprintf("%s is a function of the rule language", name)
	case reservedNames[name]:
		return fmt.Sprintf("%s is reserved in CEL", name)
	}
	return ""
}

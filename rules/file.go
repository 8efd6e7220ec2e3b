package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

var (
	ruleIDRe    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	eventTypeRe = regexp.MustCompile(`^[a-z0-9_]+$`)
	channelRe   = regexp.MustCompile(`^[a-z0-9_]+$`)
	paramNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// DefaultTTL is the lifetime of an offer whose rule gives no ttl.
const DefaultTTL = 24 * time.Hour

// File is one parsed rule file, before compilation.
type File struct {
	Name   string
	Rules  []*RuleDef
	Lists  []*ListDef  // in file order
	Macros []*MacroDef // in file order
	lines  []string
}

// RuleDef is a rule as written in a rule file.
type RuleDef struct {
	ID          string
	Description string
	On          []string
	When        Expr
	Offer       OfferDef
	Enabled     bool
	// Mode is Live (the default) or Shadow: a shadow rule is evaluated
	// like a live one, but the engine records its offers without sending
	// them.
	Mode Mode
	// Conversion, when set, is how the rule's success is measured.
	Conversion *Conversion
	Pos        Pos // where the rule's mapping starts
	// onPos are the positions of the On items.
	onPos []Pos

	// The contact-policy fields. Package rules checks them; the engine's
	// contact policy applies them.

	// Kind is the kind of offer the rule makes (default Marketing).
	Kind Kind
	// Cooldown is the least time between two offers of the rule to one
	// customer; 0 means none.
	Cooldown time.Duration
	// MaxPerCustomer caps the rule's offers to one customer; nil means no cap.
	MaxPerCustomer *Limit
	// Budget caps the rule's offers over all customers; nil means no budget.
	Budget *Budget
	// Holdout is the fraction, in [0, 1), of customers kept out of the
	// rule's offers as a control group; nil means the policy's default.
	Holdout *float64
}

// OfferDef is the offer part of a rule.
type OfferDef struct {
	Channels []string
	Product  string
	Template string
	Priority int
	Params   []Param // in file order
	TTL      time.Duration
}

// Param is one offer parameter: a name and the CEL expression that computes it.
type Param struct {
	Name string
	Expr Expr
}

// Expr is a CEL expression and where it is written.
type Expr struct {
	Src  string
	Pos  Pos
	node *yaml.Node
}

// ParseFile parses one rule file. It returns every problem found, as Errors.
func ParseFile(name string, data []byte) (*File, error) {
	f := &File{Name: name, lines: strings.Split(string(data), "\n")}
	p := &fileParser{file: f}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.errorf(yamlErrorPos(name, err), "", "%s", yamlErrorMsg(err))
		return nil, p.errs
	}
	if len(doc.Content) == 0 {
		return f, nil // an empty file holds no rules
	}
	root := doc.Content[0]
	p.mapping(root, "", map[string]func(*yaml.Node){
		"lists":  p.lists,
		"macros": p.macros,
		"rules": func(n *yaml.Node) {
			if n.Kind != yaml.SequenceNode {
				p.errorf(p.pos(n), "", "rules must be a list of rules")
				return
			}
			for _, rn := range n.Content {
				if r := p.rule(rn); r != nil {
					f.Rules = append(f.Rules, r)
				}
			}
		},
	}, nil)
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return f, nil
}

// LoadFiles reads and parses rule files. Directories are expanded to the
// *.yaml and *.yml files they hold (not recursively), in name order.
func LoadFiles(paths ...string) ([]*File, error) {
	var names []string
	var errs Errors
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			errs = append(errs, &Error{Pos: Pos{File: p}, Msg: err.Error(), Kind: ErrInvalid})
			continue
		}
		if !st.IsDir() {
			names = append(names, p)
			continue
		}
		ents, err := os.ReadDir(p)
		if err != nil {
			errs = append(errs, &Error{Pos: Pos{File: p}, Msg: err.Error(), Kind: ErrInvalid})
			continue
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".yaml" || ext == ".yml") && !strings.HasPrefix(e.Name(), ".") {
				names = append(names, filepath.Join(p, e.Name()))
			}
		}
	}
	sort.Strings(names)
	var files []*File
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			errs = append(errs, &Error{Pos: Pos{File: n}, Msg: err.Error(), Kind: ErrInvalid})
			continue
		}
		f, err := ParseFile(n, data)
		if err != nil {
			errs = append(errs, err.(Errors)...)
			continue
		}
		files = append(files, f)
	}
	return files, errs.err()
}

type fileParser struct {
	file *File
	errs Errors
}

func (p *fileParser) pos(n *yaml.Node) Pos {
	return Pos{File: p.file.Name, Line: n.Line, Col: n.Column}
}

func (p *fileParser) errorf(pos Pos, ruleID, format string, args ...any) {
	p.errs = append(p.errs, &Error{Pos: pos, RuleID: ruleID, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalid})
}

// mapping walks a mapping node, calling the handler of each known key and
// reporting unknown and duplicate keys.
func (p *fileParser) mapping(n *yaml.Node, ruleID string, fields map[string]func(*yaml.Node), seen map[string]*yaml.Node) {
	if n.Kind != yaml.MappingNode {
		p.errorf(p.pos(n), ruleID, "expected a mapping, got %s", kindName(n))
		return
	}
	if seen == nil {
		seen = map[string]*yaml.Node{}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if prev, dup := seen[k.Value]; dup {
			p.errorf(p.pos(k), ruleID, "field %q already set at line %d", k.Value, prev.Line)
			continue
		}
		seen[k.Value] = k
		h, ok := fields[k.Value]
		if !ok {
			p.errorf(p.pos(k), ruleID, "unknown field %q (known: %s)", k.Value, strings.Join(sortedKeys(fields), ", "))
			continue
		}
		h(v)
	}
}

func (p *fileParser) rule(n *yaml.Node) *RuleDef {
	r := &RuleDef{Enabled: true, Pos: p.pos(n), Offer: OfferDef{TTL: DefaultTTL}}
	if n.Kind != yaml.MappingNode {
		p.errorf(p.pos(n), "", "a rule must be a mapping, got %s", kindName(n))
		return nil
	}
	// Find the id first, so that every later error names the rule.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" {
			r.ID = n.Content[i+1].Value
		}
	}
	nerr := len(p.errs)
	seen := map[string]*yaml.Node{}
	p.mapping(n, r.ID, map[string]func(*yaml.Node){
		"id": func(v *yaml.Node) {
			if s, ok := p.str(v, r.ID, "id"); ok && !ruleIDRe.MatchString(s) {
				p.errorf(p.pos(v), r.ID, "id must match [a-z0-9-]+ (lower case letters, digits and inner dashes)")
			}
		},
		"description": func(v *yaml.Node) { r.Description, _ = p.str(v, r.ID, "description") },
		"on": func(v *yaml.Node) {
			r.On = p.strList(v, r.ID, "on")
			for i, t := range r.On {
				if t != "*" && !eventTypeRe.MatchString(t) {
					p.errorf(p.pos(v.Content[i]), r.ID, "on: event type %q must match [a-z0-9_]+ or be \"*\"", t)
				}
				r.onPos = append(r.onPos, p.pos(v.Content[i]))
			}
		},
		"when": func(v *yaml.Node) {
			if s, ok := p.str(v, r.ID, "when"); ok {
				r.When = Expr{Src: s, Pos: p.pos(v), node: v}
			}
		},
		"offer":   func(v *yaml.Node) { p.offer(v, r) },
		"enabled": func(v *yaml.Node) { r.Enabled, _ = p.boolean(v, r.ID, "enabled") },
		"mode":    func(v *yaml.Node) { p.mode(v, r) },
		"kind":    func(v *yaml.Node) { p.kind(v, r) },
		"cooldown": func(v *yaml.Node) {
			r.Cooldown, _ = p.positiveDuration(v, r.ID, "cooldown")
		},
		"max_per_customer": func(v *yaml.Node) { p.maxPerCustomer(v, r) },
		"budget":           func(v *yaml.Node) { p.budget(v, r) },
		"holdout":          func(v *yaml.Node) { p.holdout(v, r) },
		"conversion":       func(v *yaml.Node) { p.conversion(v, r) },
	}, seen)
	if seen["id"] == nil {
		p.errorf(p.pos(n), "", "rule has no id")
	}
	if seen["on"] == nil {
		p.errorf(p.pos(n), r.ID, "rule has no on: list the event types that trigger it")
	} else if len(r.On) == 0 && seen["on"] != nil {
		p.errorf(p.pos(seen["on"]), r.ID, "on must name at least one event type")
	}
	if seen["when"] == nil {
		p.errorf(p.pos(n), r.ID, "rule has no when condition")
	}
	if seen["offer"] == nil {
		p.errorf(p.pos(n), r.ID, "rule has no offer")
	}
	if len(p.errs) > nerr {
		return nil
	}
	return r
}

func (p *fileParser) offer(n *yaml.Node, r *RuleDef) {
	seen := map[string]*yaml.Node{}
	o := &r.Offer
	p.mapping(n, r.ID, map[string]func(*yaml.Node){
		"channels": func(v *yaml.Node) {
			o.Channels = p.strList(v, r.ID, "offer.channels")
			dup := map[string]bool{}
			for i, c := range o.Channels {
				if !channelRe.MatchString(c) {
					p.errorf(p.pos(v.Content[i]), r.ID, "offer.channels: channel %q must match [a-z0-9_]+", c)
				}
				if dup[c] {
					p.errorf(p.pos(v.Content[i]), r.ID, "offer.channels: channel %q listed twice", c)
				}
				dup[c] = true
			}
			if len(o.Channels) == 0 && v.Kind == yaml.SequenceNode {
				p.errorf(p.pos(v), r.ID, "offer.channels must name at least one channel")
			}
		},
		"product":  func(v *yaml.Node) { o.Product, _ = p.str(v, r.ID, "offer.product") },
		"template": func(v *yaml.Node) { o.Template, _ = p.str(v, r.ID, "offer.template") },
		"priority": func(v *yaml.Node) {
			if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
				p.errorf(p.pos(v), r.ID, "offer.priority must be an integer")
				return
			}
			n, err := strconv.Atoi(v.Value)
			if err != nil {
				p.errorf(p.pos(v), r.ID, "offer.priority: %v", err)
			}
			o.Priority = n
		},
		"ttl": func(v *yaml.Node) {
			if d, ok := p.positiveDuration(v, r.ID, "offer.ttl"); ok {
				o.TTL = d
			}
		},
		"params": func(v *yaml.Node) {
			if v.Kind != yaml.MappingNode {
				p.errorf(p.pos(v), r.ID, "offer.params must be a mapping of name to CEL expression")
				return
			}
			names := map[string]int{}
			for i := 0; i+1 < len(v.Content); i += 2 {
				k, e := v.Content[i], v.Content[i+1]
				if l, dup := names[k.Value]; dup {
					p.errorf(p.pos(k), r.ID, "offer.params: %q already set at line %d", k.Value, l)
					continue
				}
				names[k.Value] = k.Line
				if !paramNameRe.MatchString(k.Value) {
					p.errorf(p.pos(k), r.ID, "offer.params: name %q must be an identifier", k.Value)
					continue
				}
				if s, ok := p.str(e, r.ID, "offer.params."+k.Value); ok {
					o.Params = append(o.Params, Param{Name: k.Value, Expr: Expr{Src: s, Pos: p.pos(e), node: e}})
				}
			}
		},
	}, seen)
	if n.Kind == yaml.MappingNode && seen["channels"] == nil {
		p.errorf(p.pos(n), r.ID, "offer has no channels")
	}
}

func (p *fileParser) str(n *yaml.Node, ruleID, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(p.pos(n), ruleID, "%s must be a string, got %s", field, kindName(n))
		return "", false
	}
	return n.Value, true
}

func (p *fileParser) boolean(n *yaml.Node, ruleID, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		p.errorf(p.pos(n), ruleID, "%s must be true or false", field)
		return false, false
	}
	return n.Value == "true", true
}

func (p *fileParser) strList(n *yaml.Node, ruleID, field string) []string {
	if n.Kind != yaml.SequenceNode {
		p.errorf(p.pos(n), ruleID, "%s must be a list, got %s", field, kindName(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, e := range n.Content {
		if s, ok := p.str(e, ruleID, field+" item"); ok {
			out = append(out, s)
		}
	}
	return out
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "null"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "a string"
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlErrorPos(file string, err error) Pos {
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		l, _ := strconv.Atoi(m[1])
		return Pos{File: file, Line: l}
	}
	return Pos{File: file}
}

func yamlErrorMsg(err error) string {
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		return "yaml: " + m[2]
	}
	return err.Error()
}

// exprPos maps a position inside an expression (CEL line, 1-based, and
// column, 0-based in code points) to a position in the rule file.
func (f *File) exprPos(e Expr, line, col int) Pos {
	n := e.node
	if n == nil || line < 1 {
		return e.Pos
	}
	// Offset in the expression value, in bytes.
	off := 0
	rest := e.Src
	for l := 1; l < line; l++ {
		i := strings.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		off += i + 1
		rest = rest[i+1:]
	}
	for c := 0; c < col && off < len(e.Src); c++ {
		_, size := utf8.DecodeRuneInString(e.Src[off:])
		off += size
	}
	// Source segments that make up the value: each contributes its length
	// plus one separator (a newline or a folded space).
	type seg struct{ line, col, len int }
	var segs []seg
	srcLine := func(l int) string {
		if l-1 < len(f.lines) && l >= 1 {
			return strings.TrimRight(f.lines[l-1], "\r")
		}
		return ""
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		indent := -1
		for l := n.Line + 1; l <= len(f.lines); l++ {
			s := srcLine(l)
			t := strings.TrimLeft(s, " ")
			if t == "" {
				segs = append(segs, seg{l, 1, 0})
				continue
			}
			ind := len(s) - len(t)
			if indent < 0 {
				indent = ind
			}
			if ind < indent {
				break
			}
			segs = append(segs, seg{l, indent + 1, len(s) - indent})
		}
	default:
		quote := 0
		if n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle {
			quote = 1
		}
		first := srcLine(n.Line)
		start := n.Column - 1 + quote
		if start > len(first) {
			start = len(first)
		}
		segs = append(segs, seg{n.Line, start + 1, len(strings.TrimRight(first[start:], " "))})
		covered := segs[0].len + 1
		for l := n.Line + 1; l <= len(f.lines) && covered <= len(e.Src); l++ {
			s := srcLine(l)
			t := strings.TrimLeft(s, " ")
			segs = append(segs, seg{l, len(s) - len(t) + 1, len(t)})
			covered += len(t) + 1
		}
	}
	for _, s := range segs {
		if off <= s.len {
			return Pos{File: f.Name, Line: s.line, Col: s.col + off}
		}
		off -= s.len + 1
	}
	return e.Pos
}

// snippet renders the file line of pos with a caret under its column.
func (f *File) snippet(pos Pos) string {
	if pos.Line < 1 || pos.Line > len(f.lines) || pos.Col < 1 {
		return ""
	}
	line := strings.TrimRight(f.lines[pos.Line-1], "\r")
	pad := make([]byte, 0, pos.Col)
	for i := 0; i < pos.Col-1 && i < len(line); i++ {
		if line[i] == '\t' {
			pad = append(pad, '\t')
		} else {
			pad = append(pad, ' ')
		}
	}
	return " | " + line + "\n | " + string(pad) + "^"
}

// ReleaseSources drops what the set keeps of its files' text for Lint and
// error snippets: the file lines and the YAML nodes of the expressions
// (for 10,000 rules, about 12 MB). A program that only evaluates the set,
// as the engine does, calls it after loading; Lint still works afterwards,
// with each finding placed at the start of its expression instead of at
// the exact column, and without the line snippet.
func (rs *RuleSet) ReleaseSources() {
	release := func(d *RuleDef) {
		d.When.node = nil
		for i := range d.Offer.Params {
			d.Offer.Params[i].Expr.node = nil
		}
		if d.Conversion != nil {
			d.Conversion.Where.node = nil
		}
	}
	files := map[*File]bool{}
	for _, r := range rs.rules {
		release(&r.RuleDef)
		files[r.file] = true
	}
	for _, m := range rs.macros {
		m.def.Expr.node = nil
		files[m.f] = true
	}
	for f := range files {
		if f == nil {
			continue
		}
		f.lines = nil
		for _, d := range f.Rules {
			release(d)
		}
		for _, m := range f.Macros {
			m.Expr.node = nil
		}
	}
}

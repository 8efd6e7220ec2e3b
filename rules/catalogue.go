package rules

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Catalogue lists the event types a deployment receives and, for those
// whose attributes it describes, their attributes and types. Given in
// Options.Catalogue, it makes an event type that it does not list, in a
// rule's on or in a window function, an error (ErrCatalogue), and lets
// Lint warn about attributes that no event type of a rule carries. The
// type profile is always known: it is part of the event contract.
//
// The file format is YAML:
//
//	events:
//	  login:
//	    description: App or web login      # optional, for people
//	    attrs: {channel: string, device: string}
//	  txn:
//	    attrs: {amount: number, merchant: string}
//	  page_view: {}                        # attributes not described
//
// or, with no attributes described at all, a list: events: [login, txn].
// Attribute types are string, number, bool, list, map and any.
type Catalogue struct {
	// Name is the file the catalogue was read from, for messages.
	Name   string
	Events map[string]*EventSpec
}

// EventSpec is one event type of a catalogue.
type EventSpec struct {
	Type        string
	Description string
	// Attrs are the event type's attributes; nil when the catalogue does
	// not describe them (any attribute may appear), empty when the events
	// carry none.
	Attrs map[string]AttrType
	Pos   Pos
}

// AttrType is the type of an event attribute in a catalogue.
type AttrType uint8

// Attribute types. Number is any integer or floating-point value.
const (
	AttrAny AttrType = iota
	AttrString
	AttrNumber
	AttrBool
	AttrList
	AttrMap
)

var attrTypeNames = [...]string{"any", "string", "number", "bool", "list", "map"}

// String returns the type as written in a catalogue.
func (t AttrType) String() string {
	if int(t) < len(attrTypeNames) {
		return attrTypeNames[t]
	}
	return fmt.Sprintf("AttrType(%d)", t)
}

// builtinEventTypes are known whatever the catalogue says.
var builtinEventTypes = []string{"profile"}

// LoadCatalogue reads and parses an event catalogue file.
func LoadCatalogue(path string) (*Catalogue, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{Pos: Pos{File: path}, Msg: err.Error(), Kind: ErrCatalogue}}
	}
	return ParseCatalogue(path, data)
}

// ParseCatalogue parses an event catalogue. It returns every problem
// found, as Errors wrapping ErrCatalogue.
func ParseCatalogue(name string, data []byte) (*Catalogue, error) {
	c := &Catalogue{Name: name, Events: map[string]*EventSpec{}}
	p := &fileParser{file: &File{Name: name}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.errorf(yamlErrorPos(name, err), "", "%s", yamlErrorMsg(err))
		return nil, catalogueErrs(p.errs)
	}
	if len(doc.Content) == 0 {
		p.errorf(Pos{File: name}, "", "the catalogue is empty: it must have events")
		return nil, catalogueErrs(p.errs)
	}
	seen := map[string]*yaml.Node{}
	p.mapping(doc.Content[0], "", map[string]func(*yaml.Node){
		"events": func(n *yaml.Node) {
			switch n.Kind {
			case yaml.SequenceNode:
				for _, e := range n.Content {
					if t, ok := p.str(e, "", "events item"); ok {
						c.add(p, t, e, &EventSpec{Type: t, Pos: p.pos(e)})
					}
				}
			case yaml.MappingNode:
				for i := 0; i+1 < len(n.Content); i += 2 {
					k, v := n.Content[i], n.Content[i+1]
					c.add(p, k.Value, k, p.eventSpec(k, v))
				}
			default:
				p.errorf(p.pos(n), "", "events must be a list of event types or a mapping of event type to {description, attrs}, got %s", kindName(n))
			}
		},
	}, seen)
	if seen["events"] == nil && len(p.errs) == 0 {
		p.errorf(p.pos(doc.Content[0]), "", "the catalogue has no events")
	}
	if len(p.errs) > 0 {
		return nil, catalogueErrs(p.errs)
	}
	return c, nil
}

func catalogueErrs(es Errors) Errors {
	for _, e := range es {
		e.Kind = ErrCatalogue
	}
	return es
}

func (c *Catalogue) add(p *fileParser, t string, at *yaml.Node, spec *EventSpec) {
	switch {
	case !eventTypeRe.MatchString(t):
		p.errorf(p.pos(at), "", "event type %q must match [a-z0-9_]+", t)
	case c.Events[t] != nil:
		p.errorf(p.pos(at), "", "event type %q already listed at %s", t, c.Events[t].Pos)
	case spec != nil:
		c.Events[t] = spec
	}
}

func (p *fileParser) eventSpec(k, v *yaml.Node) *EventSpec {
	spec := &EventSpec{Type: k.Value, Pos: p.pos(k)}
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return spec // "page_view:" with nothing after it
	}
	nerr := len(p.errs)
	p.mapping(v, "", map[string]func(*yaml.Node){
		"description": func(n *yaml.Node) { spec.Description, _ = p.str(n, "", k.Value+".description") },
		"attrs": func(n *yaml.Node) {
			if n.Kind != yaml.MappingNode {
				p.errorf(p.pos(n), "", "%s.attrs must be a mapping of attribute name to type, got %s", k.Value, kindName(n))
				return
			}
			spec.Attrs = map[string]AttrType{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				an, tn := n.Content[i], n.Content[i+1]
				if _, dup := spec.Attrs[an.Value]; dup {
					p.errorf(p.pos(an), "", "%s.attrs: %q listed twice", k.Value, an.Value)
					continue
				}
				spec.Attrs[an.Value] = AttrAny
				s, ok := p.str(tn, "", k.Value+".attrs."+an.Value)
				if !ok {
					continue
				}
				t, known := attrTypeByName(s)
				if !known {
					p.errorf(p.pos(tn), "", "%s.attrs.%s: type must be one of %s, got %q", k.Value, an.Value, strings.Join(attrTypeNames[:], ", "), s)
					continue
				}
				spec.Attrs[an.Value] = t
			}
		},
	}, nil)
	if len(p.errs) > nerr {
		return nil
	}
	return spec
}

func attrTypeByName(s string) (AttrType, bool) {
	for i, n := range attrTypeNames {
		if n == s {
			return AttrType(i), true
		}
	}
	return 0, false
}

// knows reports whether the catalogue lists event type t. A nil catalogue
// knows every type; "*" and the built-in types are always known.
func (c *Catalogue) knows(t string) bool {
	if c == nil || t == "*" {
		return true
	}
	for _, b := range builtinEventTypes {
		if t == b {
			return true
		}
	}
	return c.Events[t] != nil
}

// Types returns the event types of the catalogue, sorted.
func (c *Catalogue) Types() []string {
	if c == nil {
		return nil
	}
	return sortedKeys(c.Events)
}

// unknownType is the message for an event type the catalogue lacks.
func (c *Catalogue) unknownType(t string) string {
	msg := fmt.Sprintf("event type %q is not in the event catalogue %s", t, c.Name)
	if s := closest(t, c.Types()); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg
}

// closest returns the candidate nearest to s in edit distance, if it is
// near enough to be a likely typo, or "".
func closest(s string, candidates []string) string {
	limit := max(1, min(3, len(s)/3))
	best, bestD := "", limit+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

package rules

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"gopkg.in/yaml.v3"
)

// Conversion is what counts as a rule's success: a later event of the
// customer, of type Event, within Within of the offer (or holdout
// decision), for which Where holds. Where is a CEL condition that sees
// event, profile and offer (the offer's fields: id, rule_id, product,
// template, channel, params, decided_at); empty means every such event.
type Conversion struct {
	Event  string
	Where  Expr
	Within time.Duration
	Pos    Pos
}

// conversionVar is the CEL variable holding the offer a conversion is
// checked against; it exists only in conversion conditions.
const conversionVar = "offer"

func (p *fileParser) conversion(v *yaml.Node, r *RuleDef) {
	c := &Conversion{Pos: p.pos(v)}
	seen := map[string]*yaml.Node{}
	nerr := len(p.errs)
	p.mapping(v, r.ID, map[string]func(*yaml.Node){
		"event": func(n *yaml.Node) {
			if s, ok := p.str(n, r.ID, "conversion.event"); ok {
				if !eventTypeRe.MatchString(s) {
					p.errorf(p.pos(n), r.ID, "conversion.event %q must match [a-z0-9_]+", s)
				}
				c.Event = s
			}
		},
		"where": func(n *yaml.Node) {
			if s, ok := p.str(n, r.ID, "conversion.where"); ok {
				c.Where = Expr{Src: s, Pos: p.pos(n), node: n}
			}
		},
		"within": func(n *yaml.Node) {
			if s, ok := p.str(n, r.ID, "conversion.within"); ok {
				d, err := ParseDuration(s)
				if err != nil || d <= 0 {
					p.errorf(p.pos(n), r.ID, "conversion.within: must be a positive duration such as \"7d\"")
					return
				}
				c.Within = d
			}
		},
	}, seen)
	if len(p.errs) > nerr || v.Kind != yaml.MappingNode {
		return
	}
	if seen["event"] == nil {
		p.errorf(p.pos(v), r.ID, "conversion has no event")
		return
	}
	if seen["within"] == nil {
		p.errorf(p.pos(v), r.ID, "conversion has no within (how long after the offer a conversion counts)")
		return
	}
	r.Conversion = c
}

// compileConversion compiles a rule's conversion condition in the set's
// environment plus the offer variable.
func (c *compiler) compileConversion(f *File, r *Rule) bool {
	cv := r.Conversion
	if cv == nil || cv.Where.Src == "" {
		return true
	}
	env, err := c.env.Extend(cel.Variable(conversionVar, cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		c.errs = append(c.errs, &Error{Pos: cv.Pos, RuleID: r.ID, Msg: "conversion.where: " + err.Error(), Kind: ErrCompile})
		return false
	}
	saved := c.env
	c.env = env
	defer func() { c.env = saved }()
	x, ok := c.expr(site{f: f, rule: r.ID, field: "conversion.where", e: cv.Where}, true, r.Enabled)
	if !ok {
		return false
	}
	r.convWhere, r.convTracked = x.prog, x.tracked
	return true
}

// ConversionsFor returns the enabled rules that count an event type as a
// conversion, in id order.
func (rs *RuleSet) ConversionsFor(eventType string) []*Rule { return rs.conversions[eventType] }

// ConversionHorizon is the longest conversion window of the enabled rules.
func (rs *RuleSet) ConversionHorizon() time.Duration { return rs.conversionHorizon }

func (c *compiler) indexConversions() {
	rs := c.rs
	rs.conversions = map[string][]*Rule{}
	for _, r := range rs.rules {
		if cv := r.Conversion; cv != nil && r.Enabled {
			rs.conversions[cv.Event] = append(rs.conversions[cv.Event], r)
			rs.conversionHorizon = max(rs.conversionHorizon, cv.Within)
		}
	}
	for _, list := range rs.conversions {
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	}
}

// Converts reports whether in.Event is a conversion of the rule's offer:
// the conversion condition with offer bound to the offer's fields. The
// event type and the time window are the caller's to check.
func (e *Evaluator) Converts(ctx context.Context, r *Rule, in *Input, offer map[string]any) (bool, error) {
	if r.convWhere == nil {
		return true, nil
	}
	a := &e.act
	a.ev.ev = &in.Event
	a.ev.ts = types.Timestamp{Time: time.UnixMilli(in.Event.TS).UTC()}
	a.profile = in.Profile
	if a.profile == nil {
		a.profile = emptyMap
	}
	a.now = types.Timestamp{Time: in.Now.UTC()}
	a.windows = in.Windows
	a.contacts = in.Contacts
	a.offer = offer
	a.ctx = ctx
	defer a.reset()
	v, err := e.eval(ctx, r.convWhere, r.convTracked)
	if err != nil {
		return false, fmt.Errorf("conversion.where: %w", err)
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("conversion.where: got %s, want bool", v.Type().TypeName())
	}
	return bool(b), nil
}

package rules

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// This file holds a rule's contact-policy fields: its kind, cooldown,
// per-customer limit, budget and holdout. Package rules parses and checks
// them; the engine's contact policy applies them.

// Kind is the kind of offer a rule makes. The contact policy treats kinds
// differently; only marketing offers are counted by contacts().
type Kind uint8

// Offer kinds. The zero value is Marketing, the default.
const (
	Marketing Kind = iota
	Service
	Opportunity
)

var kindNames = [...]string{"marketing", "service", "opportunity"}

// String returns the kind as written in a rule file.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", k)
}

// Limit caps how many offers of a rule one customer may receive: at most
// Max within any span of Per. Per 0 means ever.
type Limit struct {
	Max int
	Per time.Duration
}

// Budget caps how many offers of a rule are sent in all, over every
// customer. Zero means no limit of that kind.
type Budget struct {
	Total  int64 // over the rule's life
	PerDay int64 // per day
}

const positiveDurationMsg = "must be a positive duration such as \"24h\" or \"7d\""

func (p *fileParser) kind(v *yaml.Node, r *RuleDef) {
	s, ok := p.str(v, r.ID, "kind")
	if !ok {
		return
	}
	for i, name := range kindNames {
		if s == name {
			r.Kind = Kind(i)
			return
		}
	}
	p.errorf(p.pos(v), r.ID, "kind must be marketing, service or opportunity, got %q", s)
}

// positiveDuration parses a duration field that must be positive.
func (p *fileParser) positiveDuration(v *yaml.Node, ruleID, field string) (time.Duration, bool) {
	s, ok := p.str(v, ruleID, field)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil || d <= 0 {
		p.errorf(p.pos(v), ruleID, "%s: %s", field, positiveDurationMsg)
		return 0, false
	}
	return d, true
}

// positiveInt parses a YAML integer that must be at least 1 and at most max.
func (p *fileParser) positiveInt(v *yaml.Node, ruleID, field string, max int64) (int64, bool) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!int" {
		var n int64
		err := v.Decode(&n)
		switch {
		case err == nil && n >= 1 && n <= max:
			return n, true
		case err != nil && !strings.HasPrefix(v.Value, "-") || n > max:
			p.errorf(p.pos(v), ruleID, "%s is too large (at most %d)", field, max)
			return 0, false
		}
	}
	p.errorf(p.pos(v), ruleID, "%s must be an integer of at least 1", field)
	return 0, false
}

func (p *fileParser) maxPerCustomer(v *yaml.Node, r *RuleDef) {
	const field = "max_per_customer"
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!int":
		if n, ok := p.positiveInt(v, r.ID, field, math.MaxInt); ok {
			r.MaxPerCustomer = &Limit{Max: int(n)}
		}
		return
	case v.Kind != yaml.MappingNode:
		p.errorf(p.pos(v), r.ID, "%s must be an integer or a mapping {max, per}, got %s", field, kindName(v))
		return
	}
	l := Limit{}
	seen := map[string]*yaml.Node{}
	nerr := len(p.errs)
	p.mapping(v, r.ID, map[string]func(*yaml.Node){
		"max": func(n *yaml.Node) {
			m, _ := p.positiveInt(n, r.ID, field+".max", math.MaxInt)
			l.Max = int(m)
		},
		"per": func(n *yaml.Node) { l.Per, _ = p.positiveDuration(n, r.ID, field+".per") },
	}, seen)
	if seen["max"] == nil {
		p.errorf(p.pos(v), r.ID, "%s has no max", field)
		return
	}
	if len(p.errs) == nerr {
		r.MaxPerCustomer = &l
	}
}

func (p *fileParser) budget(v *yaml.Node, r *RuleDef) {
	if v.Kind != yaml.MappingNode {
		p.errorf(p.pos(v), r.ID, "budget must be a mapping {total, per_day}, got %s", kindName(v))
		return
	}
	b := Budget{}
	seen := map[string]*yaml.Node{}
	nerr := len(p.errs)
	p.mapping(v, r.ID, map[string]func(*yaml.Node){
		"total":   func(n *yaml.Node) { b.Total, _ = p.positiveInt(n, r.ID, "budget.total", math.MaxInt64) },
		"per_day": func(n *yaml.Node) { b.PerDay, _ = p.positiveInt(n, r.ID, "budget.per_day", math.MaxInt64) },
	}, seen)
	if len(p.errs) > nerr {
		return
	}
	switch {
	case seen["total"] == nil && seen["per_day"] == nil:
		p.errorf(p.pos(v), r.ID, "budget must give total, per_day or both")
	case b.Total > 0 && b.PerDay > b.Total:
		p.errorf(p.pos(seen["per_day"]), r.ID, "budget.per_day (%d) must not exceed budget.total (%d)", b.PerDay, b.Total)
	default:
		r.Budget = &b
	}
}

func (p *fileParser) holdout(v *yaml.Node, r *RuleDef) {
	var h float64
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") || v.Decode(&h) != nil || !(h >= 0 && h < 1) {
		p.errorf(p.pos(v), r.ID, "holdout must be a number at least 0 and below 1, such as 0.05")
		return
	}
	r.Holdout = &h
}

// writePolicy adds the policy fields to a rule's version hash. Nothing is
// written when they all have their defaults, so that rules without them
// keep the versions they had before these fields existed.
func writePolicy(d *RuleDef, w func(...string)) {
	if d.Kind == Marketing && d.Cooldown == 0 && d.MaxPerCustomer == nil && d.Budget == nil && d.Holdout == nil {
		return
	}
	// "#policy" cannot be a param name, so it cannot be mistaken for one.
	w("#policy", d.Kind.String(), d.Cooldown.String())
	if l := d.MaxPerCustomer; l != nil {
		w("max", strconv.Itoa(l.Max), l.Per.String())
	} else {
		w("")
	}
	if b := d.Budget; b != nil {
		w("budget", strconv.FormatInt(b.Total, 10), strconv.FormatInt(b.PerDay, 10))
	} else {
		w("")
	}
	if h := d.Holdout; h != nil {
		w("holdout", strconv.FormatFloat(*h, 'g', -1, 64))
	} else {
		w("")
	}
}

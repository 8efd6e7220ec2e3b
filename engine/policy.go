package engine

import (
	"bufio"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/rules"
)

// Suppression reasons: why a match was not sent (docs/policy.md).
const (
	ReasonCapChannel     = "cap_channel"
	ReasonCapOpportunity = "cap_opportunity"
	ReasonCooldown       = "cooldown"
	ReasonMaxPerCustomer = "max_per_customer"
	ReasonBudget         = "budget"
	ReasonQuietHours     = "quiet_hours"
	ReasonOutranked      = "outranked"
	ReasonNoChannel      = "no_channel"
	ReasonDoNotDisturb   = "do_not_disturb"
	ReasonHoldout        = "holdout"
	ReasonExpired        = "expired"
	ReasonRuleRemoved    = "rule_removed"
)

// Offer kinds as stored in a customer's contact history.
const (
	kindMarketing   = uint8(rules.Marketing)
	kindService     = uint8(rules.Service)
	kindOpportunity = uint8(rules.Opportunity)
)

// policy is the compiled contact policy. It is immutable.
type policy struct {
	loc         *time.Location
	caps        []capRule
	channelCaps map[string][]capRule
	oppCaps     []capRule
	maxPerEvent int
	quiet       *quietHours
	holdout     float64
	salt        string
	keep        int
	weekStart   time.Weekday
	// retention is how long contact history is kept: the longest period a
	// cap, a cooldown, a max_per_customer or a contacts()/offers() call
	// looks back, at least 31 days for explain.
	retention time.Duration
}

// capRule is one compiled cap.
type capRule struct {
	period string        // day, week or month; "" when rolling
	window time.Duration // rolling window
	max    int
	reason string
}

type quietHours struct {
	from, to int // minutes after local midnight
	deferIt  bool
}

func parseCaps(field string, cs []CapConfig, reason func(CapConfig) string) ([]capRule, []string) {
	var out []capRule
	var bad []string
	for i, c := range cs {
		f := fmt.Sprintf("%s[%d]", field, i)
		if c.Max < 1 {
			bad = append(bad, fmt.Sprintf("%s.max: must be at least 1", f))
		}
		cr := capRule{max: c.Max, reason: reason(c)}
		switch c.Per {
		case "day", "week", "month":
			if c.Rolling {
				cr.window = map[string]time.Duration{"day": 24 * time.Hour, "week": 7 * 24 * time.Hour, "month": 30 * 24 * time.Hour}[c.Per]
			} else {
				cr.period = c.Per
			}
		default:
			d, err := rules.ParseDuration(c.Per)
			if err != nil || d <= 0 {
				bad = append(bad, fmt.Sprintf("%s.per: %q (use day, week, month or a duration such as 48h)", f, c.Per))
				continue
			}
			cr.window = d
		}
		out = append(out, cr)
	}
	return out, bad
}

// capReason names a contact cap's suppression: cap_day, cap_week,
// cap_month, or cap_<duration> for a rolling duration.
func capReason(c CapConfig) string { return "cap_" + c.Per }

func parseClock(s string) (int, bool) {
	h, m, ok := strings.Cut(s, ":")
	if !ok || len(h) != 2 || len(m) != 2 {
		return 0, false
	}
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 {
		return 0, false
	}
	return hh*60 + mm, true
}

// validate checks the policy section; it returns every problem.
func (pc *PolicyConfig) validate() []string {
	_, bad := compilePolicy(pc)
	return bad
}

// compilePolicy turns a defaulted PolicyConfig into a policy.
func compilePolicy(pc *PolicyConfig) (*policy, []string) {
	var bad []string
	p := &policy{maxPerEvent: pc.MaxOffersPerEvent, holdout: pc.Holdout.Fraction, salt: pc.Holdout.Salt, keep: pc.DecisionsKept}
	loc, err := time.LoadLocation(pc.Timezone)
	if err != nil {
		bad = append(bad, fmt.Sprintf("policy.timezone: %v", err))
		loc = time.UTC
	}
	p.loc = loc
	if pc.Caps != nil {
		var b []string
		p.caps, b = parseCaps("policy.caps", *pc.Caps, capReason)
		bad = append(bad, b...)
	}
	p.channelCaps = map[string][]capRule{}
	for ch, cs := range pc.ChannelCaps {
		var b []string
		p.channelCaps[ch], b = parseCaps("policy.channel_caps."+ch, cs, func(CapConfig) string { return ReasonCapChannel })
		bad = append(bad, b...)
	}
	var b []string
	p.oppCaps, b = parseCaps("policy.opportunity_caps", pc.OpportunityCaps, func(CapConfig) string { return ReasonCapOpportunity })
	bad = append(bad, b...)
	if pc.MaxOffersPerEvent < 1 {
		bad = append(bad, "policy.max_offers_per_event: must be at least 1")
	}
	if q := pc.QuietHours; q != nil {
		from, ok1 := parseClock(q.From)
		to, ok2 := parseClock(q.To)
		if !ok1 {
			bad = append(bad, fmt.Sprintf("policy.quiet_hours.from: %q is not HH:MM", q.From))
		}
		if !ok2 {
			bad = append(bad, fmt.Sprintf("policy.quiet_hours.to: %q is not HH:MM", q.To))
		}
		if ok1 && ok2 && from == to {
			bad = append(bad, "policy.quiet_hours: from and to are equal")
		}
		switch q.Action {
		case "drop", "defer":
		default:
			bad = append(bad, fmt.Sprintf("policy.quiet_hours.action: %q (use drop or defer)", q.Action))
		}
		p.quiet = &quietHours{from: from, to: to, deferIt: q.Action == "defer"}
	}
	if h := pc.Holdout.Fraction; h < 0 || h >= 1 || math.IsNaN(h) {
		bad = append(bad, "policy.holdout.fraction: must be at least 0 and below 1")
	}
	if pc.DecisionsKept < 0 {
		bad = append(bad, "policy.decisions_kept: must not be negative")
	}
	switch pc.WeekStart {
	case "monday":
		p.weekStart = time.Monday
	case "sunday":
		p.weekStart = time.Sunday
	default:
		bad = append(bad, fmt.Sprintf("policy.week_start: %q (use monday or sunday)", pc.WeekStart))
	}
	if pc.SuppressionFile != "" {
		if _, err := os.Stat(pc.SuppressionFile); err != nil {
			bad = append(bad, fmt.Sprintf("policy.suppression_file: %v", err))
		}
	}
	if d, err := rules.ParseDuration(pc.ReleaseInterval); err != nil || d <= 0 {
		bad = append(bad, fmt.Sprintf("policy.release_interval: %q must be a positive duration", pc.ReleaseInterval))
	}
	p.retention = 31 * 24 * time.Hour
	for _, list := range append([][]capRule{p.caps, p.oppCaps}, mapValues(p.channelCaps)...) {
		for _, c := range list {
			p.retention = max(p.retention, c.window)
		}
	}
	return p, bad
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// since is the exclusive lower bound, in unix ms, of the cap's period
// that contains now, in the customer's time zone.
func (c *capRule) since(now time.Time, loc *time.Location, weekStart time.Weekday) int64 {
	if c.period == "" {
		return now.Add(-c.window).UnixMilli()
	}
	return periodStart(now, loc, c.period, weekStart).UnixMilli() - 1
}

// periodStart is local midnight of the day, of the first day of the
// week, or of the first of the month that contains now. Days are calendar
// days, so a day with a daylight-saving change is 23 or 25 hours long.
func periodStart(now time.Time, loc *time.Location, period string, weekStart time.Weekday) time.Time {
	l := now.In(loc)
	y, m, d := l.Date()
	switch period {
	case "week":
		back := (int(l.Weekday()) - int(weekStart) + 7) % 7
		return time.Date(y, m, d-back, 0, 0, 0, 0, loc)
	case "month":
		return time.Date(y, m, 1, 0, 0, 0, 0, loc)
	}
	return time.Date(y, m, d, 0, 0, 0, 0, loc)
}

// quietUntil reports whether now is within quiet hours in loc, and if so
// when they end.
func (q *quietHours) quietUntil(now time.Time, loc *time.Location) (bool, time.Time) {
	l := now.In(loc)
	mins := l.Hour()*60 + l.Minute()
	var in bool
	if q.from < q.to {
		in = mins >= q.from && mins < q.to
	} else {
		in = mins >= q.from || mins < q.to
	}
	if !in {
		return false, time.Time{}
	}
	y, m, d := l.Date()
	end := time.Date(y, m, d, q.to/60, q.to%60, 0, 0, loc)
	if !end.After(l) {
		end = time.Date(y, m, d+1, q.to/60, q.to%60, 0, 0, loc)
	}
	return true, end
}

// inHoldout reports whether the customer is in the rule's control group:
// a hash of (customer, salt, rule) below the fraction — FNV-1a 64 of
// "customer NUL salt NUL rule", mixed by splitmix64's finaliser, its top
// 53 bits as a fraction of 2^53. The same customer is in the same group on
// every run, in replays and on every engine instance.
func inHoldout(customer, salt, rule string, fraction float64) bool {
	if fraction <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(customer))
	h.Write([]byte{0})
	h.Write([]byte(salt))
	h.Write([]byte{0})
	h.Write([]byte(rule))
	return float64(mix64(h.Sum64())>>11)/(1<<53) < fraction
}

// mix64 is splitmix64's finaliser: FNV-1a alone barely moves the high bits
// when only the last bytes (the rule id) differ.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// loadSuppression reads a suppression file: one customer id per line,
// blank lines and # comments ignored.
func loadSuppression(path string) (map[string]struct{}, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]struct{}{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out[line] = struct{}{}
		}
	}
	return out, sc.Err()
}

// reasonsFor lists the suppression reasons a rule can meet under the
// policy, so that their metric series exist (at zero) from the start.
func (p *policy) reasonsFor(r *rules.Rule) []string {
	var out []string
	add := func(ok bool, reasons ...string) {
		if ok {
			out = append(out, reasons...)
		}
	}
	add(r.Budget != nil, ReasonBudget)
	add(r.Cooldown > 0, ReasonCooldown)
	add(r.MaxPerCustomer != nil, ReasonMaxPerCustomer)
	holdout := p.holdout > 0 || (r.Holdout != nil && *r.Holdout > 0)
	switch r.Kind {
	case rules.Service:
		add(true, ReasonNoChannel)
	case rules.Opportunity:
		add(true, ReasonDoNotDisturb)
		add(holdout, ReasonHoldout)
		for _, c := range p.oppCaps {
			add(!slices.Contains(out, c.reason), c.reason)
		}
	default:
		add(true, ReasonDoNotDisturb, ReasonOutranked, ReasonNoChannel)
		add(holdout, ReasonHoldout)
		add(p.quiet != nil, ReasonQuietHours, ReasonExpired)
		for _, c := range p.caps {
			add(!slices.Contains(out, c.reason), c.reason)
		}
		for _, ch := range r.Offer.Channels {
			add(len(p.channelCaps[ch]) > 0 && !slices.Contains(out, ReasonCapChannel), ReasonCapChannel)
		}
	}
	return out
}

package engine

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/rules"
)

// Replay is a backtest: a rule set run over recorded events by the
// Simulator, in virtual time (each event decided at its own ts), with
// isolated state and policy. Feed it events in stream order with Add, then
// Finish.
type Replay struct {
	sim     *Simulator
	rs      *rules.RuleSet
	dec     *eventDecoder
	pending []SimEvent
	clock   time.Time
	report  *ReplayReport
	started time.Time
}

// ReplayReport is what a replay projects.
type ReplayReport struct {
	Events        int               `json:"events"`
	Invalid       int               `json:"invalid"`
	RuleErrors    int               `json:"rule_errors"`
	From          time.Time         `json:"from"`
	To            time.Time         `json:"to"`
	WallSeconds   float64           `json:"wall_seconds"`
	EventsPerSec  float64           `json:"events_per_second"`
	Rules         []*RuleProjection `json:"rules"`
	Opportunities map[string]int    `json:"opportunities_by_branch"`
	Suppressed    map[string]int    `json:"suppressed_by_reason"`
	byRule        map[string]*RuleProjection
	deferred      map[string]bool // offer ids deferred and not yet decided
}

// RuleProjection is one rule's projected activity.
type RuleProjection struct {
	Rule       string         `json:"rule"`
	Kind       string         `json:"kind"`
	Mode       string         `json:"mode"` // shadow: what it would have done`
	Matched    int            `json:"matched"`
	Emitted    int            `json:"emitted"`
	Suppressed map[string]int `json:"suppressed"`
	ByChannel  map[string]int `json:"by_channel"`
	ByDay      map[string]int `json:"by_day"`
	Budget     *BudgetBurn    `json:"budget,omitempty"`
}

// BudgetBurn is a budgeted rule's spending over the replay.
type BudgetBurn struct {
	Total     int64 `json:"total,omitempty"`
	PerDay    int64 `json:"per_day,omitempty"`
	Used      int   `json:"used"`
	MaxPerDay int   `json:"max_used_in_a_day"`
}

// NewReplay prepares a backtest of rs under the policy.
func NewReplay(rs *rules.RuleSet, pol PolicyConfig) (*Replay, error) {
	sim, err := NewSimulator(SimOptions{Rules: rs, Policy: pol})
	if err != nil {
		return nil, err
	}
	r := &Replay{sim: sim, rs: rs, dec: newEventDecoder(), started: time.Now(), report: &ReplayReport{
		Opportunities: map[string]int{}, Suppressed: map[string]int{}, byRule: map[string]*RuleProjection{}, deferred: map[string]bool{},
	}}
	for _, rule := range rs.Rules() {
		p := &RuleProjection{Rule: rule.ID, Kind: rule.Kind.String(), Mode: rule.Mode.String(), Suppressed: map[string]int{}, ByChannel: map[string]int{}, ByDay: map[string]int{}}
		if b := rule.Budget; b != nil {
			p.Budget = &BudgetBurn{Total: b.Total, PerDay: b.PerDay}
		}
		r.report.byRule[rule.ID] = p
		r.report.Rules = append(r.report.Rules, p)
	}
	return r, nil
}

// AddRaw decodes an event payload (msgpack or JSON, as on the events
// stream) and adds it. An invalid event is counted, not fatal.
func (r *Replay) AddRaw(payload []byte, isJSON bool) error {
	var ev Event
	// The subject is not recorded in a file: validate against the event's
	// own fields.
	if err := r.dec.Decode(payload, isJSON, "", "", &ev); err != nil {
		var ee *EventError
		if asEventError(err, &ee) && ee.Reason == ReasonInvalid && (strings.Contains(ee.Msg, "differs from the subject")) {
			if err2 := validateEvent(&ev, ev.Type, ev.CustomerID); err2 == nil {
				return r.Add(ev)
			}
		}
		r.report.Invalid++
		return nil
	}
	return r.Add(ev)
}

// Add adds a decoded event. Its decision time is its ts, or the replay's
// clock when the ts goes back in time (events are replayed in stream
// order, which may differ slightly from ts order).
func (r *Replay) Add(ev Event) error {
	at := time.UnixMilli(ev.TS)
	if at.Before(r.clock) {
		at = r.clock
	}
	r.clock = at
	if r.report.Events == 0 {
		r.report.From = at
	}
	r.report.To = at
	r.report.Events++
	r.pending = append(r.pending, SimEvent{Event: ev, At: at})
	if len(r.pending) >= 4096 {
		return r.flush()
	}
	return nil
}

func (r *Replay) flush() error {
	res, err := r.sim.Process(r.pending)
	clear(r.pending)
	r.pending = r.pending[:0]
	if err != nil {
		return err
	}
	r.tally(res)
	return nil
}

func (r *Replay) tally(res *Result) {
	rep := r.report
	rep.Invalid += len(res.Invalid)
	rep.RuleErrors += len(res.EvalErrs)
	loc := r.sim.e.pol.loc
	for i := range res.Decisions {
		d := &res.Decisions[i]
		p := rep.byRule[d.RuleID]
		if p == nil {
			continue
		}
		// A match is counted at its first decision; a deferred offer's
		// final decision is its second.
		if rep.deferred[d.ID] {
			delete(rep.deferred, d.ID)
		} else {
			p.Matched++
		}
		switch d.Outcome {
		case connectors.Deferred:
			rep.deferred[d.ID] = true
		case connectors.Emitted:
			p.Emitted++
			p.ByChannel[d.Channel]++
			day := time.UnixMilli(d.DecidedAt).In(loc).Format("2006-01-02")
			p.ByDay[day]++
			if p.Budget != nil {
				p.Budget.Used++
				p.Budget.MaxPerDay = max(p.Budget.MaxPerDay, p.ByDay[day])
			}
			if d.Kind == "opportunity" && d.Mode == "" {
				rep.Opportunities[r.branch(d.CustomerID)]++
			}
		case connectors.Suppressed:
			p.Suppressed[d.Reason]++
			if d.Mode == "" {
				rep.Suppressed[d.Reason]++
			}
		}
	}
}

func (r *Replay) branch(customer string) string {
	c, ok, err := r.sim.e.store.Snapshot(customer)
	if err != nil || !ok {
		return "unknown"
	}
	if b, ok := c.Profile()["branch"].(string); ok && b != "" {
		return b
	}
	return "unknown"
}

// Finish decides the rest and releases every offer still deferred, and
// returns the report.
func (r *Replay) Finish() (*ReplayReport, error) {
	if err := r.flush(); err != nil {
		return nil, err
	}
	// Release what quiet hours still hold, up to a day after the last event.
	res, err := r.sim.Advance(r.clock.Add(24 * time.Hour))
	if err != nil {
		return nil, err
	}
	r.tally(res)
	if err := r.sim.Close(); err != nil {
		return nil, err
	}
	rep := r.report
	rep.WallSeconds = time.Since(r.started).Seconds()
	if rep.WallSeconds > 0 {
		rep.EventsPerSec = float64(rep.Events) / rep.WallSeconds
	}
	sort.Slice(rep.Rules, func(i, j int) bool { return rep.Rules[i].Rule < rep.Rules[j].Rule })
	return rep, nil
}

func asEventError(err error, target **EventError) bool {
	ee, ok := err.(*EventError)
	if ok {
		*target = ee
	}
	return ok
}

// WriteReport writes the report as md, json or csv.
func (rep *ReplayReport) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"rule", "kind", "metric", "key", "value"})
		for _, p := range rep.Rules {
			row := func(metric, key string, v int) {
				_ = cw.Write([]string{p.Rule, p.Kind, metric, key, strconv.Itoa(v)})
			}
			row("matched", "", p.Matched)
			row("emitted", "", p.Emitted)
			for _, k := range sortedKeys(p.Suppressed) {
				row("suppressed", k, p.Suppressed[k])
			}
			for _, k := range sortedKeys(p.ByChannel) {
				row("channel", k, p.ByChannel[k])
			}
			for _, k := range sortedKeys(p.ByDay) {
				row("day", k, p.ByDay[k])
			}
		}
		for _, k := range sortedKeys(rep.Opportunities) {
			_ = cw.Write([]string{"", "opportunity", "branch", k, strconv.Itoa(rep.Opportunities[k])})
		}
		cw.Flush()
		return cw.Error()
	case "md", "":
		fmt.Fprintf(w, "# Replay\n\n%d events from %s to %s (%d invalid, %d rule errors), replayed in %.2fs (%.0f events/s).\n\n",
			rep.Events, rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), rep.Invalid, rep.RuleErrors, rep.WallSeconds, rep.EventsPerSec)
		fmt.Fprintln(w, "| rule | kind | matched | emitted | suppressed (by reason) | by channel | budget used |")
		fmt.Fprintln(w, "|---|---|---:|---:|---|---|---|")
		// A shadow rule's row is what it would have done ("would emit").
		for _, p := range rep.Rules {
			budget := ""
			if b := p.Budget; b != nil {
				budget = fmt.Sprintf("%d of %s (most in a day %d of %s)", b.Used, limitStr(b.Total), b.MaxPerDay, limitStr(b.PerDay))
			}
			kind := p.Kind
			if p.Mode == "shadow" {
				kind += " (shadow)"
			}
			fmt.Fprintf(w, "| %s | %s | %d | %d | %s | %s | %s |\n", p.Rule, kind, p.Matched, p.Emitted, kv(p.Suppressed), kv(p.ByChannel), budget)
		}
		fmt.Fprintln(w, "\n## Offers per rule and day\n\n| rule | day | emitted |\n|---|---|---:|")
		for _, p := range rep.Rules {
			for _, d := range sortedKeys(p.ByDay) {
				fmt.Fprintf(w, "| %s | %s | %d |\n", p.Rule, d, p.ByDay[d])
			}
		}
		fmt.Fprintf(w, "\n## Suppressions\n\n%s\n", kvLines(rep.Suppressed))
		fmt.Fprintf(w, "\n## Opportunities per branch\n\n%s\n", kvLines(rep.Opportunities))
		return nil
	}
	return fmt.Errorf("unknown format %q (use md, json or csv)", format)
}

func limitStr(n int64) string {
	if n == 0 {
		return "∞"
	}
	return strconv.FormatInt(n, 10)
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func kv(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func kvLines(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var b strings.Builder
	for _, k := range sortedKeys(m) {
		fmt.Fprintf(&b, "- %s: %d\n", k, m[k])
	}
	return b.String()
}

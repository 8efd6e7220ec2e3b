package engine

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/kairos-engine/kairos/connectors"
)

// EffectReport is what kairos report prints: per rule, over a time range,
// what it matched, sent, had suppressed, got delivered, clicked and
// converted, and its uplift over its holdout group.
type EffectReport struct {
	From     time.Time     `json:"from"`
	To       time.Time     `json:"to"`
	Rules    []*RuleEffect `json:"rules"`
	byID     map[string]*RuleEffect
	offer    map[string]string // offer id -> rule
	deferred map[string]bool   // offer ids deferred, awaiting their final decision
}

// RuleEffect is one rule's figures.
type RuleEffect struct {
	Rule       string         `json:"rule"`
	Matched    int            `json:"matched"`
	Emitted    int            `json:"emitted"`
	Suppressed map[string]int `json:"suppressed"`
	Holdout    int            `json:"holdout"`
	Delivered  int            `json:"delivered"`
	Failed     int            `json:"failed"`
	Clicked    int            `json:"clicked"`
	Converted  map[string]int `json:"converted"` // by group
	// Conversion rates of the treatment (converted / emitted) and holdout
	// (converted / held out) groups, the uplift (their difference) and its
	// 95% confidence interval (normal approximation); nil without data.
	RateTreatment *float64   `json:"rate_treatment,omitempty"`
	RateHoldout   *float64   `json:"rate_holdout,omitempty"`
	Uplift        *float64   `json:"uplift,omitempty"`
	UpliftCI      [2]float64 `json:"uplift_ci95,omitempty"`
}

// NewEffectReport starts a report of the range.
func NewEffectReport(from, to time.Time) *EffectReport {
	return &EffectReport{From: from, To: to, byID: map[string]*RuleEffect{}, offer: map[string]string{}, deferred: map[string]bool{}}
}

func (r *EffectReport) rule(id string) *RuleEffect {
	e := r.byID[id]
	if e == nil {
		e = &RuleEffect{Rule: id, Suppressed: map[string]int{}, Converted: map[string]int{}}
		r.byID[id] = e
		r.Rules = append(r.Rules, e)
	}
	return e
}

// AddDecision adds a decision record (live ones; shadow records are left
// out, they sent nothing).
func (r *EffectReport) AddDecision(d *connectors.Decision) {
	if d.Mode == "shadow" {
		return
	}
	e := r.rule(d.RuleID)
	if d.Outcome == connectors.Converted {
		e.Converted[d.Group]++
		return
	}
	if r.deferred[d.ID] {
		delete(r.deferred, d.ID) // the final decision of a deferred match
	} else {
		e.Matched++
	}
	switch d.Outcome {
	case connectors.Deferred:
		r.deferred[d.ID] = true
	case connectors.Emitted:
		e.Emitted++
		r.offer[d.ID] = d.RuleID
	case connectors.Suppressed:
		e.Suppressed[d.Reason]++
		if d.Reason == ReasonHoldout {
			e.Holdout++
		}
	}
}

// AddFeedback adds a feedback event (offer_sent, offer_failed,
// offer_clicked) by its attributes.
func (r *EffectReport) AddFeedback(typ string, attrs map[string]any) {
	id, _ := attrs["offer_id"].(string)
	rule, _ := attrs["rule_id"].(string)
	if rule == "" {
		rule = r.offer[id]
	}
	if rule == "" {
		return
	}
	e := r.rule(rule)
	switch typ {
	case connectors.EventOfferSent, "offer_delivered":
		e.Delivered++
	case connectors.EventOfferFailed:
		e.Failed++
	case "offer_clicked":
		e.Clicked++
	}
}

// Finish computes the rates and the uplift.
func (r *EffectReport) Finish() *EffectReport {
	sort.Slice(r.Rules, func(i, j int) bool { return r.Rules[i].Rule < r.Rules[j].Rule })
	for _, e := range r.Rules {
		nt, nh := float64(e.Emitted), float64(e.Holdout)
		if nt > 0 {
			v := float64(e.Converted[connectors.GroupTreatment]) / nt
			e.RateTreatment = &v
		}
		if nh > 0 {
			v := float64(e.Converted[connectors.GroupHoldout]) / nh
			e.RateHoldout = &v
		}
		if e.RateTreatment != nil && e.RateHoldout != nil {
			pt, ph := *e.RateTreatment, *e.RateHoldout
			u := pt - ph
			se := math.Sqrt(pt*(1-pt)/nt + ph*(1-ph)/nh)
			e.Uplift = &u
			e.UpliftCI = [2]float64{u - 1.96*se, u + 1.96*se}
		}
	}
	return r
}

func pct(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(100**v, 'f', 2, 64) + "%"
}

// Write writes the report as md, json or csv.
func (r *EffectReport) Write(w io.Writer, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"rule", "matched", "emitted", "suppressed", "holdout", "delivered", "failed", "clicked", "converted_treatment", "converted_holdout", "rate_treatment", "rate_holdout", "uplift", "uplift_ci_low", "uplift_ci_high"})
		for _, e := range r.Rules {
			f := func(v *float64) string {
				if v == nil {
					return ""
				}
				return strconv.FormatFloat(*v, 'f', 6, 64)
			}
			lo, hi := "", ""
			if e.Uplift != nil {
				lo, hi = strconv.FormatFloat(e.UpliftCI[0], 'f', 6, 64), strconv.FormatFloat(e.UpliftCI[1], 'f', 6, 64)
			}
			_ = cw.Write([]string{e.Rule, strconv.Itoa(e.Matched), strconv.Itoa(e.Emitted), strconv.Itoa(sumMap(e.Suppressed)), strconv.Itoa(e.Holdout),
				strconv.Itoa(e.Delivered), strconv.Itoa(e.Failed), strconv.Itoa(e.Clicked), strconv.Itoa(e.Converted[connectors.GroupTreatment]),
				strconv.Itoa(e.Converted[connectors.GroupHoldout]), f(e.RateTreatment), f(e.RateHoldout), f(e.Uplift), lo, hi})
		}
		cw.Flush()
		return cw.Error()
	case "md", "":
		fmt.Fprintf(w, "# Rule effects\n\n%s to %s.\n\n", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
		fmt.Fprintln(w, "| rule | matched | emitted | suppressed | delivered | clicked | converted (treatment / holdout) | rate treatment | rate holdout | uplift (95% CI) |")
		fmt.Fprintln(w, "|---|---:|---:|---|---:|---:|---|---:|---:|---|")
		for _, e := range r.Rules {
			up := "—"
			if e.Uplift != nil {
				up = fmt.Sprintf("%+.2f pp (%+.2f to %+.2f)", 100**e.Uplift, 100*e.UpliftCI[0], 100*e.UpliftCI[1])
			}
			fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %d | %d / %d of %d | %s | %s | %s |\n", e.Rule, e.Matched, e.Emitted, kv(e.Suppressed),
				e.Delivered, e.Clicked, e.Converted[connectors.GroupTreatment], e.Converted[connectors.GroupHoldout], e.Holdout,
				pct(e.RateTreatment), pct(e.RateHoldout), up)
		}
		fmt.Fprintln(w, "\nRates: conversions per offer emitted (treatment) and per holdout decision (holdout). The uplift is their difference in percentage points; the interval is a normal approximation, wide when the groups are small.")
		return nil
	}
	return fmt.Errorf("unknown format %q (use md, json or csv)", format)
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

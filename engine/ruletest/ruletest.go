// Package ruletest runs rule unit tests: YAML files that give a rule set,
// an optional policy override, and tests of events at virtual times with
// the offers and suppressions they must produce. Tests run on the
// engine's own Simulator (windows, rules, policy, budgets, quiet hours), on
// isolated in-memory state, so what passes here is what the live engine
// decides. kairos rules test is its command; go test runs it over the
// project's example and test rules.
package ruletest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine"
	"github.com/kairos-engine/kairos/rules"
)

// File is one test file.
type File struct {
	RuleFiles []string             `yaml:"rule_files"`
	Policy    *engine.PolicyConfig `yaml:"policy"`
	Horizon   string               `yaml:"horizon"`
	Tests     []Test               `yaml:"tests"`
}

// Test is one scenario.
type Test struct {
	Name     string                    `yaml:"name"`
	Start    time.Time                 `yaml:"start"`
	Profiles map[string]map[string]any `yaml:"profiles"`
	Events   []Step                    `yaml:"events"`
	// ExpectOffers, when given, is exactly the offers that must go out
	// (an empty list: none). ExpectSuppressed likewise for suppressions.
	ExpectOffers     *[]Expect `yaml:"expect_offers"`
	ExpectSuppressed *[]Expect `yaml:"expect_suppressed"`
	line             int
}

// Step is an event at a time, or (without a type) a move of the clock.
type Step struct {
	At       string         `yaml:"at"` // +1h30m relative to start, or RFC 3339
	ID       string         `yaml:"id"`
	Customer string         `yaml:"customer"`
	Type     string         `yaml:"type"`
	Attrs    map[string]any `yaml:"attrs"`
}

// Expect is one expected offer or suppression; empty fields match anything.
type Expect struct {
	At       string `yaml:"at"`
	Customer string `yaml:"customer"`
	Rule     string `yaml:"rule"`
	Channel  string `yaml:"channel"`
	Reason   string `yaml:"reason"`
}

// Summary counts the outcome of a run.
type Summary struct {
	Files, Tests, Failed int
}

// RunFiles runs every test file and writes a report to w. It returns an
// error for files that cannot be run (bad YAML, rules that do not load);
// failed tests are counted in the summary.
func RunFiles(w io.Writer, paths ...string) (Summary, error) {
	var sum Summary
	var errs []error
	for _, p := range paths {
		n, failed, err := runFile(w, p)
		sum.Files++
		sum.Tests += n
		sum.Failed += failed
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sum, errors.Join(errs...)
}

func runFile(w io.Writer, path string) (int, int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, err
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	var node yaml.Node
	_ = yaml.Unmarshal(data, &node)
	lines := testLines(&node)
	for i := range f.Tests {
		if i < len(lines) {
			f.Tests[i].line = lines[i]
		}
	}
	var ruleFiles []string
	for _, g := range f.RuleFiles {
		if !filepath.IsAbs(g) {
			g = filepath.Join(filepath.Dir(path), g)
		}
		m, err := filepath.Glob(g)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: rule_files %q: %w", path, g, err)
		}
		if len(m) == 0 {
			return 0, 0, fmt.Errorf("%s: rule_files %q matches no file", path, g)
		}
		ruleFiles = append(ruleFiles, m...)
	}
	if len(ruleFiles) == 0 {
		return 0, 0, fmt.Errorf("%s: rule_files is empty", path)
	}
	opts := rules.Options{}
	if f.Horizon != "" {
		if opts.Horizon, err = rules.ParseDuration(f.Horizon); err != nil {
			return 0, 0, fmt.Errorf("%s: horizon: %w", path, err)
		}
	}
	rs, err := rules.Load(opts, ruleFiles...)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: rule_files:\n%w", path, err)
	}
	failed := 0
	for i := range f.Tests {
		t := &f.Tests[i]
		var pol engine.PolicyConfig
		if f.Policy != nil {
			pol = *f.Policy
		}
		report, err := runTest(rs, pol, t)
		where := fmt.Sprintf("%s:%d", path, t.line)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(w, "--- FAIL: %s (%s)\n    %v\n", t.Name, where, err)
		case report != "":
			failed++
			fmt.Fprintf(w, "--- FAIL: %s (%s)\n%s", t.Name, where, report)
		default:
			fmt.Fprintf(w, "--- PASS: %s\n", t.Name)
		}
	}
	return len(f.Tests), failed, nil
}

// testLines finds the line of each test under tests:.
func testLines(doc *yaml.Node) []int {
	if len(doc.Content) == 0 {
		return nil
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "tests" {
			var out []int
			for _, t := range root.Content[i+1].Content {
				out = append(out, t.Line)
			}
			return out
		}
	}
	return nil
}

func parseAt(start time.Time, s string) (time.Time, error) {
	switch {
	case s == "":
		return start, nil
	case strings.HasPrefix(s, "+"):
		d, err := rules.ParseDuration(s[1:])
		if err != nil {
			return time.Time{}, err
		}
		return start.Add(d), nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// outcome is one observed offer or suppression, written like an Expect.
type outcome struct {
	at       time.Duration
	customer string
	rule     string
	channel  string
	reason   string
}

func (o outcome) String() string {
	s := fmt.Sprintf("%-8s %-10s %s", "+"+rules.FormatDuration(o.at), o.customer, o.rule)
	if o.channel != "" {
		s += " on " + o.channel
	}
	if o.reason != "" {
		s += " (" + o.reason + ")"
	}
	return s
}

func runTest(rs *rules.RuleSet, pol engine.PolicyConfig, t *Test) (string, error) {
	if t.Start.IsZero() {
		return "", fmt.Errorf("start is missing")
	}
	sim, err := engine.NewSimulator(engine.SimOptions{Rules: rs, Policy: pol})
	if err != nil {
		return "", err
	}
	defer sim.Close()
	for cust, attrs := range t.Profiles {
		if err := sim.SetProfile(cust, attrs); err != nil {
			return "", err
		}
	}
	var offers, suppressed []outcome
	var problems []string
	collect := func(res *engine.Result) {
		for _, d := range res.Decisions {
			if d.Mode == "shadow" {
				continue // a shadow rule sends nothing: not an offer or a suppression
			}
			at := time.UnixMilli(d.DecidedAt).Sub(t.Start)
			switch d.Outcome {
			case connectors.Emitted:
				offers = append(offers, outcome{at, d.CustomerID, d.RuleID, d.Channel, ""})
			case connectors.Suppressed:
				suppressed = append(suppressed, outcome{at, d.CustomerID, d.RuleID, "", d.Reason})
			}
		}
		for _, e := range res.Invalid {
			problems = append(problems, "    invalid event: "+e.Error())
		}
		for _, e := range res.EvalErrs {
			problems = append(problems, "    rule error: "+e)
		}
	}
	for i, st := range t.Events {
		at, err := parseAt(t.Start, st.At)
		if err != nil {
			return "", fmt.Errorf("events[%d].at %q: %v", i, st.At, err)
		}
		if st.Type == "" {
			res, err := sim.Advance(at)
			if err != nil {
				return "", err
			}
			collect(res)
			continue
		}
		id := st.ID
		if id == "" {
			id = fmt.Sprintf("e%d", i+1)
		}
		res, err := sim.Process([]engine.SimEvent{{At: at, Event: engine.Event{ID: id, CustomerID: st.Customer, Type: st.Type, TS: at.UnixMilli(), Attrs: engine.NormalizeAttrs(st.Attrs)}}})
		if err != nil {
			return "", err
		}
		collect(res)
	}
	var b strings.Builder
	for _, p := range problems {
		b.WriteString(p + "\n")
	}
	if t.ExpectOffers != nil {
		b.WriteString(diff("offers", t.Start, *t.ExpectOffers, offers, false))
	}
	if t.ExpectSuppressed != nil {
		b.WriteString(diff("suppressed", t.Start, *t.ExpectSuppressed, suppressed, true))
	}
	return b.String(), nil
}

func (e Expect) matches(start time.Time, o outcome, withReason bool) bool {
	if e.At != "" {
		at, err := parseAt(start, e.At)
		if err != nil || at.Sub(start) != o.at {
			return false
		}
	}
	return (e.Customer == "" || e.Customer == o.customer) && (e.Rule == "" || e.Rule == o.rule) &&
		(e.Channel == "" || e.Channel == o.channel) && (!withReason || e.Reason == "" || e.Reason == o.reason)
}

func (e Expect) String() string {
	s := fmt.Sprintf("%-8s %-10s %s", e.At, e.Customer, e.Rule)
	if e.Channel != "" {
		s += " on " + e.Channel
	}
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// diff pairs expectations with outcomes in order and reports the rest.
func diff(what string, start time.Time, want []Expect, got []outcome, withReason bool) string {
	used := make([]bool, len(got))
	var missing []string
	for _, e := range want {
		found := false
		for i, o := range got {
			if !used[i] && e.matches(start, o, withReason) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			missing = append(missing, e.String())
		}
	}
	var extra []string
	for i, o := range got {
		if !used[i] {
			extra = append(extra, o.String())
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return ""
	}
	sort.Strings(missing)
	var b strings.Builder
	fmt.Fprintf(&b, "    %s differ (- expected, + got):\n", what)
	for _, m := range missing {
		fmt.Fprintf(&b, "      - %s\n", m)
	}
	for _, x := range extra {
		fmt.Fprintf(&b, "      + %s\n", x)
	}
	return b.String()
}

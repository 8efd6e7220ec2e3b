package rules

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// checkRun is one run of kairos rules check.
type checkRun struct {
	name      string
	catalogue string
	verbose   bool
	strict    bool
	paths     []string
}

func (c checkRun) command() string {
	args := []string{"kairos", "rules", "check"}
	if c.catalogue != "" {
		args = append(args, "--catalogue", c.catalogue)
	}
	if c.verbose {
		args = append(args, "--verbose")
	}
	if c.strict {
		args = append(args, "--strict")
	}
	return strings.Join(append(args, c.paths...), " ")
}

// run does what cmd/kairos/rulescmd.go does once the flags are parsed.
func (c checkRun) run(t *testing.T) (stdout, stderr string, exit int) {
	t.Helper()
	var opts Options
	var out, errw bytes.Buffer
	if c.catalogue != "" {
		cat, err := LoadCatalogue(c.catalogue)
		if err != nil {
			t.Fatal(err)
		}
		opts.Catalogue = cat
	}
	rep := Check(opts, c.paths...)
	FormatFindings(&errw, rep.Findings)
	failed := rep.Failed(c.strict)
	if !failed {
		FormatSummary(&out, rep.RuleSet)
	}
	if c.verbose && rep.RuleSet != nil {
		FormatTable(&out, rep.RuleSet)
	}
	if failed {
		exit = 1
	}
	return out.String(), errw.String(), exit
}

const checkCatalogue = "testdata/check/catalogue.yaml"

// TestCheckGolden runs kairos rules check on the sets under testdata/check
// and compares everything it prints, and its exit code, with the golden
// file of the run.
func TestCheckGolden(t *testing.T) {
	runs := []checkRun{
		{name: "good", verbose: true, paths: []string{"testdata/check/good"}},
		{name: "good_catalogue", catalogue: checkCatalogue, strict: true, paths: []string{"testdata/check/good"}},
		{name: "warnings", paths: []string{"testdata/check/warnings"}},
		{name: "warnings_catalogue", catalogue: checkCatalogue, verbose: true, paths: []string{"testdata/check/warnings"}},
		{name: "warnings_strict", catalogue: checkCatalogue, strict: true, paths: []string{"testdata/check/warnings"}},
		{name: "bad", paths: []string{"testdata/check/bad"}},
		{name: "bad_catalogue", catalogue: checkCatalogue, paths: []string{"testdata/check/bad/defs.yaml", "testdata/check/bad/rules.yaml"}},
		{name: "bad_format", paths: []string{"testdata/bad/format_errors.yaml", "testdata/check/good/lists.yaml"}},
	}
	for _, c := range runs {
		t.Run(c.name, func(t *testing.T) {
			stdout, stderr, exit := c.run(t)
			got := fmt.Sprintf("$ %s\nexit %d\n--- stderr\n%s--- stdout\n%s", c.command(), exit, stderr, stdout)
			golden := filepath.Join("testdata/check", c.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./rules -run CheckGolden -update)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestCheckFindings(t *testing.T) {
	cat, err := LoadCatalogue(checkCatalogue)
	if err != nil {
		t.Fatal(err)
	}
	rep := Check(Options{Catalogue: cat}, "testdata/check/bad", "testdata/check/warnings")
	if rep.RuleSet != nil {
		t.Fatal("a set with errors has a RuleSet")
	}
	var checks []string
	for _, f := range rep.Findings {
		switch f.Severity {
		case SeverityError:
			var e *Error
			if !errors.As(f.Err, &e) || f.Check != "" {
				t.Errorf("error finding %v has no *Error", f)
			}
		case SeverityWarning:
			if f.Err != nil || f.Check == "" {
				t.Errorf("warning %v", f)
			}
			if !slices.Contains(checks, f.Check) {
				checks = append(checks, f.Check)
			}
		}
	}
	slices.Sort(checks)
	want := []string{CheckAlwaysFails, CheckNeverFires, CheckNonNumeric, CheckOverlap, CheckShadowOffers, CheckUnknownAttr}
	if !slices.Equal(checks, want) {
		t.Errorf("checks %v, want %v (unused is left out of a set with errors)", checks, want)
	}
	for _, f := range rep.Findings {
		if f.Check == CheckOverlap && (f.Related.Line == 0 || f.Related == f.Pos) {
			t.Errorf("overlap without the other rule's position: %+v", f)
		}
	}
	if !rep.Failed(false) || rep.Count(SeverityError) == 0 {
		t.Fatal("errors do not fail the check")
	}
}

func TestLintOfLoadedSet(t *testing.T) {
	rs, err := Load(Options{}, "testdata/check/warnings")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	FormatFindings(&b, rs.Lint())
	if !strings.HasSuffix(b.String(), "\n9 warning(s)\n") {
		t.Fatalf("lint:\n%s", b.String())
	}
	rs, err = Load(Options{}, "testdata/good.yaml", "../examples/rules")
	if err == nil {
		t.Fatal("duplicate ids load")
	}
	for _, p := range []string{"testdata/good.yaml", "../examples/rules", "testdata/check/good"} {
		rs, err := Load(Options{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if fs := rs.Lint(); len(fs) != 0 {
			t.Errorf("%s: %v", p, fs)
		}
	}
}

// TestLintAfterReleaseSources checks that a set whose sources were
// released still lints, with positions at its expressions.
func TestLintAfterReleaseSources(t *testing.T) {
	src := `macros:
  unused_macro: event.attrs.a == "x"
rules:
  - {id: r, on: [login], when: 'true && event.attrs.a == "x"', offer: {channels: [sms], params: {p: '1 + 1'}}}
`
	rs, err := compileTB(t, Options{}, src)
	if err != nil {
		t.Fatal(err)
	}
	before := rs.Lint()
	rs.ReleaseSources()
	after := rs.Lint()
	if len(before) == 0 || len(after) != len(before) {
		t.Fatalf("findings before %v, after %v", before, after)
	}
	for i := range after {
		if after[i].Check != before[i].Check || after[i].Pos.File != before[i].Pos.File || after[i].Pos.Line == 0 {
			t.Errorf("finding %d: before %v, after %v", i, before[i], after[i])
		}
	}
	ev := rs.NewEvaluator()
	ms, errs := ev.Evaluate(t.Context(), &Input{Event: Event{Type: "login", Attrs: map[string]any{"a": "x"}}, Now: time.Unix(0, 0), Windows: fixedWindows{}}, nil)
	if len(ms) != 1 || errs != nil {
		t.Errorf("after ReleaseSources: matches %v, errors %v", ms, errs)
	}
}

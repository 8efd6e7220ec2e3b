package ruletest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestExampleRules runs the unit tests shipped with the example rules.
func TestExampleRules(t *testing.T) {
	files, _ := filepath.Glob("../../examples/tests/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example tests")
	}
	var out bytes.Buffer
	sum, err := RunFiles(&out, files...)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed > 0 || sum.Tests == 0 {
		t.Fatalf("%d of %d tests failed", sum.Failed, sum.Tests)
	}
}

func TestPolicyOverrideAndVirtualClock(t *testing.T) {
	var out bytes.Buffer
	sum, err := RunFiles(&out, "testdata/policy_test.yaml")
	if err != nil || sum.Failed != 0 || sum.Tests != 2 {
		t.Fatalf("%+v %v\n%s", sum, err, out.String())
	}
}

// TestFailureReportGolden checks the diff a failing test prints.
func TestFailureReportGolden(t *testing.T) {
	var out bytes.Buffer
	sum, err := RunFiles(&out, "testdata/failing_test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if sum.Failed != 1 || sum.Tests != 2 {
		t.Errorf("summary %+v", sum)
	}
	want := `--- FAIL: expects the wrong rule and misses an offer (testdata/failing_test.yaml:3)
    offers differ (- expected, + got):
      - +0s      A          promo
      + +0s      A          nudge on sms
--- PASS: passes
`
	if out.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestBadTestFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"unknown field":     "rule_files: [x]\ntests:\n  - name: a\n    strat: 2026-01-01T00:00:00Z\n",
		"no rule files":     "tests: []\n",
		"rule file missing": "rule_files: [nothing-*.yaml]\ntests: []\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "t.yaml")
			os.WriteFile(p, []byte(body), 0o644)
			if _, err := RunFiles(&bytes.Buffer{}, p); err == nil {
				t.Error("no error")
			}
		})
	}
}

package engine

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type opsAlertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func opsAlertRules(t *testing.T) []opsAlertRule {
	t.Helper()
	b, err := os.ReadFile(opsRepoFile("deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string         `yaml:"name"`
			Rules []opsAlertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	var out []opsAlertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("alerts.yml has no rules")
	}
	return out
}

// opsAnchors returns the GitHub anchors of a Markdown file's headings.
func opsAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	out := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimLeft(h, "#")
			a := drop.ReplaceAllString(strings.ToLower(strings.TrimSpace(h)), "")
			out[strings.ReplaceAll(a, " ", "-")] = true
		}
	}
	return out
}

// TestAlertRules checks deploy/prometheus/alerts.yml: every alert has a
// severity, a summary, a description and a runbook link to its own section
// of docs/operations.md; its expression names only metrics Kairos exports,
// Prometheus' up, or the connectors' coming metrics of docs/metrics.md; and
// the alerts the operations issue asks for exist.
func TestAlertRules(t *testing.T) {
	alerts := opsAlertRules(t)
	anchors := opsAnchors(t, opsRepoFile("docs", "operations.md"))
	// A connector, so that the connector metrics the alerts use are exported.
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	te := startOpsEngine(t, func(c *Config) {
		c.Connectors = []ConnectorConfig{{Name: "audit", Type: "file", Channel: "app_push", Settings: map[string]any{"path": out}}}
		c.Batch.Jobs = []BatchJob{{Name: "birthdays", Type: "birthday", Schedule: "0 9 1 1 *"}}
	})
	te.opsScrape(t)
	exported := opsExported(t, te)
	_, coming := opsDocumented(t)
	names := map[string]bool{}
	for _, a := range alerts {
		if a.Alert == "" {
			continue // a recording rule
		}
		if names[a.Alert] {
			t.Errorf("alert %s is defined twice", a.Alert)
		}
		names[a.Alert] = true
		if !slices.Contains([]string{"critical", "warning", "info"}, a.Labels["severity"]) {
			t.Errorf("%s: severity %q (use critical, warning or info)", a.Alert, a.Labels["severity"])
		}
		if a.Annotations["summary"] == "" || a.Annotations["description"] == "" {
			t.Errorf("%s: summary and description are required", a.Alert)
		}
		_, anchor, _ := strings.Cut(a.Annotations["runbook_url"], "docs/operations.md#")
		if anchor != strings.ToLower(a.Alert) || !anchors[anchor] {
			t.Errorf("%s: runbook_url %q must point to docs/operations.md#%s, a section that exists", a.Alert, a.Annotations["runbook_url"], strings.ToLower(a.Alert))
		}
		for _, n := range promqlMetricNames(a.Expr) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
			if !opsKnownMetric(n, exported) && n != "up" && coming[n] == "" && coming[base] == "" {
				t.Errorf("%s uses %s, which Kairos does not export", a.Alert, n)
			}
		}
	}
	for _, want := range []string{
		"KairosConsumerLagGrowing", "KairosDeadLettersHigh", "KairosNoOffers", "KairosRulesReloadFailed",
		"KairosConnectorFailureRate", "KairosDiskSpaceLow", "KairosDown", "KairosStalled",
	} {
		if !names[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
}

// TestAlertRulesPromtool runs `promtool check rules` on alerts.yml, its
// unit tests (`promtool test rules alerts_test.yml`), and `promtool check
// config` on prometheus.yml, when promtool is installed.
func TestAlertRulesPromtool(t *testing.T) {
	pt := needPromtool(t)
	dir := opsRepoFile("deploy", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", dir + "/alerts.yml"},
		{"test", "rules", dir + "/alerts_test.yml"},
		{"check", "config", dir + "/prometheus.yml"},
	} {
		t.Run(strings.Join(args[:2], " "), func(t *testing.T) {
			out, err := opsRun(t, nil, pt, args...)
			if err != nil {
				t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestAlertUnitTestsCoverEveryAlert checks that alerts_test.yml tests
// every alert of alerts.yml firing.
func TestAlertUnitTestsCoverEveryAlert(t *testing.T) {
	b, err := os.ReadFile(opsRepoFile("deploy", "prometheus", "alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	fires := map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			}
		}
	}
	for _, a := range opsAlertRules(t) {
		if a.Alert != "" && !fires[a.Alert] {
			t.Errorf("alerts_test.yml never tests %s firing", a.Alert)
		}
	}
}

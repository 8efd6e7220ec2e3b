package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// opsQuery is a PromQL expression of the dashboard and where it is.
type opsQuery struct{ where, expr string }

// dashboardQueries reads deploy/grafana/kairos.json and returns every
// PromQL expression in it: panel targets (rows' panels included) and
// annotation queries. It checks the panels' structure on the way.
func dashboardQueries(t *testing.T) []opsQuery {
	t.Helper()
	b, err := os.ReadFile(opsRepoFile("deploy", "grafana", "kairos.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID         string `json:"uid"`
		Annotations struct {
			List []struct {
				Name string `json:"name"`
				Expr string `json:"expr"`
			} `json:"list"`
		} `json:"annotations"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("kairos.json: %v", err)
	}
	if d.UID == "" {
		t.Errorf("the dashboard has no uid: provisioning would make a new one at every load")
	}
	type panel struct {
		ID         int                   `json:"id"`
		Type       string                `json:"type"`
		Title      string                `json:"title"`
		GridPos    *struct{ W, H int }   `json:"gridPos"`
		Datasource *struct{ UID string } `json:"datasource"`
		Targets    []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var out []opsQuery
	ids := map[int]bool{}
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("kairos.json panel: %v", err)
			}
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("panel %q has no grid position", p.Title)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Title == "" || len(p.Targets) == 0 {
				t.Errorf("panel %d: a title and at least one query are required", p.ID)
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the $datasource variable", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q: query %s is empty", p.Title, tg.RefID)
				}
				out = append(out, opsQuery{fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, opsQuery{fmt.Sprintf("annotation %q", a.Name), a.Expr})
		}
	}
	// Template variables: label_values(metric{...}, label).
	var tv struct {
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &tv); err != nil {
		t.Fatal(err)
	}
	lv := regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_]\w*\)$`)
	for _, v := range tv.Templating.List {
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		if m := lv.FindStringSubmatch(s); m != nil {
			out = append(out, opsQuery{fmt.Sprintf("variable %q", v.Name), m[1]})
		}
	}
	return out
}

// TestDashboardQueriesExportedMetrics fails if a query of the Grafana
// dashboard names a metric that Kairos does not export (a histogram's
// _bucket, _sum and _count series, and the Go and process collectors'
// metrics, count as exported), or if the dashboard leaves out one of the
// views the operations issue asks for.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	queries := dashboardQueries(t)
	te := startOpsEngine(t, nil)
	te.opsScrape(t)
	exported := opsExported(t, te)
	used := map[string]bool{}
	for _, q := range queries {
		names := promqlMetricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if !opsKnownMetric(n, exported) {
				t.Errorf("%s queries %s, which Kairos does not export", q.where, n)
			}
		}
	}
	for view, metric := range map[string]string{
		"throughput":             "kairos_engine_events_total",
		"offers":                 "kairos_offers_total",
		"latency percentiles":    "kairos_engine_arrival_to_offer_seconds_bucket",
		"suppressions by reason": "kairos_offers_suppressed_total",
		"consumer lag":           "kairos_consumer_pending_messages",
		"DLQ rate":               "kairos_engine_dead_letters_total",
		"per-rule matches":       "kairos_engine_rule_matches_total",
		"state size":             "kairos_state_lsm_size_bytes",
		"value log size":         "kairos_state_vlog_size_bytes",
		"cache hit ratio":        "kairos_state_cache_misses_total",
		"disk space":             "kairos_data_filesystem_avail_bytes",
		"commit latency":         "kairos_state_commit_duration_seconds_bucket",
		"rules reloads":          "kairos_rules_reload_total",
		"outbox":                 "kairos_engine_outbox_records",
		"process memory":         "process_resident_memory_bytes",
	} {
		if !used[metric] {
			t.Errorf("the dashboard has no %s view (no query of %s)", view, metric)
		}
	}
}

// grafanaVars replaces the dashboard's variables by values PromQL accepts.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "$__interval", "1m",
	"$instance", ".*", "$job", ".*", "$rule", ".*")

// TestDashboardQueriesParse has promtool parse every query of the
// dashboard, as the expressions of recording rules, when promtool is
// installed.
func TestDashboardQueriesParse(t *testing.T) {
	pt := needPromtool(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rs []rule
	for i, q := range dashboardQueries(t) {
		rs = append(rs, rule{Record: fmt.Sprintf("dashboard:query_%d", i), Expr: grafanaVars.Replace(q.expr)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rs}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := opsRun(t, nil, pt, "check", "rules", f); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

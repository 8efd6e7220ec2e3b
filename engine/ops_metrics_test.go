package engine

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// TestMetricsScrapePassesPromtool scrapes a working engine over HTTP and
// lints the exposition: with client_golang's promlint always (the linter
// promtool uses), and with `promtool check metrics` when it is installed.
func TestMetricsScrapePassesPromtool(t *testing.T) {
	te := startOpsEngine(t, nil)
	body := te.opsScrape(t)

	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("promlint cannot parse /metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	// The series the issue asks for, with their labels.
	want := map[string]func(v float64) bool{
		`kairos_engine_events_total{type="txn"}`:                                                func(v float64) bool { return v == 3 },
		`kairos_engine_dead_letters_total{reason="decode"}`:                                     func(v float64) bool { return v == 1 },
		`kairos_engine_dead_letters_total{reason="eval"}`:                                       func(v float64) bool { return v == 1 },
		`kairos_engine_rule_errors_total{rule="fragile"}`:                                       func(v float64) bool { return v == 1 },
		`kairos_engine_rule_matches_total{rule="first-login"}`:                                  func(v float64) bool { return v == 1 },
		`kairos_offers_total{channel="app_push",rule="first-login"}`:                            func(v float64) bool { return v == 1 },
		`kairos_rules_reload_total{result="success"}`:                                           func(v float64) bool { return v == 0 },
		`kairos_rules_reload_total{result="failure"}`:                                           func(v float64) bool { return v == 0 },
		`kairos_rule_budget_remaining{period="total",rule="big-txn"}`:                           func(v float64) bool { return v > 0 },
		`kairos_consumer_pending_messages{consumer="kairos-engine",stream="KAIROS_EVENTS"}`:     func(v float64) bool { return v == 0 },
		`kairos_consumer_ack_pending_messages{consumer="kairos-engine",stream="KAIROS_EVENTS"}`: func(v float64) bool { return v >= 0 },
		`kairos_consumer_redelivered_messages{consumer="kairos-engine",stream="KAIROS_EVENTS"}`: func(v float64) bool { return v >= 0 },
		`kairos_stream_messages{role="events",stream="KAIROS_EVENTS"}`:                          func(v float64) bool { return v == 7 },
		`kairos_stream_messages{role="dlq",stream="KAIROS_DLQ"}`:                                func(v float64) bool { return v == 2 },
		`kairos_stream_bytes{role="offers",stream="KAIROS_OFFERS"}`:                             func(v float64) bool { return v > 0 },
		`kairos_engine_outbox_records `:                                                         func(v float64) bool { return v >= 0 },
		`kairos_data_filesystem_size_bytes `:                                                    func(v float64) bool { return v > 0 },
		`kairos_data_filesystem_avail_bytes `:                                                   func(v float64) bool { return v > 0 },
		`kairos_state_cache_hits_total `:                                                        func(v float64) bool { return v >= 0 },
		`kairos_state_lsm_size_bytes `:                                                          func(v float64) bool { return v >= 0 },
		`kairos_state_vlog_size_bytes `:                                                         func(v float64) bool { return v >= 0 },
		`kairos_engine_rules_loaded `:                                                           func(v float64) bool { return v == 3 },
		`kairos_engine_ready `:                                                                  func(v float64) bool { return v == 1 },
		`kairos_engine_arrival_to_offer_seconds_count `:                                         func(v float64) bool { return v == 2 },
		`kairos_engine_event_time_to_offer_seconds_count `:                                      func(v float64) bool { return v == 2 },
		`kairos_engine_batch_size_count `:                                                       func(v float64) bool { return v >= 1 },
		`kairos_state_commit_duration_seconds_count `:                                           func(v float64) bool { return v >= 1 },
		`kairos_engine_collect_errors_total{source="consumer"}`:                                 func(v float64) bool { return v == 0 },
		`go_goroutines `:                 func(v float64) bool { return v > 0 },
		`process_resident_memory_bytes `: func(v float64) bool { return v > 0 },
		// The collector's CPU accounting (RuntimeCollectors), which kairos
		// bench reads.
		`go_gc_cycles_total_gc_cycles_total `:                       func(v float64) bool { return v > 0 },
		`go_cpu_classes_gc_total_cpu_seconds_total `:                func(v float64) bool { return v > 0 },
		`go_cpu_classes_gc_mark_assist_cpu_seconds_total `:          func(v float64) bool { return v >= 0 },
		`go_cpu_classes_user_cpu_seconds_total `:                    func(v float64) bool { return v > 0 },
		`go_cpu_classes_scavenge_total_cpu_seconds_total `:          func(v float64) bool { return v >= 0 },
		`kairos_http_requests_total{code="200",handler="/metrics"}`: func(v float64) bool { return v >= 1 },
	}
	// The HTTP counter sees this scrape only at the next one.
	body = te.opsScrape(t)
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s, ok := opsSeries(body, k)
		if !ok {
			t.Errorf("/metrics has no series %s", k)
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !want[k](v) {
			t.Errorf("%s = %s, not what it should be", k, s)
		}
	}
	if !regexp.MustCompile(`(?m)^kairos_build_info\{goversion="go[^"]+",revision="[^"]*",version="[^"]+"\} 1$`).MatchString(body) {
		t.Errorf("no kairos_build_info series")
	}
	// No customer id is a label value.
	for _, id := range []string{"C1", "C2", "C3"} {
		if strings.Contains(body, `"`+id+`"`) {
			t.Errorf("customer id %s appears as a label value in /metrics", id)
		}
	}

	pt := needPromtool(t)
	out, err := opsRun(t, []byte(body), pt, "check", "metrics")
	if err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// documentedMetrics reads the metric names of docs/metrics.md: the first
// column of its tables. coming are those of the section "Coming", which
// Kairos does not export yet.
func opsDocumented(t *testing.T) (current, coming map[string]string) {
	t.Helper()
	f, err := os.Open(opsRepoFile("docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	current, coming = map[string]string{}, map[string]string{}
	row := regexp.MustCompile("^\\| `([a-z_:][a-z0-9_:]*)` \\| (counter|gauge|histogram|summary|untyped) \\|")
	dst := current
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			dst = current
			if strings.HasPrefix(line, "## Coming") {
				dst = coming
			}
		}
		if m := row.FindStringSubmatch(line); m != nil {
			if _, dup := current[m[1]]; dup {
				t.Errorf("docs/metrics.md documents %s twice", m[1])
			}
			dst[m[1]] = m[2]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(current) < 30 {
		t.Fatalf("docs/metrics.md: found only %d metrics in its tables; is the table format | `name` | type | ... |?", len(current))
	}
	return current, coming
}

// TestDocumentedMetricsAreExported checks docs/metrics.md against a
// working engine's registry: every kairos_ metric exported is documented
// with its type, and every metric documented is exported, except those
// documented as coming.
func TestDocumentedMetricsAreExported(t *testing.T) {
	// A connector, so that the connector metrics have series.
	out := filepath.Join(t.TempDir(), "audit.jsonl")
	te := startOpsEngine(t, func(c *Config) {
		c.Connectors = []ConnectorConfig{{Name: "audit", Type: "file", Channel: "app_push", Settings: map[string]any{"path": out}}}
		c.Batch.Jobs = []BatchJob{{Name: "birthdays", Type: "birthday", Schedule: "0 9 1 1 *"}}
	})
	te.opsScrape(t) // the HTTP counter has a series once a request was served
	exported := opsExported(t, te)
	documented, coming := opsDocumented(t)
	for name, typ := range exported {
		if !strings.HasPrefix(name, "kairos_") {
			continue
		}
		dt, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("%s (%s) is exported but not documented in docs/metrics.md", name, typ)
		case dt != typ:
			t.Errorf("%s is a %s, docs/metrics.md says %s", name, typ, dt)
		}
	}
	for name := range documented {
		if _, ok := exported[name]; !ok {
			t.Errorf("docs/metrics.md documents %s, which Kairos does not export", name)
		}
	}
	for name := range coming {
		if _, ok := exported[name]; ok {
			t.Errorf("%s is exported now: move it from \"Coming\" to its section in docs/metrics.md", name)
		}
	}
}

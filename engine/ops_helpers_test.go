package engine

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// opsRules are testRules plus a budgeted rule, so that every metric family
// the engine can export has a series.
const opsRules = testRules + `  - id: big-txn
    on: [txn]
    when: has(event.attrs.amount) && count("txn", "1h") >= 2
    budget: {total: 100, per_day: 10}
    conversion: {event: card_activated, within: 7d}
    offer: { channels: [sms], product: P2 }
`

// repoFile is the path of a file of the repository, from the engine package.
func opsRepoFile(parts ...string) string {
	return filepath.Join(append([]string{".."}, parts...)...)
}

// startOpsEngine runs an engine on opsRules and feeds it a few events of
// every kind: profile, transactions, logins (an offer), an event whose rule
// fails (an eval dead letter) and an undecodable one. It returns once the
// engine has applied them all.
func startOpsEngine(t *testing.T, mutate func(*Config)) *testEngine {
	t.Helper()
	dir := t.TempDir()
	opsWriteRules(t, dir, opsRules)
	te := startTestEngine(t, dir, mutate)
	base := time.Now().UnixMilli()
	te.publishEvent(t, ev{ID: "p1", CustomerID: "C1", Type: "profile", TS: base, Attrs: map[string]any{"name": "Ann"}}, false)
	te.publishEvent(t, ev{ID: "t1", CustomerID: "C1", Type: "txn", TS: base + 1, Attrs: map[string]any{"amount": 150, "divisor": 1000}}, false)
	te.publishEvent(t, ev{ID: "t2", CustomerID: "C1", Type: "txn", TS: base + 2, Attrs: map[string]any{"amount": 150, "divisor": 1000}}, true)
	te.publishEvent(t, ev{ID: "t3", CustomerID: "C2", Type: "txn", TS: base + 3, Attrs: map[string]any{"amount": 5}}, false) // eval error
	te.publishEvent(t, ev{ID: "l1", CustomerID: "C1", Type: "login", TS: base + 4, Attrs: map[string]any{"channel": "app"}}, false)
	te.publish(t, "kairos.events.login.C3", []byte{0xc1}, nil) // undecodable
	seq := te.publishEvent(t, ev{ID: "v1", CustomerID: "C3", Type: "page_view", TS: base + 5}, false)
	te.waitApplied(t, seq)
	return te
}

// get fetches a path of the engine's HTTP server with an optional bearer token.
func (te *testEngine) opsGet(t *testing.T, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+te.e.HTTPAddr()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape returns the text of /metrics.
func (te *testEngine) opsScrape(t *testing.T) string {
	t.Helper()
	code, body := te.opsGet(t, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	return body
}

// exportedFamilies returns the metric families of a running engine's
// registry (Kairos', Go's and the process'), by name, with their types.
func opsExported(t *testing.T, te *testEngine) map[string]string {
	t.Helper()
	mfs, err := te.e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, mf := range mfs {
		out[mf.GetName()] = strings.ToLower(mf.GetType().String())
	}
	return out
}

// seriesValue finds the value of the sample whose line starts with prefix
// ("name{labels}" or "name ") in an exposition text.
func opsSeries(text, prefix string) (string, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok && !strings.HasPrefix(line, "#") {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// promtool returns the path of promtool, or skips the test without it
// (make promtool installs it).
func needPromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (make promtool installs it)")
	}
	return p
}

// runTool runs a command with stdin and returns its combined output.
func opsRun(t *testing.T, stdin []byte, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// promqlKeywords are the identifiers of PromQL that are not metric names.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "offset": true, "bool": true, "atan2": true,
	"inf": true, "nan": true, "start": true, "end": true,
}

var (
	promqlString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlMatchers = regexp.MustCompile(`\{[^{}]*\}`)
	promqlRange    = regexp.MustCompile(`\[[^\[\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	promqlVar      = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	promqlNumber   = regexp.MustCompile(`\b[0-9][0-9a-zA-Z_.]*`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
)

// promqlMetricNames returns the metric names a PromQL expression selects:
// identifiers that are neither functions, keywords, label names nor
// numbers. Grafana variables are removed first.
func promqlMetricNames(expr string) []string {
	s := promqlString.ReplaceAllString(expr, `""`)
	s = promqlVar.ReplaceAllString(s, "5m")
	s = promqlMatchers.ReplaceAllString(s, " ")
	s = promqlRange.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	s = promqlNumber.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	var out []string
	for _, m := range promqlIdent.FindAllString(s, -1) {
		if strings.HasSuffix(m, "(") || promqlKeywords[strings.ToLower(m)] || seen[m] {
			continue // a function call, a keyword, or seen
		}
		seen[m] = true
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// knownMetric tells whether name is exported: a family of exported, or a
// histogram's (or summary's) _bucket, _sum or _count series.
func opsKnownMetric(name string, exported map[string]string) bool {
	if _, ok := exported[name]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok {
			if typ := exported[base]; typ == "histogram" || (typ == "summary" && suf != "_bucket") {
				return true
			}
		}
	}
	return false
}

// opsLogBuffer is a bytes.Buffer safe for the engine's goroutines to log to.
type opsLogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *opsLogBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *opsLogBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLoggedEngine is startTestEngine with a logger: the engine's log
// lines go to the returned buffer, at level debug, in format ("text" or
// "json").
func startLoggedEngine(t *testing.T, dir, format string, mutate func(*Config)) (*testEngine, *opsLogBuffer) {
	t.Helper()
	var cfg Config
	cfg.Data = filepath.Join(dir, "data")
	cfg.Rules.Dir = filepath.Join(dir, "rules")
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Engine.Workers = 2
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &opsLogBuffer{}
	e, err := New(Options{Config: cfg, Logger: NewLogger(logs, LogConfig{Level: "debug", Format: format})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	te := &testEngine{e: e, cancel: cancel, done: make(chan error, 1)}
	go func() { te.done <- e.Run(ctx) }()
	select {
	case <-e.Ready():
	case err := <-te.done:
		t.Fatalf("engine stopped before ready: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("engine not ready in 30s")
	}
	te.nc, err = nats.Connect(e.NATSURL())
	if err != nil {
		t.Fatal(err)
	}
	te.js, _ = jetstream.New(te.nc)
	t.Cleanup(func() { te.stop(t) })
	return te, logs
}

// writeRules writes a rule file into dir/rules.
func opsWriteRules(t *testing.T, dir, rules string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules", "r.yaml"), []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
}

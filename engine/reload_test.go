package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const reloadA = `rules:
  - id: always
    kind: service
    on: [txn]
    when: "true"
    offer: {channels: [sms], template: a}
`

const reloadB = `rules:
  - id: always
    kind: service
    on: [txn]
    when: "true"
    offer: {channels: [sms], template: b}
  - id: extra
    kind: service
    on: [login]
    when: "true"
    offer: {channels: [sms]}
`

// TestReloadUnderLoadLosesAndDuplicatesNothing swaps rule sets (and
// offers a broken one) while the engine works through a stream of events:
// every event is decided by exactly one rule set, once.
func TestReloadUnderLoadLosesAndDuplicatesNothing(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	write := func(src string) {
		if err := os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(reloadA)
	te := startTestEngine(t, dir, func(c *Config) {
		c.Rules.Watch = "off"
		c.Engine.BatchSize = 64
	})
	const n = 20000
	msgs := make([]*nats.Msg, n)
	for i := range msgs {
		c := fmt.Sprintf("C%d", i%500)
		m := nats.NewMsg("kairos.events.txn." + c)
		m.Data = []byte(fmt.Sprintf(`{"id":"t%d","customer_id":"%s","type":"txn","ts":%d}`, i, c, 1_700_000_000_000+int64(i)))
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("t%d", i))
		msgs[i] = m
	}
	last := publishAsync(t, te.js, msgs)

	base := "http://" + te.e.HTTPAddr()
	reloads := 0
	for i := 0; i < 8; i++ {
		// Reload at evenly spaced points of the work.
		for te.e.Applied() < last*uint64(i)/10 {
			time.Sleep(time.Millisecond) // polling a condition; the final wait has the deadline
		}
		src := reloadA
		if i%2 == 0 {
			src = reloadB
		}
		if i == 5 {
			write("rules:\n  - id: broken\n    on: [txn]\n    when: event.attrs.\n    offer: {channels: [sms]}\n")
			code, body := httpJSON(t, "POST", base+"/v1/rules/reload", "")
			if code != 422 || !strings.Contains(body, "Syntax error") {
				t.Errorf("a broken set: %d %s", code, body)
			}
			continue
		}
		write(src)
		if code, body := httpJSON(t, "POST", base+"/v1/rules/reload", ""); code != 200 {
			t.Fatalf("reload %d: %d %s", i, code, body)
		}
		reloads++
	}
	write(reloadA)
	if err := te.e.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	reloads++
	te.waitApplied(t, last)

	versions := map[string]int{}
	ids := map[string]bool{}
	for _, o := range te.offers(t) {
		if o.RuleID != "always" {
			t.Errorf("unexpected offer %+v", o)
			continue
		}
		if ids[o.ID] {
			t.Errorf("offer %s twice", o.ID)
		}
		ids[o.ID] = true
		versions[o.Template]++
	}
	if len(ids) != n {
		t.Errorf("%d offers for %d events", len(ids), n)
	}
	if versions["a"] == 0 || versions["b"] == 0 {
		t.Errorf("all offers under one version %v: the reloads did not overlap the load", versions)
	}
	m := te.e.metrics
	if got := testutil.ToFloat64(m.RulesReloads.WithLabelValues(ReloadSuccess)); got != float64(reloads) {
		t.Errorf("%v successful reloads counted, want %d", got, reloads)
	}
	if got := testutil.ToFloat64(m.RulesReloads.WithLabelValues(ReloadFailure)); got != 1 {
		t.Errorf("%v failed reloads counted, want 1", got)
	}
	// The extra rule of set B is gone, and so are its metric series.
	if n := testutil.CollectAndCount(m.RuleEvals); n != 1 {
		t.Errorf("%d rule_evaluations_total series after the last reload, want 1", n)
	}
	code, body := httpJSON(t, "GET", base+"/v1/rules", "")
	var view RulesView
	if err := json.Unmarshal([]byte(body), &view); code != 200 || err != nil || len(view.Rules) != 1 || view.LastReload == nil || view.LastReload.Result != ReloadSuccess {
		t.Errorf("GET /v1/rules: %d %s", code, body)
	}
	t.Logf("%d events, offers by version %v, %d reloads", n, versions, reloads)
}

func TestWatchedDirectoryReloads(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(reloadA), 0o644)
	// Changed after New loaded it and before Run watches it: the watcher
	// must not take the changed files for the loaded ones.
	beforeRun = func() { os.WriteFile(filepath.Join(rd, "r.yaml"), []byte(reloadB), 0o644) }
	defer func() { beforeRun = nil }()
	te := startTestEngine(t, dir, func(c *Config) { c.Rules.Watch = "20ms" })
	deadline := time.Now().Add(20 * time.Second)
	for len(te.e.view.Load().rs.Rules()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("a changed rules directory was not reloaded")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	seq := te.publishEvent(t, ev{ID: "l", CustomerID: "C1", Type: "login", TS: time.Now().UnixMilli()}, false)
	te.waitApplied(t, seq)
	if o := te.offers(t); len(o) != 1 || o[0].RuleID != "extra" {
		t.Errorf("offers after the reload: %v", o)
	}
}

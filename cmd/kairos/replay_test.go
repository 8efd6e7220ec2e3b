package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/bench"
)

func TestReplayCommand(t *testing.T) {
	dir := t.TempDir()
	g := bench.NewGenerator(bench.Workload{Customers: 100, Seed: 9, RunID: "r"})
	base := time.Date(2026, 11, 16, 8, 0, 0, 0, time.UTC)
	var lines []string
	for i := 0; i < 100; i++ {
		b, _ := json.Marshal(g.ProfileEvent(i, base))
		lines = append(lines, string(b))
	}
	for i := 0; i < 3000; i++ {
		ev := g.Next(base.Add(time.Duration(i) * time.Minute))
		b, _ := json.Marshal(ev)
		lines = append(lines, string(b))
	}
	events := filepath.Join(dir, "events.jsonl")
	os.WriteFile(events, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	// B: the examples without the fund nudge.
	other := filepath.Join(dir, "other")
	os.MkdirAll(other, 0o755)
	src, _ := os.ReadFile("../../examples/rules/retail.yaml")
	os.WriteFile(filepath.Join(other, "r.yaml"), []byte(strings.Replace(string(src), "when: event.attrs.page == \"funds\"", "when: event.attrs.page == \"nowhere\"", 1)), 0o644)

	ctx := context.Background()
	out, errOut, code := kairosCmd(t, ctx, "replay", "--rules", "../../examples/rules", "--events", events, "--format", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct {
		Events int `json:"events"`
		Rules  []struct {
			Rule    string `json:"rule"`
			Emitted int    `json:"emitted"`
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Events != 3100 || len(rep.Rules) != 6 {
		t.Fatalf("report %+v %v\n%s", rep, err, out)
	}
	out, errOut, code = kairosCmd(t, ctx, "replay", "--rules", "../../examples/rules", "--events", events, "--compare", other)
	if code != 0 || !strings.Contains(out, "| fund-page-interest |") || !strings.Contains(out, "Δ emitted") {
		t.Fatalf("compare exit %d: %s%s", code, out, errOut)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "| fund-page-interest |") {
			f := strings.Split(l, "|")
			if strings.TrimSpace(f[5]) != "0" || strings.TrimSpace(f[4]) == "0" {
				t.Errorf("fund-page-interest should emit in A and not in B: %s", l)
			}
		}
	}
}

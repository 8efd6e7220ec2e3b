package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func kairosCmd(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, kairosBinary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestRulesCheck(t *testing.T) {
	ctx := context.Background()
	out, _, code := kairosCmd(t, ctx, "rules", "check", "../../examples/rules")
	if code != 0 || !strings.HasPrefix(out, "ok: 6 rules") {
		t.Errorf("examples: exit %d, %q", code, out)
	}
	_, errOut, code := kairosCmd(t, ctx, "rules", "check", "../../rules/testdata/bad/cel_errors.yaml", "../../rules/testdata/bad/format_errors.yaml")
	if code != 1 {
		t.Errorf("bad rules: exit %d, want 1", code)
	}
	for _, want := range []string{
		`cel_errors.yaml:6:15: rule "typo-in-field": when: undefined field 'atrs'`,
		`format_errors.yaml:5:5: rule "Bad_ID": unknown field "colour"`,
		"15 error(s)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("rules check output lacks %q:\n%s", want, errOut)
		}
	}
	if _, _, code := kairosCmd(t, ctx, "rules", "check"); code != 2 {
		t.Errorf("no arguments: exit %d, want 2", code)
	}
}

func TestRunRejectsBadConfigListingEveryProblem(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "kairos.yaml")
	os.WriteFile(cfg, []byte("engine:\n  batch_size: 0\n  workers: -3\nlog:\n  level: loud\nrules:\n  horizon: forever\n"), 0o644)
	_, errOut, code := kairosCmd(t, context.Background(), "run", "--config", cfg)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"engine.workers", "log.level", "rules.horizon"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("output lacks %s:\n%s", want, errOut)
		}
	}
}

func TestRunRejectsBadRulesWithPositions(t *testing.T) {
	dir := t.TempDir()
	_, errOut, code := kairosCmd(t, context.Background(), "run", "--rules", "../../rules/testdata/bad", "--data", dir, "--http", "off")
	if code != 1 || !strings.Contains(errOut, "cel_errors.yaml:6:15") {
		t.Errorf("exit %d:\n%s", code, errOut)
	}
}

// TestHelpersAgainstRunningEngine publishes with "events publish", imports
// profiles and reads offers with "offers tail --all".
func TestHelpersAgainstRunningEngine(t *testing.T) {
	dir := t.TempDir()
	natsAddr := freePort(t)
	url := "nats://" + natsAddr
	p := startKairos(t, "--rules", writeRules(t, dir, "../../examples/rules/retail.yaml"), "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	ctx := context.Background()

	csv := filepath.Join(dir, "profiles.csv")
	os.WriteFile(csv, []byte("customer_id,name,branch,segment\nC7,Bo,SH002,affluent\nC8,Cy,,mass\n"), 0o644)
	out, errOut, code := kairosCmd(t, ctx, "profiles", "import", "--nats-url", url, csv)
	if code != 0 || !strings.Contains(out, "imported 2 profiles") {
		t.Fatalf("profiles import: exit %d %s %s", code, out, errOut)
	}
	// A large payroll credit: the relationship-manager lead uses the imported branch.
	out, errOut, code = kairosCmd(t, ctx, "events", "publish", "--nats-url", url, "--type", "payroll", "--customer", "C7", "--attr", "amount=12000", "--id", "pay-1")
	if code != 0 || !strings.Contains(out, "published pay-1 to kairos.events.payroll.C7") {
		t.Fatalf("events publish: exit %d %s %s", code, out, errOut)
	}
	_, _, code = kairosCmd(t, ctx, "events", "publish", "--nats-url", url, "--type", "payroll", "--customer", "C8", "--attr", "amount=9000", "--json")
	if code != 0 {
		t.Fatalf("events publish --json: exit %d", code)
	}
	p.waitApplied(t, 4)

	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(tctx, kairosBinary(t), "offers", "tail", "--all", "--nats-url", url, "--channel", "branch")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var lines []string
	deadline := time.AfterFunc(30*time.Second, cancel)
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	deadline.Stop()
	cancel()
	_ = cmd.Wait()
	if len(lines) != 2 {
		t.Fatalf("offers tail printed %d offers, want 2: %q", len(lines), lines)
	}
	if !strings.Contains(lines[0], `"customer_id":"C7"`) || !strings.Contains(lines[0], `"branch":"SH002"`) ||
		!strings.Contains(lines[1], `"customer_id":"C8"`) || !strings.Contains(lines[1], `"branch":"HQ"`) {
		t.Errorf("offers:\n%s", strings.Join(lines, "\n"))
	}
	out, errOut, code = kairosCmd(t, ctx, "explain", "--http", p.http, "C7")
	for _, want := range []string{"customer C7", "branch           SH002", "payroll-arrived-rm-call", "emitted on branch", "event pay-1"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain (exit %d) lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
	out, _, code = kairosCmd(t, ctx, "explain", "--http", p.http, "--json", "NOBODY")
	if code != 0 || !strings.Contains(out, `"found": false`) {
		t.Errorf("explain of an unknown customer (exit %d): %s", code, out)
	}
	p.stop(t)
}

func TestDemoRunsAndStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, errOut, code := kairosCmd(t, ctx, "demo", "--duration", "4s", "--customers", "100", "--rate", "300")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"kairos demo: 6 rules", "status events/s=", "offer  ", "kairos demo: stopped cleanly"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

func TestProfilesImportDirect(t *testing.T) {
	dir := t.TempDir()
	csv := filepath.Join(dir, "p.csv")
	os.WriteFile(csv, []byte("customer_id,name,age\nC1,Ann,41\nC2,Bo,\n"), 0o644)
	out, errOut, code := kairosCmd(t, context.Background(), "profiles", "import", "--data", filepath.Join(dir, "data"), csv)
	if code != 0 || !strings.Contains(out, "imported 2 profiles") || !strings.Contains(errOut, "compacting the state's tables") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	// Again, left as written (--compact=false): a merge, no compaction.
	out, errOut, code = kairosCmd(t, context.Background(), "profiles", "import", "--data", filepath.Join(dir, "data"), "--compact=false", csv)
	if code != 0 || !strings.Contains(out, "imported 2 profiles") || strings.Contains(errOut, "compacting") {
		t.Fatalf("--compact=false: exit %d: %s %s", code, out, errOut)
	}
	// The engine sees them.
	natsAddr := freePort(t)
	p := startKairos(t, "--rules", writeRules(t, dir, "../../examples/rules/retail.yaml"), "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	out, _, _ = kairosCmd(t, context.Background(), "explain", "--http", p.http, "C1")
	if !strings.Contains(out, "Ann") || !strings.Contains(out, "41") {
		t.Errorf("explain after import:\n%s", out)
	}
	// A running engine holds the directory: importing into it fails clearly.
	_, errOut, code = kairosCmd(t, context.Background(), "profiles", "import", "--data", filepath.Join(dir, "data"), csv)
	if code == 0 || !strings.Contains(errOut, "import without --data") {
		t.Errorf("import into a running engine's directory: exit %d %s", code, errOut)
	}
	p.stop(t)
}

package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// TestConnectAndOpportunities runs the engine on an external nats-server,
// a separate kairos connect process delivering sms offers to a file and
// branch leads to the worklist, and works the worklist with the CLI.
func TestConnectAndOpportunities(t *testing.T) {
	dir := t.TempDir()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dir, "nats"), NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	url := ns.ClientURL()
	out := filepath.Join(dir, "sms.jsonl")
	cfg := filepath.Join(dir, "kairos.yaml")
	os.WriteFile(cfg, []byte(`nats:
  url: `+url+`
connectors:
  - {name: sms-file, type: file, channel: sms, settings: {path: `+out+`}}
  - {name: branches, type: opportunity, channel: branch}
`), 0o644)
	startKairos(t, "--config", cfg, "--rules", writeRules(t, dir, "../../examples/rules/retail.yaml"), "--data", filepath.Join(dir, "data"))
	ctx := context.Background()
	// A separate delivery process with its own connector (its own durable
	// consumer) on the same channel: both receive every sms offer.
	cfg2 := filepath.Join(dir, "connect.yaml")
	out2 := filepath.Join(dir, "sms-audit.jsonl")
	os.WriteFile(cfg2, []byte(`nats:
  url: `+url+`
connectors:
  - {name: sms-audit, type: file, channel: sms, settings: {path: `+out2+`}}
`), 0o644)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	connect := exec.CommandContext(cctx, kairosBinary(t), "connect", "--config", cfg2, "--http", "off")
	connect.Stderr = os.Stderr
	if err := connect.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = connect.Wait() }()

	for _, a := range [][]string{
		{"events", "publish", "--nats-url", url, "--type", "profile", "--customer", "C1", "--attr", "branch=SH002", "--attr", `tags=["payroll"]`, "--attr", "name=Ann"},
		{"events", "publish", "--nats-url", url, "--type", "payroll", "--customer", "C1", "--attr", "amount=12000"},
		{"events", "publish", "--nats-url", url, "--type", "login", "--customer", "C9", "--attr", "channel=app", "--attr", "new_device=true"},
	} {
		if _, errOut, code := kairosCmd(t, ctx, a...); code != 0 {
			t.Fatalf("%v: %s", a, errOut)
		}
	}
	waitLines := func(path string, n int) []string {
		deadline := time.Now().Add(30 * time.Second)
		for {
			var lines []string
			if f, err := os.Open(path); err == nil {
				sc := bufio.NewScanner(f)
				for sc.Scan() {
					lines = append(lines, sc.Text())
				}
				f.Close()
			}
			if len(lines) >= n || time.Now().After(deadline) {
				return lines
			}
			time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
		}
	}
	if l := waitLines(out, 1); len(l) != 1 || !strings.Contains(l[0], "security-new-device") {
		t.Errorf("engine's sms connector wrote %q", l)
	}
	if l := waitLines(out2, 1); len(l) != 1 || !strings.Contains(l[0], "security-new-device") {
		t.Errorf("kairos connect's sms connector wrote %q", l)
	}
	var list string
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(list, "payroll-arrived-rm-call") && time.Now().Before(deadline) {
		list, _, _ = kairosCmd(t, ctx, "opportunities", "list", "--nats-url", url, "--branch", "SH002")
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
	if !strings.Contains(list, "payroll-arrived-rm-call") || !strings.Contains(list, "open") {
		t.Fatalf("worklist:\n%s", list)
	}
	id := strings.Fields(strings.Split(list, "\n")[1])[0]
	if out, errOut, code := kairosCmd(t, ctx, "opportunities", "claim", "--nats-url", url, "--branch", "SH002", "--by", "ann", id); code != 0 || !strings.Contains(out, "claimed by ann") {
		t.Fatalf("claim: %s %s", out, errOut)
	}
	if _, errOut, code := kairosCmd(t, ctx, "opportunities", "claim", "--nats-url", url, "--branch", "SH002", "--by", "bob", id); code == 0 || !strings.Contains(errOut, "claimed") {
		t.Errorf("second claim: exit %d %s", code, errOut)
	}
	if out, errOut, code := kairosCmd(t, ctx, "opportunities", "outcome", "--nats-url", url, "--branch", "SH002", "--by", "ann", "--result", "accepted", id); code != 0 || !strings.Contains(out, "done") {
		t.Fatalf("outcome: %s %s", out, errOut)
	}
}

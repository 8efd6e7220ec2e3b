package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const batchCmdRules = `rules:
  - id: happy-birthday
    kind: service
    on: [birthday]
    when: "true"
    offer: {channels: [push]}
  - id: spring-fund
    kind: service
    on: [list_spring]
    when: event.attrs.tier == "gold"
    offer: {channels: [sms]}
`

// TestBatchCommands runs "batch run birthday" inside a running engine and
// "batch list" from a campaign file, twice each: one offer per customer.
func TestBatchCommands(t *testing.T) {
	dir := t.TempDir()
	rd := filepath.Join(dir, "rules")
	os.MkdirAll(rd, 0o755)
	os.WriteFile(filepath.Join(rd, "b.yaml"), []byte(batchCmdRules), 0o644)
	natsAddr := freePort(t)
	url := "nats://" + natsAddr
	p := startKairos(t, "--rules", rd, "--data", filepath.Join(dir, "data"), "--nats-listen", natsAddr)
	ctx := context.Background()

	today := time.Now().Format("01-02")
	profiles := filepath.Join(dir, "profiles.csv")
	os.WriteFile(profiles, []byte("customer_id,birthday,timezone\nB1,1990-"+today+",UTC\nB2,"+today+",UTC\nB3,1990-"+time.Now().AddDate(0, 0, 40).Format("01-02")+",UTC\n"), 0o644)
	if out, errOut, code := kairosCmd(t, ctx, "profiles", "import", "--nats-url", url, profiles); code != 0 {
		t.Fatalf("profiles import: exit %d %s %s", code, out, errOut)
	}
	p.waitApplied(t, 3)

	at := time.Now().UTC().Format(time.RFC3339)
	for i := range 2 {
		out, errOut, code := kairosCmd(t, ctx, "batch", "run", "birthday", "--http", p.http, "--at", at)
		if code != 0 {
			t.Fatalf("batch run #%d: exit %d %s %s", i, code, out, errOut)
		}
		want := "2 events published (0 duplicates"
		if i == 1 {
			want = "0 events published (2 duplicates"
		}
		if !strings.Contains(out, want) {
			t.Errorf("batch run #%d: %q lacks %q", i, out, want)
		}
	}

	list := filepath.Join(dir, "spring.csv")
	os.WriteFile(list, []byte("customer_id,tier\nL1,gold\nL2,silver\nL3,gold\n"), 0o644)
	for i := range 2 {
		out, errOut, code := kairosCmd(t, ctx, "batch", "list", "--nats-url", url, "--campaign", "spring", list)
		if code != 0 {
			t.Fatalf("batch list #%d: exit %d %s %s", i, code, out, errOut)
		}
		want := "campaign spring: 3 events published (0 duplicates"
		if i == 1 {
			want = "campaign spring: 0 events published (3 duplicates"
		}
		if !strings.Contains(out, want) {
			t.Errorf("batch list #%d: %q lacks %q", i, out, want)
		}
	}
	if _, errOut, code := kairosCmd(t, ctx, "batch", "list", "--nats-url", url, "--campaign", "Bad-Name", list); code == 0 || !strings.Contains(errOut, "campaign") {
		t.Errorf("bad campaign name: exit %d %s", code, errOut)
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// Wait until the engine has applied the 5 batch events (2 birthdays, 3
	// list rows), then count the offers.
	deadline := time.Now().Add(30 * time.Second)
	var got []string
	for {
		got = got[:0]
		for _, m := range readStream(t, js, "KAIROS_OFFERS") {
			got = append(got, m.Subject())
		}
		if len(got) >= 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := map[string]int{"kairos.offers.push": 2, "kairos.offers.sms": 2}
	counts := map[string]int{}
	for _, s := range got {
		counts[s[:strings.LastIndex(s, ".")]]++
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("%s: %d offers, want %d (all: %q)", k, counts[k], n, got)
		}
	}
	p.stop(t)
}

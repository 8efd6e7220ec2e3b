package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kairos-engine/kairos/engine"
	"github.com/kairos-engine/kairos/engine/batchgen"
)

// cmdBatch runs batch jobs: list campaigns from a file (published through
// NATS by this process), or the state-based jobs inside the running
// engine (birthday, new_customer, anniversary, dormant).
func cmdBatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "run") {
		fmt.Fprintln(stderr, "usage: kairos batch list --campaign NAME FILE.csv|FILE.jsonl\n       kairos batch run birthday|new_customer|anniversary|dormant [flags]")
		return errUsage
	}
	if args[0] == "list" {
		return cmdBatchList(ctx, args[1:], stdout, stderr)
	}
	return cmdBatchRun(ctx, args[1:], stdout, stderr)
}

func cmdBatchList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("batch list", stderr)
	cf := addClientFlags(fs)
	campaign := fs.String("campaign", "", "campaign name, [a-z0-9_]+ (events list_<campaign>, ids list:<campaign>:<customer>)")
	ratePerSec := fs.Float64("rate", 2000, "events per second")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *campaign == "" {
		fmt.Fprintln(stderr, "usage: kairos batch list --campaign NAME [--rate N] FILE.csv|FILE.jsonl")
		return errUsage
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	format := "csv"
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".jsonl" || ext == ".ndjson" {
		format = "jsonl"
	}
	var events []batchgen.Event
	if _, err := batchgen.ReadList(f, format, *campaign, time.Now(), func(ev batchgen.Event) error {
		events = append(events, ev)
		return nil
	}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	nc, js, err := cf.connect("kairos-batch")
	if err != nil {
		return err
	}
	defer nc.Close()
	total := len(events)
	bar := newProgress(stderr, "events", nil)
	bar.fraction = func() float64 {
		if total == 0 {
			return 1
		}
		return float64(bar.n) / float64(total)
	}
	start := time.Now()
	n, dups, err := engine.PublishBatch(ctx, js, *cf.prefix, events, *ratePerSec, bar.set)
	bar.done()
	if err != nil {
		return err
	}
	el := time.Since(start).Seconds()
	fmt.Fprintf(stdout, "campaign %s: %d events published (%d duplicates skipped by the stream) in %.1fs (%.0f/s)\n", *campaign, n-dups, dups, el, float64(n)/max(el, 1e-9))
	return nil
}

func cmdBatchRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kairos batch run birthday|new_customer|anniversary|dormant [flags]")
		return errUsage
	}
	typ := args[0]
	fs := newFlags("batch run "+typ, stderr)
	addr := fs.String("http", envOr("KAIROS_HTTP", "127.0.0.1:9464"), "the engine's HTTP address (env KAIROS_HTTP)")
	tokenFile := fs.String("token-file", os.Getenv("KAIROS_HTTP_TOKEN_FILE"), "file holding the bearer token")
	daysAhead := fs.Int("days-ahead", 0, "birthday: customers whose birthday is this many days ahead")
	days := fs.Int("days", 0, "new_customer: opened within this many days; dormant: inactive for this many days")
	types := fs.String("types", "", "dormant: the event types watched, comma-separated")
	at := fs.String("at", "", "the time the events are for (RFC 3339; default now)")
	name := fs.String("name", "", "job name for the metrics (default manual_<type>)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	req := engine.BatchRunRequest{Name: *name, Type: typ, DaysAhead: *daysAhead, Days: *days, At: *at}
	if *types != "" {
		req.Types = strings.Split(*types, ",")
	}
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+*addr+"/v1/batch/run", bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	if tok := bearerToken(*tokenFile); tok != "" {
		hreq.Header.Set("Authorization", "Bearer "+tok)
	}
	fmt.Fprintf(stderr, "running %s in the engine at %s…\n", typ, *addr)
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return fmt.Errorf("ask the engine at %s: %w", *addr, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("engine at %s: %s: %s", *addr, resp.Status, strings.TrimSpace(string(out)))
	}
	var res engine.ClusterJobResult // a single instance's answer has no cluster fields
	if err := json.Unmarshal(out, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%s) for %s: %d events published (%d duplicates skipped by the stream, %d customers skipped for unreadable attributes) in %.1fs (%.0f/s)\n",
		res.Job, res.Type, res.At.Format(time.RFC3339), res.Events-res.Duplicates, res.Duplicates, res.Skipped, res.Seconds, res.PerSecond)
	if len(res.Instances) > 0 {
		fmt.Fprintf(stdout, "run by %d instance(s)\n", len(res.Instances))
	}
	for _, msg := range res.Errors {
		fmt.Fprintln(stderr, "error:", msg)
	}
	if len(res.Missing) > 0 {
		return fmt.Errorf("partitions %v had no owner and were not covered: run the job again once they have one (the ids make a re-run harmless)", res.Missing)
	}
	return nil
}

// bearerToken reads the token from a file, or KAIROS_HTTP_TOKEN.
func bearerToken(file string) string {
	if file != "" {
		if b, err := os.ReadFile(file); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return os.Getenv("KAIROS_HTTP_TOKEN")
}

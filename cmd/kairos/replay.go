package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/engine"
	"github.com/kairos-engine/kairos/rules"
)

// cmdReplay backtests rule sets over recorded events (docs/rules.md#replay).
func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("replay", stderr)
	cf := addClientFlags(fs)
	rulesDir := fs.String("rules", "", "rules directory or file (required)")
	compare := fs.String("compare", "", "a second rules directory: print the difference on the same events")
	configPath := fs.String("config", "", "kairos.yaml whose policy and rules.horizon the replay uses (default: defaults)")
	eventsFile := fs.String("events", "", "recorded events: a .jsonl/.ndjson file (one JSON event per line) or a .msgpack file (concatenated msgpack events)")
	stream := fs.String("stream", "KAIROS_EVENTS", "events stream to read when no --events file is given")
	from := fs.String("from", "", "start of the stream's time range (RFC 3339, or a duration ago such as 24h)")
	to := fs.String("to", "", "end of the stream's time range (RFC 3339; default now)")
	format := fs.String("format", "md", "md, json or csv")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rulesDir == "" || (*eventsFile == "" && *from == "") {
		fmt.Fprintln(stderr, "usage: kairos replay --rules DIR (--events FILE | --from TIME [--to TIME] [--nats-url URL]) [--compare DIR] [--format md|json|csv]")
		return errUsage
	}
	var cfg engine.Config
	if *configPath != "" {
		var err error
		if cfg, err = engine.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	horizon, _ := rules.ParseDuration(cfg.Rules.Horizon)
	load := func(dir string) (*rules.RuleSet, error) {
		return rules.Load(rules.Options{Horizon: horizon, CostLimit: cfg.Rules.CostLimit}, dir)
	}

	// The events, read once (a comparison replays them twice).
	var events []rawEvent
	var err error
	if *eventsFile != "" {
		events, err = readEventFile(*eventsFile)
	} else {
		events, err = readEventStream(ctx, cf, *stream, *from, *to)
	}
	if err != nil {
		return err
	}
	run := func(dir string) (*engine.ReplayReport, error) {
		rs, err := load(dir)
		if err != nil {
			return nil, err
		}
		rp, err := engine.NewReplay(rs, cfg.Policy)
		if err != nil {
			return nil, err
		}
		for _, ev := range events {
			if err := rp.AddRaw(ev.data, ev.json); err != nil {
				return nil, err
			}
		}
		return rp.Finish()
	}
	a, err := run(*rulesDir)
	if err != nil {
		return err
	}
	if *compare == "" {
		return a.Write(stdout, *format)
	}
	b, err := run(*compare)
	if err != nil {
		return err
	}
	return writeComparison(stdout, *format, *rulesDir, *compare, a, b)
}

type rawEvent struct {
	data []byte
	json bool
}

func readEventFile(path string) ([]rawEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []rawEvent
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".ndjson", ".json":
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) > 0 {
				out = append(out, rawEvent{data: append([]byte(nil), line...), json: true})
			}
		}
		return out, sc.Err()
	case ".msgpack", ".mp":
		dec := msgpack.NewDecoder(bufio.NewReader(f))
		for {
			raw, err := dec.DecodeRaw()
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			if err != nil {
				return out, fmt.Errorf("%s: event %d: %w", path, len(out)+1, err)
			}
			out = append(out, rawEvent{data: raw})
		}
	}
	return nil, fmt.Errorf("%s: want a .jsonl or .msgpack file", path)
}

// parseRange reads --from and --to: RFC 3339 times, or durations ago
// such as 7d. An empty --to is now; an empty --from is fromAgo before now,
// or the zero time when fromAgo is 0.
func parseRange(fromS, toS string, fromAgo time.Duration) (from, to time.Time, err error) {
	now := time.Now()
	parse := func(flag, s string, def time.Time) (time.Time, error) {
		if s == "" {
			return def, nil
		}
		if d, err := rules.ParseDuration(s); err == nil {
			return now.Add(-d), nil
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return t, fmt.Errorf("%s: %w", flag, err)
		}
		return t, nil
	}
	if fromAgo > 0 {
		from = now.Add(-fromAgo)
	}
	if from, err = parse("--from", fromS, from); err != nil {
		return from, to, err
	}
	to, err = parse("--to", toS, now)
	return from, to, err
}

// readEventStream reads a time range of the events stream with an ordered
// consumer.
func readEventStream(ctx context.Context, cf clientFlags, stream, fromS, toS string) ([]rawEvent, error) {
	from, to, err := parseRange(fromS, toS, 0)
	if err != nil {
		return nil, err
	}
	nc, js, err := cf.connect("kairos-replay")
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from})
	if err != nil {
		return nil, fmt.Errorf("events stream %s: %w", stream, err)
	}
	var out []rawEvent
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			if md.Timestamp.After(to) {
				return out, nil
			}
			ct := ""
			if h := m.Headers(); h != nil {
				ct = h.Get("Content-Type")
			}
			out = append(out, rawEvent{data: m.Data(), json: strings.HasPrefix(ct, "application/json")})
			if md.NumPending == 0 {
				return out, nil
			}
		}
		if n == 0 {
			return out, nil
		}
	}
}

func writeComparison(w io.Writer, format, nameA, nameB string, a, b *engine.ReplayReport) error {
	type row struct {
		rule                 string
		matchA, matchB       int
		emitA, emitB         int
		suppressA, suppressB int
	}
	rows := map[string]*row{}
	get := func(id string) *row {
		if rows[id] == nil {
			rows[id] = &row{rule: id}
		}
		return rows[id]
	}
	sum := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n += v
		}
		return n
	}
	for _, p := range a.Rules {
		r := get(p.Rule)
		r.matchA, r.emitA, r.suppressA = p.Matched, p.Emitted, sum(p.Suppressed)
	}
	for _, p := range b.Rules {
		r := get(p.Rule)
		r.matchB, r.emitB, r.suppressB = p.Matched, p.Emitted, sum(p.Suppressed)
	}
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	switch format {
	case "csv":
		fmt.Fprintln(w, "rule,matched_a,matched_b,emitted_a,emitted_b,emitted_delta,suppressed_a,suppressed_b")
		for _, id := range ids {
			r := rows[id]
			fmt.Fprintf(w, "%s,%d,%d,%d,%d,%d,%d,%d\n", r.rule, r.matchA, r.matchB, r.emitA, r.emitB, r.emitB-r.emitA, r.suppressA, r.suppressB)
		}
		return nil
	case "json":
		return fmt.Errorf("--compare writes md or csv")
	}
	fmt.Fprintf(w, "# Replay comparison\n\n%d events from %s to %s.\nA = %s, B = %s.\n\n", a.Events, a.From.Format(time.RFC3339), a.To.Format(time.RFC3339), nameA, nameB)
	fmt.Fprintln(w, "| rule | matched A | matched B | emitted A | emitted B | Δ emitted | suppressed A | suppressed B |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	totA, totB := 0, 0
	for _, id := range ids {
		r := rows[id]
		totA += r.emitA
		totB += r.emitB
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %+d | %d | %d |\n", r.rule, r.matchA, r.matchB, r.emitA, r.emitB, r.emitB-r.emitA, r.suppressA, r.suppressB)
	}
	fmt.Fprintf(w, "| **all** | | | %d | %d | %+d | | |\n", totA, totB, totB-totA)
	return nil
}

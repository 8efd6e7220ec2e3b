package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine"
	"github.com/kairos-engine/kairos/state"
)

type clientFlags struct {
	url    *string
	prefix *string
}

func addClientFlags(fs *flag.FlagSet) clientFlags {
	return clientFlags{
		url:    fs.String("nats-url", envOr("KAIROS_NATS_URL", nats.DefaultURL), "NATS URL (env KAIROS_NATS_URL)"),
		prefix: fs.String("prefix", "kairos", "subject prefix"),
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (c clientFlags) connect(name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(*c.url, nats.Name(name))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", *c.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// attrFlag collects repeated --attr k=v.
type attrFlag map[string]any

func (a attrFlag) String() string { return "" }
func (a attrFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("want key=value, got %q", s)
	}
	a[k] = parseScalar(v)
	return nil
}

// parseScalar reads a number, true/false, or a JSON list/object; anything
// else is a string.
func parseScalar(v string) any {
	// Leading zeros and signs mark identifiers (007, +86…): keep every digit.
	if len(v) > 1 && ((v[0] == '0' && v[1] != '.') || v[0] == '+') {
		return v
	}
	if i, err := strconv.ParseInt(v, 10, 64); err == nil {
		return i
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return f
	}
	switch v {
	case "true":
		return true
	case "false":
		return false
	}
	if strings.HasPrefix(v, "[") || strings.HasPrefix(v, "{") {
		var x any
		if json.Unmarshal([]byte(v), &x) == nil {
			return x
		}
	}
	return v
}

func cmdEventsPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("events publish", stderr)
	cf := addClientFlags(fs)
	typ := fs.String("type", "", "event type, e.g. login (required)")
	cust := fs.String("customer", "", "customer id (required)")
	id := fs.String("id", "", "event id (default: a new unique id)")
	ts := fs.String("ts", "", "event time: unix milliseconds or RFC 3339 (default now)")
	asJSON := fs.Bool("json", false, "encode as JSON instead of msgpack")
	attrs := attrFlag{}
	fs.Var(attrs, "attr", "attribute key=value (repeatable); numbers, true/false and JSON lists/objects are typed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *typ == "" || *cust == "" {
		fmt.Fprintln(stderr, "kairos events publish: --type and --customer are required")
		return errUsage
	}
	ev := bench.Event{ID: *id, CustomerID: *cust, Type: *typ, TS: time.Now().UnixMilli(), Attrs: attrs}
	if ev.ID == "" {
		ev.ID = nats.NewInbox()[len(nats.InboxPrefix):]
	}
	if *ts != "" {
		if n, err := strconv.ParseInt(*ts, 10, 64); err == nil {
			ev.TS = n
		} else if t, err := time.Parse(time.RFC3339Nano, *ts); err == nil {
			ev.TS = t.UnixMilli()
		} else {
			return fmt.Errorf("--ts %q: want unix milliseconds or RFC 3339", *ts)
		}
	}
	nc, js, err := cf.connect("kairos-events-publish")
	if err != nil {
		return err
	}
	defer nc.Close()
	msg := nats.NewMsg(ev.Subject(*cf.prefix))
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	if *asJSON {
		msg.Data, err = json.Marshal(ev)
		msg.Header.Set("Content-Type", "application/json")
	} else {
		msg.Data, err = msgpack.Marshal(ev)
	}
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, msg)
	if err != nil {
		return fmt.Errorf("publish to %s: %w", msg.Subject, err)
	}
	fmt.Fprintf(stdout, "published %s to %s (stream %s seq %d)\n", ev.ID, msg.Subject, ack.Stream, ack.Sequence)
	return nil
}

func cmdOffersTail(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("offers tail", stderr)
	cf := addClientFlags(fs)
	channel := fs.String("channel", "", "only this channel (default all)")
	all := fs.Bool("all", false, "print the offers already stored, then follow")
	stream := fs.String("stream", "KAIROS_OFFERS", "offers stream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, js, err := cf.connect("kairos-offers-tail")
	if err != nil {
		return err
	}
	defer nc.Close()
	filter := *cf.prefix + ".offers.>"
	if *channel != "" {
		filter = *cf.prefix + ".offers." + *channel + ".>"
	}
	occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	if *all {
		occ.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	cons, err := js.OrderedConsumer(ctx, *stream, occ)
	if err != nil {
		return fmt.Errorf("offers stream %s: %w", *stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); it.Stop() }()
	enc := json.NewEncoder(stdout)
	for {
		m, err := it.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			return err
		}
		o, err := connectors.DecodeOffer(m.Data())
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", m.Subject(), err)
			continue
		}
		if err := enc.Encode(o); err != nil {
			return err
		}
	}
}

func cmdProfilesImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("profiles import", stderr)
	cf := addClientFlags(fs)
	data := fs.String("data", "", "import straight into this data directory (the engine must not be running); default: through NATS as profile events")
	compression := fs.String("compression", state.CompressionSnappy, "with --data: the table compression to write, as the engine's state.compression (snappy, zstd, none)")
	compact := fs.Bool("compact", true, "with --data: when the rows are in, compact the state's tables (nothing left in level 0, the levels below merged), so that the engine reads a profile from one table or two (takes time in proportion to the whole state)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: kairos profiles import [--data DIR | --nats-url URL] FILE.csv|FILE.jsonl")
		return errUsage
	}
	path := fs.Arg(0)
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, _ := f.Stat()
	var next func() (map[string]any, int, error)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		next, err = csvRows(f)
	case ".jsonl", ".ndjson":
		next = jsonlRows(f)
	default:
		return fmt.Errorf("%s: want a .csv or .jsonl file", path)
	}
	if err != nil {
		return err
	}
	bar := newProgress(stderr, "profiles", func() float64 {
		if st == nil || st.Size() == 0 {
			return -1
		}
		pos, _ := f.Seek(0, io.SeekCurrent)
		return float64(pos) / float64(st.Size())
	})
	start := time.Now()
	row := func() (string, map[string]any, error) {
		r, line, err := next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", nil, io.EOF
			}
			return "", nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		id, _ := r["customer_id"].(string)
		if id == "" || strings.ContainsAny(id, ". *>\t\r\n") {
			return "", nil, fmt.Errorf("%s:%d: customer_id must be a non-empty string without dots, spaces or wildcards", path, line)
		}
		delete(r, "customer_id")
		return id, r, nil
	}
	var n int
	if *data != "" {
		n, err = importDirect(*data, *compression, *compact, row, bar)
	} else {
		n, err = importThroughNATS(ctx, cf, row, bar)
	}
	bar.done()
	if err != nil {
		return err
	}
	el := time.Since(start)
	how := "as profile events through NATS"
	if *data != "" {
		how = "into " + *data
	}
	fmt.Fprintf(stdout, "imported %d profiles from %s %s in %.1fs (%.0f/s)\n", n, path, how, el.Seconds(), float64(n)/el.Seconds())
	return nil
}

// importDirect merges profiles straight into a stopped engine's state, in
// bulk (state.Store.ImportProfiles), then, with compact, compacts its
// tables as it closes it (state.Options.CompactOnClose).
func importDirect(dir, compression string, compact bool, row func() (string, map[string]any, error), bar *progress) (int, error) {
	store, err := state.Open(state.Options{Dir: filepath.Join(dir, "state"), GCInterval: -1, Compression: compression, CompactOnClose: compact})
	if err != nil {
		return 0, fmt.Errorf("open %s (is kairos run using it? then import without --data): %w", dir, err)
	}
	n, err := store.ImportProfiles(func() (state.ProfileRow, error) {
		id, attrs, err := row()
		return state.ProfileRow{ID: id, Attrs: engine.NormalizeAttrs(attrs)}, err
	}, bar.set)
	if compact && err == nil {
		bar.done()
		fmt.Fprintln(bar.w, "compacting the state's tables")
	}
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// importThroughNATS publishes one profile event per row, with a
// deterministic id, many in flight; the engine merges them in batches.
func importThroughNATS(ctx context.Context, cf clientFlags, row func() (string, map[string]any, error), bar *progress) (int, error) {
	nc, js, err := cf.connect("kairos-profiles-import")
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	now := time.Now().UnixMilli()
	var futures []jetstream.PubAckFuture
	flush := func() error {
		for _, fu := range futures {
			select {
			case <-fu.Ok():
			case err := <-fu.Err():
				return fmt.Errorf("publish %s: %w", fu.Msg().Subject, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		futures = futures[:0]
		return nil
	}
	n := 0
	for {
		id, attrs, err := row()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
		data, err := msgpack.Marshal(attrs)
		if err != nil {
			return n, fmt.Errorf("customer %s: %w", id, err)
		}
		sum := sha256.Sum256(append([]byte(id+"\x00"), data...))
		ev := bench.Event{ID: "profile-import:" + id + ":" + hex.EncodeToString(sum[:8]), CustomerID: id, Type: "profile", TS: now, Attrs: attrs}
		msg := nats.NewMsg(ev.Subject(*cf.prefix))
		msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
		if msg.Data, err = msgpack.Marshal(ev); err != nil {
			return n, err
		}
		fu, err := js.PublishMsgAsync(msg)
		if err != nil {
			return n, err
		}
		futures = append(futures, fu)
		n++
		if len(futures) >= 4096 {
			if err := flush(); err != nil {
				return n, err
			}
			bar.set(n)
		}
	}
	return n, flush()
}

func csvRows(r io.Reader) (func() (map[string]any, int, error), error) {
	cr := csv.NewReader(bufio.NewReader(r))
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	idCol := -1
	for i, h := range header {
		if h == "customer_id" {
			idCol = i
		}
	}
	if idCol < 0 {
		return nil, errors.New("csv header has no customer_id column")
	}
	line := 1
	return func() (map[string]any, int, error) {
		rec, err := cr.Read()
		line++
		if err != nil {
			return nil, line, err
		}
		row := make(map[string]any, len(rec))
		for i, v := range rec {
			if i == idCol {
				row[header[i]] = v
			} else if v != "" {
				row[header[i]] = parseScalar(v)
			}
		}
		return row, line, nil
	}, nil
}

func jsonlRows(r io.Reader) func() (map[string]any, int, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	return func() (map[string]any, int, error) {
		for sc.Scan() {
			line++
			b := strings.TrimSpace(sc.Text())
			if b == "" {
				continue
			}
			var row map[string]any
			if err := json.Unmarshal([]byte(b), &row); err != nil {
				return nil, line, err
			}
			return row, line, nil
		}
		if err := sc.Err(); err != nil {
			return nil, line, err
		}
		return nil, line, io.EOF
	}
}

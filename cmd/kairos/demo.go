package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kairos-engine/kairos/bench"
	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine"
	"github.com/kairos-engine/kairos/examples"
)

// cmdDemo runs the engine on its embedded defaults with the example rules
// and synthetic traffic, printing offers and a live status line.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := newFlags("demo", stderr)
	customers := flags.Int("customers", 300, "synthetic customers")
	rate := flags.Int("rate", 200, "events per second")
	duration := flags.Duration("duration", 0, "stop after this long (0 runs until Ctrl-C)")
	rulesDir := flags.String("rules", "", "rules directory (default: the built-in examples)")
	quiet := flags.Bool("quiet", false, "print only the status lines, not every offer")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *customers < 2 || *rate < 1 {
		return fmt.Errorf("--customers must be at least 2 and --rate at least 1")
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	dir, err := os.MkdirTemp("", "kairos-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if *rulesDir == "" {
		*rulesDir = filepath.Join(dir, "rules")
		if err := writeExamples(*rulesDir); err != nil {
			return err
		}
	}
	var cfg engine.Config
	cfg.Data = filepath.Join(dir, "data")
	cfg.Rules.Dir = *rulesDir
	cfg.NATS.Listen = freeOr("127.0.0.1:4222")
	cfg.HTTP.Listen = freeOr("127.0.0.1:9464")
	cfg.Log.Level = "warn"
	cfg.Defaults()
	e, err := engine.New(engine.Options{Config: cfg, Logger: engine.NewLogger(stderr, cfg.Log)})
	if err != nil {
		return err
	}
	ectx, stopEngine := context.WithCancel(context.Background())
	defer stopEngine()
	done := make(chan error, 1)
	go func() { done <- e.Run(ectx) }()
	select {
	case <-e.Ready():
	case err := <-done:
		return err
	case <-ctx.Done():
		stopEngine()
		return <-done
	}
	fmt.Fprintf(stdout, "kairos demo: %d rules from %s, NATS at %s, metrics at http://%s/metrics\n",
		len(e.Rules().Rules()), *rulesDir, e.NATSURL(), e.HTTPAddr())
	fmt.Fprintf(stdout, "feeding %d events/s from %d synthetic customers; Ctrl-C stops\n", *rate, *customers)

	derr := runDemoTraffic(ctx, e.NATSURL(), *customers, *rate, *quiet, stdout)
	stopEngine()
	if err := <-done; err != nil {
		return err
	}
	if derr != nil && !errors.Is(derr, context.Canceled) && !errors.Is(derr, context.DeadlineExceeded) {
		return derr
	}
	fmt.Fprintln(stdout, "kairos demo: stopped cleanly")
	return nil
}

func writeExamples(dst string) error {
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return err
	}
	return fs.WalkDir(examples.Rules, "rules", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := examples.Rules.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, filepath.Base(p)), b, 0o640)
	})
}

// freeOr returns addr when it can be listened on, else the same host with
// port 0 (any free port).
func freeOr(addr string) string {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, "0")
	}
	ln.Close()
	return addr
}

// runDemoTraffic loads profiles, then publishes events at rate until ctx
// ends, printing offers and a status line each second.
func runDemoTraffic(ctx context.Context, url string, customers, rate int, quiet bool, stdout io.Writer) error {
	nc, err := nats.Connect(url, nats.Name("kairos-demo"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var lat []time.Duration
	var offers, suppressed int
	reasons := map[string]int{}
	out := &lockedWriter{w: stdout}
	sub, err := nc.Subscribe("kairos.offers.>", func(m *nats.Msg) {
		o, err := connectors.DecodeOffer(m.Data)
		if err != nil {
			return
		}
		d := time.Since(time.UnixMilli(o.EventTS))
		mu.Lock()
		lat = append(lat, d)
		offers++
		mu.Unlock()
		if !quiet {
			fmt.Fprintf(out, "offer  %-8s %-10s %-26s %-16s %v\n", o.Channel, o.CustomerID, o.RuleID, o.Product, o.Params)
		}
	})
	if err != nil {
		return err
	}
	defer sub.Unsubscribe() //nolint:errcheck
	dsub, err := nc.Subscribe("kairos.decisions.>", func(m *nats.Msg) {
		d, err := connectors.DecodeDecision(m.Data)
		if err != nil || d.Outcome != connectors.Suppressed {
			return
		}
		mu.Lock()
		suppressed++
		reasons[d.Reason]++
		mu.Unlock()
	})
	if err != nil {
		return err
	}
	defer dsub.Unsubscribe() //nolint:errcheck

	gen := bench.NewGenerator(bench.Workload{Customers: customers, Seed: uint64(time.Now().UnixNano())})
	now := time.Now()
	for i := 0; i < customers; i++ {
		if err := publishEvent(js, gen.ProfileEvent(i, now)); err != nil {
			return err
		}
	}
	tick := time.NewTicker(time.Second / 50)
	defer tick.Stop()
	status := time.NewTicker(time.Second)
	defer status.Stop()
	perTick := float64(rate) / 50
	var owed float64
	var sent, lastSent, lastOffers, lastSuppressed int
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			owed += perTick
			for ; owed >= 1; owed-- {
				if err := publishEvent(js, gen.Next(time.Now())); err != nil {
					return err
				}
				sent++
			}
		case t := <-status.C:
			el := t.Sub(last).Seconds()
			mu.Lock()
			p99 := percentile(lat, 0.99)
			p50 := percentile(lat, 0.50)
			lat = lat[:0]
			o, sp := offers, suppressed
			top := topReasons(reasons, 3)
			mu.Unlock()
			fmt.Fprintf(out, "status events/s=%.0f offers/s=%.1f suppressed/s=%.1f latency p50=%v p99=%v (event published → offer received) total events=%d offers=%d suppressed=%d %s\n",
				float64(sent-lastSent)/el, float64(o-lastOffers)/el, float64(sp-lastSuppressed)/el, p50.Round(10*time.Microsecond), p99.Round(10*time.Microsecond), sent, o, sp, top)
			last, lastSent, lastOffers, lastSuppressed = t, sent, o, sp
		}
	}
}

// topReasons formats the most frequent suppression reasons.
func topReasons(m map[string]int, n int) string {
	type kv struct {
		k string
		v int
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if a.v != b.v {
			return b.v - a.v
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for i := 0; i < len(all) && i < n; i++ {
		parts = append(parts, fmt.Sprintf("%s=%d", all[i].k, all[i].v))
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, " ") + ")"
}

func publishEvent(js jetstream.JetStream, ev bench.Event) error {
	data, err := bench.Encode(nil, &ev)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(ev.Subject("kairos"))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, ev.ID)
	_, err = js.PublishMsgAsync(msg)
	return err
}

func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

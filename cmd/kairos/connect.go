package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine"
)

// cmdConnect runs the configured connectors alone, against an external
// NATS (nats.url in the config or --nats-url): a delivery process apart
// from the engine.
func cmdConnect(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("connect", stderr)
	configPath := fs.String("config", "", "config file with the connectors: section (default kairos.yaml when it exists)")
	natsURL := fs.String("nats-url", "", "NATS URL (default: nats.url of the config)")
	channel := fs.String("channel", "", "run only the connectors of this channel")
	httpAddr := fs.String("http", "127.0.0.1:9465", "address of /metrics and /healthz, or off")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, fs)
	if err != nil {
		return err
	}
	if *natsURL != "" {
		cfg.NATS.URL = *natsURL
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.NATS.URL == "" {
		return errors.New("kairos connect needs a NATS to connect to: --nats-url or nats.url (the engine's embedded server runs only inside kairos run)")
	}
	var cs []engine.ConnectorConfig
	for _, c := range cfg.Connectors {
		if *channel == "" || c.Channel == *channel {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return fmt.Errorf("no connector configured for channel %q", *channel)
	}
	log := engine.NewLogger(stderr, cfg.Log)
	cf := clientFlags{url: &cfg.NATS.URL}
	nc, js, err := cf.connect("kairos-connect")
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(engine.RuntimeCollectors()...)
	if *httpAddr != "off" {
		ln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			return fmt.Errorf("--http: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
	}
	stop, err := engine.RunConnectors(ctx, js, &cfg, cs, reg, log, time.Now)
	if err != nil {
		return err
	}
	log.Info("kairos connect running", "connectors", len(cs), "nats", cfg.NATS.URL)
	<-ctx.Done()
	stop()
	return nil
}

// cmdOpportunities works a branch's opportunity worklist.
func cmdOpportunities(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: kairos opportunities list|claim|outcome --branch B ...")
		return errUsage
	}
	verb, args := args[0], args[1:]
	fs := newFlags("opportunities "+verb, stderr)
	cf := addClientFlags(fs)
	branch := fs.String("branch", "", "the branch (required)")
	by := fs.String("by", "", "who claims it or records the outcome")
	result := fs.String("result", "", "outcome: contacted, accepted or declined")
	note := fs.String("note", "", "a note with the outcome")
	all := fs.Bool("all", false, "list done leads too")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *branch == "" {
		fmt.Fprintln(stderr, "kairos opportunities: --branch is required")
		return errUsage
	}
	nc, js, err := cf.connect("kairos-opportunities")
	if err != nil {
		return err
	}
	defer nc.Close()
	wl, err := connectors.OpenWorklist(ctx, js, "", *cf.prefix, nil)
	if err != nil {
		return err
	}
	show := func(v any) error {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	switch verb {
	case "list":
		list, err := wl.List(ctx, *branch, *all)
		if err != nil {
			return err
		}
		if *asJSON {
			return show(list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OFFER\tCUSTOMER\tRULE\tPRODUCT\tSTATUS\tBY\tDUE")
		now := time.Now()
		for _, op := range list {
			due := "-"
			if op.DueAt > 0 {
				due = time.UnixMilli(op.DueAt).Format("2006-01-02 15:04")
				if op.Overdue(now) {
					due += " OVERDUE"
				}
			}
			status := op.Status
			if op.Outcome != "" {
				status += " (" + op.Outcome + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", op.Offer.ID, op.Offer.CustomerID, op.Offer.RuleID, op.Offer.Product, status, op.ClaimedBy, due)
		}
		return tw.Flush()
	case "claim", "outcome":
		if fs.NArg() != 1 {
			fmt.Fprintf(stderr, "usage: kairos opportunities %s --branch B --by NAME [--result R] OFFER_ID\n", verb)
			return errUsage
		}
		var op *connectors.Opportunity
		if verb == "claim" {
			op, err = wl.Claim(ctx, *branch, fs.Arg(0), *by)
		} else {
			op, err = wl.Record(ctx, *branch, fs.Arg(0), *by, *result, *note)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return show(op)
		}
		fmt.Fprintf(stdout, "%s: %s by %s\n", op.Offer.ID, op.Status, op.ClaimedBy)
		return nil
	}
	fmt.Fprintln(stderr, "usage: kairos opportunities list|claim|outcome --branch B ...")
	return errUsage
}

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/kairos-engine/kairos/connectors"
	"github.com/kairos-engine/kairos/engine"
)

// cmdReport prints the effect of the rules over a time range, from the
// decisions stream and the feedback events (docs/connectors.md#reports).
func cmdReport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", stderr)
	cf := addClientFlags(fs)
	from := fs.String("from", "7d", "start: RFC 3339, or a duration ago such as 7d")
	to := fs.String("to", "", "end: RFC 3339 (default now)")
	rule := fs.String("rule", "", "only this rule")
	format := fs.String("format", "md", "md, json or csv")
	decisions := fs.String("decisions-stream", "KAIROS_DECISIONS", "decisions stream")
	events := fs.String("events-stream", "KAIROS_EVENTS", "events stream")
	if err := fs.Parse(args); err != nil {
		return err
	}
	start, end, err := parseRange(*from, *to, 7*24*time.Hour)
	if err != nil {
		return err
	}
	nc, js, err := cf.connect("kairos-report")
	if err != nil {
		return err
	}
	defer nc.Close()
	rep := engine.NewEffectReport(start, end)
	err = readRange(ctx, js, *decisions, nil, start, end, func(m jetstream.Msg) {
		d, err := connectors.DecodeDecision(m.Data())
		if err == nil && (*rule == "" || d.RuleID == *rule) && time.UnixMilli(d.DecidedAt).Before(end) {
			rep.AddDecision(d)
		}
	})
	if err != nil {
		return err
	}
	p := *cf.prefix + ".events."
	err = readRange(ctx, js, *events, []string{p + "offer_sent.>", p + "offer_failed.>", p + "offer_delivered.>", p + "offer_clicked.>"}, start, end, func(m jetstream.Msg) {
		var ev struct {
			Type  string         `msgpack:"type"`
			Attrs map[string]any `msgpack:"attrs"`
		}
		if msgpack.Unmarshal(m.Data(), &ev) == nil {
			if r, _ := ev.Attrs["rule_id"].(string); *rule == "" || r == "" || r == *rule {
				rep.AddFeedback(ev.Type, ev.Attrs)
			}
		}
	})
	if err != nil {
		return err
	}
	return rep.Finish().Write(stdout, *format)
}

// readRange reads a stream's messages stored between from and to.
func readRange(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, from, to time.Time, fn func(jetstream.Msg)) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: subjects, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &from,
	})
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.Timestamp.After(to) {
				return nil
			}
			fn(m)
			if md.NumPending == 0 {
				return nil
			}
		}
		if n == 0 {
			return nil
		}
	}
}

package engine

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kairos-engine/kairos/connectors"
)

// startConnectors starts a delivery runner for each configured connector,
// on the engine's NATS connection. The returned func stops them and waits
// (offers in delivery are redelivered at the next start).
func (e *Engine) startConnectors(ctx context.Context) (func(), error) {
	if len(e.cfg.Connectors) == 0 {
		return func() {}, nil
	}
	return RunConnectors(ctx, e.js, &e.cfg, e.cfg.Connectors, e.reg, e.log, e.now)
}

// RunConnectors starts runners for the given connectors (kairos run, or
// kairos connect alone). It returns a func that stops them.
func RunConnectors(ctx context.Context, js jetstream.JetStream, cfg *Config, cs []ConnectorConfig, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (func(), error) {
	reg2 := connectors.Builtin()
	m := connectors.NewMetrics(reg)
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	stop := func() {
		cancel()
		wg.Wait()
	}
	for _, c := range cs {
		conn, err := reg2.New(connectors.Config{Name: c.Name, Type: c.Type, Channel: c.Channel, Settings: c.Settings, JS: js, Prefix: cfg.Streams.Prefix})
		if err != nil {
			stop()
			return nil, err
		}
		m.Init(c.Name)
		r, err := connectors.NewRunner(connectors.RunnerOptions{
			JS: js, Stream: cfg.Streams.Offers.Name, Prefix: cfg.Streams.Prefix, Name: c.Name, Channel: c.Channel, Connector: conn,
			Concurrency: c.Concurrency, MaxAttempts: c.MaxAttempts, BackoffBase: optDuration(c.BackoffBase), BackoffMax: optDuration(c.BackoffMax),
			Rate: c.Rate, Burst: c.Burst, BreakerFailures: c.BreakerFailures, BreakerCooldown: optDuration(c.BreakerCooldown),
			AckWait: optDuration(c.AckWait), Now: now, Logger: log, Metrics: m,
		})
		if err != nil {
			stop()
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.Run(cctx); err != nil {
				log.Error("connector stopped", "connector", c.Name, "err", err)
			}
		}()
		log.Info("connector started", "connector", c.Name, "type", c.Type, "channel", c.Channel)
	}
	return stop, nil
}

// optDuration parses a validated, possibly empty, duration (0 when empty).
func optDuration(s string) time.Duration {
	if s == "" {
		return 0
	}
	return mustDuration(s)
}

package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/kairos-engine/kairos/engine"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	configPath := fs.String("config", "", "config file (default kairos.yaml when it exists)")
	rulesDir := fs.String("rules", "", "rules directory (default rules)")
	data := fs.String("data", "", "data directory for state and the embedded NATS (default data)")
	natsURL := fs.String("nats-url", "", "external NATS URL; empty starts the embedded server")
	natsListen := fs.String("nats-listen", "", "embedded NATS client address (default 127.0.0.1:4222)")
	httpAddr := fs.String("http", "", "metrics and health address, or off (default 127.0.0.1:9464)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (default info)")
	instance := fs.String("instance", "", "cluster mode: this instance's id (cluster.instance; e.g. the pod name)")
	advertise := fs.String("advertise", "", "cluster mode: the HTTP address the other instances redirect to (cluster.advertise)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(*configPath, fs)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	override("rules", &cfg.Rules.Dir, *rulesDir)
	override("data", &cfg.Data, *data)
	override("nats-url", &cfg.NATS.URL, *natsURL)
	override("nats-listen", &cfg.NATS.Listen, *natsListen)
	override("http", &cfg.HTTP.Listen, *httpAddr)
	override("log-level", &cfg.Log.Level, *logLevel)
	override("instance", &cfg.Cluster.Instance, *instance)
	override("advertise", &cfg.Cluster.Advertise, *advertise)
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := engine.NewLogger(stderr, cfg.Log)
	if lim, from, _ := cfg.MemoryLimit(); lim > 0 {
		debug.SetMemoryLimit(lim)
		log.Info("soft memory limit set", "bytes", lim, "from", from)
	}
	e, err := engine.New(engine.Options{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	// SIGHUP reloads the rules; a bad set is logged and the running one
	// keeps running.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = e.Reload(ctx)
			}
		}
	}()
	return e.Run(ctx)
}

// loadConfig reads the config file: the one given, or kairos.yaml when it
// exists, or none.
func loadConfig(path string, _ *flag.FlagSet) (engine.Config, error) {
	if path == "" {
		if _, err := os.Stat("kairos.yaml"); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return engine.Config{}, nil
			}
			return engine.Config{}, err
		}
		path = "kairos.yaml"
	}
	return engine.LoadConfig(path)
}

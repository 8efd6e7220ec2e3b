package engine

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runExternalServer starts a nats-server with JetStream on a random
// loopback port, as an external NATS would be.
func runExternalServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.JetStream, opts.NoSigs = "127.0.0.1", -1, true, true
	opts.StoreDir = filepath.Join(t.TempDir(), "nats")
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

func TestExternalNATSWithCredentials(t *testing.T) {
	cases := []struct {
		name    string
		server  server.Options
		config  func(*Config)
		wantErr bool
	}{
		{"user and password", server.Options{Username: "kairos", Password: "s3cret"},
			func(c *Config) { c.NATS.User, c.NATS.Password = "kairos", "s3cret" }, false},
		{"wrong password is refused", server.Options{Username: "kairos", Password: "s3cret"},
			func(c *Config) { c.NATS.User, c.NATS.Password = "kairos", "nope" }, true},
		{"token", server.Options{Authorization: "tok-123"},
			func(c *Config) { c.NATS.Token = "tok-123" }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := runExternalServer(t, &c.server)
			dir := t.TempDir()
			useExampleRules(t, dir)
			var cfg Config
			cfg.Data = filepath.Join(dir, "data")
			cfg.Rules.Dir = filepath.Join(dir, "rules")
			cfg.NATS.URL = ns.ClientURL()
			cfg.HTTP.Listen = "off"
			c.config(&cfg)
			e, err := New(Options{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			select {
			case <-e.Ready():
				if c.wantErr {
					t.Fatal("connected with bad credentials")
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			case err := <-done:
				cancel()
				if !c.wantErr {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				cancel()
				t.Fatal("neither ready nor failed in 30s")
			}
		})
	}
}

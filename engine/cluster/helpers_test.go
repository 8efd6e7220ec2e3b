package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/kairos-engine/kairos/engine/cluster/clustertest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connect opens a connection to url (a comma-separated list for a
// cluster), closed when the test ends.
func connect(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return nc, js
}

// startJS starts a single server and connects to it.
func startJS(tb testing.TB) (string, *nats.Conn, jetstream.JetStream) {
	tb.Helper()
	url, _ := clustertest.StartServer(tb)
	nc, js := connect(tb, url)
	return url, nc, js
}

func testCtx(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10ms until it holds or d passes.
func eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			tb.Fatalf("not within %v: %s", d, what)
		}
	}
}

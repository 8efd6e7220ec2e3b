// Package clustertest starts embedded nats-servers with JetStream for
// tests: a single node, or a cluster of n nodes on 127.0.0.1 with random
// client and route ports, each with its own store directory. The servers
// are shut down when the test ends.
package clustertest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds the wait for a server or a cluster to be ready.
const readyTimeout = 30 * time.Second

// serverReadyTimeout bounds the wait for one server to accept
// connections: milliseconds normally; a server whose route port was taken
// never does.
const serverReadyTimeout = 15 * time.Second

// StartServer starts a single nats-server with JetStream and returns its
// client URL.
func StartServer(tb testing.TB) (string, *server.Server) {
	tb.Helper()
	s := start(tb, &server.Options{
		ServerName: "kairos-test",
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   tb.TempDir(),
		NoSigs:     true,
		NoLog:      true,
	})
	return s.ClientURL(), s
}

// StartCluster starts an n-node nats-server cluster with JetStream and
// waits until the JetStream meta group has a leader, all n peers, and every
// node is current. It returns the client URLs and the servers, in the same
// order; a test may shut a server down itself.
func StartCluster(tb testing.TB, n int) (urls []string, servers []*server.Server) {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("clustertest: cluster of %d nodes", n)
	}
	// The route ports are reserved, released, then bound by the servers:
	// another test's server may take one in between, and that node never
	// becomes ready. Such a cluster is shut down and made again on new
	// ports.
	var err error
	for range 3 {
		if urls, servers, err = startCluster(tb, n); err == nil {
			return urls, servers
		}
		tb.Logf("clustertest: %v; starting the cluster again on new ports", err)
	}
	tb.Fatalf("clustertest: %v", err)
	return nil, nil
}

// startCluster makes one attempt of StartCluster; on failure it shuts
// down the servers it started.
func startCluster(tb testing.TB, n int) (urls []string, servers []*server.Server, err error) {
	ports := freePorts(tb, n)
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	defer func() {
		if err != nil {
			for _, s := range servers {
				s.Shutdown()
				s.WaitForShutdown()
			}
		}
	}()
	for i := range n {
		s, err := startE(tb, &server.Options{
			ServerName: fmt.Sprintf("kairos-test-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   tb.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster: server.ClusterOpts{
				Name: "kairos-test",
				Host: "127.0.0.1",
				Port: ports[i],
			},
			Routes: routes,
		})
		if s != nil {
			servers = append(servers, s)
		}
		if err != nil {
			return nil, servers, err
		}
		urls = append(urls, s.ClientURL())
	}
	if !waitReady(servers) {
		return nil, servers, fmt.Errorf("JetStream cluster of %d nodes not ready after %v", n, readyTimeout)
	}
	return urls, servers, nil
}

func start(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := startE(tb, opts)
	if err != nil {
		tb.Fatalf("clustertest: %v", err)
	}
	return s
}

// startE starts a server and waits until it accepts connections; the
// server is shut down when the test ends. On a readiness failure it
// returns the server too, for the caller to shut down.
func startE(tb testing.TB, opts *server.Options) (*server.Server, error) {
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("new server %s: %w", opts.ServerName, err)
	}
	go s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(serverReadyTimeout) {
		return s, fmt.Errorf("server %s not ready", opts.ServerName)
	}
	return s, nil
}

// freePorts reserves n distinct free loopback ports for the route
// listeners: every node must know all routes before it starts, so the
// JetStream meta group expects n peers.
func freePorts(tb testing.TB, n int) []int {
	tb.Helper()
	ports := make([]int, n)
	ls := make([]net.Listener, n)
	for i := range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("clustertest: reserve a port: %v", err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// waitReady polls until the meta group has a leader that knows every peer
// and every running node is current, for at most readyTimeout.
func waitReady(servers []*server.Server) bool {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(readyTimeout)
	for {
		if clusterReady(servers) {
			return true
		}
		select {
		case <-tick.C:
		case <-deadline:
			return false
		}
	}
}

func clusterReady(servers []*server.Server) bool {
	var leader *server.Server
	for _, s := range servers {
		if s.JetStreamIsLeader() {
			leader = s
		}
	}
	if leader == nil || len(leader.JetStreamClusterPeers()) != len(servers) {
		return false
	}
	for _, s := range servers {
		if !s.JetStreamIsCurrent() {
			return false
		}
	}
	return true
}

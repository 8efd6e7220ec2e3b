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
	ports := freePorts(tb, n)
	routes := make([]*url.URL, n)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	for i := range n {
		s := start(tb, &server.Options{
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
		servers = append(servers, s)
		urls = append(urls, s.ClientURL())
	}
	waitReady(tb, servers)
	return urls, servers
}

func start(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("clustertest: new server %s: %v", opts.ServerName, err)
	}
	go s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(readyTimeout) {
		tb.Fatalf("clustertest: server %s not ready", opts.ServerName)
	}
	return s
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
// and every running node is current.
func waitReady(tb testing.TB, servers []*server.Server) {
	tb.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(readyTimeout)
	for {
		if clusterReady(servers) {
			return
		}
		select {
		case <-tick.C:
		case <-deadline:
			tb.Fatalf("clustertest: JetStream cluster of %d nodes not ready after %v", len(servers), readyTimeout)
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

// Package natstest runs real NATS servers (github.com/nats-io/nats-server/v2) inside a test's
// process, with JetStream on in the test's temporary directory and clients on loopback: one
// server, or several routed into one JetStream cluster, each of which the test can stop and start
// again. Nothing has to be installed for `go test`.
package natstest

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyWait bounds how long a server may take to accept clients, and a cluster to elect its
// JetStream leader: far longer than either takes (milliseconds, about a second), only so that a
// broken set-up fails rather than hangs.
const readyWait = 30 * time.Second

// Node is one NATS server of a test.
type Node struct {
	t    testing.TB
	opts server.Options

	mu  sync.Mutex
	srv *server.Server
}

// Start runs a single JetStream server on a random loopback port, stopped when the test ends.
func Start(t testing.TB) *Node {
	t.Helper()
	n := &Node{t: t, opts: baseOptions(t, "n1")}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// baseOptions are a test server's: loopback, no logs, no signal handlers, JetStream in a
// temporary directory of its own.
func baseOptions(t testing.TB, name string) server.Options {
	return server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
	}
}

// Start starts the server (again, after Stop: on the same port, with the same storage), and
// returns once it accepts clients.
func (n *Node) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return
	}
	opts := n.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("nats server %s: %v", n.opts.ServerName, err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(readyWait) {
		srv.Shutdown()
		n.t.Fatalf("nats server %s did not start", n.opts.ServerName)
	}
	// Started again, it listens where clients know to find it.
	n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
}

// Stop shuts the server down and waits until it is down; stopping a stopped server does
// nothing.
func (n *Node) Stop() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// URL is the server's client URL, the same across restarts.
func (n *Node) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		return n.srv.ClientURL()
	}
	return "nats://127.0.0.1:" + strconv.Itoa(n.opts.Port)
}

// Server is the running server, nil when it is stopped.
func (n *Node) Server() *server.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// FreePorts returns n loopback ports nothing listens on now: for configurations that must name
// their ports before their servers start (cluster routes).
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	return ports
}

// Cluster is several servers routed into one JetStream cluster.
type Cluster struct {
	Nodes []*Node
}

// StartCluster runs size servers on loopback, routed to each other, and returns once the cluster
// has elected its JetStream leader. They stop when the test ends.
func StartCluster(t testing.TB, size int) *Cluster {
	t.Helper()
	// The routes must name the ports before the servers start: take free ones.
	ports := FreePorts(t, size)
	c := &Cluster{}
	for i := range size {
		opts := baseOptions(t, fmt.Sprintf("n%d", i+1))
		opts.Cluster = server.ClusterOpts{Name: "chatd-test", Host: "127.0.0.1", Port: ports[i]}
		for j, p := range ports {
			if j != i {
				opts.Routes = append(opts.Routes, server.RoutesFromStr(fmt.Sprintf("nats-route://127.0.0.1:%d", p))...)
			}
		}
		n := &Node{t: t, opts: opts}
		c.Nodes = append(c.Nodes, n)
		t.Cleanup(n.Stop)
	}
	// One after the other: a server accepts clients before its routes are up, so none waits
	// for the next.
	for _, n := range c.Nodes {
		n.Start()
	}
	c.WaitForLeader()
	return c
}

// URLs are the client URLs of every server.
func (c *Cluster) URLs() []string {
	var urls []string
	for _, n := range c.Nodes {
		urls = append(urls, n.URL())
	}
	return urls
}

// WaitForLeader returns once the running servers have a JetStream meta leader and every one
// of them is current with it.
func (c *Cluster) WaitForLeader() {
	t := c.Nodes[0].t
	t.Helper()
	deadline := time.Now().Add(readyWait)
	for time.Now().Before(deadline) {
		leader, current := false, true
		for _, n := range c.Nodes {
			srv := n.Server()
			if srv == nil {
				continue
			}
			leader = leader || srv.JetStreamIsLeader()
			current = current && srv.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the NATS cluster elected no JetStream leader")
}

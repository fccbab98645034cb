package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"chatd/chat"
	"chatd/room"
	"chatd/store/natsjs"
	"chatd/store/natsjs/natstest"
)

// TestNodeMetrics reads a cluster node's metrics from a real relay on an embedded NATS server:
// the node's name, the connection, publish latency and the relay's counts, and the connection
// going down when NATS stops.
func TestNodeMetrics(t *testing.T) {
	srv := natstest.Start(t)
	cfg := natsjs.DefaultConfig()
	cfg.URLs = []string{srv.URL()}
	st, err := natsjs.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.SaveRoom(chat.Room{Name: "#lobby"}); err != nil {
		t.Fatal(err)
	}

	m := New()
	rcfg := natsjs.DefaultRelayConfig()
	rcfg.OnPublish = m.Published
	relay, err := natsjs.NewRelay(context.Background(), st, rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	got := make(chan room.Line, 10)
	relay.Receive(func(l room.Line) { got <- l })
	m.Node(NodeSource{
		Node:      "chat-1",
		Connected: relay.Connected,
		Relay: func() RelayStats {
			s := relay.Stats()
			return RelayStats{Published: s.Published, PublishErrors: s.PublishErrors, Delivered: s.Delivered, Dropped: s.Dropped, Lag: s.Lag}
		},
	})

	for _, text := range []string{"one", "two", "three"} {
		if err := relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: text, At: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		<-got // the relay counts a line before handing it over
	}

	h := httptest.NewServer(m.Handler())
	defer h.Close()
	scrape := func() string {
		t.Helper()
		resp, err := h.Client().Get(h.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	body := scrape()
	for _, want := range []string{
		`chatd_node_info{node="chat-1"} 1`,
		"chatd_nats_connected 1",
		"chatd_relay_publish_seconds_count 3",
		"chatd_relay_published_total 3",
		"chatd_relay_publish_errors_total 0",
		"chatd_relay_delivered_total 3",
		"chatd_relay_dropped_total 0",
		"chatd_relay_lag 0",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// NATS gone: the gauge says so, and a publish fails at once, counted.
	srv.Stop()
	for deadline := time.Now().Add(30 * time.Second); relay.Connected(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) { // the client notices the closed socket at once
			t.Fatal("the relay still says it is connected to a stopped NATS server")
		}
	}
	if err := relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: "lost", At: time.Now()}); err == nil {
		t.Fatal("published with NATS stopped")
	}
	body = scrape()
	for _, want := range []string{"chatd_nats_connected 0", "chatd_relay_publish_seconds_count 4", "chatd_relay_publish_errors_total 1"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("with NATS stopped, /metrics lacks %q", want)
		}
	}
}

// TestSingleNodeHasNoNodeMetrics: without a cluster, the metrics are what they were.
func TestSingleNodeHasNoNodeMetrics(t *testing.T) {
	h := httptest.NewServer(New().Handler())
	defer h.Close()
	resp, err := h.Client().Get(h.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"chatd_node_info", "chatd_nats_", "chatd_relay_", "chatd_cluster_"} {
		if strings.Contains(string(b), name) {
			t.Errorf("a single node's /metrics has %s", name)
		}
	}
}

// TestClusterMetrics reads the cluster's counts from two real nodes' clusters (each with its
// hub) on one embedded NATS server: each hears of the other, and their presence messages count.
func TestClusterMetrics(t *testing.T) {
	srv := natstest.Start(t)
	node := func(name string) *natsjs.Cluster {
		t.Helper()
		cfg := natsjs.DefaultConfig()
		cfg.URLs = []string{srv.URL()}
		st, err := natsjs.Open(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		ccfg := natsjs.DefaultClusterConfig()
		ccfg.Node = name
		c, err := natsjs.NewCluster(st, ccfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		h, err := room.New(room.Config{Store: st, Cluster: c}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = h.Shutdown(ctx)
		})
		return c
	}
	a := node("a")
	node("b")

	m := New()
	m.Node(NodeSource{Node: "a", Cluster: func() ClusterStats {
		s := a.Stats()
		return ClusterStats{Nodes: s.Nodes, PresenceSent: s.PresenceSent, PresenceReceived: s.PresenceReceived,
			Snapshots: s.Snapshots, Resyncs: s.Resyncs, SnapshotsApplied: s.SnapshotsApplied, Overflows: s.Overflows,
			EventsSent: s.EventsSent, EventsReceived: s.EventsReceived, DMsSent: s.DMsSent, DMsReceived: s.DMsReceived,
			Gone: s.Gone, Lost: s.Lost, Dropped: s.Dropped}
	}})
	h := httptest.NewServer(m.Handler())
	defer h.Close()
	scrape := func() string {
		t.Helper()
		resp, err := h.Client().Get(h.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The nodes say hello as they start: a hears of b within a moment.
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(scrape(), "chatd_cluster_nodes 1\n"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("node a never heard of b:\n%s", scrape())
		}
	}
	body := scrape()
	for _, want := range []string{
		`chatd_node_info{node="a"} 1`,
		`chatd_cluster_events_total{direction="sent"} 0`,
		`chatd_cluster_dms_total{direction="received"} 0`,
		"chatd_cluster_nodes_gone_total 0",
		"chatd_cluster_dropped_total 0",
		"chatd_cluster_lost_total 0",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, series := range []string{`chatd_cluster_presence_messages_total{direction="sent"} `, `chatd_cluster_presence_messages_total{direction="received"} `} {
		if !strings.Contains(body, series) || strings.Contains(body, series+"0\n") {
			t.Errorf("/metrics: want some %s", series)
		}
	}
	if strings.Contains(body, "chatd_relay_lag") || strings.Contains(body, "chatd_nats_connected") {
		t.Error("/metrics reads the relay or the connection from a source without them")
	}
}

package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// NodeSource is where the metrics of a cluster node come from. They are read when Prometheus
// scrapes, so that a count the relay keeps anyway costs nothing between scrapes.
type NodeSource struct {
	// Node is this node's name (chatd_node_info).
	Node string
	// Connected reports whether the node's connection to NATS is up.
	Connected func() bool
	// Relay returns the relay's counts.
	Relay func() RelayStats
	// Cluster returns the cluster's counts (presence, events, private messages between nodes).
	Cluster func() ClusterStats
}

// RelayStats are the relay's counts since the node started, as package metrics takes them.
type RelayStats struct {
	Published     uint64 // lines this node published and the stream stored
	PublishErrors uint64 // lines this node could not publish: their senders were told
	Delivered     uint64 // lines read from the stream and handed to the room
	Dropped       uint64 // lines read from the stream and refused (malformed, of a deleted room)
	Lag           uint64 // lines of the stream waiting behind the newest one delivered
}

// ClusterStats are the cluster's counts since the node started, as package metrics takes them.
type ClusterStats struct {
	Nodes                          int    // other nodes this node hears from now
	PresenceSent, PresenceReceived uint64 // presence messages (changes, snapshots, heartbeats)
	Snapshots                      uint64 // snapshots of this node's presence sent
	Resyncs                        uint64 // snapshots asked of other nodes
	SnapshotsApplied               uint64 // other nodes' snapshots taken in
	Overflows                      uint64 // times too many presence changes waited: a snapshot went instead
	EventsSent, EventsReceived     uint64 // operators' changes (kicks, bans, mutes, rooms, ...)
	DMsSent, DMsReceived           uint64 // private messages to and from people on other nodes
	Gone                           uint64 // nodes found gone (a bye, silence, a restart)
	Lost                           uint64 // messages NATS dropped because this node took them too slowly
	Dropped                        uint64 // messages refused: malformed, too large, beyond a bound
}

// Node adds the metrics of a cluster node: its name, its connection to NATS, the relay's
// publish latency (reported through Published) and counts, and the cluster's counts. Call it once, when the node starts;
// a single chatd (no cluster) has none of these.
func (m *Metrics) Node(src NodeSource) {
	m.reg.MustRegister(m.publish, newNodeCollector(src))
}

// Published records how long one publish to the relay took, whatever its outcome (a failure
// that waited out the timeout is what its sender waited too).
func (m *Metrics) Published(took time.Duration, _ error) { m.publish.Observe(took.Seconds()) }

func newPublishHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "chatd_relay_publish_seconds",
		Help:    "From a line being published to NATS to JetStream's acknowledgement (or the failure).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 17), // 0.1 ms to 6.5 s, past the relay's timeout
	})
}

// nodeCollector reads a node's state on each scrape.
type nodeCollector struct {
	src NodeSource

	info, connected, lag                      *prometheus.Desc
	published, publishErrors, delivered, drop *prometheus.Desc

	nodes, presence, events, dms                               *prometheus.Desc
	snapshots, resyncs, applied, overflows, gone, lost, refuse *prometheus.Desc
}

func newNodeCollector(src NodeSource) *nodeCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &nodeCollector{
		src:           src,
		info:          d("chatd_node_info", "This cluster node's name, always 1.", "node"),
		connected:     d("chatd_nats_connected", "1 while the node's connection to NATS is up, 0 while it is not."),
		lag:           d("chatd_relay_lag", "Lines of the rooms' stream waiting to be delivered behind the newest one this node delivered."),
		published:     d("chatd_relay_published_total", "Lines this node published to the rooms' stream."),
		publishErrors: d("chatd_relay_publish_errors_total", "Lines this node could not publish (their senders were told)."),
		delivered:     d("chatd_relay_delivered_total", "Lines this node read from the rooms' stream and handed to its rooms."),
		drop:          d("chatd_relay_dropped_total", "Lines this node read from the rooms' stream and refused (malformed, of a deleted room)."),

		nodes:     d("chatd_cluster_nodes", "Other nodes of the cluster this node hears from."),
		presence:  d("chatd_cluster_presence_messages_total", "Presence messages (changes, snapshots, heartbeats) sent to and received from the other nodes.", "direction"),
		events:    d("chatd_cluster_events_total", "Operators' changes (kicks, bans, mutes, rooms, ...) sent to and received from the other nodes.", "direction"),
		dms:       d("chatd_cluster_dms_total", "Private messages sent to and received from people on other nodes.", "direction"),
		snapshots: d("chatd_cluster_snapshots_sent_total", "Snapshots of this node's presence sent to the others."),
		resyncs:   d("chatd_cluster_resyncs_total", "Snapshots this node asked of another (it missed changes, or met a new node)."),
		applied:   d("chatd_cluster_snapshots_applied_total", "Other nodes' snapshots this node took in."),
		overflows: d("chatd_cluster_overflows_total", "Times so many presence changes waited that a snapshot was sent instead."),
		gone:      d("chatd_cluster_nodes_gone_total", "Nodes found gone, with their people: a goodbye, silence or a restart."),
		lost:      d("chatd_cluster_lost_total", "Cluster messages NATS dropped because this node took them too slowly."),
		refuse:    d("chatd_cluster_dropped_total", "Cluster messages this node refused: malformed, too large or beyond a bound."),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.info, c.connected, c.lag, c.published, c.publishErrors, c.delivered, c.drop,
		c.nodes, c.presence, c.events, c.dms, c.snapshots, c.resyncs, c.applied, c.overflows, c.gone, c.lost, c.refuse} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.src.Node)
	if c.src.Connected != nil {
		up := 0.0
		if c.src.Connected() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.connected, prometheus.GaugeValue, up)
	}
	if c.src.Relay != nil {
		s := c.src.Relay()
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag))
		ch <- prometheus.MustNewConstMetric(c.published, prometheus.CounterValue, float64(s.Published))
		ch <- prometheus.MustNewConstMetric(c.publishErrors, prometheus.CounterValue, float64(s.PublishErrors))
		ch <- prometheus.MustNewConstMetric(c.delivered, prometheus.CounterValue, float64(s.Delivered))
		ch <- prometheus.MustNewConstMetric(c.drop, prometheus.CounterValue, float64(s.Dropped))
	}
	if c.src.Cluster != nil {
		s := c.src.Cluster()
		counter := func(d *prometheus.Desc, v uint64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
		}
		ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(s.Nodes))
		counter(c.presence, s.PresenceSent, "sent")
		counter(c.presence, s.PresenceReceived, "received")
		counter(c.events, s.EventsSent, "sent")
		counter(c.events, s.EventsReceived, "received")
		counter(c.dms, s.DMsSent, "sent")
		counter(c.dms, s.DMsReceived, "received")
		counter(c.snapshots, s.Snapshots)
		counter(c.resyncs, s.Resyncs)
		counter(c.applied, s.SnapshotsApplied)
		counter(c.overflows, s.Overflows)
		counter(c.gone, s.Gone)
		counter(c.lost, s.Lost)
		counter(c.refuse, s.Dropped)
	}
}

package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/charmbracelet/log"

	"chatd/metrics"
	"chatd/store/natsjs"
	"chatd/store/sqlite"
)

// Cluster mode: with --nats, this process is one node of a cluster. Its rooms, people, history
// and bans are in NATS JetStream (store/natsjs), lines between the nodes go through the stream
// that is the history (the relay), and who is online on each node and what operators change go
// through the cluster (natsjs.Cluster). The data directory keeps only the host keys and the lock.

// minNATSKeepFor is the shortest --history-keep age store/natsjs accepts: a read waits a moment
// for a replica to hold a line it was told was stored, and a line must outlive that moment.
const minNATSKeepFor = time.Minute

// validateCluster checks the cluster settings and resolves the node's name (the host name's
// when --node is not given). Without --nats, none of them may be set: a cluster setting that
// silently does nothing would leave an operator believing the node is clustered.
func (c *config) validateCluster(hostname func() (string, error)) error {
	if c.NATS == "" {
		var set []string
		if c.NATSCreds != "" {
			set = append(set, "--nats-creds")
		}
		if c.NATSCA != "" {
			set = append(set, "--nats-ca")
		}
		if c.NATSReplicas != 1 {
			set = append(set, "--nats-replicas")
		}
		if c.Node != "" {
			set = append(set, "--node")
		}
		if len(set) > 0 {
			return fmt.Errorf("%s only apply to cluster mode: give --nats URL,... too (or leave them out for a single node)", strings.Join(set, ", "))
		}
		return nil
	}
	urls := natsjs.ParseURLs(c.NATS)
	if len(urls) == 0 {
		return fmt.Errorf("--nats %q: no URL", c.NATS)
	}
	for _, u := range urls {
		if err := checkNATSURL(u); err != nil {
			return fmt.Errorf("--nats: %w", err)
		}
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		return fmt.Errorf("--nats-replicas %d: want 1 to 5 (JetStream's limit), and at most the NATS cluster's servers", c.NATSReplicas)
	}
	if _, keepFor, _ := sqlite.ParseKeep(c.HistoryKeep); keepFor > 0 && keepFor < minNATSKeepFor {
		return fmt.Errorf("--history-keep %q: with --nats, keep messages at least %v", c.HistoryKeep, minNATSKeepFor)
	}
	node, err := resolveNode(c.Node, hostname)
	if err != nil {
		return err
	}
	c.Node = node
	return nil
}

// checkNATSURL accepts what the NATS client connects to: nats://HOST[:PORT] or tls://HOST[:PORT].
func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q: %w", natsjs.RedactURL(s), err)
	}
	switch strings.ToLower(u.Scheme) {
	case "nats", "tls":
	default:
		return fmt.Errorf("%q: want nats://HOST:PORT or tls://HOST:PORT", natsjs.RedactURL(s))
	}
	if u.Hostname() == "" {
		return fmt.Errorf("%q: no host", natsjs.RedactURL(s))
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return fmt.Errorf("%q: a NATS URL has no path or query (several servers are separated by commas)", natsjs.RedactURL(s))
	}
	return nil
}

// resolveNode returns the node's name: name when given (it must be valid), or else the host
// name cleaned to what a node's name may hold.
func resolveNode(name string, hostname func() (string, error)) (string, error) {
	if name != "" {
		if err := checkNode(name); err != nil {
			return "", fmt.Errorf("--node: %w", err)
		}
		return name, nil
	}
	h, err := hostname()
	if err != nil {
		return "", fmt.Errorf("--node: no host name to name this node after (%v): give --node NAME", err)
	}
	n := cleanNode(h)
	if n == "" {
		return "", fmt.Errorf("--node: the host name %q has nothing a node's name can use: give --node NAME", h)
	}
	return n, nil
}

// checkNode reports why s cannot name a node, as the cluster itself decides.
func checkNode(s string) error {
	cc := natsjs.DefaultClusterConfig()
	cc.Node = s
	return cc.Validate()
}

// maxNodeLen is the longest node name natsjs.ClusterConfig accepts (TestClusterConfig checks
// that it still does).
const maxNodeLen = 64

func nodeByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
}

// cleanNode makes a host name a node's name: each run of other characters becomes one '-',
// and the result is cut to maxNodeLen.
func cleanNode(host string) string {
	var b strings.Builder
	dash := false
	for i := 0; i < len(host); i++ {
		c := host[i]
		if nodeByte(c) {
			b.WriteByte(c)
			dash = false
			continue
		}
		if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	n := b.String()
	if len(n) > maxNodeLen {
		n = n[:maxNodeLen]
	}
	return strings.Trim(n, "-.")
}

// natsConfig is the NATS store's configuration: chatd's settings over the package's defaults.
func (c *config) natsConfig() natsjs.Config {
	sc := natsjs.DefaultConfig()
	sc.URLs = natsjs.ParseURLs(c.NATS)
	sc.CredsFile, sc.CAFile = c.NATSCreds, c.NATSCA
	// The node names its connection, so the NATS servers' monitoring says which node is which.
	sc.Name = "chatd-" + c.Node
	sc.Replicas = c.NATSReplicas
	sc.KeepMessages, sc.KeepFor, _ = sqlite.ParseKeep(c.HistoryKeep) // checked by validate
	return sc
}

// clusterNode is what makes this process a node of a cluster: the store, the relay and the
// cluster, all on one NATS connection (the store's).
type clusterNode struct {
	store   *natsjs.Store
	relay   *natsjs.Relay
	cluster *natsjs.Cluster
	log     *log.Logger
}

// openClusterNode connects to NATS, opens the store, the relay and the cluster (which the room
// starts), and reports them to mx.
// NATS must answer now: a node that cannot reach it at start stops (systemd starts it again),
// rather than serve people it could not keep.
func openClusterNode(ctx context.Context, cfg config, mx *metrics.Metrics, logger *log.Logger) (*clusterNode, error) {
	logger.Info("cluster mode", "nats", natsjs.RedactURLs(natsjs.ParseURLs(cfg.NATS)), "replicas", cfg.NATSReplicas)
	st, err := natsjs.Open(ctx, cfg.natsConfig(), logger.WithPrefix("store"))
	if err != nil {
		return nil, err
	}
	n := &clusterNode{store: st, log: logger}
	rcfg := natsjs.DefaultRelayConfig()
	rcfg.OnPublish = mx.Published
	if n.relay, err = natsjs.NewRelay(ctx, st, rcfg, logger.WithPrefix("relay")); err != nil {
		n.close()
		return nil, err
	}
	ccfg := natsjs.DefaultClusterConfig()
	ccfg.Node = cfg.Node
	if n.cluster, err = natsjs.NewCluster(st, ccfg, logger.WithPrefix("cluster")); err != nil {
		n.close()
		return nil, err
	}
	mx.Node(metrics.NodeSource{
		Node:      cfg.Node,
		Connected: n.relay.Connected,
		Relay: func() metrics.RelayStats {
			s := n.relay.Stats()
			return metrics.RelayStats{Published: s.Published, PublishErrors: s.PublishErrors, Delivered: s.Delivered, Dropped: s.Dropped, Lag: s.Lag}
		},
		Cluster: func() metrics.ClusterStats {
			s := n.cluster.Stats()
			return metrics.ClusterStats{
				Nodes: s.Nodes, PresenceSent: s.PresenceSent, PresenceReceived: s.PresenceReceived,
				Snapshots: s.Snapshots, Resyncs: s.Resyncs, SnapshotsApplied: s.SnapshotsApplied, Overflows: s.Overflows,
				EventsSent: s.EventsSent, EventsReceived: s.EventsReceived, DMsSent: s.DMsSent, DMsReceived: s.DMsReceived,
				Gone: s.Gone, Lost: s.Lost, Dropped: s.Dropped,
			}
		},
	})
	return n, nil
}

// close closes what is open, in order, once the room has shut down: the cluster (it says bye,
// so that the other nodes show this node's people as left at once, not when it falls silent),
// the relay (no line comes in or goes out any more), then the store (the history's last lines
// are published; the connection closes).
func (n *clusterNode) close() {
	if n.cluster != nil {
		if err := n.cluster.Close(); err != nil {
			n.log.Error("cluster close", "err", err)
		}
	}
	if n.relay != nil {
		if err := n.relay.Close(); err != nil {
			n.log.Error("relay close", "err", err)
		}
	}
	if err := n.store.Close(); err != nil {
		n.log.Error("store close", "err", err)
	}
}

// refuseAdminInCluster explains why an admin command does not run with --nats. Acting on the
// local chat.db then would mislead: a backup, an export or a name list of a file the cluster
// never reads, or a restore or release the cluster never sees.
func refuseAdminInCluster(cmd string, stderr io.Writer) int {
	fmt.Fprintf(stderr, `chatd %s: --nats is set (CHAT_NATS or the flag): %s works on a single node's SQLite database,
<data-dir>/chat.db, and a cluster keeps its data in NATS JetStream, not there.
Back up a cluster with NATS's own tools (nats account backup DIR). To act on this machine's
chat.db anyway (e.g. before chatd migrate), run it with --nats= (empty).
`, cmd, cmd)
	return 2
}

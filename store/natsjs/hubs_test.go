package natsjs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nuid"

	"chatd/chat"
	"chatd/internal/roomtest"
	"chatd/room"
	"chatd/store/natsjs/natstest"
)

// hubNode is one chatd node as cmd/chatd wires it, without the transports: a hub on a store, a
// relay and a cluster, all on one real NATS server.
type hubNode struct {
	name    string
	store   *Store
	relay   *Relay
	cluster *Cluster
	hub     *room.Hub
	logs    *syncBuffer
	stopped bool
}

// startHubNode starts node name of the cluster whose streams and buckets start with prefix.
func startHubNode(t *testing.T, url, prefix, name string, cfg ClusterConfig) *hubNode {
	t.Helper()
	n := &hubNode{name: name, logs: &syncBuffer{}}
	lg := log.New(n.logs)
	var err error
	n.store, err = Open(context.Background(), Config{URLs: []string{url}, Prefix: prefix, Name: name}, lg)
	if err != nil {
		t.Fatalf("node %s: open store: %v", name, err)
	}
	n.relay, err = NewRelay(context.Background(), n.store, RelayConfig{}, lg)
	if err != nil {
		t.Fatalf("node %s: relay: %v", name, err)
	}
	cfg.Node = name
	n.cluster, err = NewCluster(n.store, cfg, lg)
	if err != nil {
		t.Fatalf("node %s: cluster: %v", name, err)
	}
	n.hub, err = room.New(room.Config{Store: n.store, Relay: n.relay, Cluster: n.cluster, MsgRate: -1, NoticeBurst: -1}, lg)
	if err != nil {
		t.Fatalf("node %s: hub: %v", name, err)
	}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// knowsNodes waits until every node has heard from all the others: a node that has just started
// learns who is online elsewhere within a moment, not at once.
func knowsNodes(t *testing.T, nodes ...*hubNode) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, "node "+n.name+" knows the others", func() bool { return n.cluster.Stats().Nodes == len(nodes)-1 })
	}
}

// stop shuts the node down as chatd does: the hub, then the cluster (its bye), relay and store.
func (n *hubNode) stop(t *testing.T) {
	if n.stopped {
		return
	}
	n.stopped = true
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.hub.Shutdown(ctx); err != nil {
		t.Errorf("node %s: shutdown: %v", n.name, err)
	}
	n.cluster.Close()
	n.relay.Close()
	n.store.Close()
}

// pipeOut is a member's connection: what the hub writes, the test reads as a Stream.
type pipeOut struct{ w *io.PipeWriter }

func (p pipeOut) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeOut) Close() error                { return p.w.Close() }

func joinHub(t *testing.T, n *hubNode, name string, opts room.JoinOptions) (*room.Member, *roomtest.Stream) {
	t.Helper()
	m, out, err := tryJoin(n, name, opts)
	if err != nil {
		t.Fatalf("%s joins node %s: %v", name, n.name, err)
	}
	return m, out
}

func tryJoin(n *hubNode, name string, opts room.JoinOptions) (*room.Member, *roomtest.Stream, error) {
	r, w := io.Pipe()
	out := roomtest.NewStream(r)
	if opts.Transport == "" {
		opts.Transport = "test"
	}
	m, err := n.hub.Join(name, pipeOut{w}, opts)
	if err != nil {
		w.Close()
	}
	return m, out, err
}

func hubKey(n int) *chat.Key {
	k := testKey(n)
	return &k
}

// fastCluster notices a dead node within a second or two, so that tests wait little.
func fastCluster() ClusterConfig {
	return ClusterConfig{Heartbeat: 200 * time.Millisecond, GoneAfter: time.Second}
}

// TestHubsShareTheChat: two nodes on one NATS server behave as one chat server.
func TestHubsShareTheChat(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	knowsNodes(t, a, b)

	alice, aliceOut := joinHub(t, a, "alice", room.JoinOptions{Echo: true})
	_, bobOut := joinHub(t, b, "bob", room.JoinOptions{Echo: true})
	aliceOut.WaitContains(t, "bob joined #lobby (2 online)")

	t.Run("lines cross", func(t *testing.T) {
		alice.Handle("hello from a")
		bobOut.WaitContains(t, "alice: hello from a")
	})
	t.Run("who spans the nodes", func(t *testing.T) {
		alice.Handle("/who")
		aliceOut.WaitContains(t, "2 online in #lobby: alice, bob")
		if got := a.hub.Names(); !slices.Equal(got, []string{"alice", "bob"}) {
			t.Errorf("a's Names = %v", got)
		}
		alice.Handle("/whois bob")
		aliceOut.WaitContains(t, "bob: online on node b, in #lobby")
	})
	t.Run("a guest name is taken on every node", func(t *testing.T) {
		if _, _, err := tryJoin(a, "BOB", room.JoinOptions{}); err == nil || !strings.Contains(err.Error(), "taken") {
			t.Fatalf("BOB on a while bob is on b: %v, want the name taken", err)
		}
	})
	t.Run("a room made on one node", func(t *testing.T) {
		alice.Handle("/join #made-on-a")
		aliceOut.WaitContains(t, "alice joined #made-on-a")
		bob2, bob2Out := joinHub(t, b, "bob2", room.JoinOptions{Room: "#made-on-a"})
		aliceOut.WaitContains(t, "bob2 joined #made-on-a (2 online)")
		alice.Handle("in the new room")
		bob2Out.WaitContains(t, "alice: in the new room")
		bob2.Handle("/rooms")
		bob2Out.WaitContains(t, "#made-on-a (2 online, you are in it)")
		bob2.Leave(room.ReasonQuit)
		aliceOut.WaitContains(t, "bob2 left #made-on-a")
		alice.Handle("/join #lobby")
	})
	t.Run("private messages", func(t *testing.T) {
		alice.Handle("/msg bob psst")
		bobOut.WaitContains(t, "alice")
		bobOut.WaitContains(t, "psst")
		aliceOut.WaitContains(t, "[dm to bob] psst")
	})
}

// TestHubsOneOrder: lines said at once on two nodes reach every member, on both, in one order.
func TestHubsOneOrder(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	nodes := []*hubNode{
		startHubNode(t, srv.URL(), prefix, "a", fastCluster()),
		startHubNode(t, srv.URL(), prefix, "b", fastCluster()),
		startHubNode(t, srv.URL(), prefix, "c", fastCluster()),
	}
	knowsNodes(t, nodes...)
	const senders, lines = 6, 50
	var members []*room.Member
	var outs []*roomtest.Stream
	for i := range senders {
		m, out := joinHub(t, nodes[i%len(nodes)], fmt.Sprintf("s%d", i), room.JoinOptions{Echo: true})
		members = append(members, m)
		outs = append(outs, out)
	}
	for _, out := range outs {
		out.WaitContains(t, fmt.Sprintf("s%d joined #lobby", senders-1))
	}
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			for j := range lines {
				m.Handle(fmt.Sprintf("line %d.%d", i, j))
			}
		})
	}
	wg.Wait()
	said := func(out *roomtest.Stream) []string {
		var got []string
		for l := range strings.SplitSeq(out.Text(), "\n") {
			if _, text, ok := strings.Cut(l, ": line "); ok {
				got = append(got, text)
			}
		}
		return got
	}
	for i, out := range outs {
		out.Wait(t, fmt.Sprintf("s%d has every line", i), func() bool { return len(said(out)) >= senders*lines })
	}
	first := said(outs[0])
	for i, out := range outs[1:] {
		if got := said(out); !slices.Equal(got, first) {
			t.Fatalf("s%d got the lines in another order than s0:\n%v\nvs\n%v", i+1, got, first)
		}
	}
}

// TestHubsOnePerson: a registered person with a session on each node is one person: one join,
// one leave, and their rooms follow them from one node to the other.
func TestHubsOnePerson(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	knowsNodes(t, a, b)
	watcher, watcherOut := joinHub(t, a, "watcher", room.JoinOptions{})
	alice1, alice1Out := joinHub(t, a, "alice", room.JoinOptions{Key: hubKey(1)})
	watcherOut.WaitContains(t, "alice joined #lobby")
	alice2, alice2Out := joinHub(t, b, "alice", room.JoinOptions{Key: hubKey(1)})
	alice2Out.WaitContains(t, "welcome to")

	// The second session joins no one new: the room counts alice once.
	alice1.Handle("/who")
	alice1Out.WaitContains(t, "2 online in #lobby: alice, watcher")

	// A room joined on b is joined on a too.
	alice2.Handle("/join #both")
	alice1Out.WaitContains(t, "alice joined #both")
	alice1.Handle("/who #both")
	alice1Out.WaitContains(t, "1 online in #both: alice")

	// A private message reaches every session, on both nodes.
	watcher.Handle("/msg alice to both of you")
	alice1Out.WaitContains(t, "to both of you")
	alice2Out.WaitContains(t, "to both of you")

	// One session leaving is not the person leaving.
	alice2.Leave(room.ReasonQuit)
	alice1.Handle("/who")
	alice1Out.WaitContains(t, "online in #lobby: alice, watcher")
	alice1.Leave(room.ReasonQuit)
	watcherOut.WaitContains(t, "alice left #lobby")
	if n := strings.Count(watcherOut.Text(), "alice joined #lobby"); n != 1 {
		t.Errorf("the watcher saw alice join %d times, want once:\n%s", n, watcherOut.Text())
	}
	if n := strings.Count(watcherOut.Text(), "alice left #lobby"); n != 1 {
		t.Errorf("the watcher saw alice leave %d times, want once:\n%s", n, watcherOut.Text())
	}
}

// TestHubsQueuedDM: a private message to someone offline, sent on one node, reaches them when
// they log in on another; history on one node has the lines said on the other.
func TestHubsQueuedDM(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	carol, _ := joinHub(t, b, "carol", room.JoinOptions{Key: hubKey(3)})
	carol.Leave(room.ReasonQuit)

	alice, aliceOut := joinHub(t, a, "alice", room.JoinOptions{Key: hubKey(1), Echo: true})
	alice.Handle("said on a before carol came back")
	aliceOut.WaitContains(t, "said on a before carol came back")
	alice.Handle("/msg carol kept for you")
	aliceOut.WaitContains(t, "carol is offline")

	_, carolOut := joinHub(t, b, "carol", room.JoinOptions{Key: hubKey(3)})
	carolOut.WaitContains(t, "kept for you")
	carolOut.WaitContains(t, "alice: said on a before carol came back") // the replay of #lobby
}

// TestHubsModeration: what an operator does on one node holds on every node.
func TestHubsModeration(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	knowsNodes(t, a, b)
	op, opOut := joinHub(t, a, "op", room.JoinOptions{Key: hubKey(9), Operator: true})

	t.Run("kick", func(t *testing.T) {
		_, out := joinHub(t, b, "kicked", room.JoinOptions{})
		opOut.WaitContains(t, "kicked joined #lobby")
		start := time.Now()
		op.Handle("/kick kicked flooding")
		out.WaitContains(t, "you were kicked by op: flooding")
		// The bound is a second: logged, not asserted (this machine's timing is noisy).
		t.Logf("a kick on node a reached the session on node b in %v", time.Since(start))
		out.WaitClosed(t)
	})
	t.Run("ban", func(t *testing.T) {
		_, out := joinHub(t, b, "banned", room.JoinOptions{Key: hubKey(4), Remote: "192.0.2.4:5555"})
		opOut.WaitContains(t, "banned joined #lobby")
		op.Handle("/ban banned spam")
		out.WaitContains(t, "you were banned by op")
		out.WaitClosed(t)
		if _, _, err := tryJoin(b, "banned", room.JoinOptions{Key: hubKey(4)}); !errors.Is(err, room.ErrBanned) {
			t.Fatalf("banned logs in on b again: %v, want banned", err)
		}
	})
	t.Run("mute", func(t *testing.T) {
		m, out := joinHub(t, b, "loud", room.JoinOptions{})
		opOut.WaitContains(t, "loud joined #lobby")
		op.Handle("/mute loud")
		opOut.WaitContains(t, "loud is muted")
		waitFor(t, "loud muted on b", func() bool {
			m.Handle("can you hear me")
			return strings.Contains(out.Text(), "muted")
		})
	})
	t.Run("private room", func(t *testing.T) {
		op.Handle("/join #secret")
		opOut.WaitContains(t, "op joined #secret")
		op.Handle("/private on")
		opOut.WaitContains(t, "made #secret private")
		m, out := joinHub(t, b, "outsider", room.JoinOptions{})
		waitFor(t, "#secret private on b", func() bool {
			m.Handle("/join #secret")
			return strings.Contains(out.Text(), "#secret is invite-only")
		})
		op.Handle("/invite outsider")
		waitFor(t, "the invitation reaches b", func() bool {
			m.Handle("/join #secret")
			return strings.Contains(out.Text(), "outsider joined #secret")
		})
	})
}

// TestHubsNodeGone: a node that stops without a word has its people shown as left by the other
// nodes, once it is really gone; a node that shuts down says so at once.
func TestHubsNodeGone(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	knowsNodes(t, a, b)
	_, watcherOut := joinHub(t, a, "watcher", room.JoinOptions{})
	joinHub(t, b, "doomed", room.JoinOptions{})
	watcherOut.WaitContains(t, "doomed joined #lobby")

	// Only b's NATS connection dies: its hub still thinks it is fine, as a killed process would
	// not say anything either.
	b.store.nc.Close()
	watcherOut.WaitContains(t, "doomed left #lobby")

	c := startHubNode(t, srv.URL(), prefix, "c", fastCluster())
	joinHub(t, c, "polite", room.JoinOptions{})
	watcherOut.WaitContains(t, "polite joined #lobby")
	c.stop(t)
	watcherOut.WaitContains(t, "polite left #lobby")
}

// TestHubsPause: a node that loses NATS tells its members the chat is paused, refuses logins and
// lines, and resumes when NATS is back, losing nothing a sender was told was sent.
func TestHubsPause(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := startHubNode(t, srv.URL(), prefix, "a", fastCluster())
	alice, aliceOut := joinHub(t, a, "alice", room.JoinOptions{Echo: true})
	alice.Handle("before the outage")
	aliceOut.WaitContains(t, "alice: before the outage")

	srv.Stop()
	aliceOut.WaitContains(t, "the chat is paused")
	if _, _, err := tryJoin(a, "late", room.JoinOptions{}); !errors.Is(err, room.ErrPaused) {
		t.Errorf("a login during the outage: %v, want ErrPaused", err)
	}
	alice.Handle("during the outage")
	aliceOut.WaitContains(t, "was not sent")

	srv.Start()
	aliceOut.WaitContains(t, "the chat is back")
	alice.Handle("after the outage")
	aliceOut.WaitContains(t, "alice: after the outage")
	_, lateOut := joinHub(t, a, "late", room.JoinOptions{})
	lateOut.WaitContains(t, "alice: before the outage")
	lateOut.WaitContains(t, "alice: after the outage")
}

// waitFor retries cond until it holds, for what another node must take in first.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(roomtest.HangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHubsCatchUp: a node cut off from NATS misses the events the others send meanwhile; once
// back, it reads the bans, rooms and message of the day again and enforces them.
func TestHubsCatchUp(t *testing.T) {
	srv := natstest.Start(t)
	g := startGate(t, srv.URL())
	prefix := "t" + nuid.Next()
	a := startHubNode(t, g.url(), prefix, "a", fastCluster())
	b := startHubNode(t, srv.URL(), prefix, "b", fastCluster())
	knowsNodes(t, a, b)
	op, opOut := joinHub(t, b, "op", room.JoinOptions{Key: hubKey(9), Operator: true})
	op.Handle("/join #doomed")
	opOut.WaitContains(t, "op joined #doomed")
	victim, victimOut := joinHub(t, a, "victim", room.JoinOptions{Key: hubKey(5)})
	victim.Handle("/join #doomed")
	opOut.WaitContains(t, "victim joined #doomed")
	victim.Handle("/join #lobby")

	g.cut()
	victimOut.WaitContains(t, "the chat is paused")
	op.Handle("/motd set while a was away")
	opOut.WaitContains(t, "message of the day set")
	op.Handle("/room delete #doomed")
	op.Handle("/room delete #doomed confirm")
	opOut.WaitContains(t, "deleted #doomed")
	op.Handle("/ban victim")
	opOut.WaitContains(t, "banned #")

	g.heal()
	victimOut.WaitContains(t, "the chat is back")
	victimOut.WaitContains(t, "you were banned")
	victimOut.WaitClosed(t)
	other, otherOut := joinHub(t, a, "other", room.JoinOptions{})
	otherOut.WaitContains(t, "set while a was away")
	// The rooms come last in catching up: ask until #doomed is gone.
	waitFor(t, "#doomed gone from a", func() bool {
		other.Handle("/who #doomed")
		return strings.Contains(otherOut.Text(), "there is no room #doomed")
	})

}

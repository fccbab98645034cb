package natsjs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"chatd/chat"
	"chatd/room"
	"chatd/store/natsjs/natstest"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// The tests of Cluster: real NATS servers, and a recording hub on each node (the hub's side of
// the interface, which package room implements).

// recHub is a room.ClusterHub that records what the cluster hands it. It fails the test when two
// calls overlap or when it is called after its cluster's Close returned.
type recHub struct {
	t testing.TB

	busy   atomic.Int32
	closed atomic.Bool // set by the test once Close returned

	mu      sync.Mutex
	mine    []room.PresenceChange // this node's presence, as announced: what Snapshot gives
	views   map[string]*nodeView  // what the cluster told of each other node
	gone    []string
	events  []room.ClusterEvent
	dms     []chat.DM
	here    map[string]bool // the names DM finds online here
	conns   []bool
	hold    chan struct{} // when set, Presence waits until it is closed
	held    chan struct{} // closed when a Presence call starts waiting on hold
	changed chan struct{} // closed and replaced on every call
}

// nodeView is what a hub was told of one other node.
type nodeView struct {
	fulls     int
	fullSizes []int
	applied   []room.PresenceChange // the last snapshot, then the deltas since
	deltas    []room.PresenceChange // the deltas since the last snapshot
}

func newRecHub(t testing.TB) *recHub {
	return &recHub{t: t, views: map[string]*nodeView{}, here: map[string]bool{}, changed: make(chan struct{})}
}

func (h *recHub) enter(what string) func() {
	if h.busy.Add(1) != 1 {
		h.t.Errorf("hub: %s while another call is in progress", what)
	}
	if h.closed.Load() {
		h.t.Errorf("hub: %s after the cluster was closed", what)
	}
	return func() { h.busy.Add(-1) }
}

// notify wakes the waiters; h.mu is held.
func (h *recHub) notify() {
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *recHub) Presence(node string, changes []room.PresenceChange, full bool) {
	defer h.enter("Presence")()
	h.mu.Lock()
	hold, held := h.hold, h.held
	h.mu.Unlock()
	if hold != nil {
		if held != nil {
			h.mu.Lock()
			if h.held != nil {
				close(h.held)
				h.held = nil
			}
			h.mu.Unlock()
		}
		<-hold
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	v := h.views[node]
	if v == nil {
		v = &nodeView{}
		h.views[node] = v
	}
	if full {
		v.fulls++
		v.fullSizes = append(v.fullSizes, len(changes))
		v.applied, v.deltas = slices.Clone(changes), nil
	} else {
		v.applied = append(v.applied, changes...)
		v.deltas = append(v.deltas, changes...)
	}
	h.notify()
}

func (h *recHub) NodeGone(node string) {
	defer h.enter("NodeGone")()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = append(h.gone, node)
	delete(h.views, node)
	h.notify()
}

func (h *recHub) Snapshot() []room.PresenceChange {
	defer h.enter("Snapshot")()
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.mine)
}

func (h *recHub) Event(ev room.ClusterEvent) {
	defer h.enter("Event")()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, ev)
	h.notify()
}

func (h *recHub) DM(dm chat.DM) bool {
	defer h.enter("DM")()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dms = append(h.dms, dm)
	h.notify()
	return h.here[dm.To]
}

func (h *recHub) Connection(up bool) {
	defer h.enter("Connection")()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.conns = append(h.conns, up)
	h.notify()
}

// waitFor waits until cond, called with h.mu held, holds.
func (h *recHub) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		h.mu.Lock()
		ok, changed := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond): // conditions on the cluster's counters too
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// state is who is online, and where, after changes: "name" and "name #room", sorted. Applying a
// change twice is harmless, as the hub's own state.
func state(changes []room.PresenceChange) []string {
	online := map[string]bool{}
	rooms := map[string]bool{}
	for _, ch := range changes {
		switch ch.Op {
		case room.PresenceOnline:
			online[ch.Name] = true
		case room.PresenceOffline:
			delete(online, ch.Name)
			for k := range rooms {
				if strings.HasPrefix(k, ch.Name+" ") {
					delete(rooms, k)
				}
			}
		case room.PresenceJoin:
			rooms[ch.Name+" "+ch.Room] = true
		case room.PresenceLeave:
			delete(rooms, ch.Name+" "+ch.Room)
		}
	}
	out := slices.Collect(maps.Keys(online))
	out = append(out, slices.Collect(maps.Keys(rooms))...)
	slices.Sort(out)
	return out
}

// testNode is one node: its store (its own connection), cluster and recording hub.
type testNode struct {
	name  string
	store *Store
	c     *Cluster
	hub   *recHub
	logs  *syncBuffer
}

// clusterTestConfig is the settings of most tests: heartbeats often, nobody gone by chance.
func clusterTestConfig() ClusterConfig {
	return ClusterConfig{Heartbeat: 50 * time.Millisecond, GoneAfter: 10 * time.Second, DMTimeout: time.Second}
}

func newTestNode(t testing.TB, url, prefix, name string, cfg ClusterConfig) *testNode {
	t.Helper()
	s, _ := openStore(t, url, Config{Prefix: prefix})
	logs := &syncBuffer{}
	cfg.Node = name
	c, err := NewCluster(s, cfg, log.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	// Before the store's own clean-up, which was registered first.
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cluster %s: %v", name, err)
		}
	})
	return &testNode{name: name, store: s, c: c, hub: newRecHub(t), logs: logs}
}

// start starts the cluster and returns once the server has its subscriptions.
func (n *testNode) start(t testing.TB) {
	t.Helper()
	n.c.Start(n.hub)
	if err := n.store.nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

// announce makes changes to the node's presence, as a hub does: the change and its Announce
// together, so that a snapshot has every change announced before it.
func (n *testNode) announce(chs ...room.PresenceChange) {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	for _, ch := range chs {
		n.hub.mine = append(n.hub.mine, ch)
		n.c.Announce(ch)
	}
}

func (n *testNode) myState() []string {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	return state(n.hub.mine)
}

// waitView waits until n's hub has, from a snapshot and deltas, other's presence as it is.
func (n *testNode) waitView(t testing.TB, other *testNode) *nodeView {
	t.Helper()
	want := other.myState()
	var v nodeView
	n.hub.waitFor(t, fmt.Sprintf("%s to see %s's presence %q", n.name, other.name, want), func() bool {
		got := n.hub.views[other.name]
		if got == nil || got.fulls == 0 || !slices.Equal(state(got.applied), want) {
			return false
		}
		v = *got
		v.applied, v.deltas, v.fullSizes = slices.Clone(got.applied), slices.Clone(got.deltas), slices.Clone(got.fullSizes)
		return true
	})
	return &v
}

func (n *testNode) gone() []string {
	n.hub.mu.Lock()
	defer n.hub.mu.Unlock()
	return slices.Clone(n.hub.gone)
}

func online(name string) room.PresenceChange {
	return room.PresenceChange{Op: room.PresenceOnline, Name: name}
}

func join(name, r string) room.PresenceChange {
	return room.PresenceChange{Op: room.PresenceJoin, Name: name, Room: r}
}

// rawConn is a plain client on the bus, for what a hostile or broken peer publishes.
func rawConn(t testing.TB, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func publishRaw(t testing.TB, nc *nats.Conn, subj string, data string) {
	t.Helper()
	if err := nc.Publish(subj, []byte(data)); err != nil {
		t.Fatal(err)
	}
}

func TestClusterConfigValidate(t *testing.T) {
	ok := DefaultClusterConfig()
	ok.Node = "node-1.example_com"
	if err := ok.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := (ClusterConfig{Node: "n"}).Validate(); err != nil {
		t.Errorf("zero values: %v", err)
	}
	for _, c := range []ClusterConfig{
		{},
		{Node: "has space"},
		{Node: "a*"},
		{Node: "a>"},
		{Node: strings.Repeat("n", 65)},
		{Node: "n", Heartbeat: -time.Second},
		{Node: "n", Heartbeat: time.Millisecond},
		{Node: "n", Heartbeat: 2 * time.Minute},
		{Node: "n", Heartbeat: 5 * time.Second}, // 10s default gone-after < 3 beats
		{Node: "n", Heartbeat: time.Second, GoneAfter: 2 * time.Second}, // < 3 beats
		{Node: "n", GoneAfter: -1},
		{Node: "n", DMTimeout: -1},
		{Node: "n", DMTimeout: time.Hour},
		{Node: "n", MaxPending: -1},
		{Node: "n", MaxPending: 2_000_000},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid, want an error", c)
		}
	}
	d := (ClusterConfig{Node: "n"}).withDefaults()
	if d.Heartbeat != 2*time.Second || d.GoneAfter != 10*time.Second || d.DMTimeout != 2*time.Second || d.MaxPending != 10_000 {
		t.Errorf("defaults %+v", d)
	}
}

// TestClusterPresenceDeltas: two nodes learn each other's presence, then each one's changes
// reach the other in the order they were made, none twice, none missing.
func TestClusterPresenceDeltas(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	a.waitView(t, b)
	b.waitView(t, a)

	made := map[*testNode][]room.PresenceChange{}
	var wg sync.WaitGroup
	for _, n := range []*testNode{a, b} {
		var all []room.PresenceChange
		for i := range 150 {
			name := fmt.Sprintf("%s%d", n.name, i)
			all = append(all, online(name), join(name, fmt.Sprintf("#r%d", i%7)))
			if i%5 == 0 {
				all = append(all, room.PresenceChange{Op: room.PresenceLeave, Name: name, Room: fmt.Sprintf("#r%d", i%7)})
			}
			if i%9 == 0 {
				all = append(all, room.PresenceChange{Op: room.PresenceOffline, Name: name})
			}
		}
		made[n] = all
		wg.Go(func() {
			for i, ch := range all {
				n.announce(ch)
				if i%20 == 0 {
					time.Sleep(time.Millisecond) // several batches, not one
				}
			}
		})
	}
	wg.Wait()
	for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
		obs, src := pair[0], pair[1]
		v := obs.waitView(t, src)
		// What came as deltas since the last snapshot is a run of what was made, in order: a
		// snapshot taken while changes were being made may be followed by some it had already.
		all := made[src]
		if len(v.deltas) == 0 {
			t.Fatalf("%s got no deltas from %s", obs.name, src.name)
		}
		start := len(all) - len(v.deltas)
		if start < 0 || !slices.Equal(v.deltas, all[start:]) {
			t.Errorf("%s got deltas from %s out of order or incomplete:\n%v\nwant the end of\n%v", obs.name, src.name, v.deltas, all)
		}
	}
	for _, n := range []*testNode{a, b} {
		st := n.c.Stats()
		if st.Nodes != 1 || st.Dropped != 0 || st.PresenceSent == 0 || st.PresenceReceived == 0 || !st.Connected {
			t.Errorf("%s stats %+v", n.name, st)
		}
		if g := n.gone(); len(g) != 0 {
			t.Errorf("%s: nodes gone %v", n.name, g)
		}
	}
}

// TestClusterLateStart: a node that starts after another has people online learns them from
// its snapshot, though nothing changes after it starts; and the other learns it.
func TestClusterLateStart(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	a.announce(online("alice")) // before Start: the start's snapshot has it
	a.start(t)
	a.announce(join("alice", "#go"), online("ann"), join("ann", "#lobby"))
	a.hub.waitFor(t, "a to send what it has", func() bool {
		a.c.out.mu.Lock()
		defer a.c.out.mu.Unlock()
		return !a.c.out.hello && len(a.c.out.changes) == 0 && a.c.snapshots.Load() > 0
	})

	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	b.start(t)
	v := b.waitView(t, a)
	if len(v.deltas) != 0 {
		t.Errorf("b got deltas %v; want a's presence in a snapshot", v.deltas)
	}
	if want := []string{"alice", "alice #go", "ann", "ann #lobby"}; !slices.Equal(state(v.applied), want) {
		t.Errorf("b sees %v, want %v", state(v.applied), want)
	}
	a.waitView(t, b)
}

// TestClusterThirdNode: a node that joins two in sync learns both from the snapshots they answer
// its hello with; the two, which have every delta of each other, skip each other's.
func TestClusterThirdNode(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	a.announce(online("alice"))
	b.announce(online("bob"))
	ab, ba := a.waitView(t, b), b.waitView(t, a)
	applied := [2]uint64{a.c.Stats().SnapshotsApplied, b.c.Stats().SnapshotsApplied}

	c := newTestNode(t, srv.URL(), prefix, "c", clusterTestConfig())
	c.start(t)
	c.waitView(t, a)
	c.waitView(t, b)
	a.waitView(t, c)
	b.waitView(t, c)
	// Each took c's snapshot, and no other.
	if got := [2]uint64{a.c.Stats().SnapshotsApplied, b.c.Stats().SnapshotsApplied}; got != [2]uint64{applied[0] + 1, applied[1] + 1} {
		t.Errorf("a and b applied %v snapshots, want %v plus c's", got, applied)
	}
	if v := a.waitView(t, b); v.fulls != ab.fulls {
		t.Errorf("a took b's snapshot again: %d, was %d", v.fulls, ab.fulls)
	}
	if v := b.waitView(t, a); v.fulls != ba.fulls {
		t.Errorf("b took a's snapshot again: %d, was %d", v.fulls, ba.fulls)
	}
}

// TestClusterGapAsksForSnapshot: a delta that does not follow the last one applied (one was
// lost), or a heartbeat ahead of it, makes the node ask for a snapshot, and what it then has is
// the sender's presence, without what never was.
func TestClusterGapAsksForSnapshot(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	a.announce(online("alice"))
	v := b.waitView(t, a)
	fulls := v.fulls
	rc := rawConn(t, srv.URL())

	// A delta from a's process, as if two before it had been lost.
	publishRaw(t, rc, b.c.subjPresence, fmt.Sprintf(`{"t":"delta","node":"a","boot":%q,"seq":%d,"changes":[{"op":1,"name":"mallory"}]}`,
		a.c.boot, a.c.lastSeq.Load()+3))
	b.hub.waitFor(t, "a snapshot after the gap", func() bool { return b.hub.views["a"] != nil && b.hub.views["a"].fulls > fulls })
	v = b.waitView(t, a)
	if slices.Contains(state(v.applied), "mallory") {
		t.Errorf("b applied the delta after the gap: %v", state(v.applied))
	}
	fulls = v.fulls

	// A heartbeat ahead of what b applied.
	publishRaw(t, rc, b.c.subjPresence, fmt.Sprintf(`{"t":"hb","node":"a","boot":%q,"seq":%d}`, a.c.boot, a.c.lastSeq.Load()+1))
	b.hub.waitFor(t, "a snapshot after the heartbeat", func() bool { return b.hub.views["a"] != nil && b.hub.views["a"].fulls > fulls })

	// And deltas apply again after it.
	a.announce(join("alice", "#go"))
	v = b.waitView(t, a)
	if !slices.Equal(v.deltas, []room.PresenceChange{join("alice", "#go")}) {
		t.Errorf("b's deltas since the snapshot: %v", v.deltas)
	}
	if st := b.c.Stats(); st.Resyncs < 2 || st.SnapshotsApplied < 3 {
		t.Errorf("b stats %+v: want 2 resyncs and 3 snapshots applied", st)
	}
}

// TestClusterLargeSnapshot: a snapshot of 50 000 changes goes in parts each well under NATS's
// limit, and reaches the hub whole, in one call.
func TestClusterLargeSnapshot(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	for i := range 10_000 {
		name := fmt.Sprintf("person%05d", i)
		a.hub.mine = append(a.hub.mine, online(name))
		for r := range 4 {
			a.hub.mine = append(a.hub.mine, join(name, fmt.Sprintf("#room-%d", (i+r)%50)))
		}
	}
	parts := splitChanges(a.hub.mine, a.c.partLimit())
	if len(parts) < 2 {
		t.Fatalf("%d part(s); want the snapshot split", len(parts))
	}
	for _, p := range parts {
		if len(p) > 256<<10 {
			t.Fatalf("a part of %d bytes", len(p))
		}
	}
	a.start(t)
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	b.start(t)
	v := b.waitView(t, a)
	if len(v.applied) != 50_000 {
		t.Errorf("b has %d changes of a's", len(v.applied))
	}
	for _, n := range v.fullSizes {
		if n != 50_000 {
			t.Errorf("b was handed a snapshot of %d changes: %v", n, v.fullSizes)
		}
	}
	if st := b.c.Stats(); st.Dropped != 0 || st.PresenceReceived < uint64(len(parts)) {
		t.Errorf("b stats %+v", st)
	}
}

// TestClusterBye: a node that closes says bye; the others drop its people at once, long before
// its silence would.
func TestClusterBye(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	cfg := clusterTestConfig()
	cfg.GoneAfter = time.Minute
	a := newTestNode(t, srv.URL(), prefix, "a", cfg)
	b := newTestNode(t, srv.URL(), prefix, "b", cfg)
	a.start(t)
	b.start(t)
	a.announce(online("alice"))
	b.waitView(t, a)
	if err := a.c.Close(); err != nil {
		t.Fatal(err)
	}
	a.hub.closed.Store(true)
	b.hub.waitFor(t, "a gone", func() bool { return slices.Equal(b.hub.gone, []string{"a"}) })
	if st := b.c.Stats(); st.Nodes != 0 || st.Gone != 1 {
		t.Errorf("b stats %+v", st)
	}
}

// TestClusterSilentNodeGone: a node whose connection dies without a bye is gone once not heard
// from for GoneAfter.
func TestClusterSilentNodeGone(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	cfg := clusterTestConfig()
	cfg.GoneAfter = 500 * time.Millisecond
	a := newTestNode(t, srv.URL(), prefix, "a", cfg)
	b := newTestNode(t, srv.URL(), prefix, "b", cfg)
	a.start(t)
	b.start(t)
	a.announce(online("alice"))
	b.waitView(t, a)
	a.store.nc.Close() // no bye
	b.hub.waitFor(t, "a gone", func() bool { return slices.Equal(b.hub.gone, []string{"a"}) })
	if _, ok := b.hub.views["a"]; ok {
		t.Error("b still has a's presence")
	}
	a.hub.waitFor(t, "a told it is cut off", func() bool { return slices.Equal(a.hub.conns, []bool{false}) })
}

// TestClusterObserverOutage: while NATS is down, nodes expire nobody, however long it lasts;
// each hub is told of the loss and of the return, once each; and presence changed meanwhile is
// in sync again after.
func TestClusterObserverOutage(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	cfg := clusterTestConfig()
	cfg.Heartbeat, cfg.GoneAfter = 100*time.Millisecond, 2*time.Second
	a := newTestNode(t, srv.URL(), prefix, "a", cfg)
	b := newTestNode(t, srv.URL(), prefix, "b", cfg)
	a.start(t)
	b.start(t)
	b.announce(online("bob"))
	a.announce(online("alice"))
	a.waitView(t, b)
	b.waitView(t, a)

	srv.Stop()
	for _, n := range []*testNode{a, b} {
		n.hub.waitFor(t, n.name+" told NATS is gone", func() bool { return len(n.hub.conns) == 1 })
	}
	b.announce(online("carol"), join("carol", "#go"))
	// The outage lasts past GoneAfter: each node found the other silent that long, and spared it.
	for _, n := range []*testNode{a, b} {
		n.hub.waitFor(t, n.name+" to spare a silent node", func() bool { return n.c.spared.Load() > 0 })
	}
	srv.Start()
	for _, n := range []*testNode{a, b} {
		n.hub.waitFor(t, n.name+" told NATS is back", func() bool { return len(n.hub.conns) == 2 })
	}
	a.waitView(t, b)
	b.waitView(t, a)
	for _, n := range []*testNode{a, b} {
		n.hub.mu.Lock()
		conns := slices.Clone(n.hub.conns)
		n.hub.mu.Unlock()
		if !slices.Equal(conns, []bool{false, true}) {
			t.Errorf("%s told of the connection %v, want [false true]", n.name, conns)
		}
		if g := n.gone(); len(g) != 0 {
			t.Errorf("%s found %v gone", n.name, g)
		}
	}
}

// TestClusterCutOff: a node alone cut off from NATS expires nobody while the others go on (and
// they, rightly, find it gone); the changes it made meanwhile overflow its queue into a
// snapshot; once back, it and the others know each other again.
func TestClusterCutOff(t *testing.T) {
	srv := natstest.Start(t)
	g := startGate(t, srv.URL())
	prefix := "t" + nuid.Next()
	cfg := clusterTestConfig()
	cfg.Heartbeat, cfg.GoneAfter = 50*time.Millisecond, time.Second
	acfg := cfg
	acfg.MaxPending = 10
	a := newTestNode(t, g.url(), prefix, "a", acfg)
	b := newTestNode(t, srv.URL(), prefix, "b", cfg)
	a.start(t)
	b.start(t)
	a.announce(online("alice"))
	b.announce(online("bob"))
	a.waitView(t, b)
	b.waitView(t, a)

	g.cut()
	a.hub.waitFor(t, "a told NATS is gone", func() bool { return slices.Equal(a.hub.conns, []bool{false}) })
	for i := range 30 {
		a.announce(online(fmt.Sprint("a", i)))
	}
	b.announce(online("carol"))
	a.hub.waitFor(t, "a to spare b", func() bool { return a.c.spared.Load() > 0 })
	b.hub.waitFor(t, "b to find a gone", func() bool { return slices.Equal(b.hub.gone, []string{"a"}) })
	g.heal()
	a.hub.waitFor(t, "a told NATS is back", func() bool { return slices.Equal(a.hub.conns, []bool{false, true}) })
	a.waitView(t, b)
	b.waitView(t, a)
	if g := a.gone(); len(g) != 0 {
		t.Errorf("a found %v gone", g)
	}
	if st := a.c.Stats(); st.Overflows != 1 {
		t.Errorf("a stats %+v: want one overflow", st)
	}
}

// TestClusterEvents: an event reaches every other node, checked and made canonical, in order,
// and not its sender.
func TestClusterEvents(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	until := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	sent := []room.ClusterEvent{
		{Kind: room.EventKick, Name: "mallory", By: "op", Text: "spam\x1b[31m!", Reason: room.ReasonKicked},
		{Kind: room.EventBans, By: "op", Text: "ban", Bans: []chat.Ban{{ID: 7, Kind: chat.BanIP, Value: "192.0.2.0/24", Reason: "ban\x07", By: "op"}}},
		{Kind: room.EventMute, Name: "mallory", Until: until},
		{Kind: room.EventUnmute, Name: "mallory"},
		{Kind: room.EventRoom, Room: &chat.Room{Name: "#Go", Owner: "alice", Topic: "gophers\a", Private: true, Invited: []string{"bob"}}},
		{Kind: room.EventRoomDeleted, RoomName: "#old", By: "alice"},
		{Kind: room.EventRoomKick, Name: "bob", RoomName: "go", By: "alice", Text: "out"},
		{Kind: room.EventMotd, Text: "hello"},
		{Kind: room.EventWebRevoke, Name: "alice", ID: 42},
	}
	for _, ev := range sent {
		a.c.Send(ev)
	}
	b.hub.waitFor(t, "b to get the events", func() bool { return len(b.hub.events) == len(sent) })
	want := slices.Clone(sent)
	want[0].Text = "spam!"
	want[1].Bans = []chat.Ban{{ID: 7, Kind: chat.BanIP, Value: "192.0.2.0/24", Reason: "ban", By: "op"}}
	want[4].Room = &chat.Room{Name: "#go", Owner: "alice", Topic: "gophers", Private: true, Invited: []string{"bob"}}
	want[6].RoomName = "#go"
	b.hub.mu.Lock()
	got := slices.Clone(b.hub.events)
	b.hub.mu.Unlock()
	for i := range want {
		g, w := got[i], want[i]
		if !g.Until.Equal(w.Until) {
			t.Errorf("event %d: until %v, want %v", i, g.Until, w.Until)
		}
		g.Until, w.Until = time.Time{}, time.Time{}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("event %d: got %+v (room %+v), want %+v (room %+v)", i, g, g.Room, w, w.Room)
		}
	}
	// b's answer reaches a after anything a's own events would have brought back to it.
	b.c.Send(room.ClusterEvent{Kind: room.EventMotd, Text: "from b"})
	a.hub.waitFor(t, "a to get b's event", func() bool { return len(a.hub.events) > 0 })
	a.hub.mu.Lock()
	if len(a.hub.events) != 1 || a.hub.events[0].Text != "from b" {
		t.Errorf("a got %+v; want only b's event", a.hub.events)
	}
	a.hub.mu.Unlock()
	if st := a.c.Stats(); st.EventsSent != uint64(len(sent)) || st.EventsReceived != 1 {
		t.Errorf("a stats %+v", st)
	}
}

// TestClusterDM: a private message reaches the node of its recipient, which says whether they
// got it; an unknown node, this node, a bad name and an oversized message are errors.
func TestClusterDM(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	cfg := clusterTestConfig()
	cfg.DMTimeout = 300 * time.Millisecond
	a := newTestNode(t, srv.URL(), prefix, "a", cfg)
	b := newTestNode(t, srv.URL(), prefix, "node.b", cfg)
	a.start(t)
	b.start(t)
	b.hub.mu.Lock()
	b.hub.here["bob"] = true
	b.hub.mu.Unlock()

	got, err := a.c.SendDM("node.b", chat.DM{ID: 7, From: "alice", FromAddr: "192.0.2.7", To: "bob", Text: "hi\a there"})
	if !got || err != nil {
		t.Fatalf("to bob: %v, %v; want delivered", got, err)
	}
	b.hub.mu.Lock()
	if len(b.hub.dms) != 1 || b.hub.dms[0].Text != "hi there" || b.hub.dms[0].ID != 7 {
		t.Errorf("b got %+v", b.hub.dms)
	}
	b.hub.mu.Unlock()
	if got, err := a.c.SendDM("node.b", chat.DM{From: "alice", To: "nobody", Text: "hi"}); got || err != nil {
		t.Errorf("to nobody: %v, %v; want not here", got, err)
	}
	if _, err := a.c.SendDM("zed", chat.DM{From: "alice", To: "bob", Text: "hi"}); err == nil {
		t.Error("to an unknown node: no error")
	}
	if _, err := a.c.SendDM("a", chat.DM{From: "alice", To: "bob", Text: "hi"}); !errors.Is(err, errOwnNode) {
		t.Errorf("to this node: %v", err)
	}
	if _, err := a.c.SendDM("no such/node", chat.DM{From: "alice", To: "bob", Text: "hi"}); !errors.Is(err, errBadNode) {
		t.Errorf("to a bad node name: %v", err)
	}
	if _, err := a.c.SendDM("node.b", chat.DM{From: "alice", To: "bob", Text: strings.Repeat("x", 20_000)}); !errors.Is(err, errDMTooLarge) {
		t.Errorf("a huge message: %v", err)
	}
	if st := a.c.Stats(); st.DMsSent != 2 {
		t.Errorf("a stats %+v", st)
	}
	if st := b.c.Stats(); st.DMsReceived != 2 {
		t.Errorf("b stats %+v", st)
	}
}

// TestClusterHostile: what is published raw on the cluster's subjects and is not what a node
// sends is dropped and counted, and the good state stands.
func TestClusterHostile(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	a.announce(online("alice"), join("alice", "#go"))
	b.waitView(t, a)
	rc := rawConn(t, srv.URL())
	p := b.c.subjPresence
	huge := `{"t":"hb","node":"x","boot":"b1","pad":"` + strings.Repeat("x", 600<<10) + `"}`
	presence := []string{
		`not json`,
		`{"t":"delta","node":"bad name!","boot":"b1","seq":1}`,
		`{"t":"delta","node":"x","boot":"bad boot","seq":1}`,
		`{"t":"zap","node":"x","boot":"b1"}`,
		`{"t":"ask","node":"x","boot":"b1","to":"*"}`,
		`{"t":"snap","node":"x","boot":"b1","seq":1,"snap":1,"part":0,"parts":100000}`,
		`{"t":"snap","node":"x","boot":"b1","seq":1,"snap":1,"part":5,"parts":3}`,
		huge,
		// A snapshot that says it has three parts and sends one: never applied. Then a part
		// that is not the next.
		`{"t":"snap","node":"x","boot":"b1","seq":1,"snap":1,"part":0,"parts":3,"changes":[{"op":1,"name":"ghost"}]}`,
		`{"t":"snap","node":"x","boot":"b1","seq":1,"snap":1,"part":2,"parts":3,"changes":[]}`,
		// Three bad changes and a good one.
		`{"t":"snap","node":"y","boot":"b1","seq":1,"snap":1,"part":0,"parts":1,"changes":[{"op":9,"name":"z"},{"op":1,"name":"bad name"},{"op":3,"name":"ok","room":"#bad room"},{"op":1,"name":"fine"}]}`,
		`{"t":"delta","node":"y","boot":"b1","seq":2,"changes":[{"op":"one","name":"z"}]}`,
		// b's own name, from another process.
		`{"t":"hb","node":"b","boot":"zzz","seq":1}`,
	}
	const presenceFaults = 14
	for _, m := range presence {
		publishRaw(t, rc, p, m)
	}
	events := []string{
		`not json`,
		`{"kind":99}`,
		`{"kind":1}`,
		`{"kind":1,"name":"bad name"}`,
		`{"kind":1,"name":"bob","by":"bad by"}`,
		`{"kind":5,"room":{"Name":"bad room"}}`,
		`{"kind":5,"room":{"Name":"#ok","Invited":["a b"]}}`,
		`{"kind":6,"room_name":"#bad room"}`,
		`{"kind":8,"text":"` + strings.Repeat("x", 17_000) + `"}`,
		`{"kind":8,"text":"` + strings.Repeat("x", 70_000) + `"}`,
		`{"kind":1,"name":"bob","reason":200}`,
		`{"kind":2,"bans":[{"ID":0,"Kind":"name","Value":"bob"}]}`,
		`{"kind":2,"bans":[{"ID":1,"Kind":"zap","Value":"bob"}]}`,
		`{"kind":2,"bans":[{"ID":1,"Kind":"ip","Value":"\u001b[31m"}]}`,
		`{"kind":2,"bans":[` + strings.Repeat(`{"ID":1,"Kind":"name","Value":"bob"},`, 16) + `{"ID":1,"Kind":"name","Value":"bob"}]}`,
	}
	for _, m := range events {
		publishRaw(t, rc, b.c.subjEvents, m)
	}
	dm := b.c.subjDM
	if err := rc.PublishRequest(dm, "_INBOX.x", []byte(`not json`)); err != nil {
		t.Fatal(err)
	}
	if err := rc.PublishRequest(dm, "_INBOX.x", []byte(`{"From":"bad name","To":"bob","Text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if err := rc.PublishRequest(dm, "_INBOX.x", []byte(`{"From":"eve","FromAddr":"not an address","To":"bob","Text":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, rc, dm, `{"From":"eve","To":"bob","Text":"no reply subject"}`)
	want := uint64(presenceFaults + len(events) + 4)
	b.hub.waitFor(t, fmt.Sprintf("b to drop %d messages", want), func() bool { return b.c.Stats().Dropped >= want })

	// The good goes on: a's event after them all arrives, and a's presence stands.
	a.c.Send(room.ClusterEvent{Kind: room.EventMotd, Text: "still here"})
	b.hub.waitFor(t, "b to get a's event", func() bool { return len(b.hub.events) > 0 })
	a.announce(online("ann"))
	b.waitView(t, a)
	if st := b.c.Stats(); st.Dropped != want {
		t.Errorf("b dropped %d messages, want %d", st.Dropped, want)
	}
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if len(b.hub.events) != 1 || len(b.hub.dms) != 0 || len(b.hub.gone) != 0 {
		t.Errorf("b's hub got events %+v, DMs %+v, gone %v", b.hub.events, b.hub.dms, b.hub.gone)
	}
	if _, ok := b.hub.views["x"]; ok {
		t.Errorf("b applied x's incomplete snapshot")
	}
	if v := b.hub.views["y"]; v == nil || !slices.Equal(state(v.applied), []string{"fine"}) {
		t.Errorf("y's good change: %+v", v)
	}
	if !strings.Contains(b.logs.String(), "another process uses this node's name") {
		t.Errorf("b did not log the second process under its name:\n%s", b.logs)
	}
}

// TestClusterBounds: a node tracks at most so many nodes, and holds at most so many changes of
// snapshots being assembled, for one node and for all together.
func TestClusterBounds(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	b.c.lim.maxNodes, b.c.lim.maxSnapshotChanges, b.c.lim.maxAssembling = 5, 100, 150
	b.start(t)
	rc := rawConn(t, srv.URL())
	changes := func(node string, n int) string {
		var cs []string
		for i := range n {
			cs = append(cs, fmt.Sprintf(`{"op":1,"name":"%s%d"}`, node, i))
		}
		return "[" + strings.Join(cs, ",") + "]"
	}
	part := func(node string, part, parts, n int) string {
		return fmt.Sprintf(`{"t":"snap","node":%q,"boot":"b1","seq":1,"snap":1,"part":%d,"parts":%d,"changes":%s}`, node, part, parts, changes(node, n))
	}
	sent := 0
	pub := func(m string) { publishRaw(t, rc, b.c.subjPresence, m); sent++ }
	pub(part("big", 0, 2, 80))
	pub(part("big", 1, 2, 80)) // 160 > 100 of one snapshot: dropped
	pub(part("half", 0, 2, 80))
	pub(part("third", 0, 2, 80)) // 80 + 80 > 150 held at once: dropped
	pub(part("small", 0, 1, 50)) // fits beside half's
	for i := range 10 {
		pub(fmt.Sprintf(`{"t":"hb","node":"n%d","boot":"b1","seq":0}`, i))
	}
	// The last one is dropped: once 11 are, b has handled them all.
	b.hub.waitFor(t, "b to read them all", func() bool {
		st := b.c.Stats()
		return st.PresenceReceived >= uint64(sent) && st.Dropped >= 11
	})
	st := b.c.Stats()
	if st.Nodes != 5 || st.Dropped != 2+9 {
		t.Errorf("b stats %+v: want 5 nodes known, and 11 messages dropped", st)
	}
	b.c.mu.Lock()
	if b.c.assembling != 80 {
		t.Errorf("b holds %d changes in assembly, want half's 80", b.c.assembling)
	}
	b.c.mu.Unlock()
	b.hub.mu.Lock()
	defer b.hub.mu.Unlock()
	if len(b.hub.views) != 1 || b.hub.views["small"] == nil {
		t.Errorf("b's hub was told of %v; want small only", slices.Collect(maps.Keys(b.hub.views)))
	}
}

// TestClusterSlowHub: when the hub takes presence too slowly, NATS drops messages rather than
// hold them without end; the node notices and asks every node for its snapshot again.
func TestClusterSlowHub(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	b.c.lim.pendingMsgs[subPresence] = 10
	a.start(t)
	b.start(t)
	b.waitView(t, a)

	hold := make(chan struct{})
	held := make(chan struct{})
	b.hub.mu.Lock()
	b.hub.hold, b.hub.held = hold, held
	b.hub.mu.Unlock()
	a.announce(online("alice"))
	<-held
	rc := rawConn(t, srv.URL())
	for range 100 {
		publishRaw(t, rc, b.c.subjPresence, `{"t":"hb","node":"f","boot":"b1","seq":0}`)
	}
	if err := rc.Flush(); err != nil {
		t.Fatal(err)
	}
	a.announce(online("ann"))
	b.hub.mu.Lock()
	b.hub.hold = nil
	b.hub.mu.Unlock()
	close(hold)
	b.hub.waitFor(t, "b to notice lost messages", func() bool { return b.c.Stats().Lost > 0 })
	b.waitView(t, a)
}

// TestClusterDuplicateNode: two processes under one node's name are logged loudly, and the
// others keep to one of them instead of flapping.
func TestClusterDuplicateNode(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a1 := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	a2 := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	c := newTestNode(t, srv.URL(), prefix, "c", clusterTestConfig())
	a1.announce(online("one"))
	a2.announce(online("two"))
	a1.start(t)
	c.start(t)
	c.waitView(t, a1)
	a2.start(t)
	c.waitView(t, a2)
	c.hub.waitFor(t, "c to log the duplicate", func() bool {
		return strings.Contains(c.logs.String(), "two processes use one node name")
	})
	for _, n := range []*testNode{a1, a2} {
		n.hub.waitFor(t, "a process to log the other", func() bool {
			return strings.Contains(n.logs.String(), "another process uses this node's name")
		})
	}
	// Both go on talking; c keeps to a2's presence.
	c.hub.mu.Lock()
	gone, fulls := len(c.hub.gone), c.hub.views["a"].fulls
	c.hub.mu.Unlock()
	from := c.c.Stats().PresenceReceived
	c.hub.waitFor(t, "more heartbeats from both", func() bool { return c.c.Stats().PresenceReceived > from+40 })
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	if len(c.hub.gone) != gone || c.hub.views["a"] == nil || c.hub.views["a"].fulls != fulls ||
		!slices.Equal(state(c.hub.views["a"].applied), []string{"two"}) {
		t.Errorf("c flapped: gone %v, view %+v", c.hub.gone, c.hub.views["a"])
	}
}

// TestClusterClose: Close says bye, is idempotent, and once it returned the hub is never called
// again, though the other nodes go on sending; what is called on a closed cluster does nothing.
func TestClusterClose(t *testing.T) {
	srv := natstest.Start(t)
	prefix := "t" + nuid.Next()
	a := newTestNode(t, srv.URL(), prefix, "a", clusterTestConfig())
	b := newTestNode(t, srv.URL(), prefix, "b", clusterTestConfig())
	a.start(t)
	b.start(t)
	b.hub.mu.Lock()
	b.hub.here["bob"] = true
	b.hub.mu.Unlock()
	a.waitView(t, b)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.announce(online(fmt.Sprint("p", i)))
			a.c.Send(room.ClusterEvent{Kind: room.EventMotd, Text: fmt.Sprint(i)})
			if i%10 == 0 {
				_, _ = a.c.SendDM("b", chat.DM{From: "alice", To: "bob", Text: "hi"})
			}
			time.Sleep(time.Millisecond)
		}
	})
	b.hub.waitFor(t, "traffic", func() bool { return len(b.hub.events) > 20 })
	for range 2 {
		if err := b.c.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	}
	b.hub.closed.Store(true)
	from := a.c.Stats().PresenceSent
	a.hub.waitFor(t, "a to go on", func() bool { return a.c.Stats().PresenceSent > from+20 })
	close(stop)
	wg.Wait()
	a.hub.waitFor(t, "b gone", func() bool { return slices.Equal(a.hub.gone, []string{"b"}) })

	b.announce(online("late"))
	b.c.Send(room.ClusterEvent{Kind: room.EventMotd})
	if _, err := b.c.SendDM("a", chat.DM{From: "bob", To: "alice"}); !errors.Is(err, errClusterClosed) {
		t.Errorf("SendDM after Close: %v", err)
	}
	b.c.Start(b.hub)
	if b.c.Connected() {
		t.Error("a closed cluster says it is connected")
	}
}

// BenchmarkClusterSnapshotCodec: the work of a snapshot of 50 000 changes (10 000 people in 4
// rooms each) on both sides, without the network: split and encoded by the sender, decoded and
// checked by a receiver.
func BenchmarkClusterSnapshotCodec(b *testing.B) {
	var changes []room.PresenceChange
	for i := range 10_000 {
		name := fmt.Sprintf("person%05d", i)
		changes = append(changes, online(name))
		for r := range 4 {
			changes = append(changes, join(name, fmt.Sprintf("#room-%d", (i+r)%50)))
		}
	}
	c := &Cluster{lim: defaultClusterLimits(), noted: map[string]time.Time{}, suppressed: map[string]int{}, log: log.New(io.Discard)}
	var size int
	b.ReportAllocs()
	for b.Loop() {
		size = 0
		parts := splitChanges(changes, c.lim.partBytes)
		for i, part := range parts {
			data, err := json.Marshal(presenceMsg{Type: msgSnapshot, Node: "a", Boot: "boot", Seq: 1, Snap: 1, Part: i, Parts: len(parts), Changes: part})
			if err != nil {
				b.Fatal(err)
			}
			size += len(data)
			var pm presenceMsg
			var got []room.PresenceChange
			if err := json.Unmarshal(data, &pm); err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(pm.Changes, &got); err != nil {
				b.Fatal(err)
			}
			if len(c.checkChanges("a", got)) != len(got) {
				b.Fatal("changes dropped")
			}
		}
	}
	b.ReportMetric(float64(size), "bytes/snapshot")
}

package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"chatd/chat"
	"chatd/room"

	"github.com/charmbracelet/log"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Cluster is room.Cluster on core NATS, on the store's connection: who is online on each node,
// the changes operators make that every node enforces, and private messages between nodes. Core
// NATS, not JetStream: nothing here is history. Presence is made whole again by snapshots
// whenever a node may have missed some, and events are prompt notices of what the store keeps.
//
// Subjects (prefix "chatd"): chatd.cluster.presence carries the presence protocol,
// chatd.cluster.events the events (JSON room.ClusterEvent), chatd.cluster.dm.<node> the private
// messages to a node (a request, answered "1" when the recipient got it, "0" when they are not
// there; '.' in a node's name is written '='). Every message carries a header, Chatd-Boot, with
// the sending process's boot ID, so that a node ignores its own.
//
// The presence protocol: every message is a JSON object {"t": type, "node", "boot", "seq", ...}.
// Each process has a random boot ID and numbers what it publishes of its presence:
//   - "delta": changes in the order the hub announced them, numbered seq = the previous + 1. A
//     node applies a delta only when it follows the last one it applied from that node and boot.
//   - "snap": the node's whole presence (ClusterHub.Snapshot), in parts ("snap": which snapshot,
//     "part" of "parts") of at most 200 KiB each; a receiver applies it (full) once every part
//     has come, in order, and then takes deltas from its seq on. A snapshot that stands for
//     changes not sent (Announce's queue overflowed; the node started or came back) takes a seq
//     of its own, so every node applies it; one sent because a node asked does not, and nodes
//     that have all the deltas before it skip it.
//   - "hb": a heartbeat with the node's seq, every Heartbeat when nothing else was sent.
//   - "ask" (with "to"): the asker lacks to's presence (a gap in the seqs, a heartbeat ahead of
//     what it has, an unknown node, a new boot); to broadcasts a snapshot. At most one ask per
//     node a second.
//   - "hello": a node started, came back to NATS, or lost messages: every node answers with its
//     snapshot (after 20 ms; snapshots others ask for are spaced by ten times what the last
//     took, 100 ms to 2 s), and a node that starts or comes back sends its own.
//   - "bye": the node closes; it is gone at once.
//
// A node not heard from (any message) for GoneAfter is gone. A node that is itself cut off from
// NATS expires nobody, and counts everyone's silence afresh once back. Everything received is
// checked again (names, rooms, texts, kinds, sizes) and what fails is dropped, counted and
// logged (each kind of fault at most once a minute); what a peer can make a node hold is bounded
// (nodes tracked, a snapshot being assembled per node, all of them together).
type Cluster struct {
	nc  *nats.Conn
	cfg ClusterConfig
	log *log.Logger
	lim clusterLimits

	boot                     string // this process's ID: a node restarted has a new one
	subjPresence, subjEvents string
	subjDM                   string // this node's DM subject
	dmPrefix                 string // + a node's token: its DM subject
	ctx                      context.Context
	cancel                   context.CancelFunc
	wg                       sync.WaitGroup // the publisher and the housekeeper
	shut                     atomic.Bool    // Close was called: Announce and Send do nothing
	lifeMu                   sync.Mutex     // Start against Close
	started                  bool
	subs                     [3]*nats.Subscription // presence, events, DMs
	subDropped               [3]int                // what NATS had dropped of each, as last seen
	status                   chan nats.Status

	// mu guards the hub and what is known of the other nodes. Every call into the hub is made
	// holding it: one at a time, and none once closed is set.
	mu         sync.Mutex
	hub        room.ClusterHub
	closed     bool
	up         bool // the connection's state as last told to the hub
	peers      map[string]*peer
	assembling int // changes held in snapshots being assembled, every node's together

	out outbox // Announce's queue and what the publisher is asked to send

	// The publisher's own.
	seq      uint64 // the number of this node's last delta or standing-in snapshot
	snapID   uint64
	lastSent time.Time
	lastSnap time.Time
	snapGap  time.Duration // before the next snapshot another node asks for

	fmu        sync.Mutex
	noted      map[string]time.Time // when each kind of fault was last logged
	suppressed map[string]int       // and how many went unlogged since

	nodes                                            atomic.Int64
	lastSeq                                          atomic.Uint64
	presenceSent, presenceReceived                   atomic.Uint64
	snapshots, resyncs, snapshotsApplied, overflows  atomic.Uint64
	eventsSent, eventsReceived, dmsSent, dmsReceived atomic.Uint64
	gone, lost, dropped                              atomic.Uint64
	spared                                           atomic.Uint64 // expiries held off while cut off
}

var _ room.Cluster = (*Cluster)(nil)

// ClusterConfig holds the cluster's settings; the zero value of each field but Node means its
// default.
type ClusterConfig struct {
	// Node is this node's name, unique in the cluster: 1-64 of A-Z a-z 0-9 _ - . Required.
	Node string
	// Heartbeat is how often a node says it is alive when it has nothing else to say.
	// Default 2s.
	Heartbeat time.Duration
	// GoneAfter is how long a node may be silent before it is gone, with its people: at least
	// three heartbeats. Default 10s (a dead node is gone within about 11s).
	GoneAfter time.Duration
	// DMTimeout bounds how long SendDM waits for the other node's answer. Default 2s.
	DMTimeout time.Duration
	// MaxPending is how many presence changes may wait to be sent; beyond it they are dropped
	// and a snapshot is sent instead. Default 10 000.
	MaxPending int
}

// DefaultClusterConfig returns the defaults; Node is left empty.
func DefaultClusterConfig() ClusterConfig {
	return ClusterConfig{Heartbeat: 2 * time.Second, GoneAfter: 10 * time.Second, DMTimeout: 2 * time.Second, MaxPending: 10_000}
}

func (c ClusterConfig) withDefaults() ClusterConfig {
	d := DefaultClusterConfig()
	orDefault(&c.Heartbeat, d.Heartbeat)
	orDefault(&c.GoneAfter, d.GoneAfter)
	orDefault(&c.DMTimeout, d.DMTimeout)
	orDefault(&c.MaxPending, d.MaxPending)
	return c
}

// minHeartbeat bounds how busy heartbeats may keep every node (tests use tens of ms).
const minHeartbeat = 10 * time.Millisecond

// Validate reports the first invalid setting.
func (c ClusterConfig) Validate() error {
	switch {
	case c.Node == "":
		return errors.New("nats cluster: no node name")
	case !validNode(c.Node):
		return fmt.Errorf("nats cluster: node name %s: want 1-%d of A-Z a-z 0-9 and _ - . (dot)", chat.QuoteName(c.Node), maxNodeLen)
	case c.Heartbeat < 0 || c.Heartbeat > time.Minute || c.Heartbeat > 0 && c.Heartbeat < minHeartbeat:
		return fmt.Errorf("nats cluster: heartbeat %v out of range (%v to 1m)", c.Heartbeat, minHeartbeat)
	case c.GoneAfter < 0 || c.GoneAfter > 10*time.Minute:
		return fmt.Errorf("nats cluster: gone after %v out of range (up to 10m)", c.GoneAfter)
	case c.DMTimeout < 0 || c.DMTimeout > time.Minute:
		return fmt.Errorf("nats cluster: DM timeout %v out of range (up to 1m)", c.DMTimeout)
	case c.MaxPending < 0 || c.MaxPending > 1_000_000:
		return fmt.Errorf("nats cluster: max pending %d out of range (up to 1000000)", c.MaxPending)
	}
	if d := c.withDefaults(); d.GoneAfter < 3*d.Heartbeat {
		// One lost heartbeat must not make a node gone.
		return fmt.Errorf("nats cluster: gone after %v: at least 3 heartbeats (%v)", d.GoneAfter, 3*d.Heartbeat)
	}
	return nil
}

// maxNodeLen bounds a node's name.
const maxNodeLen = 64

// validNode reports whether s can be a node's name.
func validNode(s string) bool {
	if s == "" || len(s) > maxNodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !chat.IsAlnum(b) && b != '_' && b != '-' && b != '.' {
			return false
		}
	}
	return true
}

// validBoot reports whether s can be a boot ID (a nuid: 22 letters and digits).
func validBoot(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !chat.IsAlnum(s[i]) {
			return false
		}
	}
	return true
}

// ClusterStats are the cluster's counts since it was made, for metrics.
type ClusterStats struct {
	Nodes            int    // other nodes known now
	Connected        bool   // whether this node reaches NATS now
	PresenceSent     uint64 // presence messages published (deltas, snapshot parts, heartbeats, hellos, asks)
	PresenceReceived uint64 // presence messages from other nodes
	Snapshots        uint64 // snapshots of this node's presence sent
	Resyncs          uint64 // snapshots asked of other nodes (a gap, an unknown node, a new boot, lost messages)
	SnapshotsApplied uint64 // other nodes' snapshots handed to the hub
	Overflows        uint64 // times Announce's queue overflowed into a snapshot
	EventsSent       uint64
	EventsReceived   uint64 // events handed to the hub
	DMsSent          uint64 // private messages another node answered
	DMsReceived      uint64 // private messages handed to the hub
	Gone             uint64 // nodes found gone (a bye, silence, a restart)
	Lost             uint64 // messages NATS dropped because the hub took them too slowly
	Dropped          uint64 // messages refused: malformed, too large, beyond a bound, of a second process under one name
}

// Stats returns the cluster's counts.
func (c *Cluster) Stats() ClusterStats {
	return ClusterStats{
		Nodes:            int(c.nodes.Load()),
		Connected:        c.Connected(),
		PresenceSent:     c.presenceSent.Load(),
		PresenceReceived: c.presenceReceived.Load(),
		Snapshots:        c.snapshots.Load(),
		Resyncs:          c.resyncs.Load(),
		SnapshotsApplied: c.snapshotsApplied.Load(),
		Overflows:        c.overflows.Load(),
		EventsSent:       c.eventsSent.Load(),
		EventsReceived:   c.eventsReceived.Load(),
		DMsSent:          c.dmsSent.Load(),
		DMsReceived:      c.dmsReceived.Load(),
		Gone:             c.gone.Load(),
		Lost:             c.lost.Load(),
		Dropped:          c.dropped.Load(),
	}
}

// clusterLimits bound what other nodes (or anyone publishing on the subjects) can make this node
// hold or send. Tests lower some.
type clusterLimits struct {
	maxNodes           int // other nodes tracked
	maxPresenceBytes   int // one presence message
	partBytes          int // the changes of one delta or snapshot part sent
	maxParts           int // parts of one snapshot
	maxSnapshotChanges int // changes of one snapshot
	maxAssembling      int // changes held in snapshots being assembled, every node's together
	maxEventBytes      int
	maxDMBytes         int
	pendingMsgs        [3]int // what NATS may queue for each subscription while the hub is busy
	pendingBytes       [3]int
}

func defaultClusterLimits() clusterLimits {
	return clusterLimits{
		maxNodes:         256,
		maxPresenceBytes: 512 << 10,
		// Well under NATS's default maximum payload (1 MiB), with room for the envelope.
		partBytes:          200 << 10,
		maxParts:           4096,
		maxSnapshotChanges: 500_000, // ten times a busy node's (10 000 people in 4 rooms each)
		maxAssembling:      1_000_000,
		maxEventBytes:      64 << 10, // a room's 1000 invitations fit
		maxDMBytes:         16 << 10,
		pendingMsgs:        [3]int{10_000, 10_000, 1000},
		pendingBytes:       [3]int{64 << 20, 16 << 20, 16 << 20},
	}
}

// Subscription indexes.
const (
	subPresence = iota
	subEvents
	subDMs
)

// Texts carried in events and private messages, bounded before they are sanitised.
const (
	maxEventText = 16 << 10 // as a stored line's bound: a /motd or a reason fits
	maxDMText    = 8 << 10
	maxRoomTopic = 4096
	// maxInvitations is room's own bound on a room's invitations.
	maxInvitations = 1000
)

// Timings of the protocol.
const (
	askEvery     = time.Second           // at most one ask of a node per this
	snapDebounce = 20 * time.Millisecond // hellos and asks arriving together get one snapshot
	// Between two snapshots of this node that others ask for: ten times what the last took
	// (at most a tenth of the time goes to them, whoever asks), within these bounds.
	snapGapMin    = 100 * time.Millisecond
	snapGapMax    = 2 * time.Second
	faultLogEvery = time.Minute // each kind of fault is logged at most this often
	byeFlush      = time.Second // Close waits this long for its bye to leave
)

// bootHeader names the process that sent a message.
const bootHeader = "Chatd-Boot"

// Presence message types.
const (
	msgHello     = "hello"
	msgBye       = "bye"
	msgHeartbeat = "hb"
	msgDelta     = "delta"
	msgSnapshot  = "snap"
	msgAsk       = "ask"
)

// presenceMsg is one message of the presence protocol.
type presenceMsg struct {
	Type    string          `json:"t"`
	Node    string          `json:"node"`
	Boot    string          `json:"boot"`
	Seq     uint64          `json:"seq,omitempty"`
	To      string          `json:"to,omitempty"`    // ask: whose snapshot
	Snap    uint64          `json:"snap,omitempty"`  // snapshot part: which snapshot of the node
	Part    int             `json:"part,omitempty"`  // from 0
	Parts   int             `json:"parts,omitempty"` // how many the snapshot has
	Changes json.RawMessage `json:"changes,omitempty"`
}

// peer is what this node knows of another.
type peer struct {
	boot    string
	synced  bool   // a snapshot of this boot was applied, and every delta since
	last    uint64 // the seq of the last delta or snapshot applied
	told    bool   // the hub was given some of its presence: a NodeGone is owed
	heard   time.Time
	askedAt time.Time
	asm     *assembly

	// Two processes under one name: the boot this one replaced, and a rival boot heard since
	// and ignored.
	prevBoot   string
	rival      string
	rivalHeard time.Time
}

// assembly is a snapshot whose parts are arriving.
type assembly struct {
	snap, seq   uint64
	parts, next int
	changes     []room.PresenceChange
	updated     time.Time
}

// outbox is what waits for the publisher.
type outbox struct {
	mu       sync.Mutex
	changes  []room.PresenceChange
	overflow bool      // more than MaxPending waited: dropped, and a snapshot stands for them
	hello    bool      // say hello, and send a snapshot standing for what waits (start, back on NATS)
	askAll   bool      // say hello only: this node lost presence messages
	snapDue  time.Time // another node wants this node's snapshot: send it then
	wake     chan struct{}
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// wantSnapshot asks the publisher for a snapshot soon; asks meanwhile are answered by the same.
func (o *outbox) wantSnapshot(now time.Time) {
	o.mu.Lock()
	if o.snapDue.IsZero() {
		o.snapDue = now.Add(snapDebounce)
	}
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) sayHello(withSnapshot bool) {
	o.mu.Lock()
	if withSnapshot {
		o.hello, o.changes = true, nil
	} else {
		o.askAll = true
	}
	o.mu.Unlock()
	o.signal()
}

// Errors SendDM returns, besides NATS's.
var (
	errClusterClosed = errors.New("cluster is closed")
	errBadNode       = errors.New("not a node name")
	errOwnNode       = errors.New("that is this node")
	errDMTooLarge    = errors.New("private message too large")
	errBadDMReply    = errors.New("bad answer")
)

// NewCluster makes the cluster on s's connection and subject prefix; Start starts it. logger may
// be nil. Close the cluster before the store.
func NewCluster(s *Store, cfg ClusterConfig, logger *log.Logger) (*Cluster, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new nats cluster: %w", err)
	}
	if s == nil || s.isClosed() {
		return nil, fmt.Errorf("new nats cluster: %w", errClosed)
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = log.New(io.Discard)
	}
	base := s.cfg.Prefix + ".cluster."
	c := &Cluster{
		nc:           s.nc,
		cfg:          cfg,
		log:          logger,
		lim:          defaultClusterLimits(),
		boot:         nuid.Next(),
		subjPresence: base + "presence",
		subjEvents:   base + "events",
		dmPrefix:     base + "dm.",
		peers:        make(map[string]*peer),
		up:           true, // the hub starts connected; the housekeeper tells it otherwise
		noted:        make(map[string]time.Time),
		suppressed:   make(map[string]int),
	}
	c.subjDM = c.dmPrefix + nameToken(cfg.Node)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.out.wake = make(chan struct{}, 1)
	// Start says hello with a snapshot, which stands for whatever is announced before it.
	c.out.hello = true
	return c, nil
}

// Node is this node's name.
func (c *Cluster) Node() string { return c.cfg.Node }

// Connected reports whether this node reaches NATS, so the other nodes, now.
func (c *Cluster) Connected() bool { return !c.shut.Load() && c.nc.IsConnected() }

// Start subscribes, says hello with this node's snapshot and starts the publisher and the
// housekeeper. The hub may be called from then on, from other goroutines (never two calls at
// once). Later calls do nothing.
func (c *Cluster) Start(h room.ClusterHub) {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if h == nil || c.started || c.shut.Load() {
		return
	}
	c.started = true
	c.mu.Lock()
	c.hub = h
	c.mu.Unlock()
	for i, sub := range []struct {
		subj string
		cb   nats.MsgHandler
	}{
		subPresence: {c.subjPresence, c.onPresence},
		subEvents:   {c.subjEvents, c.onEvent},
		subDMs:      {c.subjDM, c.onDM},
	} {
		s, err := c.nc.Subscribe(sub.subj, sub.cb)
		if err != nil {
			// Only a closed connection fails here.
			c.log.Error("cluster: subscribe: this node will not hear the others", "subject", sub.subj, "err", err)
			continue
		}
		// A hub slow to take messages makes NATS drop some rather than hold them without end;
		// the housekeeper notices and asks for presence again.
		if err := s.SetPendingLimits(c.lim.pendingMsgs[i], c.lim.pendingBytes[i]); err != nil {
			c.log.Error("cluster: pending limits", "subject", sub.subj, "err", err)
		}
		c.subs[i] = s
	}
	c.status = c.nc.StatusChanged(nats.CONNECTED, nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	c.wg.Add(2)
	go c.publisher()
	go c.housekeeper()
	c.out.signal()
	c.log.Info("cluster: started", "node", c.cfg.Node, "boot", c.boot)
}

// Announce queues c for the other nodes; it never blocks. Before Start it is covered by the
// snapshot Start sends; after Close it does nothing.
func (c *Cluster) Announce(ch room.PresenceChange) {
	if c.shut.Load() {
		return
	}
	o := &c.out
	o.mu.Lock()
	if !o.overflow && !o.hello {
		// Otherwise a snapshot is to be taken, after this change was made: it stands for it.
		o.changes = append(o.changes, ch)
		if len(o.changes) > c.cfg.MaxPending {
			o.changes, o.overflow = nil, true
			c.overflows.Add(1)
		}
	}
	o.mu.Unlock()
	o.signal()
}

// Send publishes ev to the other nodes. It does not wait for them; while NATS is away the
// client buffers it until it is back.
func (c *Cluster) Send(ev room.ClusterEvent) {
	if c.shut.Load() {
		return
	}
	data, err := json.Marshal(ev)
	if err != nil {
		c.note(log.ErrorLevel, "cannot encode an event", "kind", ev.Kind, "err", err)
		return
	}
	if len(data) > c.lim.maxEventBytes {
		c.note(log.ErrorLevel, "event too large to send", "kind", ev.Kind, "bytes", len(data), "max", c.lim.maxEventBytes)
		return
	}
	m := nats.NewMsg(c.subjEvents)
	m.Header.Set(bootHeader, c.boot)
	m.Data = data
	if err := c.nc.PublishMsg(m); err != nil {
		c.note(log.WarnLevel, "cannot publish an event", "kind", ev.Kind, "err", err)
		return
	}
	c.eventsSent.Add(1)
}

// SendDM asks node to deliver dm, and reports whether its recipient got it there. It waits at
// most DMTimeout; an unknown node is an error (NATS: no responders), at once or after it.
func (c *Cluster) SendDM(node string, dm chat.DM) (bool, error) {
	switch {
	case c.shut.Load():
		return false, fmt.Errorf("cluster dm: %w", errClusterClosed)
	case !validNode(node):
		return false, fmt.Errorf("cluster dm: node %s: %w", chat.QuoteName(node), errBadNode)
	case node == c.cfg.Node:
		return false, fmt.Errorf("cluster dm: node %s: %w", node, errOwnNode)
	}
	data, err := json.Marshal(dm)
	if err != nil {
		return false, fmt.Errorf("cluster dm: %w", err)
	}
	if len(data) > c.lim.maxDMBytes {
		return false, fmt.Errorf("cluster dm: %d bytes: %w", len(data), errDMTooLarge)
	}
	if !c.nc.IsConnected() {
		return false, fmt.Errorf("cluster dm: %w", errNotConnected)
	}
	m := nats.NewMsg(c.dmPrefix + nameToken(node))
	m.Header.Set(bootHeader, c.boot)
	m.Data = data
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.DMTimeout)
	defer cancel()
	reply, err := c.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		return false, fmt.Errorf("cluster dm to %s: %w", node, err)
	}
	c.dmsSent.Add(1)
	switch string(reply.Data) {
	case "1":
		return true, nil
	case "0":
		return false, nil
	}
	return false, fmt.Errorf("cluster dm to %s: %w", node, errBadDMReply)
}

// Close says bye to the other nodes (they drop this node's people at once) and stops. Once it
// returns the hub is never called again. Later calls do nothing. It must not be called from
// inside a ClusterHub method.
func (c *Cluster) Close() error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.shut.Swap(true) {
		return nil
	}
	c.cancel()
	for _, sub := range c.subs {
		if sub != nil {
			_ = sub.Unsubscribe()
		}
	}
	// Waits for a hub call in progress; none starts after.
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
	if c.status != nil {
		c.nc.RemoveStatusListener(c.status)
	}
	if c.started && c.nc.IsConnected() {
		c.publishPresence(presenceMsg{Type: msgBye})
		if err := c.nc.FlushTimeout(byeFlush); err != nil {
			c.log.Warn("cluster: bye not sent: the other nodes will find this one gone when it falls silent", "err", err)
		}
	}
	c.log.Info("cluster: closed", "node", c.cfg.Node)
	return nil
}

// note logs a kind of trouble at most once per faultLogEvery, with how many went unlogged.
func (c *Cluster) note(level log.Level, what string, keyvals ...any) {
	now := time.Now()
	c.fmu.Lock()
	if t, ok := c.noted[what]; ok && now.Sub(t) < faultLogEvery {
		c.suppressed[what]++
		c.fmu.Unlock()
		return
	}
	n := c.suppressed[what]
	c.noted[what], c.suppressed[what] = now, 0
	c.fmu.Unlock()
	if n > 0 {
		keyvals = append(keyvals, "unlogged_since", n)
	}
	c.log.Log(level, "cluster: "+what, keyvals...)
}

// fault counts a refused message and logs its kind of fault (rate-limited).
func (c *Cluster) fault(what string, keyvals ...any) {
	c.dropped.Add(1)
	c.note(log.WarnLevel, "dropped: "+what, keyvals...)
}

// ---- Sending presence ----

// publisher publishes this node's presence: it alone numbers it, so that what it sends goes
// out in order.
func (c *Cluster) publisher() {
	defer c.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.out.wake:
		case <-timer.C:
		}
		timer.Reset(c.publishRound(time.Now()))
	}
}

// publishRound sends what is due and returns how long until something may be due again.
func (c *Cluster) publishRound(now time.Time) time.Duration {
	hb := c.cfg.Heartbeat
	if !c.nc.IsConnected() {
		// What waits stays queued (or overflows into a snapshot); coming back says hello with a
		// snapshot anyway.
		return hb
	}
	o := &c.out
	o.mu.Lock()
	hello, askAll, overflow := o.hello, o.askAll, o.overflow
	batch := o.changes
	o.changes, o.hello, o.askAll, o.overflow = nil, false, false, false
	asked, wait := false, hb
	if !o.snapDue.IsZero() {
		due := o.snapDue
		if gap := c.lastSnap.Add(c.snapGap); gap.After(due) {
			due = gap
		}
		if hello || overflow || !now.Before(due) {
			asked, o.snapDue = true, time.Time{}
		} else {
			wait = min(wait, due.Sub(now))
		}
	}
	o.mu.Unlock()

	if hello || askAll {
		c.publishPresence(presenceMsg{Type: msgHello})
		c.lastSent = now
	}
	if hello || overflow {
		// What waited was announced before this snapshot is taken, so it is in it.
		c.sendSnapshot(true)
	} else {
		c.sendDeltas(batch)
		if asked {
			// After the deltas: a node that has them all skips it.
			c.sendSnapshot(false)
		}
	}
	if since := time.Since(c.lastSent); since >= hb {
		c.publishPresence(presenceMsg{Type: msgHeartbeat, Seq: c.seq})
		c.lastSent = time.Now()
	} else {
		wait = min(wait, hb-since)
	}
	return max(wait, time.Millisecond)
}

// sendDeltas publishes changes as deltas, in order, each part numbered.
func (c *Cluster) sendDeltas(changes []room.PresenceChange) {
	if len(changes) == 0 {
		return
	}
	for _, part := range splitChanges(changes, c.partLimit()) {
		c.seq++
		c.publishPresence(presenceMsg{Type: msgDelta, Seq: c.seq, Changes: part})
	}
	c.lastSeq.Store(c.seq)
	c.lastSent = time.Now()
}

// sendSnapshot publishes the hub's snapshot in parts. standIn: it stands for changes not sent,
// so it takes a seq of its own.
func (c *Cluster) sendSnapshot(standIn bool) {
	start := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	changes := c.hub.Snapshot()
	c.mu.Unlock()
	if len(changes) > c.lim.maxSnapshotChanges {
		c.note(log.ErrorLevel, "this node's presence is larger than other nodes accept", "changes", len(changes), "max", c.lim.maxSnapshotChanges)
	}
	if standIn {
		c.seq++
		c.lastSeq.Store(c.seq)
	}
	c.snapID++
	parts := splitChanges(changes, c.partLimit())
	for i, part := range parts {
		c.publishPresence(presenceMsg{Type: msgSnapshot, Seq: c.seq, Snap: c.snapID, Part: i, Parts: len(parts), Changes: part})
	}
	c.snapshots.Add(1)
	c.lastSnap, c.lastSent = time.Now(), time.Now()
	c.snapGap = min(max(10*c.lastSnap.Sub(start), snapGapMin), snapGapMax)
}

// partLimit is the size of one part's changes: well under what the server takes.
func (c *Cluster) partLimit() int {
	limit := c.lim.partBytes
	if mp := int(c.nc.MaxPayload()); mp > 0 && mp/2 < limit {
		limit = mp / 2
	}
	return max(limit, 1024)
}

// splitChanges encodes changes as JSON arrays of at most about limit bytes each; none gives one
// empty array.
func splitChanges(changes []room.PresenceChange, limit int) []json.RawMessage {
	var parts []json.RawMessage
	buf := []byte{'['}
	for _, ch := range changes {
		b, err := json.Marshal(ch)
		if err != nil {
			continue // a struct of a number, strings and a bool always encodes
		}
		if len(buf) > 1 && len(buf)+len(b)+2 > limit {
			parts = append(parts, append(buf, ']'))
			buf = []byte{'['}
		}
		if len(buf) > 1 {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
	}
	return append(parts, append(buf, ']'))
}

// publishPresence publishes pm as this node's.
func (c *Cluster) publishPresence(pm presenceMsg) {
	pm.Node, pm.Boot = c.cfg.Node, c.boot
	data, err := json.Marshal(pm)
	if err != nil {
		c.note(log.ErrorLevel, "cannot encode a presence message", "err", err)
		return
	}
	m := nats.NewMsg(c.subjPresence)
	m.Header.Set(bootHeader, c.boot)
	m.Data = data
	if err := c.nc.PublishMsg(m); err != nil {
		// Lost: the others notice the gap at the next heartbeat and ask.
		c.note(log.WarnLevel, "cannot publish presence", "type", pm.Type, "err", err)
		return
	}
	c.presenceSent.Add(1)
}

// ---- Receiving presence ----

// onPresence takes one presence message.
func (c *Cluster) onPresence(m *nats.Msg) {
	if m.Header.Get(bootHeader) == c.boot {
		return // this process's own, back from the server
	}
	c.presenceReceived.Add(1)
	if len(m.Data) > c.lim.maxPresenceBytes {
		c.fault("presence message too large", "bytes", len(m.Data), "max", c.lim.maxPresenceBytes)
		return
	}
	var pm presenceMsg
	if err := json.Unmarshal(m.Data, &pm); err != nil {
		c.fault("presence message is not JSON of its form", "err", err)
		return
	}
	if what := c.checkPresence(&pm); what != "" {
		c.fault(what, "node", chat.Excerpt(pm.Node, maxNodeLen), "type", chat.Excerpt(pm.Type, 16))
		return
	}
	if pm.Node == c.cfg.Node {
		c.dropped.Add(1)
		c.note(log.ErrorLevel, "another process uses this node's name: give every node a name of its own", "node", pm.Node, "other_boot", pm.Boot)
		return
	}
	now := time.Now()
	if pm.Type == msgSnapshot && c.skipSnapshot(&pm, now) {
		return
	}
	var changes []room.PresenceChange
	if pm.Type == msgDelta || pm.Type == msgSnapshot {
		if len(pm.Changes) > 0 {
			if err := json.Unmarshal(pm.Changes, &changes); err != nil {
				c.fault("presence changes are not JSON of their form", "node", pm.Node, "err", err)
				return
			}
		}
		changes = c.checkChanges(pm.Node, changes)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.handlePresence(&pm, changes, now)
}

// skipSnapshot reports whether a snapshot part is one this node has no use for, before its
// changes are decoded: a node that has every delta before a snapshot (most, when one node
// says hello) skips it, and a part of a snapshot not being assembled is skipped.
func (c *Cluster) skipSnapshot(pm *presenceMsg, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[pm.Node]
	if c.closed || p == nil || p.boot != pm.Boot || p.asm != nil || pm.Part == 0 && (!p.synced || pm.Seq > p.last) {
		return false
	}
	p.heard = now
	return true
}

// checkPresence checks a presence message's envelope; "" when it is good, else the fault.
func (c *Cluster) checkPresence(pm *presenceMsg) string {
	switch {
	case !validNode(pm.Node):
		return "presence message of a bad node name"
	case !validBoot(pm.Boot):
		return "presence message of a bad boot ID"
	}
	switch pm.Type {
	case msgHello, msgBye, msgHeartbeat:
	case msgDelta:
		if pm.Seq == 0 {
			return "presence delta without a seq"
		}
	case msgAsk:
		if !validNode(pm.To) {
			return "presence ask of a bad node name"
		}
	case msgSnapshot:
		if pm.Snap == 0 || pm.Parts < 1 || pm.Parts > c.lim.maxParts || pm.Part < 0 || pm.Part >= pm.Parts {
			return "presence snapshot part of bad numbers"
		}
	default:
		return "presence message of an unknown type"
	}
	return ""
}

// checkChanges keeps the changes that are good, made canonical (room names as ParseRoom gives
// them), and counts the others.
func (c *Cluster) checkChanges(node string, changes []room.PresenceChange) []room.PresenceChange {
	good := changes[:0]
	for _, ch := range changes {
		if err := chat.ValidateName(ch.Name); err != nil {
			c.fault("presence change of a bad name", "node", node, "name", chat.QuoteName(ch.Name))
			continue
		}
		switch ch.Op {
		case room.PresenceOnline, room.PresenceOffline:
			ch.Room = ""
		case room.PresenceJoin, room.PresenceLeave:
			r, err := chat.ParseRoom(ch.Room)
			if err != nil {
				c.fault("presence change of a bad room", "node", node, "err", err)
				continue
			}
			ch.Room = r
		default:
			c.fault("presence change of an unknown op", "node", node, "op", ch.Op)
			continue
		}
		good = append(good, ch)
	}
	return good
}

// handlePresence applies one checked message. c.mu is held.
func (c *Cluster) handlePresence(pm *presenceMsg, changes []room.PresenceChange, now time.Time) {
	p := c.peerFor(pm, now)
	if p == nil {
		return
	}
	p.heard = now
	switch pm.Type {
	case msgHello:
		// It starts, came back or lost messages: it wants everyone's snapshot; its own, if it
		// sends one, follows: give it time before asking.
		c.out.wantSnapshot(now)
		if !p.synced {
			p.askedAt = now
		}
		return
	case msgBye:
		c.forget(pm.Node, p)
		return
	case msgAsk:
		if pm.To == c.cfg.Node {
			c.out.wantSnapshot(now)
		}
	case msgHeartbeat:
		if p.synced && pm.Seq > p.last {
			p.synced = false // it sent deltas that did not come
		}
	case msgDelta:
		switch {
		case !p.synced, pm.Seq <= p.last:
		case pm.Seq == p.last+1:
			p.last = pm.Seq
			if len(changes) > 0 {
				c.hub.Presence(pm.Node, changes, false)
				p.told = true
			}
		default:
			p.synced = false
		}
	case msgSnapshot:
		c.snapshotPart(pm, p, changes, now)
	}
	if !p.synced {
		c.ask(pm.Node, p, now)
	}
}

// peerFor returns the state of pm's node, made if new, or nil when pm is to be dropped. c.mu is
// held.
func (c *Cluster) peerFor(pm *presenceMsg, now time.Time) *peer {
	p := c.peers[pm.Node]
	switch {
	case p == nil:
		if pm.Type == msgBye {
			return nil
		}
		if len(c.peers) >= c.lim.maxNodes {
			c.fault("too many nodes: ignoring another", "node", pm.Node, "max", c.lim.maxNodes)
			return nil
		}
		p = &peer{boot: pm.Boot}
		c.peers[pm.Node] = p
		c.nodes.Store(int64(len(c.peers)))
		c.log.Info("cluster: node joined", "node", pm.Node, "boot", pm.Boot)
		return p
	case pm.Boot == p.boot:
		return p
	case pm.Type == msgBye && pm.Boot == p.rival:
		p.rival, p.prevBoot = "", ""
		return nil
	case pm.Boot == p.rival || pm.Boot == p.prevBoot:
		// The boot it replaced speaks again: two processes use the name. Keep to the current
		// one (the other is ignored until one of them falls silent) rather than flap.
		p.rival, p.rivalHeard = pm.Boot, now
		c.dropped.Add(1)
		c.note(log.ErrorLevel, "two processes use one node name: give every node a name of its own",
			"node", pm.Node, "boot", p.boot, "other_boot", pm.Boot)
		return nil
	case pm.Type == msgBye:
		return nil // a process of the name this node never knew
	default:
		// A new process under the name: the node restarted, and its people left.
		c.log.Info("cluster: node restarted", "node", pm.Node, "boot", pm.Boot)
		c.forget(pm.Node, p)
		np := &peer{boot: pm.Boot, prevBoot: p.boot}
		c.peers[pm.Node] = np
		c.nodes.Store(int64(len(c.peers)))
		return np
	}
}

// forget drops a node that is gone, telling the hub. c.mu is held.
func (c *Cluster) forget(node string, p *peer) {
	c.dropAssembly(p)
	delete(c.peers, node)
	c.nodes.Store(int64(len(c.peers)))
	c.gone.Add(1)
	if p.told {
		c.hub.NodeGone(node)
	}
}

// ask asks node for its snapshot, at most once per askEvery. c.mu is held.
func (c *Cluster) ask(node string, p *peer, now time.Time) {
	if now.Sub(p.askedAt) < askEvery || !c.nc.IsConnected() {
		return
	}
	p.askedAt = now
	c.resyncs.Add(1)
	c.publishPresence(presenceMsg{Type: msgAsk, To: node})
}

// snapshotPart adds one part to the node's snapshot, and hands the hub the whole once every part
// has come. c.mu is held.
func (c *Cluster) snapshotPart(pm *presenceMsg, p *peer, changes []room.PresenceChange, now time.Time) {
	if pm.Part == 0 {
		c.dropAssembly(p)
		if p.synced && pm.Seq <= p.last {
			return // it has nothing this node lacks
		}
		p.asm = &assembly{snap: pm.Snap, seq: pm.Seq, parts: pm.Parts}
	}
	a := p.asm
	if a == nil {
		return // the rest of a snapshot skipped, or whose start was lost
	}
	if pm.Snap != a.snap || pm.Seq != a.seq || pm.Parts != a.parts || pm.Part != a.next {
		c.dropAssembly(p)
		c.fault("presence snapshot part out of order", "node", pm.Node, "part", pm.Part, "want", a.next)
		return
	}
	if len(a.changes)+len(changes) > c.lim.maxSnapshotChanges || c.assembling+len(changes) > c.lim.maxAssembling {
		c.dropAssembly(p)
		c.fault("presence snapshot too large", "node", pm.Node, "max", c.lim.maxSnapshotChanges)
		return
	}
	a.changes = append(a.changes, changes...)
	c.assembling += len(changes)
	a.next++
	a.updated = now
	if a.next < a.parts {
		return
	}
	c.dropAssembly(p)
	c.hub.Presence(pm.Node, a.changes, true)
	p.told, p.synced, p.last = true, true, a.seq
	c.snapshotsApplied.Add(1)
}

// dropAssembly drops the node's snapshot in assembly. c.mu is held.
func (c *Cluster) dropAssembly(p *peer) {
	if p.asm != nil {
		c.assembling -= len(p.asm.changes)
		p.asm = nil
	}
}

// ---- The housekeeper ----

// housekeeper follows the connection, expires silent nodes, asks again for snapshots not come,
// and notices messages NATS dropped.
func (c *Cluster) housekeeper() {
	defer c.wg.Done()
	every := min(max(c.cfg.Heartbeat/4, 5*time.Millisecond), time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	c.checkConnection(time.Now())
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.status:
			c.checkConnection(time.Now())
		case <-tick.C:
			now := time.Now()
			c.checkConnection(now) // the status channel drops events when full
			c.checkLost(now)
			c.expire(now)
		}
	}
}

// checkConnection tells the hub when the connection went or came back, once per change.
func (c *Cluster) checkConnection(now time.Time) {
	up := c.nc.IsConnected()
	c.mu.Lock()
	if c.closed || up == c.up {
		c.mu.Unlock()
		return
	}
	c.up = up
	if up {
		// Silence while this node was away says nothing of the others: count it afresh.
		for _, p := range c.peers {
			p.heard = now
			if p.rival != "" {
				p.rivalHeard = now
			}
		}
	}
	c.hub.Connection(up)
	c.mu.Unlock()
	if up {
		c.log.Info("cluster: back on NATS: saying hello")
		c.out.sayHello(true)
	} else {
		c.log.Warn("cluster: lost NATS: the other nodes' presence stands as it was until it is back")
	}
}

// checkLost notices messages NATS dropped because the hub took them too slowly.
func (c *Cluster) checkLost(now time.Time) {
	for i, sub := range c.subs {
		if sub == nil {
			continue
		}
		n, err := sub.Dropped()
		if err != nil || n <= c.subDropped[i] {
			continue
		}
		lost := n - c.subDropped[i]
		c.subDropped[i] = n
		c.lost.Add(uint64(lost))
		switch i {
		case subPresence:
			c.note(log.WarnLevel, "presence messages lost (the hub was slow): asking every node for its snapshot", "lost", lost)
			c.mu.Lock()
			for _, p := range c.peers {
				c.dropAssembly(p)
				p.synced, p.askedAt = false, now
			}
			c.mu.Unlock()
			c.out.sayHello(false)
		case subEvents:
			c.note(log.ErrorLevel, "events lost (the hub was slow): some operators' changes were not applied here", "lost", lost)
		case subDMs:
			c.note(log.WarnLevel, "private messages lost (the hub was slow): their senders queue them", "lost", lost)
		}
	}
}

// expire drops the nodes silent for GoneAfter (never while this node is cut off), asks again
// for snapshots not come, and drops what is stale.
func (c *Cluster) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	connected := c.up && c.nc.IsConnected()
	for node, p := range c.peers {
		if p.asm != nil && now.Sub(p.asm.updated) > c.cfg.GoneAfter {
			c.dropAssembly(p)
		}
		if p.rival != "" && now.Sub(p.rivalHeard) > c.cfg.GoneAfter {
			p.rival, p.prevBoot = "", ""
		}
		silent := now.Sub(p.heard) > c.cfg.GoneAfter
		switch {
		case !connected:
			if silent {
				c.spared.Add(1)
			}
		case silent:
			c.log.Warn("cluster: node gone: not heard from", "node", node, "for", c.cfg.GoneAfter)
			c.forget(node, p)
		case !p.synced:
			c.ask(node, p, now)
		}
	}
}

// ---- Events and private messages ----

// onEvent takes one event from another node.
func (c *Cluster) onEvent(m *nats.Msg) {
	if m.Header.Get(bootHeader) == c.boot {
		return
	}
	if len(m.Data) > c.lim.maxEventBytes {
		c.fault("event too large", "bytes", len(m.Data), "max", c.lim.maxEventBytes)
		return
	}
	var ev room.ClusterEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		c.fault("event is not JSON of its form", "err", err)
		return
	}
	if what := checkEvent(&ev); what != "" {
		c.fault(what, "kind", ev.Kind)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.eventsReceived.Add(1)
	c.hub.Event(ev)
}

// maxEventBans bounds the bans of one event: a /ban sets at most a name's, a key's and an
// address's.
const maxEventBans = 16

// checkBans checks the bans an event carries and makes their texts canonical.
func checkBans(bans []chat.Ban) string {
	if len(bans) > maxEventBans {
		return "event of too many bans"
	}
	for i := range bans {
		b := &bans[i]
		switch {
		case b.ID <= 0:
			return "event of a ban without an ID"
		case b.Kind != chat.BanName && b.Kind != chat.BanKey && b.Kind != chat.BanIP:
			return "event of a ban of an unknown kind"
		case b.Value == "" || len(b.Value) > 256 || chat.Sanitize(b.Value) != b.Value:
			return "event of a ban of a bad value"
		case len(b.Reason) > maxEventText:
			return "event of a ban's reason too long"
		case b.By != "" && !chat.ValidName(b.By):
			return "event of a bad name (ban by)"
		}
		b.Reason = chat.Sanitize(b.Reason)
	}
	return ""
}

// checkEvent checks an event and makes it canonical (texts sanitised, room names as ParseRoom
// gives them); "" when it is good, else the fault.
func checkEvent(ev *room.ClusterEvent) string {
	if ev.Name != "" && !chat.ValidName(ev.Name) {
		return "event of a bad name"
	}
	if ev.By != "" && !chat.ValidName(ev.By) {
		return "event of a bad name (by)"
	}
	if len(ev.Text) > maxEventText {
		return "event of a text too long"
	}
	ev.Text = chat.Sanitize(ev.Text)
	if ev.RoomName != "" {
		r, err := chat.ParseRoom(ev.RoomName)
		if err != nil {
			return "event of a bad room name"
		}
		ev.RoomName = r
	}
	if ev.Room != nil {
		if what := checkRoom(ev.Room); what != "" {
			return what
		}
	}
	if ev.ID < 0 || ev.Reason > room.ReasonFailed {
		return "event of a bad ID or reason"
	}
	if what := checkBans(ev.Bans); what != "" {
		return what
	}
	ok := false
	switch ev.Kind {
	case room.EventKick, room.EventMute, room.EventUnmute, room.EventWebRevoke:
		ok = ev.Name != ""
	case room.EventBans, room.EventMotd:
		ok = true
	case room.EventRoom:
		ok = ev.Room != nil
	case room.EventRoomDeleted:
		ok = ev.RoomName != ""
	case room.EventRoomKick:
		ok = ev.Name != "" && ev.RoomName != ""
	default:
		return "event of an unknown kind"
	}
	if !ok {
		return "event without what its kind needs"
	}
	return ""
}

// checkRoom checks a room record carried by an event.
func checkRoom(r *chat.Room) string {
	name, err := chat.ParseRoom(r.Name)
	if err != nil {
		return "event of a bad room"
	}
	r.Name = name
	if r.Owner != "" && !chat.ValidName(r.Owner) {
		return "event of a room of a bad owner"
	}
	if len(r.Topic) > maxRoomTopic {
		return "event of a room of a topic too long"
	}
	r.Topic = chat.Sanitize(r.Topic)
	if len(r.Invited) > maxInvitations {
		return "event of a room of too many invitations"
	}
	for _, n := range r.Invited {
		if !chat.ValidName(n) {
			return "event of a room of a bad invitation"
		}
	}
	return ""
}

// onDM takes a private message another node asks this one to deliver, and answers.
func (c *Cluster) onDM(m *nats.Msg) {
	if m.Reply == "" {
		c.fault("private message without a reply subject")
		return
	}
	if len(m.Data) > c.lim.maxDMBytes {
		c.fault("private message too large", "bytes", len(m.Data), "max", c.lim.maxDMBytes)
		return
	}
	var dm chat.DM
	if err := json.Unmarshal(m.Data, &dm); err != nil {
		c.fault("private message is not JSON of its form", "err", err)
		return
	}
	if what := checkDM(&dm); what != "" {
		c.fault(what)
		return
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.dmsReceived.Add(1)
	got := c.hub.DM(dm)
	c.mu.Unlock()
	answer := []byte("0")
	if got {
		answer = []byte("1")
	}
	if err := m.Respond(answer); err != nil {
		c.note(log.WarnLevel, "cannot answer a private message", "err", err)
	}
}

// checkDM checks a private message and sanitises its text.
func checkDM(dm *chat.DM) string {
	switch {
	case !chat.ValidName(dm.From) || !chat.ValidName(dm.To):
		return "private message of a bad name"
	case dm.ID < 0:
		return "private message of a bad ID"
	case len(dm.Text) > maxDMText:
		return "private message of a text too long"
	case dm.FromAddr != "" && !validAddr(dm.FromAddr):
		return "private message of a bad address"
	}
	dm.Text = chat.Sanitize(dm.Text)
	return ""
}

// validAddr reports whether s is an address or a range of them ("192.0.2.7", "2001:db8::/64").
func validAddr(s string) bool {
	if len(s) > 64 {
		return false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}

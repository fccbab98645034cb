package main

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Config is one run's settings: the flags.
type Config struct {
	SSHAddr        string        // "" for no SSH clients; several nodes' separated by commas
	TCPAddr        string        // "" for no TCP clients; several nodes' separated by commas
	WSAddr         string        // the web listener, for WebSocket clients; "" for none; several nodes' separated by commas
	SSHClients     int           // SSH clients to connect
	TCPClients     int           // TCP clients to connect
	WSClients      int           // WebSocket clients to connect
	Senders        int           // how many of the clients send (at most all of them)
	Rate           float64       // messages per second per sender
	Duration       time.Duration // measurement time once everyone is connected
	Drain          time.Duration // after the last send, how long to wait for deliveries in flight
	ConnectWorkers int           // parallel dialers
	ConnectTimeout time.Duration // per client, from dial to its join notice
	Size           int           // message length in bytes
	Rooms          int           // rooms the clients are spread over (client i in room i mod Rooms); 0: all in the default room
	PTY            bool          // SSH sessions request a PTY
	PIDs           []int         // the servers' pids (one per node), to sample their CPU and RSS; none for none
	NamePrefix     string        // client names are PREFIX-sN and PREFIX-tN
	Hold           bool          // connect and hold the sessions for Duration without sending
	Settle         time.Duration // after the last join, wait this long before the after-connect sample and the first send
	Progress       io.Writer     // once-a-second progress lines; nil for none

	// testHookRunning, when set, runs once everyone is connected and the senders are chosen,
	// before the first send.
	testHookRunning func(b *bench)
}

// DefaultConfig returns the flags' defaults. NamePrefix is left empty: Run picks a fresh one.
func DefaultConfig() Config {
	return Config{
		SSHAddr:        "127.0.0.1:2222",
		TCPAddr:        "127.0.0.1:2323",
		WSAddr:         "127.0.0.1:8080",
		SSHClients:     100,
		Senders:        2,
		Rate:           0.5,
		Duration:       10 * time.Second,
		Drain:          5 * time.Second,
		ConnectWorkers: 8,
		ConnectTimeout: 30 * time.Second,
		Size:           64,
		PTY:            true,
	}
}

// maxSize is the longest message chatd accepts.
const maxSize = 1000

// Validate reports settings that cannot work. It leaves SSHClients alone when SSHAddr is empty:
// Run connects no SSH client then.
func (c Config) Validate() error {
	nssh := c.SSHClients
	if c.SSHAddr == "" {
		nssh = 0
	}
	switch {
	case c.SSHClients < 0 || c.TCPClients < 0 || c.WSClients < 0:
		return errors.New("-clients, -tcp-clients and -ws-clients cannot be negative")
	case c.TCPClients > 0 && c.TCPAddr == "":
		return errors.New("-tcp-clients needs a -tcp address")
	case c.WSClients > 0 && c.WSAddr == "":
		return errors.New("-ws-clients needs a -ws address")
	case nssh+c.TCPClients+c.WSClients == 0:
		return errors.New("no clients: give -clients (with -ssh), -tcp-clients (with -tcp) or -ws-clients (with -ws)")
	case c.Senders < 0:
		return errors.New("-senders cannot be negative")
	case c.Senders > 0 && !c.Hold && !(c.Rate > 0 && c.Rate <= 1e6):
		return fmt.Errorf("-rate must be more than 0 (and at most 1e6), got %v", c.Rate)
	case c.Duration < 0 || c.Drain < 0 || c.Settle < 0:
		return errors.New("-duration, -drain and -settle cannot be negative")
	case c.ConnectWorkers < 1:
		return errors.New("-connect-workers must be at least 1")
	case c.ConnectTimeout <= 0:
		return errors.New("the connect timeout must be positive")
	case c.Size < 1 || c.Size > maxSize:
		return fmt.Errorf("-size must be 1 to %d bytes (chatd's longest message), got %d", maxSize, c.Size)
	case slices.ContainsFunc(c.PIDs, func(pid int) bool { return pid <= 0 }):
		return errors.New("-pid: a process id is a positive number")
	case c.Rooms < 0:
		return errors.New("-rooms cannot be negative")
	case c.Rooms > nssh+c.TCPClients+c.WSClients:
		return fmt.Errorf("-rooms %d needs at least as many clients, not %d", c.Rooms, nssh+c.TCPClients+c.WSClients)
	}
	if _, _, err := c.nodeAddrs(); err != nil {
		return err
	}
	if c.NamePrefix != "" {
		longest := c.NamePrefix + "-s" + strconv.Itoa(max(nssh, c.TCPClients, c.WSClients)-1)
		if err := checkName(longest); err != nil {
			return fmt.Errorf("-name-prefix %q: %w", c.NamePrefix, err)
		}
	}
	return nil
}

// nodeAddrs returns, by transport, the addresses its clients connect to: -ssh, -tcp and -ws each
// name one node or several, separated by commas, and the k-th address of every list is node k's.
// A transport without clients has none. nodes is how many nodes there are (at least 1).
func (c Config) nodeAddrs() (addrs [nTransports][]string, nodes int, err error) {
	for _, f := range []struct {
		t       transport
		flag    string
		list    string
		clients int
	}{{overSSH, "-ssh", c.SSHAddr, c.SSHClients}, {overTCP, "-tcp", c.TCPAddr, c.TCPClients}, {overWS, "-ws", c.WSAddr, c.WSClients}} {
		if f.list == "" || f.clients == 0 {
			continue
		}
		for a := range strings.SplitSeq(f.list, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				return addrs, 0, fmt.Errorf("%s %q: an empty address in the list", f.flag, f.list)
			}
			addrs[f.t] = append(addrs[f.t], a)
		}
	}
	var first string // the flag that set the node count
	for t, list := range addrs {
		flag := []string{"-ssh", "-tcp", "-ws"}[t]
		switch {
		case len(list) == 0:
		case nodes == 0:
			nodes, first = len(list), flag
		case len(list) != nodes:
			return addrs, 0, fmt.Errorf("%s names %d nodes and %s %d: give every transport the same nodes, in the same order", first, nodes, flag, len(list))
		}
	}
	return addrs, max(nodes, 1), nil
}

// nodeOf is the node client id connects to, of n: the clients are dealt to the nodes in turn,
// and with -rooms each room's members are too (a room's k-th member, client room+k*rooms, goes to
// node (k+room) mod n), so that every room spans the nodes and the nodes get as many clients.
func nodeOf(id, rooms, n int) int {
	r := max(rooms, 1)
	return (id/r + id%r) % n
}

// checkName applies chatd's name rules: 1-32 characters of A-Z a-z 0-9 _ . -, starting with a
// letter or a digit.
func checkName(name string) error {
	if len(name) == 0 || len(name) > 32 {
		return fmt.Errorf("names are 1 to 32 characters; %q is %d", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return errors.New("a name starts with a letter or a digit")
		}
		if !alnum && c != '_' && c != '.' && c != '-' {
			return fmt.Errorf("names are made of A-Z a-z 0-9 _ . - (not %q)", c)
		}
	}
	return nil
}

// randomID returns n random characters of a-z0-9.
func randomID(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		b[i] = chars[mrand.IntN(len(chars))]
	}
	return string(b)
}

// Run phases, for the progress lines.
const (
	phaseConnect int32 = iota
	phaseRun
	phaseDrain
	phaseHold
	phaseDone
)

// nShards is about how many locks the receivers' statistics are spread over: each room has
// nShards/rooms of them (at least one), so that a room's figures are its shards' sum.
const nShards = 64

// shard is a share of the receivers' statistics, under its own lock: of one room's receivers.
type shard struct {
	mu         sync.Mutex
	hist       [2]histogram // latency, µs: of deliveries on the sender's node [sameNode], on another [crossNode]
	delivered  int64
	duplicates int64
	outOfOrder int64
	echoes     int64
	foreign    int64    // tokens of another room's sender, or tagged with another of the run's rooms
	_          [64]byte // keep the next shard's lock off this cache line
}

// Indices of shard.hist: where a delivery was received, relative to its sender's node.
const (
	sameNode  = 0
	crossNode = 1
)

// bench is one run.
type bench struct {
	cfg       Config
	runID     string
	scanner   scanner
	noticePat []byte
	clients   []*client
	nRooms    int       // rooms in use: cfg.Rooms, or 1 (the default room) when that is 0
	nNodes    int       // the nodes the clients are spread over (1 for one server)
	roomNames []string  // by room; nil without -rooms
	shards    []shard   // nRooms × perRoom: room K's are shards[K*perRoom : (K+1)*perRoom]
	perRoom   int       // shards per room
	t0        time.Time // the first dial
	// httpClient dials the WebSocket clients.
	httpClient *http.Client

	connected atomic.Int64
	failed    atomic.Int64
	droppedN  atomic.Int64
	closing   atomic.Bool
	phase     atomic.Int32
	skipped   atomic.Int64
	slowDowns atomic.Int64 // the server's rate-limit lines to senders

	noticeMu sync.Mutex
	notices  map[string]string // name -> the room's "NAME left ..." notice

	errMu     sync.Mutex
	errCounts map[string]int

	live        []*client      // connected, in id order; set before the run phase starts
	senders     []*client      // by sender index; set before the run phase starts
	roomSenders [][]int        // by room, its senders' indices; set before the run phase starts
	senderRoom  []atomic.Int32 // by sender index, its room (for the readers: set before the run)
	senderNode  []atomic.Int32 // by sender index, its node (for the readers: set before the run)
	deadln      atomic.Int64   // end of the current phase (Unix nanoseconds), for progress lines
}

// errNoneConnected is Run's error when no client got into the room.
var errNoneConnected = errors.New("no client connected")

// Run connects the clients, runs the traffic and returns what happened. ctx cancelled stops the
// run early (the report then covers what was measured, and Interrupted is set). The error is
// non-nil when the run could not happen at all; the report is still filled as far as it got.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SSHAddr == "" {
		cfg.SSHClients = 0
	}
	cfg.Senders = min(cfg.Senders, cfg.SSHClients+cfg.TCPClients+cfg.WSClients)
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "bench" + randomID(4)
	}
	b := &bench{
		cfg:        cfg,
		runID:      randomID(runIDLen),
		notices:    make(map[string]string),
		errCounts:  make(map[string]int),
		httpClient: wsHTTPClient(),
	}
	b.scanner = newScanner(b.runID)
	b.noticePat = []byte("* " + cfg.NamePrefix + "-")
	b.setRooms()
	if err := b.makeClients(); err != nil {
		return nil, err
	}
	rep := b.newReport()

	// Each sample is of every -pid, or nil once one could not be sampled.
	var before, afterConnect, end []procSample
	var sampleErr error
	sample := func() []procSample {
		if len(cfg.PIDs) == 0 || sampleErr != nil {
			return nil
		}
		out := make([]procSample, len(cfg.PIDs))
		for i, pid := range cfg.PIDs {
			s, err := readProc(pid)
			if err != nil {
				sampleErr = err
				return nil
			}
			out[i] = s
		}
		return out
	}

	// Connect.
	before = sample()
	cpu0 := selfCPU()
	b.t0 = time.Now()
	stopProgress := b.startProgress()
	defer stopProgress()
	lastJoin := b.connectAll(ctx)
	b.settle(ctx)
	afterConnect = sample()
	cpu1 := selfCPU()
	rep.ConnectSeconds = round3(lastJoin.Seconds())
	for _, c := range b.clients {
		if c.done != nil {
			b.live = append(b.live, c)
		}
	}
	rep.Connected = len(b.live)
	rep.Failed = int(b.failed.Load())
	rep.ConnectErrors = b.connectErrors()
	if rep.Connected > 0 && lastJoin > 0 {
		rep.ConnectRate = round3(float64(rep.Connected) / lastJoin.Seconds())
	}

	var runErr error
	switch {
	case rep.Connected == 0:
		runErr = errNoneConnected
	case cfg.Hold:
		b.hold(ctx)
	default:
		b.traffic(ctx, rep)
	}
	end = sample()
	cpu2 := selfCPU()
	rep.Interrupted = ctx.Err() != nil
	b.phase.Store(phaseDone)
	stopProgress()

	b.teardown()
	b.tally(rep)
	rep.BenchCPUConnect = round3(cpu1 - cpu0)
	rep.BenchCPURun = round3(cpu2 - cpu1)
	if len(cfg.PIDs) > 0 {
		rep.setServer(before, afterConnect, end)
		if sampleErr != nil {
			rep.ServerError = sampleErr.Error()
		}
	}
	return rep, runErr
}

// setRooms names the run's rooms and lays out the statistics' shards by room.
func (b *bench) setRooms() {
	b.nRooms = max(b.cfg.Rooms, 1)
	if b.cfg.Rooms > 0 {
		b.roomNames = make([]string, b.cfg.Rooms)
		for k := range b.roomNames {
			b.roomNames[k] = roomName(b.runID, k)
		}
	}
	b.perRoom = max(nShards/b.nRooms, 1)
	b.shards = make([]shard, b.nRooms*b.perRoom)
	b.senderRoom = make([]atomic.Int32, b.cfg.Senders)
	b.senderNode = make([]atomic.Int32, b.cfg.Senders)
	b.roomSenders = make([][]int, b.nRooms)
}

// shardOf is the shard that holds c's statistics, one of its room's.
func (b *bench) shardOf(c *client) *shard {
	return &b.shards[int(c.room)*b.perRoom+c.id/b.nRooms%b.perRoom]
}

// makeClients prepares the clients, SSH ones with fresh ed25519 keys, before anything is timed,
// and deals them to the nodes.
func (b *bench) makeClients() error {
	addrs, nodes, err := b.cfg.nodeAddrs()
	if err != nil {
		return err
	}
	b.nNodes = nodes
	nssh, ntcp := b.cfg.SSHClients, b.cfg.TCPClients
	n := nssh + ntcp + b.cfg.WSClients
	b.clients = make([]*client, n)
	for i := range n {
		// A PTY session gets its own lines back, as the page does (the web transport echoes).
		c := &client{id: i, transport: overSSH, pty: b.cfg.PTY, echo: b.cfg.PTY, pairs: make([]pairState, b.cfg.Senders)}
		switch {
		case i < nssh:
			c.name = fmt.Sprintf("%s-s%d", b.cfg.NamePrefix, i)
		case i < nssh+ntcp:
			c.transport, c.pty, c.echo = overTCP, false, false
			c.name = fmt.Sprintf("%s-t%d", b.cfg.NamePrefix, i-nssh)
		default:
			c.transport, c.pty, c.echo = overWS, false, true
			c.name = fmt.Sprintf("%s-w%d", b.cfg.NamePrefix, i-nssh-ntcp)
		}
		c.node = int32(nodeOf(i, b.cfg.Rooms, nodes))
		if a := addrs[c.transport]; len(a) > 0 {
			c.addr = a[c.node]
		}
		if b.cfg.Rooms > 0 {
			c.room = int32(i % b.cfg.Rooms)
			c.roomName = b.roomNames[c.room]
			c.roomPat = []byte(" joined " + c.roomName + " (")
		}
		// The welcome line reaches the newcomer once it is in the room; its join notice may come
		// later, gathered with others', when many join at once. The notice is also accepted, as
		// older servers ("* NAME joined (3 online)") and newer ones ("* NAME joined #lobby (3
		// online)") word it, should a server welcome people differently.
		c.joinPats = [][]byte{[]byte(", " + c.name + "! "), []byte("* " + c.name + " joined ("), []byte("* " + c.name + " joined #")}
		c.senderIdx.Store(-1)
		if c.transport == overSSH {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if c.signer, err = gossh.NewSignerFromKey(priv); err != nil {
				return err
			}
		}
		b.clients[i] = c
	}
	return nil
}

// connectAll connects every client with ConnectWorkers dialers and returns the time from the
// first dial to the last client in the room.
func (b *bench) connectAll(ctx context.Context) time.Duration {
	jobs := make(chan *client)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	observers := 0
	for range min(b.cfg.ConnectWorkers, len(b.clients)) {
		wg.Go(func() {
			for c := range jobs {
				var keep int
				var err error
				switch c.transport {
				case overSSH:
					keep, err = b.connectSSH(ctx, c)
				case overTCP:
					keep, err = b.connectTCP(ctx, c)
				default:
					keep, err = b.connectWS(ctx, c)
				}
				if err != nil {
					if ctx.Err() == nil {
						b.failed.Add(1)
						b.countError(c, err)
					}
					continue
				}
				c.joinedAt = time.Since(b.t0)
				mu.Lock()
				last = max(last, c.joinedAt)
				// The first two clients in the room watch for the room's notices about the others.
				if observers < 2 {
					c.observer = true
					observers++
				}
				mu.Unlock()
				c.done = make(chan struct{})
				go b.read(c, keep)
				b.connected.Add(1)
			}
		})
	}
	for _, c := range b.clients {
		if ctx.Err() != nil {
			break
		}
		jobs <- c
	}
	close(jobs)
	wg.Wait()
	return last
}

// portRE matches the local end of a connection in an error ("tcp 127.0.0.1:40212->"), which
// would make every connection's error distinct.
var portRE = regexp.MustCompile(`[^ ]+->`)

func cleanErr(err error) string { return portRE.ReplaceAllString(err.Error(), "") }

// countError counts a client's connect error, with its name replaced by NAME (and its room by
// #ROOM) so that the same error for every client is counted once.
func (b *bench) countError(c *client, err error) {
	msg := strings.ReplaceAll(cleanErr(err), c.name, "NAME")
	if c.roomName != "" {
		msg = strings.ReplaceAll(msg, c.roomName, "#ROOM")
	}
	b.errMu.Lock()
	b.errCounts[msg]++
	b.errMu.Unlock()
}

// connectErrors lists the connect errors, most frequent first, at most 10.
func (b *bench) connectErrors() []ErrorCount {
	b.errMu.Lock()
	defer b.errMu.Unlock()
	out := make([]ErrorCount, 0, len(b.errCounts))
	for e, n := range b.errCounts {
		out = append(out, ErrorCount{Error: e, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Error < out[j].Error
	})
	if len(out) > 10 {
		out = out[:10]
	}
	return out
}

// pickSenders chooses the senders among the connected clients: from the nodes in turn (while
// a node has clients left), and on each node from SSH, TCP and WebSocket clients in turn (while
// more than one transport has clients left there).
func (b *bench) pickSenders() {
	nodes := max(b.nNodes, 1)
	by := make([][nTransports][]*client, nodes)
	for _, c := range b.live {
		by[c.node][c.transport] = append(by[c.node][c.transport], c)
	}
	next := make([]int, nodes) // by node, the transport whose turn it is there
	n := min(b.cfg.Senders, len(b.live))
	for k := 0; len(b.senders) < n; k = (k + 1) % nodes {
		for i := range nTransports {
			t := (next[k] + i) % nTransports
			if len(by[k][t]) > 0 {
				b.senders, by[k][t] = append(b.senders, by[k][t][0]), by[k][t][1:]
				next[k] = (t + 1) % nTransports
				break
			}
		}
	}
	for i, c := range b.senders {
		b.senderRoom[i].Store(c.room)
		b.senderNode[i].Store(c.node)
		b.roomSenders[c.room] = append(b.roomSenders[c.room], i)
		c.senderIdx.Store(int32(i))
	}
}

// settle waits Settle once everyone is in. A join storm's notices are gathered and go out up to
// a second after the last join, to every member: part of the joins' cost, and what the first
// message would otherwise wait behind.
func (b *bench) settle(ctx context.Context) {
	if b.cfg.Settle <= 0 {
		return
	}
	t := time.NewTimer(b.cfg.Settle)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// hold keeps the sessions open for the duration, sending nothing.
func (b *bench) hold(ctx context.Context) {
	b.deadln.Store(time.Now().Add(b.cfg.Duration).UnixNano())
	b.phase.Store(phaseHold)
	t := time.NewTimer(b.cfg.Duration)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// traffic runs the senders for the duration, then waits for the deliveries in flight.
func (b *bench) traffic(ctx context.Context, rep *Report) {
	b.pickSenders()
	rep.Senders = len(b.senders)
	if h := b.cfg.testHookRunning; h != nil {
		h(b)
	}
	start := time.Now()
	end := start.Add(b.cfg.Duration)
	b.deadln.Store(end.UnixNano())
	b.phase.Store(phaseRun)
	sendCtx, stopSending := context.WithCancel(ctx)
	defer stopSending()
	var wg sync.WaitGroup
	if len(b.senders) > 0 {
		period := time.Duration(float64(time.Second) / b.cfg.Rate)
		for i, c := range b.senders {
			first := start.Add(period * time.Duration(i) / time.Duration(len(b.senders)))
			wg.Go(func() { b.send(sendCtx, i, c, first, end, period) })
		}
	}
	t := time.NewTimer(b.cfg.Duration)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()
	window := time.Since(start)
	rep.DeliveredInWindow = b.delivered()
	rep.WindowSeconds = round3(window.Seconds())
	if window > 0 {
		rep.DeliveriesPerSec = round3(float64(rep.DeliveredInWindow) / window.Seconds())
	}
	stopSending()
	wg.Wait()

	// Drain: wait for everything sent to arrive, or for the drain time to pass.
	drain := b.cfg.Drain
	if ctx.Err() != nil {
		drain = min(drain, time.Second) // interrupted: be quick about it
	}
	deadline := time.Now().Add(drain)
	b.deadln.Store(deadline.UnixNano())
	b.phase.Store(phaseDrain)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !b.allDelivered() && time.Now().Before(deadline) {
		<-tick.C
	}
}

// send is one sender: it sends at the rate, on a fixed schedule from first (no drift, no
// jitter), until end. A slot missed by more than a period (a write blocked) is skipped.
func (b *bench) send(ctx context.Context, idx int, c *client, first, end time.Time, period time.Duration) {
	eol := byte('\n')
	if c.pty {
		eol = '\r' // a terminal sends CR for Enter
	}
	msg := make([]byte, 0, max(b.cfg.Size, 64)+1)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	seq := 0
	for slot := int64(0); ; slot++ {
		at := first.Add(time.Duration(slot) * period)
		if !at.Before(end) {
			return
		}
		if d := time.Until(at); d > 0 {
			t.Reset(d)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		if ctx.Err() != nil || c.dropped.Load() {
			return
		}
		now := time.Now()
		if late := now.Sub(at); late >= period {
			skip := int64(late / period)
			b.skipped.Add(skip)
			slot += skip
			if !first.Add(time.Duration(slot) * period).Before(end) {
				return
			}
		}
		msg = appendMessage(msg[:0], b.runID, idx, seq, now.UnixNano(), b.cfg.Size)
		msg = append(msg, eol)
		if _, err := c.w.Write(msg); err != nil {
			return // the reader reports the connection's end
		}
		seq++
		c.sent.Store(int64(seq))
	}
}

// allDelivered reports whether every client still in the room has every message sent by a
// sender still in its room (and PTY senders their own echoes).
func (b *bench) allDelivered() bool {
	for _, r := range b.live {
		if r.dropped.Load() {
			continue
		}
		me := r.senderIdx.Load()
		for _, s := range b.roomSenders[r.room] {
			sc := b.senders[s]
			if sc.dropped.Load() {
				continue
			}
			sent := sc.sent.Load()
			if int32(s) == me {
				if r.echo && int64(r.echoNext.Load()) < sent {
					return false
				}
				continue
			}
			if int64(r.pairs[s].count.Load()) < sent {
				return false
			}
		}
	}
	return true
}

// delivered is the number of deliveries so far.
func (b *bench) delivered() int64 {
	var n int64
	for i := range b.shards {
		sh := &b.shards[i]
		sh.mu.Lock()
		n += sh.delivered
		sh.mu.Unlock()
	}
	return n
}

// teardown closes every connection, in parallel, and waits for the readers to finish.
func (b *bench) teardown() {
	b.closing.Store(true)
	work := make(chan *client)
	var wg sync.WaitGroup
	for range min(16, max(len(b.live), 1)) {
		wg.Go(func() {
			for c := range work {
				_ = c.closer.Close()
			}
		})
	}
	for _, c := range b.live {
		work <- c
	}
	close(work)
	wg.Wait()
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for _, c := range b.live {
		select {
		case <-c.done:
		case <-guard.C:
			return // a reader that never ends must not hang the report
		}
	}
}

// tally computes the report's delivery figures once the readers are done, room by room: the
// run's figures are the rooms' sums.
//
// A receiver expects every message of every other sender in its room, and nothing from any
// other room; a PTY sender also gets its own back, counted as echoes. A client the server
// dropped is excluded from then on: from each sender it expects messages only up to the last one
// it received, and what followed is put down to the drop, not counted as lost. Likewise a sender
// that was dropped is only expected to have sent what someone received.
func (b *bench) tally(rep *Report) {
	// What each sender is expected to have sent.
	sent := make([]int64, len(b.senders))
	for s, sc := range b.senders {
		sent[s] = sc.sent.Load()
		if sc.dropped.Load() {
			var seen int64
			for _, r := range b.live {
				seen = max(seen, int64(r.pairs[s].next.Load()))
			}
			sent[s] = min(sent[s], seen)
		}
	}
	rooms := make([]RoomFigures, b.nRooms)
	for k, name := range b.roomNames {
		rooms[k].Room = name
	}
	var split [2]NodeSplit // by sameNode, crossNode
	rep.NodeClients = make([]int, max(b.nNodes, 1))
	for _, r := range b.live {
		rf := &rooms[r.room]
		rf.Clients++
		rep.NodeClients[r.node]++
		me := int(r.senderIdx.Load())
		if me >= 0 {
			rf.Senders++
			rf.MessagesSent += b.senders[me].sent.Load()
			if r.echo {
				rep.EchoesExpected += sent[me]
			}
		}
		for _, s := range b.roomSenders[r.room] {
			if s == me {
				continue
			}
			p := &r.pairs[s]
			exp := sent[s]
			if r.dropped.Load() {
				exp = min(exp, int64(p.next.Load()))
			}
			got := int64(p.count.Load())
			rf.Expected += exp
			rf.Received += got
			rf.Lost += max(exp-got, 0)
			ns := &split[b.whereReceived(r, s)]
			ns.Expected += exp
			ns.Received += got
			ns.Lost += max(exp-got, 0)
		}
	}
	var h histogram
	var splitHist [2]histogram
	for k := range rooms {
		rf := &rooms[k]
		var rh histogram
		for i := k * b.perRoom; i < (k+1)*b.perRoom; i++ {
			sh := &b.shards[i]
			sh.mu.Lock()
			for w := range sh.hist {
				rh.merge(&sh.hist[w])
				splitHist[w].merge(&sh.hist[w])
			}
			rf.Foreign += sh.foreign
			rep.Duplicates += sh.duplicates
			rep.OutOfOrder += sh.outOfOrder
			rep.Echoes += sh.echoes
			sh.mu.Unlock()
		}
		rf.LatencyP50 = ms(rh.percentile(50))
		rf.LatencyP99 = ms(rh.percentile(99))
		rf.LatencyMax = ms(rh.percentile(100))
		h.merge(&rh)
		rep.MessagesSent += rf.MessagesSent
		rep.Expected += rf.Expected
		rep.Received += rf.Received
		rep.Lost += rf.Lost
		rep.Foreign += rf.Foreign
	}
	if b.roomNames != nil {
		rep.RoomFigures = rooms
	}
	rep.SendsSkipped = b.skipped.Load()
	rep.RateLimitLines = b.slowDowns.Load()
	rep.LatencyP50 = ms(h.percentile(50))
	rep.LatencyP90 = ms(h.percentile(90))
	rep.LatencyP99 = ms(h.percentile(99))
	rep.LatencyMax = ms(h.percentile(100))
	for w := range split {
		split[w].setLatency(&splitHist[w])
	}
	rep.SameNode, rep.CrossNode = split[sameNode], split[crossNode]

	rep.Drops = []Drop{}
	for _, c := range b.live {
		if !c.dropped.Load() {
			continue
		}
		rep.Dropped++
		if len(rep.Drops) < maxDropsListed {
			b.noticeMu.Lock()
			notice := b.notices[c.name]
			b.noticeMu.Unlock()
			rep.Drops = append(rep.Drops, Drop{
				Name:      c.name,
				Transport: c.transport.String(),
				AtSeconds: round3(c.dropAt.Seconds()),
				Error:     c.dropErr,
				LastLine:  c.lastLine(),
				Notice:    notice,
			})
		}
	}
	slices.SortFunc(rep.Drops, func(x, y Drop) int {
		return cmp.Or(cmp.Compare(x.AtSeconds, y.AtSeconds), cmp.Compare(x.Name, y.Name))
	})
}

// whereReceived says whether receiver r is on sender s's node (sameNode) or not (crossNode).
func (b *bench) whereReceived(r *client, s int) int {
	if b.senderNode[s].Load() == r.node {
		return sameNode
	}
	return crossNode
}

// maxDropsListed bounds the report's list of dropped clients (clients_dropped counts them all).
const maxDropsListed = 100

func ms(us int64) float64 { return round3(float64(us) / 1000) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/room"
	"chatd/sshd"
	"chatd/tcp"
	"chatd/web"
)

// hangGuard only keeps a broken test from hanging; nothing waits for it on the way to passing.
const hangGuard = 20 * time.Second

// testChatd is a real room with its SSH, TCP and web servers on loopback ports.
type testChatd struct {
	sshAddr, tcpAddr, wsAddr string // with several listeners each, their addresses separated by commas
	tcpConns, wsConns        *recordingListener
	// Every listener, by transport, in the order of the addresses.
	listeners [nTransports][]*recordingListener
}

// startChatd runs a room, an SSH server, a TCP server and a web server in-process until the
// test ends, with no limit on the rate of messages, as for a load test (--msg-rate 0).
func startChatd(t *testing.T) *testChatd {
	t.Helper()
	return startChatdWith(t, room.Config{MsgRate: -1})
}

func startChatdWith(t *testing.T, rcfg room.Config) *testChatd {
	t.Helper()
	return startChatdNodes(t, rcfg, 1)
}

// startChatdNodes is startChatdWith with each server on n listeners: n addresses into one room,
// which chatbench takes for n nodes (of a cluster that delivers everything everywhere).
func startChatdNodes(t *testing.T, rcfg room.Config, n int) *testChatd {
	t.Helper()
	rcfg.ParseKey = sshd.ParseAuthorizedKey
	rm, err := room.New(rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	scfg := sshd.DefaultConfig()
	scfg.HostSigners = []gossh.Signer{signer}
	sshSrv, err := sshd.New(scfg, rm, nil)
	if err != nil {
		t.Fatal(err)
	}
	tcfg := tcp.DefaultConfig()
	tcfg.Addr = "127.0.0.1:0"
	tcpSrv, err := tcp.New(tcfg, rm, nil)
	if err != nil {
		t.Fatal(err)
	}
	wcfg := web.DefaultConfig()
	wcfg.Addr = "127.0.0.1:0"
	webSrv, err := web.New(wcfg, rm, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &testChatd{}
	serves := [nTransports]func(net.Listener) error{overSSH: sshSrv.Serve, overTCP: tcpSrv.Serve, overWS: webSrv.Serve}
	served := make(chan error, nTransports*n)
	for tr, serve := range serves {
		var addrs []string
		for range n {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			rl := &recordingListener{Listener: ln}
			s.listeners[tr] = append(s.listeners[tr], rl)
			addrs = append(addrs, ln.Addr().String())
			go func() { served <- serve(rl) }()
		}
		switch transport(tr) {
		case overSSH:
			s.sshAddr = strings.Join(addrs, ",")
		case overTCP:
			s.tcpAddr = strings.Join(addrs, ",")
		default:
			s.wsAddr = strings.Join(addrs, ",")
		}
	}
	s.tcpConns, s.wsConns = s.listeners[overTCP][0], s.listeners[overWS][0]
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := rm.Shutdown(ctx); err != nil {
			t.Errorf("room shutdown: %v", err)
		}
		if err := sshSrv.Shutdown(ctx); err != nil {
			t.Errorf("ssh shutdown: %v", err)
		}
		if err := tcpSrv.Shutdown(ctx); err != nil {
			t.Errorf("tcp shutdown: %v", err)
		}
		if err := webSrv.Shutdown(ctx); err != nil {
			t.Errorf("web shutdown: %v", err)
		}
		for range nTransports * n {
			select {
			case <-served:
			case <-ctx.Done():
				t.Error("Serve did not return")
				return
			}
		}
	})
	return s
}

// recordingListener keeps the server's end of every connection it accepts.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// accepted is how many connections the listener accepted.
func (l *recordingListener) accepted() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// serverEnd returns the server's end of the connection whose client end is at addr.
func (l *recordingListener) serverEnd(addr string) net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.RemoteAddr().String() == addr {
			return c
		}
	}
	return nil
}

func (s *testChatd) config(sshClients, tcpClients, senders int) Config {
	cfg := DefaultConfig()
	cfg.SSHAddr, cfg.TCPAddr, cfg.WSAddr = s.sshAddr, s.tcpAddr, s.wsAddr
	cfg.SSHClients, cfg.TCPClients = sshClients, tcpClients
	cfg.Senders = senders
	cfg.Rate = 20
	cfg.Duration = time.Second
	cfg.Drain = hangGuard // the drain ends as soon as everything has arrived
	cfg.ConnectTimeout = hangGuard
	return cfg
}

func runBench(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Interrupted {
		t.Error("interrupted")
	}
	return rep
}

// checkDeliveries checks the report's delivery figures: everything sent to n receivers each.
func checkDeliveries(t *testing.T, rep *Report, receiversPerMessage int64) {
	t.Helper()
	if rep.MessagesSent == 0 {
		t.Fatal("nothing was sent")
	}
	if want := rep.MessagesSent * receiversPerMessage; rep.Expected != want {
		t.Errorf("deliveries_expected = %d, want %d (%d messages × %d receivers)", rep.Expected, want, rep.MessagesSent, receiversPerMessage)
	}
	if rep.Received != rep.Expected || rep.Lost != 0 {
		t.Errorf("received %d of %d expected, lost %d", rep.Received, rep.Expected, rep.Lost)
	}
	if rep.Duplicates != 0 || rep.OutOfOrder != 0 {
		t.Errorf("%d duplicates, %d out of order", rep.Duplicates, rep.OutOfOrder)
	}
	if rep.LatencyP50 <= 0 || rep.LatencyP50 > rep.LatencyP90 || rep.LatencyP90 > rep.LatencyP99 || rep.LatencyP99 > rep.LatencyMax {
		t.Errorf("latency percentiles not positive and ordered: p50 %v, p90 %v, p99 %v, max %v", rep.LatencyP50, rep.LatencyP90, rep.LatencyP99, rep.LatencyMax)
	}
	if rep.DeliveredInWindow <= 0 || rep.DeliveriesPerSec <= 0 || rep.WindowSeconds <= 0 {
		t.Errorf("window: %d deliveries, %v/s, %v s", rep.DeliveredInWindow, rep.DeliveriesPerSec, rep.WindowSeconds)
	}
}

func TestRunSSHAndTCP(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(6, 4, 3)
	cfg.PIDs = []int{os.Getpid()} // the server runs in this process
	cfg.Progress = &syncBuffer{}
	rep := runBench(t, cfg)

	if rep.Connected != 10 || rep.Failed != 0 || rep.Dropped != 0 {
		t.Fatalf("connected %d, failed %d (%v), dropped %d (%v)", rep.Connected, rep.Failed, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	if rep.ConnectRate <= 0 || rep.ConnectSeconds <= 0 {
		t.Errorf("connect: %v s, %v conn/s", rep.ConnectSeconds, rep.ConnectRate)
	}
	if rep.Senders != 3 {
		t.Errorf("senders = %d, want 3", rep.Senders)
	}
	checkDeliveries(t, rep, 9)
	// The senders are ssh, tcp, ssh: two PTY sessions, which get their own messages back.
	if rep.EchoesExpected == 0 || rep.EchoesExpected >= rep.MessagesSent {
		t.Errorf("echoes_expected = %d of %d messages, want the two SSH senders' share", rep.EchoesExpected, rep.MessagesSent)
	}
	if rep.Echoes != rep.EchoesExpected {
		t.Errorf("echoes = %d, want %d", rep.Echoes, rep.EchoesExpected)
	}
	if rep.ServerCPUConnect == nil || rep.ServerRSSPerSession == nil || *rep.ServerRSSBefore <= 0 || rep.ServerError != "" {
		t.Errorf("server figures missing: %+v", rep)
	}

	// The JSON report has every documented key, and the package comment documents every key.
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Count(buf.String(), "\n") != 1 {
		t.Errorf("the JSON report is not one line:\n%s", buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("the JSON report does not parse: %v\n%s", err, buf.String())
	}
	doc, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range jsonKeys(reflect.TypeFor[Report]()) {
		if _, ok := got[key]; !ok {
			t.Errorf("JSON report has no %q", key)
		}
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Report](), reflect.TypeFor[ErrorCount](), reflect.TypeFor[Drop](), reflect.TypeFor[RoomFigures](), reflect.TypeFor[NodeSplit](), reflect.TypeFor[Server]()} {
		for _, key := range jsonKeys(typ) {
			if !bytes.Contains(doc, []byte(key)) {
				t.Errorf("the package comment does not document %q", key)
			}
		}
	}
	for _, key := range []string{"deliveries_expected", "deliveries_received", "deliveries_lost", "latency_p99_ms", "connect_rate", "server_rss_per_session_kib", "echoes", "drops"} {
		if _, ok := got[key]; !ok {
			t.Errorf("JSON report has no %q", key)
		}
	}
	if got["deliveries_received"].(float64) != float64(rep.Received) {
		t.Errorf("deliveries_received = %v, want %d", got["deliveries_received"], rep.Received)
	}

	buf.Reset()
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10 connected, 0 failed", " 0 lost", "p99 "} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the text report has no %q:\n%s", want, buf.String())
		}
	}
}

// Several nodes: each server listens twice, and chatbench takes the two addresses for two nodes.
// The clients of every transport are dealt to both, and everything reaches everyone, counted
// as received on the sender's node or on the other.
func TestRunNodes(t *testing.T) {
	srv := startChatdNodes(t, room.Config{MsgRate: -1}, 2)
	cfg := srv.config(4, 4, 4)
	cfg.WSClients = 2
	pid := os.Getpid()
	cfg.PIDs = []int{pid, pid} // both "nodes" are this process
	rep := runBench(t, cfg)
	if rep.Connected != 10 || rep.Failed != 0 || rep.Dropped != 0 {
		t.Fatalf("connected %d, failed %d (%v), dropped %d (%v)", rep.Connected, rep.Failed, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	for tr, want := range []int{overSSH: 2, overTCP: 2, overWS: 1} {
		for k, ln := range srv.listeners[tr] {
			if got := ln.accepted(); got != want {
				t.Errorf("%s node %d accepted %d connections, want %d", transport(tr), k, got, want)
			}
		}
	}
	if rep.Nodes != 2 || !slices.Equal(rep.NodeClients, []int{5, 5}) {
		t.Errorf("nodes %d, clients %v; want 2, [5 5]", rep.Nodes, rep.NodeClients)
	}
	checkDeliveries(t, rep, 9)
	same, cross := rep.SameNode, rep.CrossNode
	if same.Received == 0 || cross.Received == 0 || same.Received+cross.Received != rep.Received || same.Expected+cross.Expected != rep.Expected || same.Lost+cross.Lost != 0 {
		t.Errorf("same node %+v, cross node %+v: want both, adding up to the run's %d of %d", same, cross, rep.Received, rep.Expected)
	}
	// Each sender's 8 receivers: 4 on its node, 5 on the other.
	if same.Expected*5 != cross.Expected*4 {
		t.Errorf("same node expected %d, cross node %d: want 4 to 5", same.Expected, cross.Expected)
	}
	if cross.LatencyP50 <= 0 || cross.LatencyP99 < cross.LatencyP50 || rep.LatencyMax != max(same.LatencyMax, cross.LatencyMax) {
		t.Errorf("latency: run max %v, same node %+v, cross node %+v", rep.LatencyMax, same, cross)
	}
	if rep.ServerPID != pid || len(rep.Servers) != 2 || rep.Servers[1].PID != pid || rep.ServerRSSBefore == nil || *rep.ServerRSSBefore != *rep.Servers[0].RSSBefore+*rep.Servers[1].RSSBefore {
		t.Errorf("server figures: pid %d, %+v, rss before %v", rep.ServerPID, rep.Servers, rep.ServerRSSBefore)
	}
}

// WebSocket clients (guests of the web transport) send and receive beside SSH and TCP ones: the
// senders take the transports in turn, every line reaches everyone, and WebSocket senders get
// their own lines back, as PTY sessions do.
func TestRunWebSocket(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(2, 2, 6)
	cfg.WSClients = 4
	cfg.PIDs = []int{os.Getpid()}
	cfg.Settle = 10 * time.Millisecond
	rep := runBench(t, cfg)
	if rep.Connected != 8 || rep.Failed != 0 || rep.Dropped != 0 {
		t.Fatalf("connected %d, failed %d (%v), dropped %d (%v)", rep.Connected, rep.Failed, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	if rep.ClientsWS != 4 || rep.WSAddr != srv.wsAddr || rep.Senders != 6 {
		t.Errorf("clients_ws %d at %q, senders %d", rep.ClientsWS, rep.WSAddr, rep.Senders)
	}
	checkDeliveries(t, rep, 7)
	// The senders are ssh, tcp, ws, ssh, tcp, ws: four of them get their own lines back.
	if rep.Echoes != rep.EchoesExpected || rep.EchoesExpected == 0 || rep.EchoesExpected >= rep.MessagesSent {
		t.Errorf("echoes %d of %d expected, %d messages: want the SSH and WebSocket senders' share", rep.Echoes, rep.EchoesExpected, rep.MessagesSent)
	}
	if rep.ServerRSSPerSession == nil {
		t.Error("no RSS per session")
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"4 websocket at " + srv.wsAddr, "settle       10ms after the last join"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the text report has no %q:\n%s", want, buf.String())
		}
	}
}

// WebSocket clients alone, in rooms: each line reaches its room's clients and no other, though
// every client is in the default room too and gets its lines as events of that room.
func TestRunWebSocketRooms(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(0, 0, 6)
	cfg.SSHAddr = ""
	cfg.WSClients = 6
	cfg.Rooms = 2
	cfg.testHookRunning = func(b *bench) {
		// Someone in the default room says what reads like sender 0's messages.
		witness := joinTCP(t, srv.tcpAddr, "witness")
		intruder := joinTCP(t, srv.tcpAddr, "intruder")
		last := string(appendMessage(nil, b.runID, 0, 0, time.Now().UnixNano(), 64))
		if _, err := io.WriteString(intruder, last+"\n"); err != nil {
			t.Fatal(err)
		}
		witness.waitLine(t, "intruder: "+last)
	}
	rep := runBench(t, cfg)
	if rep.Connected != 6 || rep.Dropped != 0 {
		t.Fatalf("connected %d (%v), dropped %d (%v)", rep.Connected, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	checkDeliveries(t, rep, 2)
	if rep.Foreign != 0 || len(rep.RoomFigures) != 2 {
		t.Errorf("foreign %d, rooms %+v", rep.Foreign, rep.RoomFigures)
	}
	if rep.Echoes != rep.EchoesExpected || rep.EchoesExpected != rep.MessagesSent {
		t.Errorf("echoes %d of %d, %d sent", rep.Echoes, rep.EchoesExpected, rep.MessagesSent)
	}
}

// A WebSocket client the server refuses fails with the server's error line.
func TestRunWebSocketRefused(t *testing.T) {
	srv := startChatd(t)
	joinTCP(t, srv.tcpAddr, "taken-w0") // the first WebSocket client's name, online already
	cfg := srv.config(0, 0, 1)
	cfg.SSHAddr = ""
	cfg.WSClients = 2
	cfg.NamePrefix = "taken"
	cfg.Duration = 0
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Connected != 1 || rep.Failed != 1 || len(rep.ConnectErrors) != 1 {
		t.Fatalf("connected %d, failed %d: %+v", rep.Connected, rep.Failed, rep.ConnectErrors)
	}
	if e := rep.ConnectErrors[0].Error; !strings.HasPrefix(e, "waiting to join: error: ") || !strings.Contains(e, "NAME") {
		t.Errorf("connect error %q, want the server's error line about NAME", e)
	}
}

// A WebSocket session held idle, as for the memory figure.
func TestRunHoldWebSocket(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(0, 0, 0)
	cfg.SSHAddr = ""
	cfg.WSClients = 3
	cfg.Hold = true
	cfg.Duration = 100 * time.Millisecond
	rep := runBench(t, cfg)
	if rep.Connected != 3 || rep.MessagesSent != 0 || rep.Dropped != 0 {
		t.Errorf("connected %d (%v), sent %d, dropped %d", rep.Connected, rep.ConnectErrors, rep.MessagesSent, rep.Dropped)
	}
}

// jsonKeys returns the JSON keys of a struct's fields.
func jsonKeys(typ reflect.Type) []string {
	var keys []string
	for f := range typ.Fields() {
		if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	return keys
}

func TestRunPlainSSHEverybodySends(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(3, 2, 5)
	cfg.PTY = false
	cfg.Size = 200
	rep := runBench(t, cfg)
	if rep.Connected != 5 || rep.Dropped != 0 {
		t.Fatalf("connected %d (%v), dropped %d (%v)", rep.Connected, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	checkDeliveries(t, rep, 4)
	if rep.Echoes != 0 || rep.EchoesExpected != 0 {
		t.Errorf("echoes %d of %d without a PTY", rep.Echoes, rep.EchoesExpected)
	}
	if rep.ServerCPUConnect != nil || rep.ServerRSSBefore != nil {
		t.Error("server figures without -pid")
	}
}

// A client the server disconnects is reported as dropped, and what it then misses is not lost.
func TestRunDroppedClient(t *testing.T) {
	for _, tr := range []transport{overTCP, overWS} {
		t.Run(tr.String(), func(t *testing.T) { testDroppedClient(t, tr) })
	}
}

func testDroppedClient(t *testing.T, tr transport) {
	srv := startChatd(t)
	cfg := srv.config(2, 3, 2)
	conns := srv.tcpConns
	if tr == overWS {
		cfg.TCPClients, cfg.WSClients, conns = 0, 3, srv.wsConns
	}
	var victim *client
	cfg.testHookRunning = func(b *bench) {
		for _, c := range b.live {
			if c.transport == tr && c.senderIdx.Load() < 0 {
				victim = c
				break
			}
		}
		end := conns.serverEnd(victim.netConn.LocalAddr().String())
		if end == nil {
			t.Error("no server end for the victim's connection")
			return
		}
		end.Close()
		select {
		case <-victim.done:
		case <-time.After(hangGuard):
			t.Error("the victim's reader did not see its connection end")
		}
	}
	rep := runBench(t, cfg)
	if rep.Connected != 5 {
		t.Fatalf("connected %d: %v", rep.Connected, rep.ConnectErrors)
	}
	if rep.Dropped != 1 || len(rep.Drops) != 1 {
		t.Fatalf("dropped %d: %+v", rep.Dropped, rep.Drops)
	}
	d := rep.Drops[0]
	if d.Name != victim.name || d.Transport != tr.String() || d.Error == "" {
		t.Errorf("drop = %+v, want %s over %s with an error", d, victim.name, tr)
	}
	// "NAME left", or "NAME left #lobby" from a server with rooms.
	if d.Notice != "" && d.Notice != victim.name+" left" && !strings.HasPrefix(d.Notice, victim.name+" left #") {
		t.Errorf("notice = %q, want %q", d.Notice, victim.name+" left")
	}
	// Each message reaches the 3 clients that are neither its sender nor the dropped one.
	checkDeliveries(t, rep, 3)
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), victim.name+" ("+tr.String()+")") {
		t.Errorf("the text report does not name the dropped client:\n%s", buf.String())
	}
}

// With -rooms, every message reaches the other clients of its room and nobody else's, and
// the default room's lines, which reach every client tagged with its name, are not counted.
func TestRunRooms(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(6, 4, 10) // rooms 0, 1, 2 of 4, 3 and 3 clients, 2 SSH and 1 or 2 TCP each
	cfg.Rooms = 3
	cfg.testHookRunning = func(b *bench) {
		// Someone in the default room says what reads like sender 0's messages: a receiver that
		// took them for its room's would count duplicates, or deliveries nobody sent.
		witness := joinTCP(t, srv.tcpAddr, "witness")
		intruder := joinTCP(t, srv.tcpAddr, "intruder")
		var last string
		for _, seq := range []int{0, 1, 1000} {
			last = string(appendMessage(nil, b.runID, 0, seq, time.Now().UnixNano(), 64))
			if _, err := io.WriteString(intruder, last+"\n"); err != nil {
				t.Fatal(err)
			}
		}
		// Everyone in the default room has them queued before anything the run sends.
		witness.waitLine(t, "intruder: "+last)
	}
	rep := runBench(t, cfg)
	if rep.Connected != 10 || rep.Failed != 0 || rep.Dropped != 0 {
		t.Fatalf("connected %d, failed %d (%v), dropped %d (%v)", rep.Connected, rep.Failed, rep.ConnectErrors, rep.Dropped, rep.Drops)
	}
	if rep.Rooms != 3 || len(rep.RoomFigures) != 3 {
		t.Fatalf("rooms %d, figures %+v", rep.Rooms, rep.RoomFigures)
	}
	var sent, expected int64
	for k, rf := range rep.RoomFigures {
		clients := []int{4, 3, 3}[k]
		if rf.Room != roomName(rep.RunID, k) || rf.Clients != clients || rf.Senders != clients {
			t.Errorf("room %d: %+v, want %s with %d clients, all sending", k, rf, roomName(rep.RunID, k), clients)
		}
		if rf.MessagesSent == 0 || rf.Expected != rf.MessagesSent*int64(clients-1) || rf.Received != rf.Expected || rf.Lost != 0 || rf.Foreign != 0 {
			t.Errorf("%s: sent %d, expected %d (want %d), received %d, lost %d, foreign %d",
				rf.Room, rf.MessagesSent, rf.Expected, rf.MessagesSent*int64(clients-1), rf.Received, rf.Lost, rf.Foreign)
		}
		if rf.LatencyP50 <= 0 || rf.LatencyP99 < rf.LatencyP50 {
			t.Errorf("%s: latency p50 %v, p99 %v", rf.Room, rf.LatencyP50, rf.LatencyP99)
		}
		sent += rf.MessagesSent
		expected += rf.Expected
	}
	if rep.MessagesSent != sent || rep.Expected != expected || rep.Received != expected || rep.Lost != 0 || rep.Foreign != 0 {
		t.Errorf("run: sent %d (rooms %d), expected %d (rooms %d), received %d, lost %d, foreign %d",
			rep.MessagesSent, sent, rep.Expected, expected, rep.Received, rep.Lost, rep.Foreign)
	}
	if rep.Duplicates != 0 || rep.OutOfOrder != 0 {
		t.Errorf("%d duplicates, %d out of order", rep.Duplicates, rep.OutOfOrder)
	}
	if rep.Echoes != rep.EchoesExpected || rep.EchoesExpected == 0 {
		t.Errorf("echoes %d of %d", rep.Echoes, rep.EchoesExpected)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rooms        3 of 3-4 clients", "foreign      0", "no room lost anything"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the text report has no %q:\n%s", want, buf.String())
		}
	}
}

// A client whose room join the server refuses fails with what the server said, its room named
// #ROOM so that the same refusal of every client is counted once; the others run.
func TestRunRoomRefused(t *testing.T) {
	srv := startChatdWith(t, room.Config{MsgRate: -1, RoomsPerHour: 1}) // one new room from this address
	cfg := srv.config(0, 4, 4)
	cfg.SSHAddr = ""
	cfg.ConnectWorkers = 1 // t0 creates room 0, then t1 is refused room 1
	cfg.Rooms = 2
	rep := runBench(t, cfg)
	if rep.Connected != 2 || rep.Failed != 2 || len(rep.ConnectErrors) != 1 || rep.ConnectErrors[0].Count != 2 {
		t.Fatalf("connected %d, failed %d: %+v", rep.Connected, rep.Failed, rep.ConnectErrors)
	}
	if e := rep.ConnectErrors[0].Error; !strings.HasPrefix(e, "joining #ROOM: error: ") || strings.Contains(e, rep.RunID) {
		t.Errorf("connect error %q, want the server's error line for #ROOM", e)
	}
	checkDeliveries(t, rep, 1) // room 0's two clients
}

// joinTCP connects to the TCP server as name and waits for its welcome.
func joinTCP(t *testing.T, addr, name string) *lineConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(hangGuard))
	lc := &lineConn{Conn: nc, r: bufio.NewReader(nc)}
	lc.waitLine(t, "* welcome to chatd: what is your name?")
	if _, err := io.WriteString(nc, name+"\n"); err != nil {
		t.Fatal(err)
	}
	lc.waitPrefix(t, "* welcome to chatd, "+name+"!")
	return lc
}

// lineConn reads a TCP connection's lines.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

// waitLine reads until the line want.
func (c *lineConn) waitLine(t *testing.T, want string) {
	t.Helper()
	c.waitFor(t, want, func(line string) bool { return line == want })
}

func (c *lineConn) waitPrefix(t *testing.T, prefix string) {
	t.Helper()
	c.waitFor(t, prefix+"...", func(line string) bool { return strings.HasPrefix(line, prefix) })
}

func (c *lineConn) waitFor(t *testing.T, what string, ok func(string) bool) {
	t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for %q: %v", what, err)
		}
		if ok(strings.TrimRight(line, "\r\n")) {
			return
		}
	}
}

// The server's rate limiter delays the senders' lines and tells them so: the report counts it.
func TestRunRateLimited(t *testing.T) {
	srv := startChatdWith(t, room.Config{MsgRate: 10, MsgBurst: 1})
	cfg := srv.config(1, 2, 2)
	rep := runBench(t, cfg)
	if rep.RateLimitLines == 0 {
		t.Error("rate_limit_lines = 0 with senders at twice the server's rate")
	}
	checkDeliveries(t, rep, 2) // delayed, not lost
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "--msg-rate 0") {
		t.Errorf("the text report has no hint about --msg-rate:\n%s", buf.String())
	}
}

func TestRunHold(t *testing.T) {
	srv := startChatd(t)
	cfg := srv.config(3, 1, 2)
	cfg.Hold = true
	cfg.Duration = 100 * time.Millisecond
	rep := runBench(t, cfg)
	if rep.Connected != 4 || rep.MessagesSent != 0 || rep.Expected != 0 {
		t.Errorf("connected %d, sent %d, expected %d", rep.Connected, rep.MessagesSent, rep.Expected)
	}
}

func TestRunNothingConnects(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := DefaultConfig()
	cfg.SSHAddr, cfg.SSHClients, cfg.TCPAddr, cfg.TCPClients = addr, 2, addr, 1
	rep, err := Run(context.Background(), cfg)
	if !errors.Is(err, errNoneConnected) {
		t.Fatalf("Run: %v, want errNoneConnected", err)
	}
	if rep.Connected != 0 || rep.Failed != 3 || len(rep.ConnectErrors) == 0 || rep.ConnectErrors[0].Count != 3 {
		t.Errorf("connected %d, failed %d, errors %+v", rep.Connected, rep.Failed, rep.ConnectErrors)
	}
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-ssh", addr, "-clients", "1", "-q"}, &out, &errOut); code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, errOut.String())
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-clients", "-1"}, 2},
		{[]string{"-rate", "0"}, 2},
		{[]string{"-senders", "-1"}, 2},
		{[]string{"-size", "1001"}, 2},
		{[]string{"-ssh", "", "-tcp-clients", "0"}, 2},
		{[]string{"-tcp", "", "-tcp-clients", "3"}, 2},
		{[]string{"-ws", "", "-ws-clients", "3"}, 2},
		{[]string{"-ws-clients", "-1"}, 2},
		{[]string{"-settle", "-1s"}, 2},
		{[]string{"-ssh", "", "-ws-clients", "2", "-rooms", "3"}, 2},
		{[]string{"-name-prefix", "-x"}, 2},
		{[]string{"-name-prefix", strings.Repeat("a", 30)}, 2},
		{[]string{"-rooms", "-1"}, 2},
		{[]string{"-clients", "2", "-rooms", "3"}, 2},
		{[]string{"-bogus"}, 2},
		{[]string{"-pid", "12,x"}, 2},
		{[]string{"-pid", "-3"}, 2},
		{[]string{"-pid", "12,0"}, 2},
		{[]string{"-ssh", "a:1,b:1", "-tcp", "a:2", "-tcp-clients", "1"}, 2},
		{[]string{"-ssh", "a:1,,b:1"}, 2},
		{[]string{"extra"}, 2},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), tc.args, &out, &errOut); code != tc.code {
			t.Errorf("%q: exit status %d, want %d; stderr:\n%s", tc.args, code, tc.code, errOut.String())
		}
	}
	cfg, asJSON, quiet, err := parseFlags([]string{"-ssh", "", "-tcp-clients", "5", "-senders", "5", "-rooms", "5", "-json", "-q", "-pty=false"}, &bytes.Buffer{})
	if err != nil || !asJSON || !quiet || cfg.PTY || cfg.TCPClients != 5 || cfg.Rooms != 5 {
		t.Errorf("parseFlags: %+v %v %v %v", cfg, asJSON, quiet, err)
	}
	cfg, _, _, err = parseFlags([]string{"-ssh", "a:1,b:1", "-tcp", "a:2,b:2", "-tcp-clients", "2", "-pid", "12,34"}, &bytes.Buffer{})
	if err != nil || cfg.SSHAddr != "a:1,b:1" || cfg.TCPAddr != "a:2,b:2" || !slices.Equal(cfg.PIDs, []int{12, 34}) {
		t.Errorf("parseFlags with two nodes: %+v %v", cfg, err)
	}
	if cfg, _, _, err = parseFlags([]string{"-pid", "0"}, &bytes.Buffer{}); err != nil || cfg.PIDs != nil {
		t.Errorf("-pid 0: %v %v, want no pid", cfg.PIDs, err)
	}
	cfg, _, _, err = parseFlags([]string{"-ssh", "", "-ws", "127.0.0.1:9", "-ws-clients", "7", "-hold", "-settle", "2s"}, &bytes.Buffer{})
	if err != nil || cfg.WSAddr != "127.0.0.1:9" || cfg.WSClients != 7 || !cfg.Hold || cfg.Settle != 2*time.Second {
		t.Errorf("parseFlags: %+v %v", cfg, err)
	}
}

// syncBuffer is a bytes.Buffer safe for the progress goroutine and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

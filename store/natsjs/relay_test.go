package natsjs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chatd/chat"
	"chatd/room"
	"chatd/store/natsjs/natstest"

	"github.com/nats-io/nuid"
)

// lines is a member's Output that keeps the lines written to it.
type lines struct {
	mu      sync.Mutex
	buf     strings.Builder
	closed  bool
	changed chan struct{} // closed and replaced on every write
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (o *lines) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, errors.New("closed")
	}
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *lines) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.closed = true
	return nil
}

func (o *lines) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.TrimSuffix(o.buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// messages are the lines that are someone's message ("name: text").
func (o *lines) messages() []string {
	var out []string
	for _, l := range o.all() {
		if name, _, ok := strings.Cut(l, ": "); ok && chat.ValidName(name) {
			out = append(out, l)
		}
	}
	return out
}

// waitFor waits until cond holds for the lines so far. The deadline only keeps a broken test
// from hanging.
func (o *lines) waitFor(t testing.TB, what string, cond func([]string) bool) []string {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		o.mu.Lock()
		ch := o.changed
		o.mu.Unlock()
		if ls := o.all(); cond(ls) {
			return ls
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got:\n%s", what, strings.Join(o.all(), "\n"))
		}
	}
}

func (o *lines) waitLine(t testing.TB, want string) {
	t.Helper()
	o.waitFor(t, fmt.Sprintf("%q", want), func(ls []string) bool { return slices.Contains(ls, want) })
}

// chatNode is one chatd node: its store, its relay and its hub, on a prefix it shares with the
// other nodes of a test.
type chatNode struct {
	store *Store
	relay *Relay
	hub   *room.Hub
}

// startNode starts a node on the NATS servers at urls, with the cluster's prefix. They stop,
// in order (hub, relay, store), when the test ends.
func startNode(t testing.TB, urls []string, prefix string, scfg Config) *chatNode {
	t.Helper()
	return startNodeWith(t, urls, prefix, scfg, room.Config{MsgRate: -1, WriteGap: -1})
}

// startNodeWith is startNode with the hub's settings (its store and relay are the node's).
func startNodeWith(t testing.TB, urls []string, prefix string, scfg Config, rcfg room.Config) *chatNode {
	t.Helper()
	scfg.URLs, scfg.Prefix = urls, prefix
	st, _ := openStore(t, "", scfg)
	rl, err := NewRelay(context.Background(), st, RelayConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rl.Close(); err != nil {
			t.Errorf("close relay: %v", err)
		}
	})
	rcfg.Store, rcfg.Relay = st, rl
	h, err := room.New(rcfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &chatNode{store: st, relay: rl, hub: h}
}

// twoChatNodes starts two nodes on one NATS server, one after the other (as chatd nodes start).
func twoChatNodes(t testing.TB, url string) (*chatNode, *chatNode) {
	t.Helper()
	prefix := "t" + nuid.Next()
	return startNode(t, []string{url}, prefix, Config{}), startNode(t, []string{url}, prefix, Config{})
}

func (n *chatNode) join(t testing.TB, name string, opts room.JoinOptions) (*room.Member, *lines) {
	t.Helper()
	out := newLines()
	m, err := n.hub.Join(name, out, opts)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	return m, out
}

// recentLines is the store's history of room as "name: text" lines.
func recentLines(t testing.TB, s *Store, room string) []string {
	t.Helper()
	msgs, err := s.Recent(room, 10_000)
	if err != nil {
		t.Fatalf("recent %s: %v", room, err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, m.From+": "+m.Text)
	}
	return out
}

// TestRelayAcrossNodes: a line said on node A reaches the room's members on node B, and on A
// the echo rules of one node hold: a session gets its own line back only if it asked for echo.
// Session IDs are per hub, so alice on A and bob on B have the same one: bob still gets
// alice's lines.
func TestRelayAcrossNodes(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	alice, aliceOut := a.join(t, "alice", room.JoinOptions{})           // no echo, like a bot
	carol, carolOut := a.join(t, "carol", room.JoinOptions{Echo: true}) // a terminal
	bob, bobOut := b.join(t, "bob", room.JoinOptions{})

	alice.Handle("hi from a")
	bobOut.waitLine(t, "alice: hi from a")
	carolOut.waitLine(t, "alice: hi from a")
	carol.Handle("carol here")
	carolOut.waitLine(t, "carol: carol here")
	bobOut.waitLine(t, "carol: carol here")
	bob.Handle("and bob on b")
	for _, out := range []*lines{aliceOut, carolOut} {
		out.waitLine(t, "bob: and bob on b")
	}
	// In one order, alice's own line would have come before bob's.
	if want := []string{"carol: carol here", "bob: and bob on b"}; !slices.Equal(aliceOut.messages(), want) {
		t.Errorf("alice (no echo) got %q, want %q", aliceOut.messages(), want)
	}
	if got := bobOut.messages(); !slices.Equal(got, []string{"alice: hi from a", "carol: carol here"}) {
		t.Errorf("bob (no echo) got %q", got)
	}
	if got := recentLines(t, b.store, "#lobby"); !slices.Equal(got, []string{"alice: hi from a", "carol: carol here", "bob: and bob on b"}) {
		t.Errorf("the history read on b is %q", got)
	}
	if st := a.relay.Stats(); st.Published != 2 || st.Delivered != 3 || st.Dropped != 0 {
		t.Errorf("a's relay stats %+v", st)
	}
}

// TestRelayOneOrder: many senders on both nodes at once; every member on both nodes gets the
// same sequence, each sender's lines in the order sent, and the store's history is that
// sequence, each line once: the hubs append nothing.
func TestRelayOneOrder(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	const perSender = 40
	var senders []*room.Member
	var outs []*lines
	for i := range 3 {
		for _, n := range []*chatNode{a, b} {
			side := "a"
			if n == b {
				side = "b"
			}
			m, out := n.join(t, fmt.Sprintf("%s%d", side, i), room.JoinOptions{Echo: true})
			senders = append(senders, m)
			outs = append(outs, out)
		}
	}
	_, aOut := a.join(t, "listener-a", room.JoinOptions{})
	_, bOut := b.join(t, "listener-b", room.JoinOptions{})
	outs = append(outs, aOut, bOut)

	var wg sync.WaitGroup
	for _, m := range senders {
		wg.Go(func() {
			for i := range perSender {
				m.Handle(fmt.Sprintf("%s %d", m.Name(), i))
			}
		})
	}
	wg.Wait()
	total := perSender * len(senders)
	for _, out := range outs {
		out.waitFor(t, "every line", func([]string) bool { return len(out.messages()) >= total })
	}
	want := aOut.messages()
	for i, out := range outs {
		if got := out.messages(); !slices.Equal(got, want) {
			t.Fatalf("receiver %d got another sequence:\n%q\nwant\n%q", i, got, want)
		}
	}
	next := map[string]int{}
	for _, l := range want {
		name, text, _ := strings.Cut(l, ": ")
		if text != fmt.Sprintf("%s %d", name, next[name]) {
			t.Fatalf("%q out of its sender's order (want #%d)", l, next[name])
		}
		next[name]++
	}
	for _, n := range []*chatNode{a, b} {
		if got := recentLines(t, n.store, "#lobby"); !slices.Equal(got, want) {
			t.Fatalf("the history has %d lines, want the %d delivered, in their order:\n%q", len(got), len(want), got)
		}
	}
}

// TestRelayTopicNotice: a topic set on A reaches B as a notice, in the room's order, and stays
// out of the history.
func TestRelayTopicNotice(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	op, _ := a.join(t, "alice", room.JoinOptions{Operator: true})
	_, bobOut := b.join(t, "bob", room.JoinOptions{})
	op.Handle("before")
	op.Handle("/topic Go \x1b[31mand\x1b[0m more :wave:")
	op.Handle("after")
	bobOut.waitLine(t, "alice: after")
	var got []string
	for _, l := range bobOut.all() {
		if strings.HasPrefix(l, "alice: ") || strings.Contains(l, "set the topic") {
			got = append(got, l)
		}
	}
	want := []string{"alice: before", "* alice set the topic of #lobby: Go and more 👋", "alice: after"}
	if !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	if got := recentLines(t, b.store, "#lobby"); !slices.Equal(got, []string{"alice: before", "alice: after"}) {
		t.Errorf("history %q: the notice must not be in it", got)
	}
}

// TestRelayRefusesHostileLines: what other publishers put on the rooms' subjects is checked:
// a line that is not JSON, of an unknown kind, from an invalid name, or a message on the
// notice subject is dropped; escape codes in a line's text never reach a member.
func TestRelayRefusesHostileLines(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	_, bobOut := b.join(t, "bob", room.JoinOptions{})
	subj := a.store.subjPrefix + "lobby"
	for _, p := range []struct{ subj, data string }{
		{subj + ".msg", `not json`},
		{subj + ".msg", `{"k":9,"f":"mallory","t":"unknown kind"}`},
		{subj + ".msg", `{"k":1,"f":"error","t":"a reserved name"}`},
		{subj + ".msg", `{"k":1,"f":"","t":"no name"}`},
		{subj + ".notice", `{"k":1,"f":"mallory","t":"a message on the notice subject"}`},
		{subj + ".msg", `{"k":3,"t":"a notice on the message subject"}`},
		{subj + ".msg", `{"k":1,"f":"mallory","t":"a topic on a message","topic":"x"}`},
		{a.store.subjPrefix + "LOBBY.msg", `{"k":1,"f":"mallory","t":"not a room name"}`},
		{subj + ".msg", `{"k":1,"f":"mallory","t":"\u001b]0;pwned\u0007\u001b[2Jclean"}`},
	} {
		if _, err := a.store.js.Publish(t.Context(), p.subj, []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	bobOut.waitLine(t, "mallory: clean")
	if got := bobOut.messages(); !slices.Equal(got, []string{"mallory: clean"}) {
		t.Errorf("bob got %q", got)
	}
	if st := b.relay.Stats(); st.Dropped != 8 || st.Delivered != 1 {
		t.Errorf("b's relay stats %+v, want 8 dropped, 1 delivered", st)
	}
}

// TestRelayLineOfDeletedRoom: a line of a room deleted since (an earlier generation) does not
// reach the room made again under its name.
func TestRelayLineOfDeletedRoom(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	_, bobOut := b.join(t, "bob", room.JoinOptions{})
	old, ok := a.store.cache.get("#lobby")
	if !ok || old.Gen == 0 {
		t.Fatalf("#lobby not in a's cache: %+v", old)
	}
	// The store's room is deleted and made again (the hubs keep theirs: only the generation
	// matters here).
	if err := a.store.DeleteRoom("#lobby"); err != nil {
		t.Fatal(err)
	}
	saveRoom(t, a.store, "#lobby")
	for { // a readiness poll: b's watcher learns the new generation
		if cur, ok := b.store.cache.get("#lobby"); ok && cur.Gen > old.Gen {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ghost := fmt.Sprintf(`{"g":%d,"k":1,"f":"ghost","t":"of an older #lobby"}`, old.Gen)
	if _, err := a.store.js.Publish(t.Context(), a.store.subjPrefix+"lobby.msg", []byte(ghost)); err != nil {
		t.Fatal(err)
	}
	if err := a.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: "current"}); err != nil {
		t.Fatal(err)
	}
	bobOut.waitLine(t, "alice: current")
	if got := bobOut.messages(); !slices.Equal(got, []string{"alice: current"}) {
		t.Errorf("bob got %q", got)
	}
}

// TestRelayNATSRestart: with NATS down, saying something fails at once with an error to the
// sender; once NATS is back, lines flow again between the nodes, and nothing acknowledged
// before is lost or delivered twice.
func TestRelayNATSRestart(t *testing.T) {
	srv := natstest.Start(t)
	a, b := twoChatNodes(t, srv.URL())
	alice, aliceOut := a.join(t, "alice", room.JoinOptions{Echo: true})
	_, bobOut := b.join(t, "bob", room.JoinOptions{})
	for i := range 10 {
		alice.Handle(fmt.Sprint("before ", i))
	}
	bobOut.waitLine(t, "alice: before 9")

	srv.Stop()
	for a.store.nc.IsConnected() {
		time.Sleep(time.Millisecond) // a readiness poll: the client notices the server is gone
	}
	// Not a timing test: the relay must answer without waiting for NATS, well within the
	// publish timeout.
	start := time.Now()
	err := a.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: "down", Origin: 1})
	if !errors.Is(err, errNotConnected) {
		t.Fatalf("Publish with NATS down: %v, want %v", err, errNotConnected)
	}
	if took := time.Since(start); took > a.relay.cfg.Timeout/2 {
		t.Errorf("Publish with NATS down took %v", took)
	}
	alice.Handle("while down")
	aliceOut.waitFor(t, "the error", func(ls []string) bool {
		return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, "your line could not be sent") })
	})

	srv.Start()
	// Ready when a line goes through: reconnecting and JetStream's recovery take a moment.
	for i := 0; ; i++ {
		if err := a.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: fmt.Sprint("probe ", i)}); err == nil {
			bobOut.waitLine(t, fmt.Sprint("alice: probe ", i))
			break
		}
		if i > 600 {
			t.Fatal("NATS did not come back")
		}
		time.Sleep(50 * time.Millisecond) // a readiness poll: NATS is restarting
	}
	alice.Handle("after")
	bobOut.waitLine(t, "alice: after")
	aliceOut.waitLine(t, "alice: after")

	got := bobOut.messages()
	if got[len(got)-1] != "alice: after" {
		t.Errorf("bob's last line is %q", got[len(got)-1])
	}
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprint("alice: before ", i))
	}
	want = append(want, got[10:len(got)-1]...) // the probes
	want = append(want, "alice: after")
	if !slices.Equal(got, want) || slices.Contains(got, "alice: while down") {
		t.Errorf("bob got %q", got)
	}
	if hist := recentLines(t, b.store, "#lobby"); !slices.Equal(hist, got) {
		t.Errorf("history %q, want what bob got, %q", hist, got)
	}
}

// gate is a TCP proxy to a NATS server that the test can cut and heal: a node behind it loses
// its connection while the others go on.
type gate struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	open   bool
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startGate(t testing.TB, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: strings.TrimPrefix(target, "nats://"), open: true}
	g.wg.Go(g.serve)
	t.Cleanup(func() {
		ln.Close()
		g.cut()
		g.wg.Wait()
	})
	return g
}

func (g *gate) url() string { return "nats://" + g.ln.Addr().String() }

func (g *gate) serve() {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		if !g.open {
			g.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", g.target)
		if err != nil {
			g.mu.Unlock()
			c.Close()
			continue
		}
		g.conns = append(g.conns, c, up)
		g.mu.Unlock()
		g.wg.Go(func() { io.Copy(up, c); up.Close() })
		g.wg.Go(func() { io.Copy(c, up); c.Close() })
	}
}

// cut closes every connection through the gate and refuses new ones until heal.
func (g *gate) cut() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = false
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

func (g *gate) heal() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.open = true
}

// TestRelayNodeCutOff: node B loses NATS while A's people go on talking; once B is back, its
// consumer starts again from the last line it delivered: B's members get every line stored
// meanwhile, in order, none twice.
func TestRelayNodeCutOff(t *testing.T) {
	srv := natstest.Start(t)
	g := startGate(t, srv.URL())
	prefix := "t" + nuid.Next()
	a := startNode(t, []string{srv.URL()}, prefix, Config{})
	b := startNode(t, []string{g.url()}, prefix, Config{})
	alice, _ := a.join(t, "alice", room.JoinOptions{})
	_, bobOut := b.join(t, "bob", room.JoinOptions{})
	bob, _ := b.join(t, "bob2", room.JoinOptions{})
	var want []string
	for i := range 5 {
		alice.Handle(fmt.Sprint("before ", i))
		want = append(want, fmt.Sprint("alice: before ", i))
	}
	bobOut.waitLine(t, "alice: before 4")

	g.cut()
	for b.store.nc.IsConnected() {
		time.Sleep(time.Millisecond) // a readiness poll: the client notices the closed socket
	}
	if err := b.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "bob2", Text: "cut off"}); !errors.Is(err, errNotConnected) {
		t.Errorf("Publish on the cut-off node: %v, want %v", err, errNotConnected)
	}
	for i := range 50 {
		alice.Handle(fmt.Sprint("meanwhile ", i))
		want = append(want, fmt.Sprint("alice: meanwhile ", i))
	}
	if st := b.relay.Stats(); st.Delivered != 5 {
		t.Fatalf("b delivered %d lines while cut off, want 5", st.Delivered)
	}
	g.heal()
	bobOut.waitLine(t, "alice: meanwhile 49")
	for i := 0; ; i++ { // readiness: B's publishing comes back with its connection
		if err := b.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "bob2", Text: "back"}); err == nil {
			break
		}
		if i > 600 {
			t.Fatal("b did not reconnect")
		}
		time.Sleep(50 * time.Millisecond)
	}
	bob.Handle("and more")
	want = append(want, "bob2: back", "bob2: and more")
	bobOut.waitLine(t, "bob2: and more")
	if got := bobOut.messages(); !slices.Equal(got, want) {
		t.Errorf("bob got\n%q\nwant\n%q", got, want)
	}
}

// TestRelayClusterLosesAServer: on a 3-server NATS cluster with replicas 3, the server one node
// is connected to stops while lines flow from both nodes. Chat goes on, and every line whose
// Publish succeeded reaches the members of both nodes once, in one order, and is in the
// history; a line whose Publish failed (the sender was told) is there at most once.
func TestRelayClusterLosesAServer(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-server cluster takes seconds")
	}
	c := natstest.StartCluster(t, 3)
	prefix := "t" + nuid.Next()
	// Each node prefers another server; the client fails over to the rest.
	urls := c.URLs()
	a := startNode(t, urls, prefix, Config{Replicas: 3})
	b := startNode(t, append(urls[1:], urls[0]), prefix, Config{Replicas: 3})
	_, aOut := a.join(t, "watcher-a", room.JoinOptions{})
	_, bOut := b.join(t, "watcher-b", room.JoinOptions{})

	var mu sync.Mutex
	acked := map[string]bool{}
	failed := map[string]bool{}
	send := func(n *chatNode, from string, count int, midway func()) {
		for i := range count {
			if i == count/2 && midway != nil {
				midway()
			}
			text := fmt.Sprint("line ", i)
			err := n.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: from, Text: text})
			mu.Lock()
			if err == nil {
				acked[from+": "+text] = true
			} else {
				failed[from+": "+text] = true
			}
			mu.Unlock()
		}
	}
	name := a.store.nc.ConnectedServerName()
	i := slices.IndexFunc(c.Nodes, func(n *natstest.Node) bool { return n.Server() != nil && n.Server().Name() == name })
	if i < 0 {
		t.Fatalf("a is connected to %q, none of the cluster's servers", name)
	}
	var wg sync.WaitGroup
	wg.Go(func() { send(a, "alice", 200, func() { c.Nodes[i].Stop(); t.Logf("stopped %s", name) }) })
	wg.Go(func() { send(b, "bob", 200, nil) })
	wg.Wait()
	c.WaitForLeader()
	// The last word, once the cluster settled, from each side: when it has arrived, so has
	// everything before it.
	var last []string
	for _, n := range []*chatNode{a, b} {
		from := "alice"
		if n == b {
			from = "bob"
		}
		for k := 0; ; k++ {
			text := fmt.Sprint("last ", k)
			err := n.relay.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: from, Text: text})
			if err == nil {
				acked[from+": "+text] = true
				last = append(last, from+": "+text)
				break
			}
			failed[from+": "+text] = true
			if k > 100 {
				t.Fatalf("%s cannot publish: %v", from, err)
			}
			t.Logf("%s: %v; again", from, err)
		}
	}
	t.Logf("%d lines acknowledged, %d refused", len(acked), len(failed))
	for _, out := range []*lines{aOut, bOut} {
		for _, l := range last {
			out.waitLine(t, l)
		}
	}
	if !slices.Equal(aOut.messages(), bOut.messages()) {
		t.Fatalf("the nodes' members got different sequences:\n%q\n%q", aOut.messages(), bOut.messages())
	}
	checkOnce := func(what string, got []string) {
		t.Helper()
		seen := map[string]bool{}
		for _, l := range got {
			if seen[l] {
				t.Errorf("%s: %q twice", what, l)
			}
			seen[l] = true
			if !acked[l] && !failed[l] {
				t.Errorf("%s: %q was never sent", what, l)
			}
		}
		for l := range acked {
			if !seen[l] {
				t.Errorf("%s: %q was acknowledged, and is missing", what, l)
			}
		}
	}
	checkOnce("a's member", aOut.messages())
	var hist []string
	retry(t, "recent", func() (err error) {
		msgs, err := b.store.Recent("#lobby", 10_000)
		hist = nil
		for _, m := range msgs {
			hist = append(hist, m.From+": "+m.Text)
		}
		return err
	})
	if !slices.Equal(hist, bOut.messages()) {
		t.Errorf("the history differs from what was delivered:\n%q\n%q", hist, bOut.messages())
	}
}

// TestRelayBounds: a line too large for the stream, of no known kind or of no valid room is
// refused with an error before anything is sent; after Close, Publish fails and nothing more
// is delivered.
func TestRelayBounds(t *testing.T) {
	srv := natstest.Start(t)
	s, _ := openStore(t, srv.URL(), Config{})
	saveRoom(t, s, "#lobby")
	var published, failed int
	r, err := NewRelay(t.Context(), s, RelayConfig{OnPublish: func(_ time.Duration, err error) {
		if err != nil {
			failed++
		} else {
			published++
		}
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan room.Line, 10)
	r.Receive(func(l room.Line) { got <- l })
	for _, tt := range []struct {
		l    room.Line
		want error
	}{
		{room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: strings.Repeat("x", maxLineSize)}, errRelayLineSize},
		{room.Line{Room: "#lobby", Kind: 0, From: "alice", Text: "no kind"}, errBadRelayLine},
		{room.Line{Room: "#a b", Kind: room.LineMessage, From: "alice", Text: "bad room"}, chat.ErrRoomInvalid},
	} {
		if err := r.Publish(tt.l); !errors.Is(err, tt.want) {
			t.Errorf("Publish(%.40q) = %v, want %v", tt.l.Text, err, tt.want)
		}
	}
	if err := r.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: "fits"}); err != nil {
		t.Fatal(err)
	}
	if l := <-got; l.Text != "fits" || l.From != "alice" || l.Room != "#lobby" || l.Kind != room.LineMessage {
		t.Errorf("delivered %+v", l)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "alice", Text: "closed"}); !errors.Is(err, errRelayClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	// Another publisher's line, stored after Close: not delivered.
	r2, err := NewRelay(t.Context(), s, RelayConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	seen := make(chan room.Line, 1)
	r2.Receive(func(l room.Line) { seen <- l })
	if err := r2.Publish(room.Line{Room: "#lobby", Kind: room.LineMessage, From: "bob", Text: "after close"}); err != nil {
		t.Fatal(err)
	}
	<-seen // delivered to r2: r had every chance to get it too
	select {
	case l := <-got:
		t.Errorf("delivered after Close: %+v", l)
	default:
	}
	if published != 1 || failed != 4 {
		t.Errorf("OnPublish saw %d published, %d failed; want 1 and 4", published, failed)
	}
}

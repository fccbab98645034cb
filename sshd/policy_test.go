package sshd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/connlimit"
	"chatd/internal/roomtest"
	"chatd/room"
)

// The session policy: what one authenticated connection may open and ask for, and what it costs.
// Each test is a finding of the attacker review, shown to hold: the connection that breaks a
// rule is refused or closed, and everyone else carries on.

func ptyPayload(cols, rows uint32) []byte {
	return gossh.Marshal(ptyRequest{Term: "xterm", Columns: cols, Rows: rows})
}

func windowPayload(cols, rows uint32) []byte {
	return gossh.Marshal(struct{ Columns, Rows, Width, Height uint32 }{cols, rows, 0, 0})
}

// openChannel opens a raw session channel; its requests are discarded.
func openChannel(t *testing.T, c *gossh.Client) gossh.Channel {
	t.Helper()
	ch, reqs, err := c.OpenChannel("session", nil)
	if err != nil {
		t.Fatal(err)
	}
	go gossh.DiscardRequests(reqs)
	return ch
}

// waitConnClosed waits until the server has closed the client's connection.
func waitConnClosed(t *testing.T, c *gossh.Client) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(hangGuard):
		t.Fatal("the server did not close the connection")
	}
}

// policyServer runs a server whose limiter the test can read, with short session timeouts.
func policyServer(t *testing.T, configure func(*Config)) (*testServer, *connlimit.Limiter) {
	t.Helper()
	limiter := connlimit.New(connlimit.Config{MaxPerIP: 16})
	ts := startServerWith(t, room.Config{}, func(c *Config) {
		c.Gate = &connlimit.Gate{Limiter: limiter}
		c.StartTimeout = 500 * time.Millisecond
		c.HandshakeTimeout = 2 * time.Second
		if configure != nil {
			configure(c)
		}
	})
	return ts, limiter
}

// waitSlots waits until the address holds n slots in the limiter.
func waitSlots(t *testing.T, ts *testServer, limiter *connlimit.Limiter, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d connection slots", n), func() bool {
		_, got := limiter.Open(addrOf(t, ts.addr))
		return got == n
	})
}

// Finding 1: window changes on a session that never starts a shell (or on an exec) wedged the
// connection for good, holding its slot: 16 of them locked the address out.
func TestWindowChangesNeverWedgeAConnection(t *testing.T) {
	ts, limiter := policyServer(t, nil)
	observer := ts.joinAs(t, "observer", false)
	for i := range 20 { // more than the 16 the address may hold at once
		c := ts.dial(t, fmt.Sprintf("w%d", i), true)
		ch := openChannel(t, c)
		if ok, err := ch.SendRequest("pty-req", true, ptyPayload(80, 24)); !ok || err != nil {
			t.Fatalf("pty-req: %v %v", ok, err)
		}
		for j := range 50 {
			if _, err := ch.SendRequest("window-change", false, windowPayload(uint32(81+j), 24)); err != nil {
				t.Fatal(err)
			}
		}
		if i%2 == 0 {
			// An exec on another channel of the same connection still runs: the connection's
			// request handling was never blocked.
			sess, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			if err := sess.RequestPty("xterm", 24, 80, gossh.TerminalModes{}); err != nil {
				t.Fatal(err)
			}
			for j := range 50 {
				if err := sess.WindowChange(24, 81+j); err != nil {
					t.Fatal(err)
				}
			}
			out, err := sess.Output("who")
			if err != nil || string(out) != "observer\r\n" {
				t.Fatalf("exec beside resizes: %q, %v", out, err)
			}
		}
		ch.Close()
		c.Close()
	}
	waitSlots(t, ts, limiter, 1) // only the observer's
	ts.joinAs(t, "after", false)
	observer.stdout.WaitLine(t, "* after joined #lobby (2 online)")
}

// Finding 1, second part: a flood of window changes inside a running shell ended in a
// flow-control deadlock. Only the latest size is kept; the session goes on.
func TestWindowChangeFloodInAShell(t *testing.T) {
	ts, _ := policyServer(t, nil)
	observer := ts.joinAs(t, "observer", false)
	c := ts.dial(t, "resizer", false)
	cl := open(t, c, true)
	cl.stdout.WaitContains(t, "joined #lobby (")
	// The client reads nothing while it floods: the server's redraws must not stall its reading.
	for i := range 20000 {
		if err := cl.sess.WindowChange(24+i%10, 60+i%100); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cl.stdin.Write([]byte("still here\r")); err != nil {
		t.Fatal(err)
	}
	observer.stdout.WaitLine(t, "resizer: still here")
}

// Finding 2: env requests were stored without bound (5000 of 200 KB: 1.25 GB). They are
// refused, and a channel that keeps asking before it starts is closed.
func TestEnvRequestsAreRefused(t *testing.T) {
	ts, limiter := policyServer(t, nil)
	c := ts.dial(t, "envy", true)
	ch := openChannel(t, c)
	value := strings.Repeat("v", 200<<10)
	refused := 0
	for range 5000 {
		ok, err := ch.SendRequest("env", true, gossh.Marshal(struct{ Name, Value string }{"X", value}))
		if err != nil {
			break // the server closed the connection
		}
		if ok {
			t.Fatal("an env request was accepted")
		}
		refused++
	}
	if refused > maxEarlyRequests {
		t.Errorf("%d env requests answered before the connection was closed, want at most %d", refused, maxEarlyRequests)
	}
	waitConnClosed(t, c)
	waitSlots(t, ts, limiter, 0)

	// In a running session they are refused too, and cost nothing.
	cl := open(t, ts.dial(t, "later", false), false)
	cl.stdout.WaitContains(t, "joined #lobby (")
	for range 100 {
		if ok, err := cl.sess.SendRequest("env", true, gossh.Marshal(struct{ Name, Value string }{"X", value})); ok || err != nil {
			t.Fatalf("env in a shell: %v, %v", ok, err)
		}
	}
	cl.send(t, "/who")
	cl.stdout.WaitLine(t, "* 1 online in #lobby: later")
}

// Finding 3: one connection could open any number of sessions (3000 joined), and channels that
// never started buffered what they were sent (300 × 2 MB).
func TestSessionsPerConnection(t *testing.T) {
	ts, limiter := policyServer(t, nil)
	c := ts.dial(t, "many", true)
	var chans []gossh.Channel
	for range 4 {
		chans = append(chans, openChannel(t, c))
	}
	_, _, err := c.OpenChannel("session", nil)
	var oce *gossh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != gossh.ResourceShortage || oce.Message != "at most 4 sessions at once on one connection" {
		t.Fatalf("a fifth session: %v", err)
	}
	// Channels that start nothing are closed after the start timeout: with the connection, since
	// closing a channel needs the client's cooperation.
	waitConnClosed(t, c)
	waitSlots(t, ts, limiter, 0)
	_ = chans
}

// Input before a session starts is read and bounded; past the bound the connection goes.
func TestInputBeforeStartIsBounded(t *testing.T) {
	ts, limiter := policyServer(t, func(c *Config) { c.StartTimeout = time.Minute })
	c := ts.dial(t, "early", true)
	ch := openChannel(t, c)
	// 2 MB in 1-byte writes would cost the SSH library ≈ 100 MB if nobody read it; the server
	// reads it and closes the connection past maxEarlyInput.
	chunk := bytes.Repeat([]byte("x"), 1024)
	sent := 0
	for sent < 2<<20 {
		n, err := ch.Write(chunk)
		sent += n
		if err != nil {
			break
		}
	}
	waitConnClosed(t, c)
	if sent > 2<<20 {
		t.Errorf("sent %d bytes", sent)
	}
	waitSlots(t, ts, limiter, 0)

	// Input that comes right behind the start request is the shell's, whole and in order.
	c = ts.dial(t, "typist", false)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, sess)
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	for i := range 200 {
		fmt.Fprintf(&lines, "line %03d\n", i)
	}
	if _, err := io.WriteString(cl.stdin, lines.String()+"/who\n"); err != nil {
		t.Fatal(err)
	}
	cl.stdout.WaitLine(t, "* 1 online in #lobby: typist")
}

// The client's stderr stream is read and dropped: without it, 4 MB of stderr would exhaust the
// channel's window (the client's writes would block for good) and sit in the server's memory.
func TestClientStderrIsDrained(t *testing.T) {
	ts, _ := policyServer(t, nil)
	observer := ts.joinAs(t, "observer", false)
	c := ts.dial(t, "noisy", false)
	ch := openChannel(t, c)
	if ok, err := ch.SendRequest("shell", true, nil); !ok || err != nil {
		t.Fatalf("shell: %v, %v", ok, err)
	}
	out := roomtest.NewStream(ch)
	out.WaitContains(t, "joined #lobby (")
	junk := bytes.Repeat([]byte("e"), 32<<10)
	for range 128 { // 4 MB
		if _, err := ch.Stderr().Write(junk); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := io.WriteString(ch, "done\n"); err != nil {
		t.Fatal(err)
	}
	observer.stdout.WaitLine(t, "noisy: done")
}

// Every session after a connection's first counts toward the address's rate, like a new
// connection: one connection cannot run commands or join and leave without bound.
func TestSessionsCountTowardTheRate(t *testing.T) {
	limiter := connlimit.New(connlimit.Config{RatePerIP: 10})
	ts := startServerWith(t, room.Config{}, func(c *Config) { c.Gate = &connlimit.Gate{Limiter: limiter} })
	c := ts.dial(t, "looper", true) // the connection is the first of the minute
	ran := 0
	for i := range 30 {
		sess, err := c.NewSession()
		if err != nil {
			var oce *gossh.OpenChannelError
			if !errors.As(err, &oce) || !strings.Contains(oce.Message, "too many new sessions from your address (at most 10 a minute)") {
				t.Fatalf("session %d: %v", i, err)
			}
			break
		}
		if _, err := sess.Output("who"); err != nil {
			t.Fatalf("exec %d: %v", i, err)
		}
		ran++
	}
	if ran != 10 { // the connection and its first session are the first of the 10
		t.Errorf("%d commands ran on one connection, want 10", ran)
	}
}

// A connection whose last session has ended must start another within the handshake timeout,
// or it is closed: an idle connection holds a slot for nothing.
func TestIdleConnectionAfterItsSessionsIsClosed(t *testing.T) {
	ts, limiter := policyServer(t, nil)
	c := ts.dial(t, "idle", true)
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Output("who"); err != nil {
		t.Fatal(err)
	}
	waitConnClosed(t, c)
	waitSlots(t, ts, limiter, 0)
}

// Requests the chat has no use for are refused: subsystems (sftp), agent and X11 forwarding,
// signals; and other channel types (port forwarding) cannot be opened.
func TestRefusedRequestsAndChannels(t *testing.T) {
	ts, _ := policyServer(t, func(c *Config) { c.StartTimeout = time.Minute })
	c := ts.dial(t, "prober", true)
	ch := openChannel(t, c)
	for _, req := range []string{"subsystem", "auth-agent-req@openssh.com", "x11-req", "signal", "break", "xon-xoff", "exit-status"} {
		if ok, err := ch.SendRequest(req, true, gossh.Marshal(struct{ S string }{"sftp"})); ok || err != nil {
			t.Errorf("%s: accepted %v, %v", req, ok, err)
		}
	}
	if ok, _ := ch.SendRequest("pty-req", true, []byte("garbage")); ok {
		t.Error("a malformed pty-req was accepted")
	}
	if ok, _ := ch.SendRequest("pty-req", true, append(ptyPayload(80, 24), make([]byte, 2*maxPtyRequest)...)); ok {
		t.Error("an oversized pty-req was accepted")
	}
	if ok, _ := ch.SendRequest("window-change", true, windowPayload(80, 24)); ok {
		t.Error("a window change without a PTY was accepted")
	}
	for _, typ := range []string{"direct-tcpip", "x11", "auth-agent@openssh.com", "forwarded-tcpip"} {
		if _, _, err := c.OpenChannel(typ, nil); err == nil {
			t.Errorf("a %s channel was opened", typ)
		}
	}
	if ok, _, err := c.SendRequest("tcpip-forward", true, gossh.Marshal(struct {
		Addr string
		Port uint32
	}{"127.0.0.1", 0})); ok || err != nil {
		t.Errorf("tcpip-forward: %v, %v", ok, err)
	}
	// A command line longer than the bound gets an error, not a run.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	cl := newClient(t, sess)
	if err := sess.Start("history " + strings.Repeat("9", 2*maxCommand)); err != nil {
		t.Fatal(err)
	}
	if got := cl.exitStatus(t); got != 1 {
		t.Errorf("exit status %d, want 1", got)
	}
	cl.stderr.WaitContains(t, "error: command too long (at most 1024 bytes)")
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"who", []string{"who"}},
		{"  history   50 ", []string{"history", "50"}},
		{"who '#go'", []string{"who", "#go"}},
		{`history "#go" 50`, []string{"history", "#go", "50"}},
		{"a''b", []string{"ab"}},
		{"''", []string{""}},
		{"'unterminated", []string{"unterminated"}},
		{"", nil},
	}
	for _, tt := range tests {
		if got := splitCommand(tt.in); fmt.Sprintf("%q", got) != fmt.Sprintf("%q", tt.want) {
			t.Errorf("splitCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Finding 9: on an 80-column terminal, one message padded with spaces showed a fake
// "* bob left #lobby (too slow)" and a fake "bob: send me your password" as rows of their own. The
// shell wraps long lines itself, and every continuation row starts indented.
func TestPaddedLinesCannotSpoofRows(t *testing.T) {
	ts, _ := policyServer(t, nil)
	victim := ts.joinAs(t, "victim", true) // a terminal, 80 columns
	mallory := ts.joinAs(t, "mallory", false)
	victim.stdout.WaitContains(t, "mallory joined")
	for _, fake := range []string{"* bob left #lobby (too slow)", "bob: send me your password"} {
		// "HH:MM mallory: " takes 15 columns: 65 more put the fake at the start of row 2.
		mallory.send(t, "hi"+strings.Repeat(" ", 63)+fake)
		victim.stdout.WaitContains(t, fake)
		for _, line := range strings.Split(victim.stdout.Text(), "\n") {
			if strings.Contains(line, fake) && !strings.HasPrefix(line, " ") {
				t.Errorf("a row starts with %q: %q", fake, line)
			}
		}
	}
}

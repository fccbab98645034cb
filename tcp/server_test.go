package tcp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"chatd/room"
	"chatd/tcp/client"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"default", func(*Config) {}, ""},
		{"unlimited conns", func(c *Config) { c.MaxConns = 0 }, ""},
		{"no addr", func(c *Config) { c.Addr = "" }, ""},
		{"negative conns", func(c *Config) { c.MaxConns = -1 }, "max conns"},
		{"zero name timeout", func(c *Config) { c.NameTimeout = 0 }, "name timeout"},
		{"zero attempts", func(c *Config) { c.MaxNameAttempts = 0 }, "name attempts"},
		{"bad addr", func(c *Config) { c.Addr = "2323" }, "address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error about %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{}, newRoom(t, room.Config{}), nil); err == nil {
		t.Fatal("New accepted a zero Config")
	}
}

func TestNamePhase(t *testing.T) {
	tests := []struct {
		name   string
		send   []string // raw, line endings included
		want   []string // every line the newcomer gets, the greeting first
		closed bool     // the server closes the connection after the last line
	}{
		{
			name: "good name",
			send: []string{"alice\n"},
			want: []string{greeting, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "CRLF and surrounding spaces",
			send: []string{"  alice \r\n"},
			want: []string{greeting, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "taken name, then another",
			send: []string{"BOB\n", "alice\n"},
			want: []string{greeting, `error: name "BOB" is taken by someone online`, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "invalid name, then another",
			send: []string{"x y\n", "alice\n"},
			want: []string{greeting, `error: name "x y" may only contain letters, digits, '_', '.' and '-'`, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "reserved and empty names",
			send: []string{"error\n", "\n", "alice\n"},
			want: []string{greeting, `error: name "error" is reserved`, `error: name "" is empty`, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "escape codes in a refused name are not echoed",
			send: []string{"\x1b[31mred\x07\n", "alice\n"},
			want: []string{greeting, `error: name "red" must start with a letter or a digit`, welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "over-long name line",
			send: []string{strings.Repeat("n", 100_000) + "\n", "alice\n"},
			want: []string{greeting, "error: name is too long (at most 32 characters)", welcome("alice"), "* alice joined #lobby (2 online)"},
		},
		{
			name: "three bad names",
			send: []string{"x y\n", "bob\n", "-x\n"},
			want: []string{
				greeting,
				`error: name "x y" may only contain letters, digits, '_', '.' and '-'`,
				`error: name "bob" is taken by someone online`,
				`error: name "-x" must start with a letter or a digit`,
				"error: too many attempts; goodbye",
			},
			closed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rm := newRoom(t, room.Config{})
			srv := startServer(t, testConfig(), rm)
			joinRaw(t, srv.addr, "bob")

			p := dialRaw(t, srv.addr)
			p.waitLine(greeting)
			for _, s := range tt.send {
				p.sendRaw(s)
			}
			var got []string
			if tt.closed {
				got = p.waitClosed()
			} else {
				got = p.waitLine(tt.want[len(tt.want)-1])
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if bytes.ContainsAny(p.raw(), "\x1b\x07") {
				t.Fatalf("escape codes reached the client: %q", p.raw())
			}
		})
	}
}

func TestNameTimeout(t *testing.T) {
	rm := newRoom(t, room.Config{})
	cfg := testConfig()
	cfg.NameTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg, rm)

	silent := dialRaw(t, srv.addr)
	partial := dialRaw(t, srv.addr) // a name with no line end never counts
	partial.waitLine(greeting)
	partial.sendRaw("alic")
	wrong := dialRaw(t, srv.addr) // refused names do not extend the time
	wrong.waitLine(greeting)
	wrong.send("x y")

	want := "error: no name given in 300ms; goodbye"
	for _, p := range []*peer{silent, partial, wrong} {
		if got := p.waitClosed(); got[len(got)-1] != want {
			t.Fatalf("last line %q, want %q", got[len(got)-1], want)
		}
	}
	if n := rm.Online(); n != 0 {
		t.Fatalf("%d online, want 0", n)
	}
	srv.logs.waitFor(t, "name timeout")
}

func TestTwoUsersChat(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	alice := dialClient(t, srv.addr, "alice")
	bob := dialClient(t, srv.addr, "bob")
	alice.waitLine("* bob joined #lobby (2 online)")

	alice.send("hi bob")
	bob.waitLine("alice: hi bob")
	bob.send("hello alice")
	bob.send("/me waves")
	alice.waitLine("** bob waves")

	got := alice.waitLine("** bob waves")
	want := []string{welcome("alice"), "* alice joined #lobby (1 online)", "* bob joined #lobby (2 online)", "bob: hello alice", "** bob waves"}
	if !slices.Equal(got, want) {
		t.Fatalf("alice got:\n%s\nwant (no echo of her own line):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Commands are the room's: /who answers with the room's info line.
	bob.send("/who")
	bob.waitLine("* 2 online in #lobby: alice, bob")
	bob.send("/nope")
	bob.waitLine(`error: unknown command "/nope" (/help lists the commands)`)
}

func TestPrivateMessagesStayPrivate(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	alice := dialClient(t, srv.addr, "alice")
	bob := dialClient(t, srv.addr, "bob")
	carol := dialClient(t, srv.addr, "carol")
	alice.waitLine("* carol joined #lobby (3 online)")

	alice.send("/msg bob the secret")
	bob.waitLine("[dm from alice] the secret")
	alice.waitLine("[dm to bob] the secret")
	// Everything reaches carol in the room's order: once she has the next public line, a leaked
	// private one would already be there.
	alice.send("done")
	for _, l := range carol.waitLine("alice: done") {
		if strings.Contains(l, "secret") {
			t.Fatalf("carol saw the private message: %q", l)
		}
	}
	alice.send("/msg dave hi")
	alice.waitLine(`error: "dave" is not online`)
}

func TestQuit(t *testing.T) {
	for _, cmd := range []string{"bye", "/quit", "/exit", "/QUIT now", " bye\r"} {
		t.Run(strings.TrimSpace(cmd), func(t *testing.T) {
			rm := newRoom(t, room.Config{})
			srv := startServer(t, testConfig(), rm)
			bob := joinRaw(t, srv.addr, "bob")
			alice := joinRaw(t, srv.addr, "alice")
			bob.waitLine("* alice joined #lobby (2 online)")

			alice.send(cmd)
			got := alice.waitClosed()
			if last := got[len(got)-1]; last != "* goodbye, alice!" {
				t.Fatalf("last line %q, want the goodbye", last)
			}
			bob.waitLine("* alice left #lobby")
			if strings.Contains(srv.logs.String(), "reason=eof") {
				t.Fatalf("logged as eof, want quit:\n%s", srv.logs.String())
			}
		})
	}
}

func TestEOFLeaves(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	bob := joinRaw(t, srv.addr, "bob")
	alice := joinRaw(t, srv.addr, "alice")
	alice.send("last words")
	alice.conn.(*net.TCPConn).CloseWrite()
	bob.waitLine("alice: last words")
	bob.waitLine("* alice left #lobby")
	alice.waitClosed()
}

func TestShutdown(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	alice := joinRaw(t, srv.addr, "alice")
	bob := dialClient(t, srv.addr, "bob")
	naming := dialRaw(t, srv.addr)
	naming.waitLine(greeting)

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	// As chatd does it: the server stops taking connections and ends those without a name;
	// the room's shutdown then says goodbye to its members and ends theirs.
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	if got := naming.waitClosed(); got[len(got)-1] != "error: server is shutting down; goodbye" {
		t.Fatalf("a connection still choosing a name got %q", got)
	}
	if err := rm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if got := alice.waitClosed(); got[len(got)-1] != "* server is shutting down, goodbye" {
		t.Fatalf("alice's last line %q", got[len(got)-1])
	}
	got, err := bob.waitClosed()
	if got[len(got)-1] != "* server is shutting down, goodbye" || !errors.Is(err, client.ErrConnClosed) {
		t.Fatalf("bob: last line %q, error %v", got[len(got)-1], err)
	}
	if err := <-srv.served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	srv.served <- ErrServerClosed // for the cleanup's check
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", srv.addr); err == nil {
		c.Close()
		t.Fatal("the listener still accepts")
	}
}

func TestShutdownGivesUpAtTheDeadline(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	joinRaw(t, srv.addr, "alice")
	// The room is not shut down, so alice never leaves: Shutdown must give up when told.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	// Close (in the cleanup) then ends alice's connection and waits for its goroutine.
}

func TestMaxConns(t *testing.T) {
	rm := newRoom(t, room.Config{})
	cfg := testConfig()
	cfg.MaxConns = 3
	srv := startServer(t, cfg, rm)
	alice := joinRaw(t, srv.addr, "alice")
	bob := joinRaw(t, srv.addr, "bob")
	naming := dialRaw(t, srv.addr) // choosing a name counts too
	naming.waitLine(greeting)

	refused := dialRaw(t, srv.addr)
	if got := refused.waitClosed(); !slices.Equal(got, []string{"error: server is full (3 connections); try again later"}) {
		t.Fatalf("refused connection got %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	var se *client.ServerError
	if _, err := client.Dial(ctx, srv.addr); !errors.As(err, &se) || !se.Final || se.Reason != "server is full (3 connections); try again later" {
		t.Fatalf("client.Dial to a full server: %v", err)
	}

	// Those already in are unaffected.
	alice.send("still here")
	bob.waitLine("alice: still here")

	// A freed slot is taken by the next connection.
	naming.conn.Close()
	for {
		p := dialRaw(t, srv.addr)
		if got := p.waitFor("a line", func(ls []string) bool { return len(ls) > 0 }); got[0] == greeting {
			break
		}
		p.waitClosed()
	}
}

// TestHostileInput sends what a raw socket can: bytes no well-behaved client sends.
func TestHostileInput(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	alice := joinRaw(t, srv.addr, "alice")
	bob := joinRaw(t, srv.addr, "bob")
	alice.waitLine("* bob joined #lobby (2 online)")

	tests := []struct {
		name string
		send string
		want string // what bob gets
	}{
		{"invalid UTF-8", "bad \xff\xfe bytes \xc3", "alice: bad \uFFFD\uFFFD bytes \uFFFD"},
		{"NUL and controls", "a\x00b\x01c\x7fd\x08e\x0bf", "alice: abcdef"},
		{"tab", "a\tb", "alice: a b"},
		{"OSC title", "x\x1b]0;owned\x07y", "alice: xy"},
		{"clear screen", "\x1b[2Jcleared\x1b[H", "alice: cleared"},
		{"C1 CSI", "p\u009b2Jq", "alice: pq"},
		{"bidi override", "abc\u202edef", "alice: abcdef"},
		{"CR inside a line", "one\rtwo", "alice: onetwo"},
		{"only escapes", "\x1b[2J\x1b]0;x\x07", ""}, // empty after sanitising: not sent
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alice.send(tt.send)
			marker := fmt.Sprintf("marker %d", i)
			alice.send(marker)
			got := bob.waitLine("alice: " + marker)
			if tt.want != "" && got[len(got)-2] != tt.want {
				t.Fatalf("bob got %q, want %q", got[len(got)-2], tt.want)
			}
			if tt.want == "" && got[len(got)-2] != "alice: "+fmt.Sprintf("marker %d", i-1) {
				t.Fatalf("bob got %q for a line that is empty once sanitised", got[len(got)-2])
			}
		})
	}
	for _, b := range bob.raw() {
		if b < 0x20 && b != '\n' || b == 0x7f {
			t.Fatalf("bob received control byte %#x:\n%q", b, bob.raw())
		}
	}
	if bytes.Contains(bob.raw(), []byte("\u009b")) {
		t.Fatal("bob received a C1 control")
	}
}

func TestHugeLine(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	alice := joinRaw(t, srv.addr, "alice")
	bob := joinRaw(t, srv.addr, "bob")
	alice.waitLine("* bob joined #lobby (2 online)")

	huge := strings.Repeat("A", 10<<20)
	alice.send(huge)
	alice.send("after the flood")
	bob.send("bob still talks")

	want := fmt.Sprintf("error: line too long (over %d bytes); it was discarded", rm.Config().MaxLineBytes())
	alice.waitLine(want)
	alice.waitLine("bob: bob still talks")
	for _, l := range bob.waitLine("alice: after the flood") {
		if strings.Contains(l, "AAAA") {
			t.Fatal("part of the huge line reached bob")
		}
	}
	if alice.closed() {
		t.Fatal("alice was disconnected")
	}
	// A line over the message limit but under the line limit gets the room's own answer.
	alice.send(strings.Repeat("B", 2000))
	alice.waitLine("error: message too long (2000 bytes; the limit is 1000); it was not sent")
}

func TestSilentConnectionsDoNotBlockOthers(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	const idle = 300
	silent := make([]net.Conn, 0, idle)
	for range idle {
		c, err := net.Dial("tcp", srv.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		silent = append(silent, c)
	}
	alice := joinRaw(t, srv.addr, "alice")
	bob := joinRaw(t, srv.addr, "bob")
	alice.waitLine("* bob joined #lobby (2 online)")
	alice.send("anyone there?")
	bob.waitLine("alice: anyone there?")
	bob.send("yes")
	alice.waitLine("bob: yes")

	// Every silent connection was greeted and is still waiting for its name.
	srv.mu.Lock()
	n := len(srv.conns)
	srv.mu.Unlock()
	if n != idle+2 {
		t.Fatalf("%d connections tracked, want %d", n, idle+2)
	}
	b := make([]byte, len(greeting)+1)
	if _, err := io.ReadFull(silent[idle-1], b); err != nil || string(b) != greeting+"\n" {
		t.Fatalf("a silent connection read %q, %v", b, err)
	}
}

func TestSlowReaderIsDropped(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	// bob reads in this goroutine, between alice's rounds, so that the test never holds more
	// than a round of his lines.
	bob, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer bob.Close()
	_ = bob.SetReadDeadline(time.Now().Add(2 * hangGuard))
	bobIn := bufio.NewReader(bob)
	readUntil := func(want string) (lines []string) {
		t.Helper()
		for {
			l, err := bobIn.ReadString('\n')
			if err != nil {
				t.Fatalf("bob: %v while waiting for %.80q", err, want)
			}
			l = strings.TrimSuffix(l, "\n")
			lines = append(lines, l)
			if l == want {
				return lines
			}
		}
	}
	if _, err := bob.Write([]byte("bob\n")); err != nil {
		t.Fatal(err)
	}
	readUntil(welcome("bob"))

	// slow joins and then never reads again: there is no reader at all on its socket.
	slow, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := slow.Write([]byte("slow\n")); err != nil {
		t.Fatal(err)
	}
	readUntil("* slow joined #lobby (2 online)")
	alice := joinRaw(t, srv.addr, "alice")

	// alice talks in rounds of long lines until the kernel's buffers towards slow are full and
	// its outbox overflows (or its writer stalls).
	text := strings.Repeat("x", 990)
	gone := "* slow left #lobby (too slow)"
	for round := 0; ; round++ {
		if round > 2000 { // ≈ 200 MB: far more than any socket buffers
			t.Fatal("slow was never dropped")
		}
		for i := range 100 {
			alice.send(fmt.Sprintf("%d.%d %s", round, i, text))
		}
		if indexOf(readUntil(fmt.Sprintf("alice: %d.99 %s", round, text)), gone) >= 0 {
			break
		}
	}
	alice.waitLine(gone)
	alice.send("after slow")
	readUntil("alice: after slow")
	// The disconnect is logged when slow's own goroutine notices its socket was closed.
	srv.logs.waitFor(t, "too slow")
}

func TestLogsAreSanitised(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	p := dialRaw(t, srv.addr)
	p.waitLine(greeting)
	p.send("\x1b]0;pwned\x07" + strings.Repeat("z", 500))
	p.waitFor("a refusal", func(ls []string) bool { return len(ls) > 1 })
	p.send("alice")
	p.waitLine(welcome("alice"))
	p.send("bye")
	p.waitClosed()

	srv.Close()
	logs := srv.logs.String()
	for _, want := range []string{"connect", "name refused", "disconnect", "reason=quit"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
	if strings.ContainsAny(logs, "\x1b\x07") {
		t.Errorf("escape codes reached the log:\n%q", logs)
	}
	if strings.Contains(logs, strings.Repeat("z", 100)) {
		t.Errorf("a long peer string was logged whole:\n%s", logs)
	}
}

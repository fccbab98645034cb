package main

import (
	"fmt"
	"net"
	"strings"
	"testing"

	"chatd/internal/roomtest"
)

// tcpChatter is a client of the TCP line protocol: it is greeted, gives its name, then sends
// lines.
type tcpChatter struct {
	conn net.Conn
	out  *roomtest.Stream
}

func joinOverTCP(t *testing.T, srv *chatd, name string) *tcpChatter {
	t.Helper()
	conn, err := net.Dial("tcp", srv.tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &tcpChatter{conn: conn, out: roomtest.NewStream(conn)}
	c.send(t, name)
	c.out.WaitContains(t, "* welcome to chatd, "+name+"!")
	return c
}

func (c *tcpChatter) send(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s\n", line); err != nil {
		t.Fatalf("send %q: %v", line, err)
	}
}

// count is how many whole lines equal to line c has received.
func (c *tcpChatter) count(line string) int {
	return strings.Count("\n"+c.out.Text(), "\n"+line+"\n")
}

// TestDMQueueCapsPerSenderAndAddress is the attacker review's finding 8: a few clients filled an
// offline person's queue of 100 in seconds, and real senders were refused after. One name may
// now leave 10 messages for someone, and one address 20 whatever the names it uses; each sender
// past a cap is told so, and the person gets what was kept.
func TestDMQueueCapsPerSenderAndAddress(t *testing.T) {
	bobKey := clientKey(t)
	srv := startChatd(t, "--data-dir", t.TempDir())
	if out, err := sshAs(t, srv, bobKey, "bob", "who"); err != nil { // bob registers, and is away
		t.Fatalf("bob: %v\n%s", err, out)
	}
	const queued = "* bob is offline: they get your message when they next log in"

	// Every client here comes from 127.0.0.1: one address.
	first := joinOverTCP(t, srv, "flooder1")
	for i := range 11 {
		first.send(t, fmt.Sprintf("/msg bob spam %d", i))
	}
	first.out.WaitLine(t, "error: you already have 10 messages waiting for bob; they get them when they are back")
	if n := first.count(queued); n != 10 {
		t.Fatalf("flooder1 queued %d messages, want 10", n)
	}
	second := joinOverTCP(t, srv, "flooder2")
	for i := range 10 {
		second.send(t, fmt.Sprintf("/msg bob more spam %d", i))
	}
	second.out.Wait(t, "10 messages queued", func() bool { return second.count(queued) == 10 })
	third := joinOverTCP(t, srv, "flooder3")
	third.send(t, "/msg bob and more")
	third.out.WaitLine(t, "error: 20 messages from your address are already waiting for bob; they get them when they are back")
	if n := third.count(queued); n != 0 {
		t.Fatalf("flooder3 queued %d messages past the address's cap", n)
	}

	bob := startProc(t, "ssh", opensshArgs(srv.sshPort(), bobKey, "", "-T", "bob@127.0.0.1")...)
	bob.stdout.WaitLine(t, "* 20 private message(s) arrived while you were away:")
	bob.stdout.WaitContains(t, ") more spam 9")
	bob.stdin.Close()
	bob.wait(t)
}

package tcp

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"chatd/room"
	"chatd/tcp/client"
)

func TestClientJoin(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	dialClient(t, srv.addr, "bob")

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := client.Dial(ctx, srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Greeting() != greeting {
		t.Fatalf("Greeting() = %q", c.Greeting())
	}

	var se *client.ServerError
	if err := c.Join("Bob"); !errors.As(err, &se) || se.Final || se.Reason != `name "Bob" is taken by someone online` {
		t.Fatalf("Join(taken) = %#v", err)
	}
	if err := c.Join("a\nb"); err == nil || errors.As(err, &se) {
		t.Fatalf("Join with a newline = %v, want a local error", err)
	}
	if err := c.Join("alice"); err != nil {
		t.Fatalf("Join: %v", err)
	}
	if line, err := c.ReadLine(); err != nil || line != welcome("alice") {
		t.Fatalf("first line %q, %v; want the welcome", line, err)
	}
	if line, err := c.ReadLine(); err != nil || line != "* alice joined #lobby (2 online)" {
		t.Fatalf("second line %q, %v", line, err)
	}
	if err := c.Send("two\nlines"); err == nil {
		t.Fatal("Send accepted a newline")
	}
	if err := c.Send("bye"); err != nil {
		t.Fatal(err)
	}
	if line, err := c.ReadLine(); err != nil || line != "* goodbye, alice!" {
		t.Fatalf("got %q, %v; want the goodbye", line, err)
	}
	if _, err := c.ReadLine(); !errors.Is(err, client.ErrConnClosed) {
		t.Fatalf("after the goodbye: %v, want ErrConnClosed", err)
	}
}

func TestClientTooManyAttempts(t *testing.T) {
	rm := newRoom(t, room.Config{})
	srv := startServer(t, testConfig(), rm)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := client.Dial(ctx, srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var se *client.ServerError
	for _, name := range []string{"x y", "-x"} {
		if err := c.Join(name); !errors.As(err, &se) || se.Final {
			t.Fatalf("Join(%q) = %#v, want a refusal to retry", name, err)
		}
	}
	err = c.Join("error")
	if errors.As(err, &se) && !se.Final {
		// The goodbye had not arrived with the refusal: the next attempt reports it.
		err = c.Join("alice")
	}
	if !errors.As(err, &se) || !se.Final || !strings.HasSuffix(se.Reason, "too many attempts; goodbye") {
		t.Fatalf("third bad name: %#v, want a final refusal", err)
	}
}

func TestDialErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	// A server that accepts and never greets: client.Dial gives up when its context does.
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := client.Dial(ctx, addr); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client.Dial to a mute server: %v, want the context's deadline", err)
	}
	if c := <-accepted; c != nil {
		c.Close()
	}
	ln.Close()

	// Nothing listens there any more.
	ctx2, cancel2 := context.WithTimeout(context.Background(), hangGuard)
	defer cancel2()
	if _, err := client.Dial(ctx2, addr); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("client.Dial to a closed port: %v", err)
	}
}

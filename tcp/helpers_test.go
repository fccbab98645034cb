package tcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/log"

	"chatd/room"
	"chatd/tcp/client"
)

// hangGuard only keeps a broken test from hanging: nothing waits for it on the way to passing.
const hangGuard = 20 * time.Second

const greeting = "* welcome to chatd: what is your name?"

func welcome(name string) string {
	return "* welcome to chatd, " + name + "! you are in #lobby; /help lists the commands; bye leaves."
}

// newRoom returns a real room, shut down when the test ends.
func newRoom(t testing.TB, cfg room.Config) *room.Hub {
	t.Helper()
	if cfg.MsgRate == 0 {
		cfg.MsgRate = -1 // the tests that are about the rate limit set one
	}
	rm, err := room.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		if err := rm.Shutdown(ctx); err != nil {
			t.Errorf("room shutdown: %v", err)
		}
	})
	return rm
}

// testServer is a running server on a loopback port.
type testServer struct {
	*Server
	addr   string
	served chan error // Serve's result
	logs   *syncBuffer
}

// startServer serves rm on 127.0.0.1:0 until the test ends, then closes the server and checks
// that Serve returned ErrServerClosed and that no connection goroutine is left.
func startServer(t testing.TB, cfg Config, rm Room) *testServer {
	t.Helper()
	logs := &syncBuffer{}
	srv, err := New(cfg, rm, log.NewWithOptions(logs, log.Options{Level: log.DebugLevel}))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, addr: ln.Addr().String(), served: make(chan error, 1), logs: logs}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		select {
		case err := <-ts.served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		case <-time.After(hangGuard):
			t.Errorf("Serve did not return after Close")
		}
		srv.mu.Lock()
		n := len(srv.conns)
		srv.mu.Unlock()
		if n != 0 {
			t.Errorf("%d connections still tracked after Close", n)
		}
	})
	return ts
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	return cfg
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// waitFor polls the log until it holds s: log lines are written by other goroutines, with
// nothing to wait on.
func (b *syncBuffer) waitFor(t testing.TB, s string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// peer is a raw TCP connection whose every received byte is kept.
type peer struct {
	t    testing.TB
	name string
	conn net.Conn

	mu      sync.Mutex
	buf     []byte
	err     error         // the read error that ended the reader
	changed chan struct{} // closed and replaced whenever buf or err changes
	done    chan struct{} // closed when the reader has returned
}

// dialRaw connects to addr with net.Dial and reads everything that arrives.
func dialRaw(t testing.TB, addr string) *peer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, conn: conn, changed: make(chan struct{}), done: make(chan struct{})}
	go p.read()
	t.Cleanup(func() {
		conn.Close()
		<-p.done
	})
	return p
}

func (p *peer) read() {
	defer close(p.done)
	b := make([]byte, 64<<10)
	for {
		n, err := p.conn.Read(b)
		p.mu.Lock()
		p.buf = append(p.buf, b[:n]...)
		if err != nil {
			p.err = err
		}
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// send writes s and a newline.
func (p *peer) send(s string) {
	p.t.Helper()
	p.sendRaw(s + "\n")
}

func (p *peer) sendRaw(s string) {
	p.t.Helper()
	if _, err := p.conn.Write([]byte(s)); err != nil {
		p.t.Fatalf("%s: write: %v", p.name, err)
	}
}

// raw returns every byte received so far.
func (p *peer) raw() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return bytes.Clone(p.buf)
}

// lines returns the complete lines received so far.
func (p *peer) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := string(p.buf)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

func (p *peer) closed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// waitFor waits until cond holds for the lines received so far, and returns them.
func (p *peer) waitFor(what string, cond func([]string) bool) []string {
	p.t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		ls := p.lines()
		if cond(ls) {
			return ls
		}
		select {
		case <-ch:
		case <-deadline.C:
			p.t.Fatalf("%s: timed out waiting for %s; got:\n%s", p.name, what, tail(ls))
		}
	}
}

// waitLine waits for a line equal to want and returns the lines up to and including it.
func (p *peer) waitLine(want string) []string {
	p.t.Helper()
	ls := p.waitFor(fmt.Sprintf("%q", want), func(ls []string) bool { return indexOf(ls, want) >= 0 })
	return ls[:indexOf(ls, want)+1]
}

// waitClosed waits until the server has closed the connection, and returns every line.
func (p *peer) waitClosed() []string {
	p.t.Helper()
	return p.waitFor("the connection to close", func([]string) bool { return p.closed() })
}

func indexOf(ls []string, s string) int {
	for i, l := range ls {
		if l == s {
			return i
		}
	}
	return -1
}

func tail(ls []string) string {
	if len(ls) > 20 {
		ls = append([]string{fmt.Sprintf("(%d lines before)", len(ls)-20)}, ls[len(ls)-20:]...)
	}
	for i, l := range ls {
		if len(l) > 200 {
			ls[i] = fmt.Sprintf("%s... (%d bytes)", l[:200], len(l))
		}
	}
	return strings.Join(ls, "\n")
}

// joinRaw connects a raw peer and joins it as name.
func joinRaw(t testing.TB, addr, name string) *peer {
	t.Helper()
	p := dialRaw(t, addr)
	p.name = name
	p.waitLine(greeting)
	p.send(name)
	p.waitLine(welcome(name))
	return p
}

// dialClient connects with the client library and joins as name.
func dialClient(t testing.TB, addr, name string) *lineClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Join(name); err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	lc := &lineClient{Client: c, t: t, name: name, changed: make(chan struct{}), done: make(chan struct{})}
	go lc.read()
	t.Cleanup(func() {
		c.Close()
		<-lc.done
	})
	lc.waitLine(welcome(name))
	return lc
}

// lineClient is a Client whose received lines are kept.
type lineClient struct {
	*client.Client
	t    testing.TB
	name string

	mu      sync.Mutex
	got     []string
	err     error
	changed chan struct{}
	done    chan struct{}
}

func (c *lineClient) read() {
	defer close(c.done)
	for {
		line, err := c.ReadLine()
		c.mu.Lock()
		if err == nil {
			c.got = append(c.got, line)
		} else {
			c.err = err
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (c *lineClient) send(line string) {
	c.t.Helper()
	if err := c.Send(line); err != nil {
		c.t.Fatalf("%s: send: %v", c.name, err)
	}
}

func (c *lineClient) waitFor(what string, cond func([]string, error) bool) ([]string, error) {
	c.t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ch, got, err := c.changed, append([]string(nil), c.got...), c.err
		c.mu.Unlock()
		if cond(got, err) {
			return got, err
		}
		select {
		case <-ch:
		case <-deadline.C:
			c.t.Fatalf("%s: timed out waiting for %s; got:\n%s", c.name, what, tail(got))
		}
	}
}

func (c *lineClient) waitLine(want string) []string {
	c.t.Helper()
	got, _ := c.waitFor(fmt.Sprintf("%q", want), func(ls []string, _ error) bool { return indexOf(ls, want) >= 0 })
	return got[:indexOf(got, want)+1]
}

func (c *lineClient) waitClosed() ([]string, error) {
	c.t.Helper()
	return c.waitFor("the connection to close", func(_ []string, err error) bool { return err != nil })
}

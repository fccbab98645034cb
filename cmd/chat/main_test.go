package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"chatd/room"
	"chatd/tcp"
	"chatd/tcp/client"
)

// hangGuard only keeps a broken test from hanging: nothing waits for it on the way to passing.
const hangGuard = 30 * time.Second

// chatBin is the chat binary, built once for all tests.
var chatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "chat-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	chatBin = filepath.Join(dir, "chat")
	out, err := exec.Command("go", "build", "-o", chatBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a real room and TCP server on a loopback port.
type server struct {
	room *room.Hub
	srv  *tcp.Server
	addr string
}

func startServer(t *testing.T, cfg tcp.Config) *server {
	t.Helper()
	rm, err := room.New(room.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := tcp.New(cfg, rm, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
		defer cancel()
		_ = rm.Shutdown(ctx)
		_ = srv.Close()
		if err := <-served; !errors.Is(err, tcp.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return &server{room: rm, srv: srv, addr: ln.Addr().String()}
}

func defaultServer(t *testing.T) *server {
	cfg := tcp.DefaultConfig()
	cfg.Addr = ""
	return startServer(t, cfg)
}

// observer is a member joined with the client library, whose every line is kept.
type observer struct {
	*client.Client
	t     *testing.T
	lines *lineLog
}

func join(t *testing.T, addr, name string) *observer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, err := client.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Join(name); err != nil {
		t.Fatal(err)
	}
	o := &observer{Client: c, t: t, lines: newLineLog(t, name)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			line, err := c.ReadLine()
			if err != nil {
				o.lines.close()
				return
			}
			o.lines.Write([]byte(line + "\n"))
		}
	}()
	t.Cleanup(func() {
		c.Close()
		<-done
	})
	return o
}

// relay passes one connection through to the server and keeps everything the client sends:
// what the server received, byte for byte.
type relay struct {
	addr string
	sent *lineLog
}

func startRelay(t *testing.T, server string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String(), sent: newLineLog(t, "sent")}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", server)
		if err != nil {
			c.Close()
			return
		}
		mu.Lock()
		conns = append(conns, c, s)
		mu.Unlock()
		// Each side's end of input is passed on as it happens, so that bye and the server's
		// close work through the relay as they do without it.
		back := make(chan struct{})
		go func() {
			defer close(back)
			_, _ = io.Copy(c, s)
			_ = c.(*net.TCPConn).CloseWrite()
		}()
		_, _ = io.Copy(io.MultiWriter(s, r.sent), c)
		_ = s.(*net.TCPConn).CloseWrite()
		<-back
		c.Close()
		s.Close()
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		<-done
	})
	return r
}

func (o *observer) send(line string) {
	o.t.Helper()
	if err := o.Send(line); err != nil {
		o.t.Fatal(err)
	}
}

// lineLog is a writer that keeps everything and lets a test wait for what it expects.
type lineLog struct {
	t    *testing.T
	name string

	mu      sync.Mutex
	buf     bytes.Buffer
	closed  bool
	changed chan struct{}
}

func newLineLog(t *testing.T, name string) *lineLog {
	return &lineLog{t: t, name: name, changed: make(chan struct{})}
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	close(l.changed)
	l.changed = make(chan struct{})
	return len(p), nil
}

func (l *lineLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor waits until cond holds for everything written so far.
func (l *lineLog) waitFor(what string, cond func(string) bool) string {
	l.t.Helper()
	deadline := time.NewTimer(hangGuard)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		ch, s := l.changed, l.buf.String()
		l.mu.Unlock()
		if cond(s) {
			return s
		}
		select {
		case <-ch:
		case <-deadline.C:
			l.t.Fatalf("%s: timed out waiting for %s; got:\n%q", l.name, what, s)
		}
	}
}

// waitLine waits for a whole line equal to want.
func (l *lineLog) waitLine(want string) string {
	l.t.Helper()
	return l.waitFor(fmt.Sprintf("line %q", want), func(s string) bool {
		return strings.HasPrefix(s, want+"\n") || strings.Contains(s, "\n"+want+"\n")
	})
}

// proc is a running chat binary with piped stdin.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *lineLog
	stderr *lineLog
	exited chan struct{}
	code   int
}

// startChat runs chat with args, stdin a pipe, and stdout and stderr captured.
func startChat(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(chatBin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{t: t, cmd: cmd, stdout: newLineLog(t, "stdout"), stderr: newLineLog(t, "stderr"), exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.stdin = stdin
	p.start()
	return p
}

func (p *proc) start() {
	p.t.Helper()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		defer close(p.exited)
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				p.code = 128 + int(ws.Signal()) // as a shell reports it
			}
		default:
			p.code = -1
		}
	}()
	p.t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
}

func (p *proc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("writing to chat: %v", err)
	}
}

// wait waits for chat to exit and returns its status.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(hangGuard):
		_ = p.cmd.Process.Kill()
		p.t.Fatalf("chat did not exit; stdout:\n%s\nstderr:\n%s", p.stdout, p.stderr)
		return -1
	}
}

var sgr = regexp.MustCompile(`\x1b\[[0-9;]*m`)

func TestPipedChat(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startChat(t, nil, "-addr", s.addr, "-name", "alice")

	bob.lines.waitLine("* alice joined #lobby (2 online)")
	chat.send("hello bob")
	bob.lines.waitLine("alice: hello bob")

	bob.send("hi alice \x1b[31min red\x1b[0m")
	bob.send("/me waves")
	bob.send("/msg alice psst")
	chat.stdout.waitLine("[dm from bob] psst")
	want := []string{
		"* welcome to chatd, alice! you are in #lobby; /help lists the commands; bye leaves.",
		"* alice joined #lobby (2 online)",
		"bob: hi alice in red",
		"** bob waves",
		"[dm from bob] psst",
	}
	if got := chat.stdout.String(); got != strings.Join(want, "\n")+"\n" {
		t.Fatalf("chat printed:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	// The end of the input says bye, and chat exits once the server has closed.
	chat.stdin.Close()
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	bob.lines.waitLine("* alice left #lobby")
	if !strings.HasSuffix(chat.stdout.String(), "* goodbye, alice!\n") {
		t.Fatalf("no goodbye at the end:\n%s", chat.stdout)
	}
	if strings.Contains(chat.stdout.String(), "\x1b") || chat.stderr.String() != "" {
		t.Fatalf("escape codes or errors: stdout %q, stderr %q", chat.stdout, chat.stderr)
	}
}

// TestPipedLongLine sends a long padded line: without a terminal, it arrives as it was sent, not
// wrapped, for scripts to parse.
func TestPipedLongLine(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startChat(t, nil, "-addr", s.addr, "-name", "alice")
	bob.lines.waitLine("* alice joined #lobby (2 online)")

	long := "look" + strings.Repeat(" ", 71) + "* bob left (too slow) " + strings.TrimSpace(strings.Repeat("more words ", 30))
	bob.send(long)
	chat.stdout.waitLine("bob: " + long)
	chat.stdin.Close()
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	if strings.Contains(chat.stdout.String(), "\n  ") || strings.Contains(chat.stdout.String(), "\x1b") {
		t.Fatalf("the output is not the lines as they came:\n%q", chat.stdout)
	}
}

func TestNameFromFirstLine(t *testing.T) {
	s := defaultServer(t)
	bob := join(t, s.addr, "bob")
	chat := startChat(t, nil, "-addr", s.addr)
	chat.send("carol")
	chat.send("hey there")
	chat.stdin.Close()
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	bob.lines.waitLine("carol: hey there")
	bob.lines.waitLine("* carol left #lobby")
	if strings.Contains(chat.stdout.String(), "Enter your name") {
		t.Fatal("prompted for a name on a pipe")
	}
}

func TestNameRefused(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		stdin string
		want  string // on stderr
	}{
		{"taken, from the flag", []string{"-name", "bob"}, "", `chat: name "bob" is taken by someone online`},
		{"taken, any case", []string{"-name", "BOB"}, "", `chat: name "BOB" is taken by someone online`},
		{"invalid, from the flag", []string{"-name", "x y"}, "", `chat: name "x y" may only contain letters, digits, '_', '.' and '-'`},
		{"taken, from a pipe", nil, "bob\nsecond try\n", `chat: name "bob" is taken by someone online`},
		{"no name at all", nil, "\n\n", "chat: no name given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultServer(t)
			bob := join(t, s.addr, "bob")
			chat := startChat(t, nil, append([]string{"-addr", s.addr}, tt.args...)...)
			io.WriteString(chat.stdin, tt.stdin)
			chat.stdin.Close()
			if code := chat.wait(); code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, chat.stderr)
			}
			if got := chat.stderr.String(); got != tt.want+"\n" {
				t.Fatalf("stderr %q, want %q", got, tt.want)
			}
			// A piped client has one try: the second line is never taken as a name.
			bob.send("/who")
			bob.lines.waitLine("* 1 online in #lobby: bob")
		})
	}
}

func TestByeExits(t *testing.T) {
	for _, cmd := range []string{"bye", "/quit", "/EXIT now"} {
		t.Run(cmd, func(t *testing.T) {
			s := defaultServer(t)
			bob := join(t, s.addr, "bob")
			chat := startChat(t, nil, "-addr", s.addr, "-name", "alice")
			chat.send("last words")
			chat.send(cmd) // stdin stays open: the server's close ends chat
			if code := chat.wait(); code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
			}
			bob.lines.waitLine("alice: last words")
			bob.lines.waitLine("* alice left #lobby")
			if out := chat.stdout.String(); !strings.HasSuffix(out, "* goodbye, alice!\n") {
				t.Fatalf("stdout:\n%s", out)
			}
		})
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	chat := startChat(t, nil, "-addr", addr, "-name", "alice")
	if code := chat.wait(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "chat: cannot connect to " + addr + ": connection refused (is chatd running?)\n"
	if got := chat.stderr.String(); got != want {
		t.Fatalf("stderr %q, want %q", got, want)
	}
}

func TestServerFull(t *testing.T) {
	cfg := tcp.DefaultConfig()
	cfg.MaxConns = 1
	s := startServer(t, cfg)
	join(t, s.addr, "bob")
	chat := startChat(t, nil, "-addr", s.addr, "-name", "alice")
	if code := chat.wait(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "chat: " + s.addr + " refused the connection: server is full (1 connections); try again later\n"
	if got := chat.stderr.String(); got != want {
		t.Fatalf("stderr %q, want %q", got, want)
	}
}

func TestServerShutdown(t *testing.T) {
	s := defaultServer(t)
	chat := startChat(t, nil, "-addr", s.addr, "-name", "alice")
	chat.stdout.waitLine("* alice joined #lobby (1 online)")

	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := s.room.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code := chat.wait(); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	want := "chat: connection closed by server: server is shutting down, goodbye\n"
	if got := chat.stderr.String(); got != want {
		t.Fatalf("stderr %q, want %q", got, want)
	}
	chat.stdout.waitLine("* server is shutting down, goodbye")
}

// TestHostileServer checks chat's own sanitising: a server that is not chatd (or a compromised
// one) still cannot put escape codes on the user's terminal.
func TestHostileServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "* name?\n")
		buf := make([]byte, 64)
		c.Read(buf) // the name
		io.WriteString(c, "* welcome\x1b]0;owned\x07\nbob: \x1b[2Jhi\u009b31m there\x00\r\n\x1b[31merror: fake\n")
	}()
	chat := startChat(t, []string{"NO_COLOR="}, "-addr", ln.Addr().String(), "-name", "alice")
	if code := chat.wait(); code != 1 {
		t.Fatalf("exit %d, want 1 (the server closed)", code)
	}
	want := "* welcome\nbob: hi there\nerror: fake\n"
	if got := chat.stdout.String(); got != want {
		t.Fatalf("stdout %q, want %q", got, want)
	}
	if got := chat.stderr.String(); got != "chat: connection closed by server: fake\n" {
		t.Fatalf("stderr %q", got)
	}
}

// TestPipedTab checks that pipes get no completion: a tab is sent as it was read.
func TestPipedTab(t *testing.T) {
	s := defaultServer(t)
	r := startRelay(t, s.addr)
	alice := join(t, s.addr, "alice")
	chat := startChat(t, nil, "-addr", r.addr, "-name", "carol")
	alice.lines.waitLine("* carol joined #lobby (2 online)")
	alice.send("hi")
	chat.stdout.waitLine("alice: hi")
	chat.send("al\t")
	chat.send("/jo\t#go")
	chat.stdin.Close()
	if code := chat.wait(); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, chat.stderr)
	}
	if got, want := r.sent.String(), "carol\nal\t\n/jo\t#go\nbye\n"; got != want {
		t.Fatalf("the server received %q, want %q", got, want)
	}
}

func TestUsage(t *testing.T) {
	chat := startChat(t, nil, "-h")
	if code := chat.wait(); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	if !strings.Contains(chat.stderr.String(), "-addr") {
		t.Fatalf("-h printed %q", chat.stderr)
	}
	chat = startChat(t, nil, "extra")
	if code := chat.wait(); code != 2 {
		t.Fatalf("an extra argument: exit %d, want 2", code)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(chatBin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "chat ") || !strings.Contains(string(out), ", commit ") {
		t.Fatalf("chat --version: %v: %q", err, out)
	}
}

func TestIsQuit(t *testing.T) {
	for line, want := range map[string]bool{
		"bye": true, "  bye  ": true, "bye\x00": true, "/quit": true, "/QUIT now": true, "/exit": true,
		"Bye": false, "bye bye": false, "//quit": false, "/quitting": false, "goodbye": false, "": false,
	} {
		if got := isQuit(line); got != want {
			t.Errorf("isQuit(%q) = %v, want %v", line, got, want)
		}
	}
}

func TestWithDefaultPort(t *testing.T) {
	for in, want := range map[string]string{
		"localhost":      "localhost:2323",
		"example.org":    "example.org:2323",
		"[::1]":          "[::1]:2323",
		"127.0.0.1:9000": "127.0.0.1:9000",
		"[::1]:9000":     "[::1]:9000",
		":2323":          ":2323",
	} {
		if got := withDefaultPort(in); got != want {
			t.Errorf("withDefaultPort(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestClientLinksNoServer keeps the chat command small: it speaks the protocol (tcp/client) and
// links neither the room nor SQLite.
func TestClientLinksNoServer(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep == "chatd/room" || dep == "chatd/tcp" || strings.HasPrefix(dep, "chatd/store") || strings.HasPrefix(dep, "modernc.org/") {
			t.Errorf("chat depends on %s", dep)
		}
	}
}

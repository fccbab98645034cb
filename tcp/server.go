// Package tcp carries the chat over a plain TCP line protocol, for netcat, scripts, bots and the
// chat command: the server asks a new connection for a name, joins it to the room, and from then
// on only moves lines between the socket and the room; package tcp/client is the client side of
// the same protocol. Chat rules and commands live in package room, not here.
//
// The protocol: UTF-8 lines ending in LF or CRLF. On connect the server sends one line,
// "* welcome to chatd: what is your name?" (the room's name in place of chatd),
// and the client's first line is its name. A refused name gets "error: <reason>" and the server
// waits for another; after MaxNameAttempts refusals it sends "error: too many attempts; goodbye"
// and closes, as it does with "error: no name given in 60s; goodbye" when no name comes in time.
// Once joined, every line is a message or a command (/help lists them), and every line from the
// server is one of the room's plain lines: "alice: text", "** alice waves", "#go alice: text" (from
// another of the client's rooms), "* notice",
// "[dm from alice] text", "[dm to bob] text", "error: reason". "bye" leaves.
package tcp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/charmbracelet/log"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/internal/linereader"
	"chatd/room"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("tcp: server closed")

// Room is what the TCP server needs of the chat room.
type Room interface {
	Join(name string, out room.Output, opts room.JoinOptions) (*room.Member, error)
	Config() room.Config
}

// Config configures the TCP server.
type Config struct {
	// Addr is the address ListenAndServe listens on, e.g. ":2323".
	Addr string
	// MaxConns caps the open connections, those still choosing a name included; a connection
	// over the cap is told the server is full and closed. 0 means no limit.
	MaxConns int
	// NameTimeout is how long a new connection has to choose a name before it is closed.
	NameTimeout time.Duration
	// MaxNameAttempts is how many refused names a connection may send before it is closed.
	MaxNameAttempts int
	// Gate admits connections: the limits per address and in all, and the address bans, shared
	// with the SSH server; nil for none.
	Gate *connlimit.Gate
	// Refuse, when set, turns every connection away with this reason (an SSH-only server).
	Refuse string
	// Metrics counts the connections MaxConns refuses (the Gate counts its own); nil for none.
	// Package metrics implements it.
	Metrics interface {
		Refused(transport, reason string)
	}
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:            ":2323",
		MaxConns:        10000,
		NameTimeout:     60 * time.Second,
		MaxNameAttempts: 3,
	}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if c.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			return fmt.Errorf("address %q: %w", c.Addr, err)
		}
	}
	switch {
	case c.MaxConns < 0:
		return fmt.Errorf("max conns must be 0 (no limit) or more, got %d", c.MaxConns)
	case c.NameTimeout <= 0:
		return fmt.Errorf("name timeout must be positive, got %s", c.NameTimeout)
	case c.MaxNameAttempts < 1:
		return fmt.Errorf("max name attempts must be at least 1, got %d", c.MaxNameAttempts)
	}
	return nil
}

const (
	// writeTimeout bounds each line the server writes itself, before a connection joins (the
	// greeting, a refusal). After that the room writes, with its own slow-consumer rules.
	writeTimeout = 5 * time.Second
	// lingerTimeout bounds how long a closing connection's unread input is drained, so that
	// the last line the server wrote is not lost to a reset.
	lingerTimeout = time.Second
	// maxLogLen is how much of a peer-chosen string (a refused name) goes into the log.
	maxLogLen = 64
)

// Server is the chat's TCP server.
type Server struct {
	cfg      Config
	room     Room
	log      *log.Logger
	maxLine  int
	greeting []byte

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{} // every connection with a goroutine, refused ones included
	active    int                // connections counted against MaxConns
	stopping  bool               // Shutdown or Close was called: accept nothing more
	closed    chan struct{}      // closed with stopping: wakes an accept loop's backoff

	handlers sync.WaitGroup // every connection goroutine
	waitOnce sync.Once
	idle     chan struct{} // closed once stopping and every connection goroutine has returned
}

// New builds a server for rm. logger may be nil.
func New(cfg Config, rm Room, logger *log.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tcp config: %w", err)
	}
	if rm == nil {
		return nil, errors.New("tcp: no room")
	}
	if logger == nil {
		logger = log.New(io.Discard)
	}
	rcfg := rm.Config()
	return &Server{
		cfg:       cfg,
		room:      rm,
		log:       logger,
		maxLine:   rcfg.MaxLineBytes(),
		greeting:  []byte("* welcome to " + chat.Sanitize(rcfg.Name) + ": what is your name?\n"),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		closed:    make(chan struct{}),
		idle:      make(chan struct{}),
	}, nil
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen tcp: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close, then returns ErrServerClosed. Each
// connection gets its own goroutine: the accept loop never waits on a client.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	s.log.Info("listening", "addr", ln.Addr().String())
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isStopping() {
				return ErrServerClosed
			}
			if !temporary(err) {
				_ = ln.Close()
				return fmt.Errorf("tcp accept: %w", err)
			}
			// Out of file descriptors, say: wait and try again rather than spin or give up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed; retrying", "err", err, "in", backoff.String())
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.closed:
				t.Stop()
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		s.accept(nc)
	}
}

// temporary reports accept errors worth retrying.
func temporary(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// accept registers a new connection and starts its goroutine, or its refusal when the server
// is full. It does not block.
func (s *Server) accept(nc net.Conn) {
	// An interface, not *net.TCPConn: a connection that came through a PROXY header is wrapped.
	if tc, ok := nc.(interface {
		SetKeepAliveConfig(net.KeepAliveConfig) error
	}); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 15 * time.Second, Count: 4})
	}
	// The name deadline is set before the connection is visible to Shutdown, whose own
	// deadline (to wake a connection still choosing a name) must not be overwritten.
	_ = nc.SetReadDeadline(time.Now().Add(s.cfg.NameTimeout))
	c := &conn{nc: nc, remote: nc.RemoteAddr().String(), start: time.Now(), releaseSlot: func() {}}

	// The shared limits and bans first; a flood is closed without a word. Every connection goes
	// through the gate, those an SSH-only server refuses too, so that every attempt counts
	// toward the address's rate.
	ticket := s.cfg.Gate.Admit("tcp", nc.RemoteAddr())
	if ticket.Drop {
		_ = nc.Close()
		return
	}
	c.releaseSlot = ticket.Release
	refusal := ticket.Refusal
	if refusal == "" && s.cfg.Refuse != "" {
		refusal = s.cfg.Refuse
	}

	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		c.releaseSlot()
		_ = nc.Close()
		return
	}
	full := refusal == "" && s.cfg.MaxConns > 0 && s.active >= s.cfg.MaxConns
	if full {
		refusal = fmt.Sprintf("server is full (%d connections); try again later", s.cfg.MaxConns)
		s.refused(connlimit.ReasonLimit)
	}
	c.counted = refusal == ""
	if c.counted {
		s.active++
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	s.mu.Unlock()

	if refusal != "" {
		go s.refuse(c, refusal)
		return
	}
	go s.serveConn(c)
}

// release forgets a connection whose goroutine is ending.
func (s *Server) release(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if c.counted {
		s.active--
	}
	s.mu.Unlock()
	c.releaseSlot()
	s.handlers.Done()
}

func (s *Server) refused(reason string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.Refused("tcp", reason)
	}
}

// refuse tells a connection why it is turned away (the server is full, a ban), and closes it.
func (s *Server) refuse(c *conn, reason string) {
	defer s.release(c)
	s.log.Warn("refused", "remote", c.remote, "reason", reason)
	_ = c.writeNow("error: " + reason + "\n")
	_ = c.nc.Close()
}

// serveConn runs one connection: the name phase, then lines into the room until it ends.
func (s *Server) serveConn(c *conn) {
	defer s.release(c)
	s.log.Info("connect", "remote", c.remote)
	lr := linereader.New(c.nc, s.maxLine)

	m, why := s.choose(c, lr)
	if m == nil {
		s.log.Info("disconnect", "remote", c.remote, "reason", why, "duration", since(c.start))
		c.linger()
		return
	}

	for {
		line, err := lr.ReadLine()
		if errors.Is(err, linereader.ErrTooLong) {
			m.Errorf("line too long (over %d bytes); it was discarded", s.maxLine)
			continue
		}
		if err != nil {
			m.Leave(room.ReasonEOF)
			break
		}
		if m.Handle(line) == room.Quit {
			m.Leave(room.ReasonQuit)
			break
		}
	}
	s.log.Info("disconnect", "remote", c.remote, "user", m.Name(), "reason", m.Reason().String(), "duration", since(c.start))
	c.linger()
}

// choose is the name phase: it greets the connection and reads names until the room accepts
// one. It returns the member, or nil and why the connection is to be closed (having told the
// client, when there was a chance to).
func (s *Server) choose(c *conn, lr *linereader.Reader) (*room.Member, string) {
	if err := c.writeNow(string(s.greeting)); err != nil {
		return nil, "write failed: " + err.Error()
	}
	out := &output{nc: c.nc}
	for attempt := 1; ; attempt++ {
		line, err := lr.ReadLine()
		if c.stopped() {
			_ = c.writeNow("error: server is shutting down; goodbye\n")
			return nil, "shutdown"
		}
		var reason string
		switch {
		case errors.Is(err, linereader.ErrTooLong):
			reason = fmt.Sprintf("name is too long (at most %d characters)", chat.MaxNameLen)
			line = ""
		case errors.Is(err, io.EOF):
			return nil, "eof before a name"
		case isTimeout(err):
			_ = c.writeNow(fmt.Sprintf("error: no name given in %s; goodbye\n", durationWords(s.cfg.NameTimeout)))
			return nil, "name timeout"
		case err != nil:
			return nil, "read error before a name: " + err.Error()
		}

		name := strings.TrimSpace(line)
		if reason == "" {
			if !c.enter(phaseJoining) {
				_ = c.writeNow("error: server is shutting down; goodbye\n")
				return nil, "shutdown"
			}
			m, err := s.room.Join(name, out, room.JoinOptions{Format: room.Plain, Transport: "tcp", Remote: c.remote})
			if err == nil {
				c.enter(phaseJoined)
				// From here on the room owns every write; no more deadlines of ours.
				_ = c.nc.SetDeadline(time.Time{})
				return m, ""
			}
			var ne *chat.NameError
			if !errors.As(err, &ne) {
				if errors.Is(err, room.ErrClosed) {
					_ = c.writeNow("error: server is shutting down; goodbye\n")
					return nil, "shutdown"
				}
				_ = c.writeNow("error: cannot join: " + chat.Sanitize(err.Error()) + "\n")
				return nil, "join failed: " + err.Error()
			}
			if !c.enter(phaseNaming) {
				_ = c.writeNow("error: server is shutting down; goodbye\n")
				return nil, "shutdown"
			}
			reason = chat.Sanitize(err.Error())
		}

		s.log.Info("name refused", "remote", c.remote, "name", cleanPeerString(name), "reason", reason, "attempt", attempt)
		msg := "error: " + reason + "\n"
		if attempt >= s.cfg.MaxNameAttempts {
			// One write, so that a client reading the refusal finds the goodbye right behind it.
			_ = c.writeNow(msg + "error: too many attempts; goodbye\n")
			return nil, "too many name attempts"
		}
		if err := c.writeNow(msg); err != nil {
			return nil, "write failed: " + err.Error()
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// durationWords writes a timeout the way people say it: "60s", "2m", "1.5s".
func durationWords(d time.Duration) string {
	switch {
	case d%time.Minute == 0 && d >= 2*time.Minute:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d%time.Second == 0:
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return d.String()
}

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

// cleanPeerString sanitises and shortens a string the peer chose before it is logged.
func cleanPeerString(s string) string { return chat.Excerpt(s, maxLogLen) }

// Shutdown stops accepting connections, closes those still choosing a name (telling them the
// server is going down), and waits until ctx expires for the others to end. Chat connections
// never end by themselves: shut the room down first, which disconnects its members. Shutdown is
// idempotent; when ctx expires first it returns ctx's error and Close finishes the job.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopLocked()
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()

	select {
	case <-s.waitIdle():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tcp shutdown: %w", ctx.Err())
	}
}

// Close closes the listeners and every connection at once, and returns when every connection's
// goroutine has.
func (s *Server) Close() error {
	s.mu.Lock()
	s.stopLocked()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	s.mu.Unlock()
	<-s.waitIdle()
	return nil
}

// stopLocked stops accepting; s.mu must be held.
func (s *Server) stopLocked() {
	if !s.stopping {
		s.stopping = true
		close(s.closed)
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
}

// waitIdle returns a channel closed once every connection goroutine has returned. It must be
// called only once stopping is set, so that no goroutine can start after the wait begins.
func (s *Server) waitIdle() <-chan struct{} {
	s.waitOnce.Do(func() {
		go func() {
			s.handlers.Wait()
			close(s.idle)
		}()
	})
	return s.idle
}

// phase is where a connection is in its life.
type phase uint8

const (
	phaseNaming  phase = iota // reading names: Shutdown closes it
	phaseJoining              // in room.Join: Shutdown lets it finish
	phaseJoined               // a member: the room ends it
	phaseClosing              // lingering before the close: Shutdown cuts it short
)

// conn is one accepted connection.
type conn struct {
	nc      net.Conn
	remote  string
	start   time.Time
	counted bool // counts against MaxConns

	releaseSlot func() // gives back the shared limiter's slot

	mu       sync.Mutex
	phase    phase
	stopping bool // Shutdown was called: end the connection unless it is (or is becoming) a member
}

// stop asks the connection to end if it has not joined: its pending read is woken at once.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	if c.phase == phaseNaming || c.phase == phaseClosing {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *conn) stopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping && c.phase == phaseNaming
}

// enter moves the connection to phase p. Moving back to naming, or on to joining, fails once
// Shutdown has asked the connection to end.
func (c *conn) enter(p phase) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopping && p != phaseJoined {
		return false
	}
	c.phase = p
	return true
}

// writeNow writes a line of the server's own, before the room owns the connection's output.
func (c *conn) writeNow(s string) error {
	_ = c.nc.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err := io.WriteString(c.nc, s)
	return err
}

// linger closes the connection after the client has had the chance to read what it was sent:
// closing a socket with unread input resets it, and a reset can destroy the last lines (a
// goodbye, a refusal) before the client reads them. It half-closes, drains briefly, closes.
func (c *conn) linger() {
	defer c.nc.Close()
	cw, ok := c.nc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.mu.Lock()
	c.phase = phaseClosing
	wait := !c.stopping // when the server is going down, there is no time to wait
	if wait {
		wait = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout)) == nil
	}
	c.mu.Unlock()
	if wait {
		_, _ = io.CopyN(io.Discard, c.nc, 64<<10)
	}
}

// output is a member's connection as the room sees it.
type output struct{ nc net.Conn }

func (o *output) Write(p []byte) (int, error) { return o.nc.Write(p) }

// Close closes the connection: it does not block, and it makes a blocked Write return.
func (o *output) Close() error { return o.nc.Close() }

package sshd

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"chatd/connlimit"
)

// connState is what the server knows about one connection: the gate's decision before it
// authenticated (a refusal to tell the client in the SSH banner), and its sessions, which decide
// its deadline: a connection with no session running is closed after HandshakeTimeout, whether
// it has not started one yet or its last one has ended.
type connState struct {
	conn     *guardedConn
	refusal  string // why every authentication will fail; "" when admitted
	accepted time.Time

	mu      sync.Mutex
	opened  int  // session channels opened so far, refused ones included
	open    int  // session channels open now
	running int  // sessions started whose channel is not gone yet
	begun   bool // a session has started once
}

type connKey struct{}

func connOf(ctx ssh.Context) *connState {
	cs, _ := ctx.Value(connKey{}).(*connState)
	return cs
}

// admit runs for every accepted TCP connection, before the SSH handshake. The gate counts the
// connection against the limits; the handshake gets a deadline, so that connections that stay
// silent or drip bytes are closed and never hold a slot for long. A connection over a limit
// still gets through the handshake, to be told why in a banner and refused; a flood from one
// address is closed at once, without the handshake's cost.
func (s *Server) admit(ctx ssh.Context, nc net.Conn) net.Conn {
	t := s.cfg.Gate.Admit("ssh", nc.RemoteAddr())
	if t.Drop {
		s.log.Debug("refused at once", "remote", nc.RemoteAddr().String(), "reason", t.Refusal)
		_ = nc.Close()
		return nil
	}
	cs := &connState{refusal: t.Refusal, accepted: time.Now()}
	cs.conn = &guardedConn{Conn: nc, release: t.Release}
	cs.conn.awaitSession(s.cfg.HandshakeTimeout)
	ctx.SetValue(connKey{}, cs)
	if cs.refusal != "" {
		s.log.Info("refused", "remote", nc.RemoteAddr().String(), "reason", cs.refusal)
	}
	return cs.conn
}

// sessionStarted lifts the connection's deadline while a session runs.
func (s *Server) sessionStarted(cs *connState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.running++
	if !cs.begun {
		cs.begun = true
		s.cfg.Metrics.Handshake(time.Since(cs.accepted))
	}
	if cs.running == 1 {
		cs.conn.sessionRunning()
	}
}

// sessionGone gives the connection a deadline again once its last session is gone: an idle SSH
// connection holds a slot, a file descriptor and goroutines for nothing.
func (s *Server) sessionGone(cs *connState) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.running--
	if cs.running == 0 {
		cs.conn.awaitSession(s.cfg.HandshakeTimeout)
	}
}

// banner is sent to the client before it authenticates: empty, unless the connection is
// refused, in which case it says why (every authentication then fails).
func (s *Server) banner(ctx ssh.Context) string {
	if cs := connOf(ctx); cs != nil && cs.refusal != "" {
		return "chatd: " + cs.refusal + "\r\n"
	}
	return ""
}

func refused(ctx ssh.Context) bool {
	cs := connOf(ctx)
	return cs != nil && cs.refusal != ""
}

// acceptKey runs for every key a client offers, before it proves it holds it: only refused
// connections and keys off the allowlist are turned away here; the rest is decided once the key
// is proved, in verifyKey.
func (s *Server) acceptKey(ctx ssh.Context, key ssh.PublicKey) bool {
	if refused(ctx) {
		return false
	}
	return s.cfg.Allow == nil || s.cfg.Allow[gossh.FingerprintSHA256(key)]
}

// acceptKeyless lets people without a key in, with no questions, unless the connection is
// refused or the server admits listed keys only. Their name is checked when they join or run a
// command.
func (s *Server) acceptKeyless(ctx ssh.Context, challenge gossh.KeyboardInteractiveChallenge) bool {
	if refused(ctx) {
		return false
	}
	if s.cfg.Allow != nil && !s.cfg.AllowKeyless {
		_, _ = challenge("", "chatd: this server only admits SSH keys on its list; log in with one of those", nil, nil)
		return false
	}
	return true
}

// verifyKey runs once the client has proved it holds key (not for every key it merely offers):
// bans and the name's pinned keys are checked against it. Its refusal reaches the user as a
// banner.
func (s *Server) verifyKey(conn gossh.ConnMetadata, key gossh.PublicKey, perms *gossh.Permissions, _ string) (*gossh.Permissions, error) {
	fp := gossh.FingerprintSHA256(key)
	refuse := func(reason string, err error) (*gossh.Permissions, error) {
		s.cfg.Metrics.AuthFailed(reason)
		s.log.Info("auth refused", "user", cleanUser(conn.User()), "remote", conn.RemoteAddr().String(), "key", fp, "reason", err.Error())
		return nil, &gossh.BannerError{Err: err, Message: "chatd: " + err.Error() + "\r\n"}
	}
	if s.cfg.Allow != nil && !s.cfg.Allow[fp] {
		return refuse("allowlist", fmt.Errorf("this server only admits SSH keys on its list, and %s is not one of them", fp))
	}
	if err := s.room.Banned(connlimit.AddrIP(conn.RemoteAddr()), fp, conn.User()); err != nil {
		return refuse("banned", err)
	}
	if err := s.room.Authorize(conn.User(), StoreKey(key)); err != nil {
		return refuse("registered", err)
	}
	return perms, nil
}

// guardedConn is an accepted connection: it holds a slot in the limiter until it closes, and
// keeps a deadline on it while no session runs (the handshake, or after the last session)
// however often the SSH library resets deadlines.
type guardedConn struct {
	net.Conn
	release func()
	once    sync.Once

	mu       sync.Mutex
	deadline time.Time // by when a session must run; zero while one runs
	set      bool      // a deadline is set on the connection
}

// awaitSession gives the connection timeout to have a session running.
func (c *guardedConn) awaitSession(timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	c.mu.Lock()
	c.deadline = time.Now().Add(timeout)
	c.mu.Unlock()
	_ = c.SetDeadline(c.deadline)
}

// sessionRunning lifts the deadline: a session runs, and the chat may last.
func (c *guardedConn) sessionRunning() {
	c.mu.Lock()
	c.deadline = time.Time{}
	c.mu.Unlock()
	_ = c.SetDeadline(time.Time{})
}

// SetDeadline never moves a deadline past the session deadline while one is set:
// charmbracelet/ssh resets the deadline on every read and write. Clearing a deadline that is not
// set is skipped: that is every read and write of a chat.
func (c *guardedConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	hd := c.deadline
	if !hd.IsZero() && (t.IsZero() || t.After(hd)) {
		t = hd
	}
	if t.IsZero() && !c.set {
		c.mu.Unlock()
		return nil
	}
	c.set = !t.IsZero()
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *guardedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

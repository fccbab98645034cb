package sshd

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/charmbracelet/ssh"
	gossh "golang.org/x/crypto/ssh"

	"chatd/connlimit"
)

// admission is what the server decided about a connection before it authenticated: a refusal
// (too many connections, a banned address) to tell the client in the SSH banner, and the
// connection, whose handshake deadline is lifted once a session starts.
type admission struct {
	conn     *guardedConn
	refusal  string // why every authentication will fail; "" when admitted
	accepted time.Time
}

type admissionKey struct{}

func admissionOf(ctx ssh.Context) *admission {
	a, _ := ctx.Value(admissionKey{}).(*admission)
	return a
}

// admit runs for every accepted TCP connection, before the SSH handshake. It counts the
// connection against the limits and gives the handshake a deadline, so that connections that
// stay silent or drip bytes are closed and never hold a slot for long. A connection over a limit
// still gets through the handshake, to be told why in a banner and refused; a flood from one
// address is closed at once, without the handshake's cost.
func (s *Server) admit(ctx ssh.Context, nc net.Conn) net.Conn {
	a := &admission{accepted: time.Now()}
	release := func() {}
	if s.cfg.Limiter != nil {
		rel, err := s.cfg.Limiter.Admit(nc.RemoteAddr())
		var ref *connlimit.Refusal
		switch {
		case errors.As(err, &ref) && ref.Hard:
			s.log.Debug("refused at once", "remote", nc.RemoteAddr().String(), "reason", ref.Reason)
			s.cfg.Metrics.Refused("ssh", "flood")
			_ = nc.Close()
			return nil
		case err != nil:
			a.refusal = err.Error()
			s.cfg.Metrics.Refused("ssh", "limit")
		default:
			release = rel
		}
	}
	if a.refusal == "" {
		if err := s.room.Banned(connlimit.AddrIP(nc.RemoteAddr()), "", ""); err != nil {
			a.refusal = err.Error()
			s.cfg.Metrics.Refused("ssh", "banned")
		}
	}
	a.conn = &guardedConn{Conn: nc, release: release}
	a.conn.startHandshake(s.cfg.HandshakeTimeout)
	ctx.SetValue(admissionKey{}, a)
	if a.refusal != "" {
		s.log.Info("refused", "remote", nc.RemoteAddr().String(), "reason", a.refusal)
	}
	return a.conn
}

// banner is sent to the client before it authenticates: empty, unless the connection is
// refused, in which case it says why (every authentication then fails).
func (s *Server) banner(ctx ssh.Context) string {
	if a := admissionOf(ctx); a != nil && a.refusal != "" {
		return "chatd: " + a.refusal + "\r\n"
	}
	return ""
}

func refused(ctx ssh.Context) bool {
	a := admissionOf(ctx)
	return a != nil && a.refusal != ""
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
// refused or the server admits listed keys only.
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
// keeps a deadline on the handshake however often the SSH library resets deadlines.
type guardedConn struct {
	net.Conn
	release func()
	once    sync.Once

	mu       sync.Mutex
	deadline time.Time // the handshake's; zero once a session has started
	set      bool      // a deadline is set on the connection
}

func (c *guardedConn) startHandshake(timeout time.Duration) {
	if timeout <= 0 {
		return
	}
	c.mu.Lock()
	c.deadline = time.Now().Add(timeout)
	c.mu.Unlock()
	_ = c.SetDeadline(c.deadline)
}

// endHandshake lifts the handshake deadline: a session has started.
func (c *guardedConn) endHandshake() {
	c.mu.Lock()
	c.deadline = time.Time{}
	c.mu.Unlock()
	_ = c.SetDeadline(time.Time{})
}

// SetDeadline never moves a deadline past the handshake's while it runs: charmbracelet/ssh
// resets the deadline on every read and write. Clearing a deadline that is not set is skipped:
// that is every read and write of a chat.
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

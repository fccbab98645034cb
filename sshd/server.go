// Package sshd is the SSH face of the chat: a wish server that authenticates people, and a
// per-session shell that only moves lines between the SSH channel and the room. It knows nothing
// of chat rules; those live in package room.
package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/charmbracelet/log"
	"github.com/charmbracelet/ssh"
	"github.com/charmbracelet/wish"
	gossh "golang.org/x/crypto/ssh"

	"chatd/connlimit"
	"chatd/room"
	"chatd/room/store"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("sshd: server closed")

// Room is what the SSH server needs of the chat room.
type Room interface {
	Authorize(name string, key store.Key) error
	Banned(ip netip.Addr, fingerprint, name string) error
	Join(name string, out room.Output, opts room.JoinOptions) (*room.Member, error)
	Exec(args []string, stdout io.Writer, opts room.ExecOptions) error
	Config() room.Config
}

// Config configures the SSH server.
type Config struct {
	// Addr is the address Serve's caller listens on, e.g. ":2222"; ListenAndServe uses it.
	Addr string
	// HostSigners are the host keys to serve; at least one is required.
	HostSigners []gossh.Signer
	// Version is the software version sent in the SSH banner ("SSH-2.0-<Version>").
	Version string
	// Limiter caps connections, shared with the TCP server; nil for no caps.
	Limiter *connlimit.Limiter
	// HandshakeTimeout is how long a connection has to get through the SSH handshake and
	// authentication and start a session before it is closed. Default 10s.
	HandshakeTimeout time.Duration
	// Operators are the key fingerprints whose sessions may use the operator commands.
	Operators map[string]bool
	// Allow, when not nil, is the allowlist: only these key fingerprints may log in.
	Allow map[string]bool
	// AllowKeyless lets people without a key in despite an allowlist.
	AllowKeyless bool
	// Metrics receives counts and timings; nil for none. Package metrics implements it.
	Metrics Metrics
}

// Metrics is what the SSH server reports about itself.
type Metrics interface {
	AuthFailed(reason string)         // "allowlist", "banned", "registered"
	Refused(transport, reason string) // before authentication: "limit", "flood", "banned"
	Handshake(d time.Duration)        // from accept to a session starting
}

type noMetrics struct{}

func (noMetrics) AuthFailed(string)       {}
func (noMetrics) Refused(string, string)  {}
func (noMetrics) Handshake(time.Duration) {}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Addr: ":2222", Version: "chatd", HandshakeTimeout: 10 * time.Second}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if len(c.HostSigners) == 0 {
		return errors.New("no host key")
	}
	if c.Version == "" || strings.ContainsAny(c.Version, " \r\n-") {
		return fmt.Errorf("invalid version %q: one word, no '-'", c.Version)
	}
	if c.HandshakeTimeout < 0 {
		return fmt.Errorf("handshake timeout must be 0 (none) or more, got %s", c.HandshakeTimeout)
	}
	return nil
}

// Server is the chat's SSH server.
type Server struct {
	cfg  Config
	room Room
	log  *log.Logger
	srv  *ssh.Server
}

// New builds a server for rm. logger may be nil.
func New(cfg Config, rm Room, logger *log.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sshd config: %w", err)
	}
	if logger == nil {
		logger = log.New(io.Discard)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	s := &Server{cfg: cfg, room: rm, log: logger}
	srv, err := wish.NewServer(
		wish.WithAddress(cfg.Addr),
		wish.WithVersion(cfg.Version),
		s.withHostKeys(),
		s.withAdmission(),
		s.withPtyRecord(),
		// Keys are checked once the client proves it holds one (verifyKey); keyboard-interactive
		// with no questions lets people without a key in (to unregistered names only). OpenSSH
		// tries keys first.
		wish.WithPublicKeyAuth(s.acceptKey),
		wish.WithKeyboardInteractiveAuth(s.acceptKeyless),
		// The last middleware runs first: recover wraps everything, then logging, then the chat.
		wish.WithMiddleware(s.chat, s.logging, s.recover),
	)
	if err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	s.srv = srv
	return s, nil
}

// withHostKeys serves the configured keys. It must come before wish would generate a key into
// the working directory, which it does when it finds none.
func (s *Server) withHostKeys() ssh.Option {
	return func(srv *ssh.Server) error {
		for _, k := range s.cfg.HostSigners {
			srv.AddHostKey(k)
		}
		return nil
	}
}

// ptyKey carries a session's PTY request in its context.
type ptyKey struct{}

// withPtyRecord takes PTY requests without charmbracelet/ssh's emulation, which rewrites every
// write (\n to \r\n, in two copying passes) although the line editor already writes \r\n. The
// request (terminal size) is kept in the session's context; sessionPty reads it.
func (s *Server) withPtyRecord() ssh.Option {
	return func(srv *ssh.Server) error {
		srv.PtyHandler = func(ctx ssh.Context, _ ssh.Session, pty ssh.Pty) (func() error, error) {
			ctx.SetValue(ptyKey{}, pty)
			return func() error { return nil }, nil
		}
		return nil
	}
}

// sessionPty returns the session's PTY request and its window changes, if it asked for a PTY.
func sessionPty(sess ssh.Session) (ssh.Pty, <-chan ssh.Window, bool) {
	pty, ok := sess.Context().Value(ptyKey{}).(ssh.Pty)
	_, winCh, _ := sess.Pty()
	return pty, winCh, ok
}

// withAdmission installs the checks on every connection: limits and the handshake deadline at
// accept (admit), a banner for refused ones, and the checks on proved keys (verifyKey).
func (s *Server) withAdmission() ssh.Option {
	return func(srv *ssh.Server) error {
		srv.ConnCallback = s.admit
		srv.BannerHandler = s.banner
		srv.ServerConfigCallback = func(ssh.Context) *gossh.ServerConfig {
			return &gossh.ServerConfig{VerifiedPublicKeyCallback: s.verifyKey}
		}
		return nil
	}
}

// Serve accepts connections on ln until Shutdown or Close, then returns ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.log.Info("listening", "addr", ln.Addr().String())
	err := s.srv.Serve(ln)
	if errors.Is(err, ssh.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen ssh: %w", err)
	}
	return s.Serve(ln)
}

// Shutdown stops accepting connections and waits, until ctx expires, for open ones to end. Chat
// sessions never end by themselves: shut the room down first, which disconnects its members.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, ssh.ErrServerClosed) {
		return nil
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.srv.Close() }

// recover keeps a panic in one session from taking the server down. The stack goes to the log;
// the user only learns that something went wrong.
func (s *Server) recover(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic in session", "user", cleanUser(sess.User()), "remote", sess.RemoteAddr().String(), "panic", fmt.Sprint(v), "stack", stack())
				fmt.Fprint(sess.Stderr(), "error: internal server error; please reconnect\r\n")
				_ = sess.Exit(1)
			}
		}()
		next(sess)
	}
}

// logging records every session: who, from where, with which key, and how it ended.
func (s *Server) logging(next ssh.Handler) ssh.Handler {
	return func(sess ssh.Session) {
		if a := admissionOf(sess.Context()); a != nil {
			a.conn.endHandshake() // a session has started: the chat may last
			s.cfg.Metrics.Handshake(time.Since(a.accepted))
		}
		start := time.Now()
		_, _, isPty := sessionPty(sess)
		mode := "plain"
		switch {
		case len(sess.RawCommand()) > 0:
			mode = "exec"
		case isPty:
			mode = "pty"
		}
		s.log.Info("connect",
			"user", cleanUser(sess.User()),
			"remote", sess.RemoteAddr().String(),
			"key", fingerprint(sess.PublicKey()),
			"client", cleanPeerString(sess.Context().ClientVersion()),
			"mode", mode)
		next(sess)
		s.log.Info("disconnect",
			"user", cleanUser(sess.User()),
			"remote", sess.RemoteAddr().String(),
			"reason", endReason(sess),
			"duration", time.Since(start).Round(time.Millisecond).String())
	}
}

// fingerprint is the key's SHA256 fingerprint as ssh-keygen prints it, or how the user got in
// without one.
func fingerprint(k ssh.PublicKey) string {
	if k == nil {
		return "none (keyboard-interactive)"
	}
	return gossh.FingerprintSHA256(k)
}

// cleanUser makes a peer-supplied user name safe to log.
func cleanUser(name string) string { return cleanPeerString(name) }

// cleanPeerString sanitises and shortens any string the peer chose before it is logged.
func cleanPeerString(s string) string { return room.Excerpt(s, 128) }

// sessionEndKey carries how a session ended from the shell to the logging middleware.
type sessionEndKey struct{}

func setEndReason(sess ssh.Session, reason string) {
	sess.Context().SetValue(sessionEndKey{}, reason)
}

func endReason(sess ssh.Session) string {
	if r, ok := sess.Context().Value(sessionEndKey{}).(string); ok {
		return r
	}
	return "ended"
}

// Package sshd is the SSH face of the chat: a wish server that authenticates people, serves
// their session channels by a policy of its own (what a connection may open and ask for, and
// what it may cost), and runs a per-session shell that only moves lines between the SSH channel
// and the room. It knows nothing of chat rules; those live in package room.
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

	"chatd/chat"
	"chatd/connlimit"
	"chatd/room"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("sshd: server closed")

// Room is what the SSH server needs of the chat room.
type Room interface {
	Authorize(name string, key chat.Key) error
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
	// Gate admits connections and every further session on one: the connection limits and the
	// address bans, shared with the TCP server; nil for none.
	Gate *connlimit.Gate
	// HandshakeTimeout is how long a connection has to get through the SSH handshake and
	// authentication and start a session before it is closed; a connection whose last session
	// has ended gets as long to start another. Default 10s.
	HandshakeTimeout time.Duration
	// MaxSessions is how many session channels one connection may have open at once. Default 4.
	MaxSessions int
	// StartTimeout is how long a session channel has to ask for a shell or a command. Default 5s.
	StartTimeout time.Duration
	// ExecTimeout bounds a one-shot command ("ssh host history"), its output included. Default
	// 30s.
	ExecTimeout time.Duration
	// Operators are the key fingerprints whose sessions may use the operator commands.
	Operators map[string]bool
	// Allow, when not nil, is the allowlist: only these key fingerprints may log in.
	Allow map[string]bool
	// AllowKeyless lets people without a key in despite an allowlist.
	AllowKeyless bool
	// Metrics receives counts and timings; nil for none. Package metrics implements it.
	Metrics Metrics
}

// Metrics is what the SSH server reports about itself. (Refused connections are counted by the
// Gate.)
type Metrics interface {
	AuthFailed(reason string)  // "allowlist", "banned", "registered"
	Handshake(d time.Duration) // from accept to a session starting
	Closed(reason string)      // a connection closed for breaking the session policy (close* in session.go)
}

type noMetrics struct{}

func (noMetrics) AuthFailed(string)       {}
func (noMetrics) Handshake(time.Duration) {}
func (noMetrics) Closed(string)           {}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Addr:             ":2222",
		Version:          "chatd",
		HandshakeTimeout: 10 * time.Second,
		MaxSessions:      4,
		StartTimeout:     5 * time.Second,
		ExecTimeout:      30 * time.Second,
	}
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
	if c.MaxSessions < 1 {
		return fmt.Errorf("max sessions must be at least 1, got %d", c.MaxSessions)
	}
	if c.StartTimeout <= 0 || c.ExecTimeout <= 0 {
		return fmt.Errorf("start and exec timeouts must be positive, got %s and %s", c.StartTimeout, c.ExecTimeout)
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
		s.withPolicy(),
		// Keys are checked once the client proves it holds one (verifyKey); keyboard-interactive
		// with no questions lets people without a key in (to unregistered names only). OpenSSH
		// tries keys first.
		wish.WithPublicKeyAuth(s.acceptKey),
		wish.WithKeyboardInteractiveAuth(s.acceptKeyless),
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

// withPolicy decides what an authenticated client may open and ask for. Only "session"
// channels, through sessionChannel; every other channel type (port forwarding, X11, agent) is
// refused, and so is every connection-level request (forwarding, "no-more-sessions"), as
// charmbracelet/ssh does when no handler is set. The server's Handler is never called: sessions
// are served by sessionChannel.
func (s *Server) withPolicy() ssh.Option {
	return func(srv *ssh.Server) error {
		srv.ChannelHandlers = map[string]ssh.ChannelHandler{"session": s.sessionChannel}
		srv.RequestHandlers = map[string]ssh.RequestHandler{}
		srv.SubsystemHandlers = map[string]ssh.SubsystemHandler{}
		return nil
	}
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
func cleanPeerString(s string) string { return chat.Excerpt(s, 128) }

// writeTimeout is how long a write of the session's own (an error, the line editor's echo) may
// block before the client is taken to have stopped reading: the room's own rule for its lines.
func (s *Server) writeTimeout() time.Duration { return s.room.Config().WriteTimeout }

// Package web is the chat's HTTP and WebSocket transport: I/O only. It serves the page (embedded:
// no CDN, no build step), signs browsers in with the one-time links /weblogin makes, and carries
// each WebSocket's JSON messages to and from a room.Member, exactly as the SSH and TCP servers
// carry lines. Chat rules, commands and the JSON events themselves (room.Event) live in package
// room; the admission limits in connlimit, shared with the other transports.
package web

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/charmbracelet/log"

	"chatd/chat"
	"chatd/connlimit"
	"chatd/room"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("web: server closed")

// Hub is what the web server needs of the chat.
type Hub interface {
	Join(name string, out room.Output, opts room.JoinOptions) (*room.Member, error)
	Config() room.Config
	WebLinkName(secret string) (string, error)
	RedeemWebLink(secret, label string) (session, name string, err error)
	EndWebSession(secret string) error
}

// Metrics counts what the server refuses; package metrics implements it. The gate counts its own
// refusals.
type Metrics interface {
	Refused(transport, reason string)
}

// transport is the web sessions' name in logs, metrics, /whois and the gate.
const transport = "web"

// Server serves the page and the WebSocket.
type Server struct {
	cfg  Config
	hub  Hub
	gate *connlimit.Gate
	log  *log.Logger
	mx   Metrics
	pub  publicURL
	csp  string

	assets    map[string]asset
	tlsConfig *tls.Config
	srv       *http.Server

	base       context.Context // every session's context derives from it; Close cancels it
	cancelBase context.CancelFunc

	mu       sync.Mutex
	stopping bool
	sessions map[*session]struct{}
	active   sync.WaitGroup // every WebSocket handler, from before the upgrade to its end
	waitOnce sync.Once
	idle     chan struct{} // closed once stopping and every session has ended
}

// New builds a server for hub. gate admits connections (nil: no limits), logger may be nil, and so
// may mx.
func New(cfg Config, hub Hub, gate *connlimit.Gate, logger *log.Logger, mx Metrics) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("web config: %w", err)
	}
	if hub == nil {
		return nil, errors.New("web: no hub")
	}
	if logger == nil {
		logger = log.New(io.Discard)
	}
	pub, _ := parsePublicURL(cfg.PublicURL) // checked by Validate
	s := &Server{
		cfg:      cfg,
		hub:      hub,
		gate:     gate,
		log:      logger,
		mx:       mx,
		pub:      pub,
		csp:      contentSecurityPolicy(pub),
		sessions: make(map[*session]struct{}),
		idle:     make(chan struct{}),
	}
	var err error
	if s.assets, err = loadAssets(); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		cl, err := newCertLoader(cfg.TLSCert, cfg.TLSKey, logger)
		if err != nil {
			return nil, err
		}
		s.tlsConfig = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: cl.get,
			// HTTP/1.1 only: a WebSocket needs it, and every connection is then one client that
			// the per-address limits can count.
			NextProtos: []string{"http/1.1"},
		}
	}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	s.srv = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){}, // no HTTP/2
		ConnContext:       withConn,
		// Scanners' broken requests and TLS handshakes are noise, not news.
		ErrorLog: logger.StandardLog(log.StandardLogOptions{ForceLevel: log.DebugLevel}),
	}
	return s, nil
}

// ListenAndServe listens on the configured address and serves.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen web: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close, then returns ErrServerClosed. HTTPS
// when the config has a certificate.
func (s *Server) Serve(ln net.Listener) error {
	if s.isStopping() {
		_ = ln.Close()
		return ErrServerClosed
	}
	var l net.Listener = &gateListener{Listener: ln, s: s}
	if s.tlsConfig != nil {
		l = tls.NewListener(l, s.tlsConfig)
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "url", s.cfg.PublicURL, "tls", s.tlsConfig != nil)
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || s.isStopping() {
		return ErrServerClosed
	}
	return fmt.Errorf("web serve: %w", err)
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// Shutdown stops accepting, closes idle connections, and waits until ctx expires for requests
// and WebSocket sessions to end. Chat sessions never end by themselves: shut the room down first,
// which disconnects its members. Shutdown is idempotent; when ctx expires first it returns ctx's
// error and Close finishes the job.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop()
	err := s.srv.Shutdown(ctx)
	select {
	case <-s.waitIdle():
	case <-ctx.Done():
		return fmt.Errorf("web shutdown: %w", ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("web shutdown: %w", err)
	}
	return nil
}

// Close closes the listeners and every connection at once, and returns when every session has
// ended.
func (s *Server) Close() error {
	s.stop()
	err := s.srv.Close()
	s.cancelBase()
	s.mu.Lock()
	for ss := range s.sessions {
		ss.abort()
	}
	s.mu.Unlock()
	<-s.waitIdle()
	if err != nil {
		return fmt.Errorf("web close: %w", err)
	}
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
}

// waitIdle returns a channel closed once every session has ended; it is called only once
// stopping is set, so that no session can start after the wait has begun.
func (s *Server) waitIdle() <-chan struct{} {
	s.waitOnce.Do(func() {
		go func() {
			s.active.Wait()
			close(s.idle)
		}()
	})
	return s.idle
}

// enter counts a WebSocket handler in, unless the server is stopping.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.active.Add(1)
	return true
}

func (s *Server) track(ss *session) {
	s.mu.Lock()
	s.sessions[ss] = struct{}{}
	s.mu.Unlock()
}

func (s *Server) untrack(ss *session) {
	s.mu.Lock()
	delete(s.sessions, ss)
	s.mu.Unlock()
}

func (s *Server) refused(reason string) {
	if s.mx != nil {
		s.mx.Refused(transport, reason)
	}
}

// gateListener puts every connection from a client (not from a trusted proxy) through the gate the
// other transports share: the per-address and total caps and rates, and the address bans. The
// slot is held for as long as the connection is open, keep-alive or WebSocket. A flood is closed
// at once; another refusal is told why by the first request's handler.
type gateListener struct {
	net.Listener
	s *Server
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 15 * time.Second, Count: 4})
		}
		gc := &gatedConn{Conn: nc}
		if l.s.trusted(connlimit.AddrIP(nc.RemoteAddr())) {
			// A proxy carries many clients: each is admitted by its own address when it opens a
			// WebSocket (see handleWS).
			gc.proxy = true
			return gc, nil
		}
		t := l.s.gate.Admit(transport, nc.RemoteAddr())
		if t.Drop {
			_ = nc.Close()
			continue
		}
		gc.ticket = t
		return gc, nil
	}
}

// gatedConn is an accepted connection and the gate's decision about it.
type gatedConn struct {
	net.Conn
	proxy  bool
	ticket *connlimit.Ticket // nil for a proxy's connection
}

// Close closes the connection and gives its slot back.
func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	if c.ticket != nil {
		c.ticket.Release() // idempotent
	}
	return err
}

// refusal is why the gate turned the connection away, or "".
func (c *gatedConn) refusal() (string, string) {
	if c.ticket == nil {
		return "", ""
	}
	return c.ticket.Refusal, c.ticket.Reason
}

type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// connOf returns the request's connection as the server accepted it (a *tls.Conn with TLS) and
// the gated connection under it.
func connOf(r *http.Request) (net.Conn, *gatedConn) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	gc, _ := raw.(*gatedConn)
	return c, gc
}

// peerAddr is the request's direct peer.
func peerAddr(r *http.Request) netip.AddrPort {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

const maxLogLen = 64

// cleanPeerString sanitises and shortens a string the peer chose before it is logged.
func cleanPeerString(s string) string { return chat.Excerpt(s, maxLogLen) }

func since(t time.Time) string { return time.Since(t).Round(time.Millisecond).String() }

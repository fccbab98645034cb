// Package proxied takes HAProxy's PROXY protocol (versions 1 and 2) on a listener, so that
// connections relayed by a trusted load balancer carry their client's address rather than the
// balancer's. Its Listener hands out a connection only once that address is known: the
// admission gate, the bans and the logs, which all run on RemoteAddr from accept time on, see
// the client. A PROXY header from any other address is refused, never believed.
package proxied

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/charmbracelet/log"
	pp "github.com/pires/go-proxyproto"

	"chatd/connlimit"
)

// Refusal reasons, for metrics and logs (beside connlimit's).
const (
	ReasonUntrusted = "proxy_untrusted" // a PROXY header from an address not trusted to send one
	ReasonMissing   = "proxy_missing"   // a trusted address sent no header (in time)
	ReasonInvalid   = "proxy_invalid"   // a trusted address sent a header that cannot be read
	ReasonBusy      = "proxy_busy"      // too many headers being read at once
)

// Config configures a Listener.
type Config struct {
	// Trusted are the load balancers: a connection from one of them must open with a PROXY
	// header, whose client address it then takes; from anywhere else a PROXY header is refused.
	Trusted []netip.Prefix
	// HeaderTimeout is how long a trusted peer has to send its header. Default 5s.
	HeaderTimeout time.Duration
	// MaxPending is how many connections may be reading their header at once: those are not yet
	// known to the admission gate, so they are bounded here. A trusted peer over it is closed at
	// once. Default 1024.
	MaxPending int
	// Transport names the listener in logs and metrics: "ssh", "tcp".
	Transport string
	// Refused counts connections refused here, by transport and reason; nil for none.
	Refused func(transport, reason string)
}

// DefaultConfig returns the defaults, trusting no one.
func DefaultConfig() Config {
	return Config{HeaderTimeout: 5 * time.Second, MaxPending: 1024}
}

// Validate reports a setting that cannot work.
func (c Config) Validate() error {
	if len(c.Trusted) == 0 {
		return errors.New("no trusted proxy addresses")
	}
	if c.HeaderTimeout <= 0 {
		return fmt.Errorf("header timeout must be positive, got %s", c.HeaderTimeout)
	}
	if c.MaxPending < 1 {
		return fmt.Errorf("max pending must be at least 1, got %d", c.MaxPending)
	}
	return nil
}

// errUntrusted is what a Read returns on a connection refused for sending a PROXY header.
var errUntrusted = errors.New("proxied: PROXY header from an address not trusted to send one")

// sigV1 starts every v1 header. The library's own signature stops before the space, which a
// TCP client's name ("PROXYFAN") could match.
const sigV1 = "PROXY "

// headerBufSize holds a whole v1 header (at most 107 bytes), which the library needs buffered at
// once, and the start of the client's own bytes that come with it.
const headerBufSize = 256

// Listener wraps a net.Listener. Accept returns connections whose RemoteAddr is the client's:
// from a trusted peer once its header is read (in a goroutine of its own, so that a slow peer
// never holds up the others), from anyone else at once.
type Listener struct {
	ln  net.Listener
	cfg Config
	log *log.Logger

	start     sync.Once
	ready     chan accepted
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu      sync.Mutex
	pending map[net.Conn]struct{} // trusted connections whose header is read or handed over
}

type accepted struct {
	conn net.Conn
	err  error
}

// Listen wraps ln. logger may be nil.
func Listen(ln net.Listener, cfg Config, logger *log.Logger) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy protocol: %w", err)
	}
	if logger == nil {
		logger = log.New(io.Discard)
	}
	return &Listener{
		ln:      ln,
		cfg:     cfg,
		log:     logger,
		ready:   make(chan accepted),
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}, nil
}

// Accept returns the next connection, or the underlying listener's error as it is (so that a
// caller's test for temporary errors still works).
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.loop() })
	select {
	case a := <-l.ready:
		return a.conn, a.err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close closes the listener and the connections still reading their header.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		for c := range l.pending {
			_ = c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr is the underlying listener's address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// loop accepts from the underlying listener until it is closed.
func (l *Listener) loop() {
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if !l.deliver(accepted{err: err}) {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				_ = l.Close()
				return
			}
			continue // the caller decides whether to retry, and how soon
		}
		if !l.trusted(nc.RemoteAddr()) {
			l.deliver(accepted{conn: &Conn{Conn: nc, remote: nc.RemoteAddr(), l: l, check: true}})
			continue
		}
		if !l.hold(nc) {
			select {
			case <-l.done:
				_ = nc.Close()
				return
			default:
			}
			l.refuse(nc, nc.RemoteAddr(), ReasonBusy, fmt.Sprintf("over %d connections waiting for their PROXY header", l.cfg.MaxPending))
			continue
		}
		go l.readHeader(nc)
	}
}

// deliver hands a to Accept, or closes its connection when the listener is closed first.
func (l *Listener) deliver(a accepted) bool {
	select {
	case l.ready <- a:
		return true
	case <-l.done:
		if a.conn != nil {
			_ = a.conn.Close()
		}
		return false
	}
}

func (l *Listener) trusted(addr net.Addr) bool {
	ip := connlimit.AddrIP(addr)
	for _, p := range l.cfg.Trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// hold counts nc among the pending connections, unless there are too many already or the
// listener is closed.
func (l *Listener) hold(nc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) >= l.cfg.MaxPending {
		return false
	}
	select {
	case <-l.done:
		return false
	default:
	}
	l.pending[nc] = struct{}{}
	return true
}

func (l *Listener) unhold(nc net.Conn) {
	l.mu.Lock()
	delete(l.pending, nc)
	l.mu.Unlock()
}

// readHeader reads a trusted peer's header and hands the connection on under its client's
// address, or refuses it.
func (l *Listener) readHeader(nc net.Conn) {
	defer l.unhold(nc)
	peer := nc.RemoteAddr()
	br := bufio.NewReaderSize(nc, headerBufSize)
	_ = nc.SetReadDeadline(time.Now().Add(l.cfg.HeaderTimeout))
	remote, reason, why := l.parse(br, peer)
	if reason != "" {
		if reason == ReasonMissing && why == "" {
			// Closed before sending a byte: a port check (HAProxy's own, without a header),
			// which costs nothing and is not worth a line at info.
			l.log.Debug("closed before a PROXY header", "transport", l.cfg.Transport, "peer", peer.String())
			_ = nc.Close()
			return
		}
		l.refuse(nc, peer, reason, why)
		return
	}
	if err := nc.SetReadDeadline(time.Time{}); err != nil {
		_ = nc.Close()
		return
	}
	c := &Conn{Conn: nc, remote: remote, l: l}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		c.pre = bytes.Clone(b)
	}
	l.deliver(accepted{conn: c})
}

// parse reads the header from br: the client's address, or a refusal's reason and words (no
// words for a peer that closed without sending anything).
func (l *Listener) parse(br *bufio.Reader, peer net.Addr) (remote net.Addr, reason, why string) {
	if _, err := br.Peek(1); err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, ReasonMissing, ""
		case isTimeout(err):
			return nil, ReasonMissing, fmt.Sprintf("no PROXY header in %s", l.cfg.HeaderTimeout)
		}
		return nil, ReasonMissing, "read: " + err.Error()
	}
	h, err := pp.Read(br)
	switch {
	case errors.Is(err, pp.ErrNoProxyProtocol):
		return nil, ReasonMissing, "the connection does not open with a PROXY header"
	case isTimeout(err):
		return nil, ReasonInvalid, fmt.Sprintf("PROXY header incomplete after %s", l.cfg.HeaderTimeout)
	case err != nil:
		return nil, ReasonInvalid, err.Error()
	}
	if h.Command.IsLocal() || h.TransportProtocol == pp.UNSPEC {
		// The proxy's own connection (a health check), or one whose client it cannot name (v1
		// "UNKNOWN"): the protocol says to take the connection's own address.
		l.log.Debug("PROXY header without a client", "transport", l.cfg.Transport, "peer", peer.String())
		return peer, "", ""
	}
	src, ok := h.SourceAddr.(*net.TCPAddr)
	if !ok || src == nil || !h.TransportProtocol.IsStream() {
		return nil, ReasonInvalid, "PROXY header for a connection that is not TCP"
	}
	return src, "", ""
}

// refuse closes a connection the listener turns away, says why in the log, and counts it.
func (l *Listener) refuse(nc net.Conn, remote net.Addr, reason, why string) {
	_ = nc.Close()
	l.log.Warn("refused", "transport", l.cfg.Transport, "remote", remote.String(), "reason", why)
	if l.cfg.Refused != nil {
		l.cfg.Refused(l.cfg.Transport, reason)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Conn is an accepted connection under its client's address. Read must not be called from two
// goroutines at once (no server here does).
type Conn struct {
	net.Conn
	remote net.Addr
	l      *Listener
	pre    []byte // read past the header: the client's first bytes, served first
	check  bool   // from an untrusted peer: a PROXY header in its first bytes is refused
}

// RemoteAddr is the client's address: the one in the PROXY header from a trusted peer, the
// connection's own otherwise.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

func (c *Conn) Read(b []byte) (int, error) {
	if c.check {
		c.check = false
		if err := c.refuseHeader(); err != nil {
			return 0, err
		}
	}
	if len(c.pre) > 0 {
		n := copy(b, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.Conn.Read(b)
}

// refuseHeader looks at the first bytes of an untrusted peer. They are read when the server
// first reads, not before (the TCP protocol's server speaks first), and kept for the server. A
// line-based client never sends "PROXY" alone, so only then is more awaited; a v2 signature
// split after its first bytes (which a person may type: "\r\n") goes through as data, where it
// is nothing the server understands and nothing it believes.
func (c *Conn) refuseHeader() error {
	var buf [12]byte // the length of the v2 signature
	n := 0
	for {
		m, err := c.Conn.Read(buf[n:])
		n += m
		p := buf[:n]
		if bytes.HasPrefix(p, []byte(sigV1)) || bytes.HasPrefix(p, pp.SIGV2) {
			c.l.refuse(c.Conn, c.remote, ReasonUntrusted, "PROXY header from an address not trusted to send one")
			return errUntrusted
		}
		if err != nil || !(len(p) == 0 || strings.HasPrefix(sigV1, string(p))) {
			if n == 0 {
				return err
			}
			c.pre = bytes.Clone(p)
			return nil // an error comes again with the next read
		}
	}
}

// CloseWrite half-closes the connection, when the underlying one can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// SetKeepAliveConfig configures TCP keep-alives, when the underlying connection is TCP.
func (c *Conn) SetKeepAliveConfig(cfg net.KeepAliveConfig) error {
	if tc, ok := c.Conn.(*net.TCPConn); ok {
		return tc.SetKeepAliveConfig(cfg)
	}
	return errors.ErrUnsupported
}

package proxied

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"

	"chatd/internal/roomtest"
)

// The proxy dials from 127.0.0.2, everyone else from 127.0.0.1: Linux routes all of 127/8 to
// the loopback interface.
var (
	proxyIP  = net.ParseIP("127.0.0.2")
	clientIP = net.ParseIP("127.0.0.1")
)

// harness is a Listener on loopback that trusts 127.0.0.2, with what it accepts and refuses.
type harness struct {
	l        *Listener
	accepted chan net.Conn
	refused  chan string
}

func start(t testing.TB, cfg Config) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{accepted: make(chan net.Conn, 16), refused: make(chan string, 16)}
	if cfg.Trusted == nil {
		cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	}
	cfg.Transport = "tcp"
	cfg.Refused = func(transport, reason string) { h.refused <- transport + " " + reason }
	h.l, err = Listen(ln, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := h.l.Accept()
			if err != nil {
				close(h.accepted)
				return
			}
			h.accepted <- c
		}
	}()
	t.Cleanup(func() {
		h.l.Close()
		for c := range h.accepted {
			c.Close()
		}
	})
	return h
}

func defaults() Config { return DefaultConfig() }

func (h *harness) dial(t *testing.T, from net.IP) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
	c, err := d.Dial("tcp", h.l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *harness) accept(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-h.accepted:
		return c
	case <-time.After(roomtest.HangGuard):
		t.Fatal("nothing accepted")
		return nil
	}
}

func (h *harness) wantRefused(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-h.refused:
		if got != want {
			t.Fatalf("refused %q, want %q", got, want)
		}
	case <-time.After(roomtest.HangGuard):
		t.Fatalf("not refused (want %q)", want)
	}
}

// nothingAccepted checks that no connection was handed over; the listener hands one over before
// it counts any later refusal, so after a refusal this is not a race.
func (h *harness) nothingAccepted(t *testing.T) {
	t.Helper()
	select {
	case c := <-h.accepted:
		t.Fatalf("accepted a connection from %s", c.RemoteAddr())
	default:
	}
}

// waitClosed reads c until the server closes it, and returns what it read.
func waitClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(roomtest.HangGuard))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server did not close the connection")
	}
	return string(b)
}

func header(t *testing.T, version byte, src string) []byte {
	t.Helper()
	h := pp.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:2222")))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHeaderGivesTheClientAddress(t *testing.T) {
	h := start(t, defaults())
	for _, tt := range []struct {
		version byte
		src     string
	}{{1, "203.0.113.7:40000"}, {2, "203.0.113.8:40001"}, {1, "[2001:db8::7]:40002"}, {2, "[2001:db8::8]:40003"}} {
		c := h.dial(t, proxyIP)
		// The header and the client's first bytes in one segment, as HAProxy sends them when the
		// client speaks first (SSH): none of the client's bytes may be lost.
		if _, err := c.Write(append(header(t, tt.version, tt.src), "SSH-2.0-client\r\n"...)); err != nil {
			t.Fatal(err)
		}
		sc := h.accept(t)
		if got := sc.RemoteAddr().String(); got != tt.src {
			t.Errorf("v%d: RemoteAddr %s, want %s", tt.version, got, tt.src)
		}
		line, err := bufio.NewReader(sc).ReadString('\n')
		if err != nil || line != "SSH-2.0-client\r\n" {
			t.Errorf("v%d: the client's first line %q, %v", tt.version, line, err)
		}
		if _, err := sc.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		if got, _ := bufio.NewReader(c).ReadString('\n'); got != "hi\n" {
			t.Errorf("v%d: the client read %q", tt.version, got)
		}
		sc.Close()
	}
}

func TestHeaderWithoutAClientKeepsTheProxyAddress(t *testing.T) {
	h := start(t, defaults())
	local := &pp.Header{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC} // HAProxy's health check
	lb, err := local.Format()
	if err != nil {
		t.Fatal(err)
	}
	for _, hdr := range [][]byte{lb, []byte("PROXY UNKNOWN\r\n")} {
		c := h.dial(t, proxyIP)
		if _, err := c.Write(hdr); err != nil {
			t.Fatal(err)
		}
		sc := h.accept(t)
		if got, want := sc.RemoteAddr().String(), c.LocalAddr().String(); got != want {
			t.Errorf("%q: RemoteAddr %s, want the proxy's own %s", hdr, got, want)
		}
		sc.Close()
	}
}

func TestHeaderFromAnUntrustedAddressIsRefused(t *testing.T) {
	h := start(t, defaults())
	for _, hdr := range [][]byte{header(t, 1, "203.0.113.7:1"), header(t, 2, "203.0.113.7:1")} {
		c := h.dial(t, clientIP)
		sc := h.accept(t) // at once, under its own address: the server may speak first
		if got, want := sc.RemoteAddr().String(), c.LocalAddr().String(); got != want {
			t.Errorf("RemoteAddr %s, want %s", got, want)
		}
		if _, err := sc.Write([]byte("* welcome\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(append(hdr, "alice\n"...)); err != nil {
			t.Fatal(err)
		}
		if n, err := sc.Read(make([]byte, 64)); !errors.Is(err, errUntrusted) {
			t.Errorf("v%c header: server read %d, %v; want refused", hdr[0], n, err)
		}
		h.wantRefused(t, "tcp "+ReasonUntrusted)
		if got := waitClosed(t, c); got != "* welcome\n" {
			t.Errorf("the client read %q", got)
		}
		if sc.RemoteAddr().String() == "203.0.113.7:1" {
			t.Error("the header was believed")
		}
		sc.Close()
	}
}

func TestOrdinaryFirstBytesPass(t *testing.T) {
	h := start(t, defaults())
	for _, writes := range [][]string{
		{"SSH-2.0-OpenSSH_9.2\r\n"},
		{"PROXYFAN\n"},      // a name that starts like a v1 header
		{"\r\n", "bob\n"},   // an empty line first: the v2 signature's first bytes
		{"PRO", "XYZ\n"},    // a v1 signature's start, then not one
		{"\r\n\r\n\x00x\n"}, // the v2 signature's first five bytes, then not it
	} {
		c := h.dial(t, clientIP)
		sc := h.accept(t)
		want := strings.Join(writes, "")
		go func() {
			for _, w := range writes {
				if _, err := io.WriteString(c, w); err != nil {
					return
				}
			}
		}()
		got := make([]byte, len(want))
		if _, err := io.ReadFull(sc, got); err != nil || string(got) != want {
			t.Errorf("%q: server read %q, %v", writes, got, err)
		}
		sc.Close()
	}
	select {
	case r := <-h.refused:
		t.Errorf("refused %s", r)
	default:
	}
}

func TestSilentTrustedPeerIsCutOff(t *testing.T) {
	cfg := defaults()
	cfg.HeaderTimeout = 100 * time.Millisecond
	h := start(t, cfg)
	c := h.dial(t, proxyIP)
	if got := waitClosed(t, c); got != "" {
		t.Errorf("the silent peer read %q", got)
	}
	h.wantRefused(t, "tcp "+ReasonMissing)
	h.nothingAccepted(t)

	// A peer that connects and closes without a byte (a port check) is let go quietly.
	c = h.dial(t, proxyIP)
	c.Close()
	c = h.dial(t, proxyIP)
	if _, err := c.Write(header(t, 2, "203.0.113.9:1")); err != nil {
		t.Fatal(err)
	}
	if got := h.accept(t).RemoteAddr().String(); got != "203.0.113.9:1" {
		t.Errorf("the next connection is %s", got)
	}
	select {
	case r := <-h.refused:
		t.Errorf("a port check was counted as refused: %s", r)
	default:
	}
}

func TestMalformedHeadersAreRefused(t *testing.T) {
	cfg := defaults()
	cfg.HeaderTimeout = 200 * time.Millisecond
	h := start(t, cfg)
	v2 := func(verCmd, famProto byte, length uint16, body []byte) []byte {
		b := append(append([]byte{}, pp.SIGV2...), verCmd, famProto)
		b = binary.BigEndian.AppendUint16(b, length)
		return append(b, body...)
	}
	for _, tt := range []struct {
		name, send, reason string
	}{
		{"no header", "SSH-2.0-OpenSSH_9.2\r\n", ReasonMissing},
		{"v1 cut short", "PROXY TCP4 203.0.113.7\r\n", ReasonInvalid},
		{"v1 bad address", "PROXY TCP4 999.0.113.7 192.0.2.1 1 2\r\n", ReasonInvalid},
		{"v1 bad port", "PROXY TCP4 203.0.113.7 192.0.2.1 99999 2\r\n", ReasonInvalid},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 200) + "\r\n", ReasonInvalid},
		{"v1 never ends", "PROXY TCP4 203.0.113.7 192.0.2.1 1 2", ReasonInvalid},
		{"v2 bad version", string(v2(0x31, 0x11, 12, make([]byte, 12))), ReasonInvalid},
		{"v2 bad family", string(v2(0x21, 0x77, 12, make([]byte, 12))), ReasonInvalid},
		{"v2 short length", string(v2(0x21, 0x11, 4, make([]byte, 4))), ReasonInvalid},
		{"v2 promises more than it sends", string(v2(0x21, 0x11, 0xffff, make([]byte, 12))), ReasonInvalid},
		{"v2 UDP", string(v2(0x21, 0x12, 12, make([]byte, 12))), ReasonInvalid},
		{"v2 unix", string(v2(0x21, 0x31, 216, make([]byte, 216))), ReasonInvalid},
	} {
		c := h.dial(t, proxyIP)
		if _, err := io.WriteString(c, tt.send); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
		h.wantRefused(t, "tcp "+tt.reason)
		h.nothingAccepted(t)
	}
}

func TestPendingHeadersAreBounded(t *testing.T) {
	cfg := defaults()
	cfg.MaxPending = 2
	cfg.HeaderTimeout = time.Hour // only the bound and Close end these
	h := start(t, cfg)
	silent := []net.Conn{h.dial(t, proxyIP), h.dial(t, proxyIP)}
	deadline := time.Now().Add(roomtest.HangGuard)
	for {
		h.l.mu.Lock()
		n := len(h.l.pending)
		h.l.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections pending, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	over := h.dial(t, proxyIP)
	waitClosed(t, over)
	h.wantRefused(t, "tcp "+ReasonBusy)

	// An untrusted client does not wait behind them.
	c := h.dial(t, clientIP)
	if got, want := h.accept(t).RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Errorf("accepted %s, want %s", got, want)
	}

	// Close ends the connections still waiting for their header.
	h.l.Close()
	for _, c := range silent {
		waitClosed(t, c)
	}
	if _, err := h.l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := defaults()
	if err := cfg.Validate(); err == nil {
		t.Error("no trusted addresses: valid")
	}
	cfg.Trusted = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if err := cfg.Validate(); err != nil {
		t.Error(err)
	}
	for _, bad := range []func(*Config){func(c *Config) { c.HeaderTimeout = 0 }, func(c *Config) { c.MaxPending = 0 }} {
		c := cfg
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: valid", c)
		}
	}
}

// BenchmarkAccept is one connection's cost, dial to first byte: through the listener with a v2
// header from the proxy, through it straight from a client (whose first bytes are looked at),
// and on the bare listener.
func BenchmarkAccept(b *testing.B) {
	for _, tt := range []struct {
		name string
		from net.IP
		hdr  bool
		bare bool
	}{{"header", proxyIP, true, false}, {"direct", clientIP, false, false}, {"bare", clientIP, false, true}} {
		b.Run(tt.name, func(b *testing.B) {
			var addr string
			var accepted <-chan net.Conn
			if tt.bare {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				defer ln.Close()
				ch := make(chan net.Conn, 1)
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						ch <- c
					}
				}()
				addr, accepted = ln.Addr().String(), ch
			} else {
				h := start(b, defaults())
				addr, accepted = h.l.Addr().String(), h.accepted
			}
			first := []byte("x")
			if tt.hdr {
				h := pp.HeaderProxyFromAddrs(2, &net.TCPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 2})
				hb, err := h.Format()
				if err != nil {
					b.Fatal(err)
				}
				first = append(hb, first...)
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: tt.from}}
			buf := make([]byte, 1)
			b.ResetTimer()
			for range b.N {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(first); err != nil {
					b.Fatal(err)
				}
				sc := <-accepted
				if _, err := sc.Read(buf); err != nil {
					b.Fatal(err)
				}
				sc.Close()
				c.Close()
			}
		})
	}
}

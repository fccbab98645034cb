package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pp "github.com/pires/go-proxyproto"
	gossh "golang.org/x/crypto/ssh"

	"chatd/internal/roomtest"
	"chatd/proxied"
)

// In these tests the load balancer is whatever dials from 127.0.0.2, and clients that come
// straight in dial from 127.0.0.1: Linux routes all of 127/8 to the loopback interface.
const lbAddr = "127.0.0.2"

// dialFrom connects to addr from the loopback address from.
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// proxyHeader is the PROXY header (version 1 or 2) a load balancer sends for client src
// ("203.0.113.7:40000") connecting to addr.
func proxyHeader(t *testing.T, version byte, src, addr string) []byte {
	t.Helper()
	h := pp.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// viaProxy is a connection to addr as the load balancer relays client src: from lbAddr, opening
// with its header.
func viaProxy(t *testing.T, version byte, src, addr string) net.Conn {
	t.Helper()
	c := dialFrom(t, lbAddr, addr)
	if _, err := c.Write(proxyHeader(t, version, src, addr)); err != nil {
		t.Fatal(err)
	}
	return c
}

// sshViaProxy logs in keyless as user over a connection relayed for client src, and returns
// the client or the error, with the banners the server sent.
func sshViaProxy(t *testing.T, srv *chatd, src, user string) (*gossh.Client, string, error) {
	t.Helper()
	nc := viaProxy(t, 2, src, srv.sshAddr)
	cfg := sshConfig(user, nil)
	var banners strings.Builder
	cfg.BannerCallback = func(m string) error { banners.WriteString(m); return nil }
	cc, chans, reqs, err := gossh.NewClientConn(nc, srv.sshAddr, cfg)
	if err != nil {
		return nil, banners.String(), err
	}
	c := gossh.NewClient(cc, chans, reqs)
	t.Cleanup(func() { c.Close() })
	return c, banners.String(), nil
}

const greeting = "* welcome to chatd: what is your name?"

// TestProxyProtocolAddressIsTheClients: behind a load balancer every connection comes from its
// address; with --proxy-protocol the per-address limit, a ban by address and the logs see the
// client named in its PROXY header instead, on SSH and TCP, for both header versions.
func TestProxyProtocolAddressIsTheClients(t *testing.T) {
	opKey := clientKey(t)
	pub, err := os.ReadFile(opKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	ops := filepath.Join(t.TempDir(), "ops")
	if err := os.WriteFile(ops, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	srv, base := withMetrics(t, "--data-dir", t.TempDir(), "--ops", ops, "--proxy-protocol", lbAddr+"/32", "--max-conns-per-ip", "2", "--http-addr", "127.0.0.1:0")
	webAddr := srv.webAddr(t)

	// Two connections relayed for one client fill its allowance; the third is refused, while
	// another client behind the same balancer still gets in.
	for _, v := range []byte{1, 2} {
		c := roomtest.NewStream(viaProxy(t, v, fmt.Sprintf("203.0.113.7:4000%d", v), srv.tcpAddr))
		c.WaitLine(t, greeting)
	}
	third := roomtest.NewStream(viaProxy(t, 2, "203.0.113.7:40003", srv.tcpAddr))
	third.WaitLine(t, "error: too many connections from your address (at most 2 at once)")
	other := viaProxy(t, 1, "203.0.113.8:40000", srv.tcpAddr)
	otherOut := roomtest.NewStream(other)
	otherOut.WaitLine(t, greeting)
	if _, err := other.Write([]byte("carol\n")); err != nil {
		t.Fatal(err)
	}
	otherOut.WaitContains(t, "* welcome to chatd, carol!")
	srv.logs.WaitContains(t, "user=carol transport=tcp remote=203.0.113.8:40000")

	// The operator comes straight in (from an address that is not the balancer: no header) and
	// bans one client's address.
	op := startProc(t, "ssh", opensshArgs(srv.sshPort(), opKey, "", "-T", "op@127.0.0.1")...)
	op.stdout.WaitContains(t, "* op joined #lobby")
	op.send(t, "/ban 203.0.113.9 testing")
	op.stdout.WaitContains(t, "* banned #1 ")

	banned := roomtest.NewStream(viaProxy(t, 2, "203.0.113.9:40000", srv.tcpAddr))
	banned.WaitContains(t, "error: you are banned from this server")
	if _, banners, err := sshViaProxy(t, srv, "203.0.113.9:40001", "mallory"); err == nil || !strings.Contains(banners, "chatd: you are banned from this server") {
		t.Errorf("SSH from a banned client behind the balancer: %v, banners %q", err, banners)
	}
	// The web listener takes the header too: the banned client's page loads are refused by its
	// address, another client's are served.
	for _, tc := range []struct {
		client, want string
	}{{"203.0.113.9:40002", "403 Forbidden"}, {"203.0.113.10:40002", "200 OK"}} {
		c := viaProxy(t, 2, tc.client, webAddr)
		if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: " + webAddr + "\r\nConnection: close\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		out := roomtest.NewStream(c)
		out.WaitClosed(t)
		if status, _, _ := strings.Cut(out.Text(), "\r\n"); !strings.Contains(status, tc.want) {
			t.Errorf("GET / relayed for %s: %q, want %s", tc.client, status, tc.want)
		}
	}

	// Everyone else behind the same balancer is not banned.
	c, _, err := sshViaProxy(t, srv, "203.0.113.10:40000", "dave")
	if err != nil {
		t.Fatalf("SSH from another client behind the balancer: %v", err)
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.CombinedOutput("who"); err != nil || !strings.Contains(string(out), "op") {
		t.Errorf("who: %v\n%s", err, out)
	}
	srv.logs.WaitContains(t, "remote=203.0.113.10:40000")

	// A PROXY header from anyone but the balancer is refused, on both listeners, and counted;
	// so is a connection from the balancer without one.
	for _, addr := range []string{srv.tcpAddr, srv.sshAddr} {
		c := dialFrom(t, "127.0.0.1", addr)
		if _, err := c.Write(proxyHeader(t, 1, "203.0.113.11:1", addr)); err != nil {
			t.Fatal(err)
		}
		roomtest.NewStream(c).WaitClosed(t)
	}
	noHeader := dialFrom(t, lbAddr, srv.tcpAddr)
	if _, err := noHeader.Write([]byte("eve\n")); err != nil {
		t.Fatal(err)
	}
	roomtest.NewStream(noHeader).WaitClosed(t)
	for _, series := range []string{
		`chatd_connections_refused_total{reason="` + proxied.ReasonUntrusted + `",transport="tcp"}`,
		`chatd_connections_refused_total{reason="` + proxied.ReasonUntrusted + `",transport="ssh"}`,
		`chatd_connections_refused_total{reason="` + proxied.ReasonMissing + `",transport="tcp"}`,
	} {
		if got := metric(t, base, series); got != 1 {
			t.Errorf("%s = %g, want 1", series, got)
		}
	}
	if strings.Contains(srv.logs.Text(), "203.0.113.11") {
		t.Error("an untrusted header's address reached the log")
	}
}

func TestProxyProtocolFlag(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"CHAT_PROXY_PROTOCOL": "10.0.0.0/8, 192.0.2.7"}[k]
		return v, ok
	}
	c, _, err := parseConfig(nil, lookup, io.Discard, io.Discard)
	if err != nil || c.ProxyProtocol != "10.0.0.0/8, 192.0.2.7" {
		t.Errorf("from the environment: %q, %v", c.ProxyProtocol, err)
	}
	if _, _, err := parseConfig([]string{"--proxy-protocol", "haproxy.example"}, func(string) (string, bool) { return "", false }, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--proxy-protocol") {
		t.Errorf("a host name: %v", err)
	}
}

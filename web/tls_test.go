package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// selfSigned writes a certificate for 127.0.0.1 and its key, and returns their files and a pool
// that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "chatd test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

func TestHTTPSServedDirectly(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	e := newEnv(t, envOptions{store: true, web: func(c *Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.PublicURL = "https://" + c.Addr
	}})
	client := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true},
		Timeout:   hangGuard,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	base := "https://" + e.addr
	resp, body := do(t, client, newRequest(t, "GET", base+"/", nil))
	if resp.StatusCode != 200 || !strings.Contains(body, "<title>") {
		t.Fatalf("GET / over TLS: status %d", resp.StatusCode)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("protocol %s: want HTTP/1.1, which a WebSocket needs", resp.Proto)
	}
	checkHeaders(t, "GET / over TLS", resp.Header, "wss://"+e.addr)

	// Plain HTTP to the TLS port gets nowhere.
	if resp, err := http.Get(e.base + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS port")
		}
	}

	// The cookie is Secure when the public URL is https.
	alice := e.registered(t, "alice")
	req := newRequest(t, "POST", base+"/login", strings.NewReader("t="+alice.webLink(t)))
	resp, _ = do(t, client, req)
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil || !cookie.Secure {
		t.Fatalf("sign-in over TLS: status %d, cookie %+v: want a Secure cookie", resp.StatusCode, cookie)
	}

	// The WebSocket over TLS, from the page's own origin, signed in by the cookie.
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://"+e.addr+"/ws", &websocket.DialOptions{
		HTTPClient: client,
		HTTPHeader: http.Header{"Origin": {"https://" + e.addr}, "Cookie": {cookie.String()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"say","text":"over tls"}`)); err != nil {
		t.Fatal(err)
	}
	alice.out.WaitContains(t, "alice: over tls")
}

func TestTLSNeedsACertificateAndAKey(t *testing.T) {
	cfg := DefaultConfig()
	cfg.TLSCert = "cert.pem"
	if err := cfg.Validate(); err == nil {
		t.Error("a certificate without a key is accepted")
	}
	certFile, _, _ := selfSigned(t)
	cfg.TLSKey = certFile // not a key
	e := newEnv(t, envOptions{})
	if _, err := New(cfg, e.hub, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("New with a certificate for a key: %v, want a tls error", err)
	}
}

func TestATLSHandshakeThatNeverComesIsCutOff(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t)
	e := newEnv(t, envOptions{web: func(c *Config) {
		c.TLSCert, c.TLSKey = certFile, keyFile
		c.PublicURL = "https://" + c.Addr
		c.ReadHeaderTimeout = 50 * time.Millisecond // bounds the handshake too
	}})
	nc, closed := rawConn(t, e.addr)
	if _, err := nc.Write([]byte{0x16, 0x03, 0x01}); err != nil { // the start of a ClientHello, and no more
		t.Fatal(err)
	}
	waitClosed(t, "a TLS handshake that stops halfway", closed)
}

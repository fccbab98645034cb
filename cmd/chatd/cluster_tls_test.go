package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"chatd/internal/roomtest"
)

// writePEM writes one PEM block to a new file in dir.
func writePEM(t *testing.T, dir, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testCA makes a certificate authority and a server certificate it signs for 127.0.0.1, and
// returns the files: the CA's certificate, the server's certificate and key.
func testCA(t *testing.T) (ca, cert, key string) {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chatd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER), writePEM(t, dir, "nats.pem", "CERTIFICATE", srvDER),
		writePEM(t, dir, "nats-key.pem", "EC PRIVATE KEY", keyDER)
}

// TestClusterTLS: a node reaches NATS over TLS with a tls:// URL, trusting the servers' CA
// through --nats-ca; without it, the system's roots do not vouch for the server and the node
// does not start.
func TestClusterTLS(t *testing.T) {
	ca, cert, key := testCA(t)
	tlsCfg, err := natsserver.GenTLSConfig(&natsserver.TLSConfigOpts{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
		TLSConfig: tlsCfg, TLSTimeout: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(roomtest.HangGuard) {
		t.Fatal("nats server did not start")
	}
	url := "tls://" + srv.Addr().String()

	// Without the CA: refused, saying why.
	cmd := exec.Command(chatdBin, "--ssh-addr", "127.0.0.1:0", "--tcp-addr", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--nats", url, "--node", "untrusting")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "certificate") {
		t.Errorf("chatd without --nats-ca: %v, want a certificate error:\n%s", err, out)
	}

	// With it: a node, whose lines go through.
	node, _ := startNode(t, url, "tls1", "--nats-ca", ca)
	if !strings.Contains(node.logs.Text(), "connected to NATS") || !strings.Contains(node.logs.Text(), "server="+url) {
		t.Errorf("the node's log does not say it connected to %s:\n%s", url, node.logs.Text())
	}
	alice, bob := joinOverTCP(t, node, "alice"), joinOverTCP(t, node, "bob")
	alice.send(t, "over TLS")
	bob.out.WaitLine(t, "alice: over TLS")
}

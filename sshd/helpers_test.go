package sshd

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"chatd/internal/roomtest"
	"chatd/room"
)

const hangGuard = roomtest.HangGuard

type testServer struct {
	addr    string
	room    *room.Hub
	srv     *Server
	served  chan error
	hostKey gossh.PublicKey
}

// startServer runs a room and an SSH server on a random loopback port. Serve is ready as soon as
// the listener exists, so there is nothing to wait for.
func startServer(t *testing.T, cfg room.Config) *testServer {
	t.Helper()
	return startServerWith(t, cfg, func(*Config) {})
}

// startServerWith is startServer with the SSH server's configuration changed by configure.
func startServerWith(t *testing.T, cfg room.Config, configure func(*Config)) *testServer {
	t.Helper()
	if cfg.MsgRate == 0 {
		cfg.MsgRate = -1 // the tests that are about the rate limit set one
	}
	rm, err := room.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	signer := newSigner(t)
	scfg := DefaultConfig()
	scfg.HostSigners = []gossh.Signer{signer}
	configure(&scfg)
	srv, err := New(scfg, rm, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: ln.Addr().String(), room: rm, srv: srv, served: make(chan error, 1), hostKey: signer.PublicKey()}
	go func() { ts.served <- srv.Serve(ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop shuts the room and the server down the way chatd does.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	if err := ts.room.Shutdown(ctx); err != nil {
		t.Errorf("room shutdown: %v", err)
	}
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("ssh shutdown: %v", err)
	}
	select {
	case err := <-ts.served:
		if !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		ts.served <- ErrServerClosed // stop is idempotent
	case <-ctx.Done():
		t.Error("Serve did not return after Shutdown")
	}
}

func newSigner(t testing.TB) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dial connects as user with a fresh ed25519 key, or keyless (keyboard-interactive) when
// keyless is set.
func (ts *testServer) dial(t testing.TB, user string, keyless bool) *gossh.Client {
	t.Helper()
	auth := []gossh.AuthMethod{gossh.PublicKeys(newSigner(t))}
	if keyless {
		auth = []gossh.AuthMethod{gossh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
			return nil, nil
		})}
	}
	c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
		Timeout:         hangGuard,
	})
	if err != nil {
		t.Fatalf("dial as %q: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// client is one SSH session of a test user.
type client struct {
	sess   *gossh.Session
	stdin  io.WriteCloser
	stdout *roomtest.Stream
	stderr *roomtest.Stream
}

// open starts a shell session, with a PTY when pty is set.
func open(t testing.TB, c *gossh.Client, pty bool) *client {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if pty {
		if err := sess.RequestPty("xterm-256color", 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatal(err)
		}
	}
	cl := newClient(t, sess)
	if err := sess.Shell(); err != nil {
		t.Fatal(err)
	}
	return cl
}

func newClient(t testing.TB, sess *gossh.Session) *client {
	t.Helper()
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := sess.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	return &client{sess: sess, stdin: stdin, stdout: roomtest.NewStream(stdout), stderr: roomtest.NewStream(stderr)}
}

// joinAs connects user with a plain session and waits until they are in the room.
func (ts *testServer) joinAs(t testing.TB, user string, pty bool) *client {
	t.Helper()
	cl := open(t, ts.dial(t, user, false), pty)
	cl.stdout.WaitContains(t, "joined #lobby (")
	return cl
}

func (cl *client) send(t testing.TB, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(cl.stdin, l+"\n"); err != nil {
			t.Fatalf("send %q: %v", l, err)
		}
	}
}

// exitStatus waits for the session to end and returns its exit status.
func (cl *client) exitStatus(t testing.TB) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cl.sess.Wait() }()
	select {
	case err := <-done:
		var ee *gossh.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			return ee.ExitStatus()
		default:
			t.Fatalf("session ended without an exit status: %v", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("session did not end")
	}
	return -1
}

// writeKnownHosts writes a known_hosts file that pins the test server's host key.
func (ts *testServer) writeKnownHosts(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(ts.addr)}, ts.hostKey)
	if err := os.WriteFile(path, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKeyFile writes an OpenSSH private key for the real ssh client.
func writeKeyFile(t testing.TB, dir string) string {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := gossh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

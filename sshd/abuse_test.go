package sshd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/connlimit"
	"chatd/room"
	"chatd/store/sqlite"
)

// openssh runs the real ssh client against ts with the key file key, in batch mode (no
// keyboard-interactive fallback) with banners shown, and returns its output, exit code and how
// long it took.
func openssh(t *testing.T, ts *testServer, key, user string, args ...string) (string, int, time.Duration) {
	t.Helper()
	knownHosts := ts.writeKnownHosts(t)
	host, port, _ := strings.Cut(ts.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	base := []string{"-F", "/dev/null", "-p", port, "-i", key, "-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "LogLevel=INFO", user + "@" + host}
	start := time.Now()
	out, err := exec.CommandContext(ctx, "ssh", append(base, args...)...).CombinedOutput()
	took := time.Since(start)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0, took
	case errors.As(err, &ee):
		return string(out), ee.ExitCode(), took
	}
	t.Fatalf("ssh: %v", err)
	return "", -1, took
}

// TestSilentConnectionsDoNotBlockLogins: 500 connections that never send a byte and 20 that drip
// one byte now and then do not keep a real OpenSSH login out, and are closed when the handshake
// timeout runs out.
func TestSilentConnectionsDoNotBlockLogins(t *testing.T) {
	const timeout = 2 * time.Second
	ts := startServerWith(t, room.Config{}, func(c *Config) { c.HandshakeTimeout = timeout })
	var conns []net.Conn
	for range 500 {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	stopDrip := make(chan struct{})
	defer close(stopDrip)
	var dripping sync.WaitGroup
	for range 20 {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
		dripping.Add(1)
		go func() {
			defer dripping.Done()
			for _, b := range []byte("SSH-2.0-drip\r\n") {
				if _, err := c.Write([]byte{b}); err != nil {
					return
				}
				select {
				case <-stopDrip:
					return
				case <-time.After(300 * time.Millisecond):
				}
			}
		}()
	}

	key := writeKeyFile(t, t.TempDir())
	out, code, took := openssh(t, ts, key, "alice", "who")
	if code != 0 {
		t.Fatalf("login beside 520 stuck connections: exit %d\n%s", code, out)
	}
	t.Logf("OpenSSH login beside 500 silent and 20 dripping connections took %s", took)

	// Every stuck connection is closed by the server once the handshake timeout has passed.
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(hangGuard))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Fatalf("connection %d was not closed by the server: %v", i, err)
		}
	}
}

func TestPerAddressCap(t *testing.T) {
	limiter := connlimit.New(connlimit.Config{MaxPerIP: 3})
	ts := startServerWith(t, room.Config{}, func(c *Config) { c.Gate = &connlimit.Gate{Limiter: limiter} })
	var in []*client
	var conns []*gossh.Client
	for i := range 3 {
		c := ts.dial(t, fmt.Sprintf("user%d", i), false)
		conns = append(conns, c)
		cl := open(t, c, false)
		cl.stdout.WaitContains(t, "joined #lobby (")
		in = append(in, cl)
	}
	_, banner, err := ts.dialKey(t, "fourth", newSigner(t))
	if err == nil {
		t.Fatal("a fourth connection from one address got in")
	}
	if want := "chatd: too many connections from your address (at most 3 at once)"; !strings.Contains(banner, want) {
		t.Errorf("banner %q, want %q", banner, want)
	}
	// The others from that address carry on, and a slot frees up when one leaves.
	in[0].send(t, "still fine")
	in[1].stdout.WaitLine(t, "user0: still fine")
	conns[2].Close()
	in[0].stdout.WaitLine(t, "* user2 left #lobby")
	waitFor(t, "the slot to free up", func() bool { _, n := limiter.Open(addrOf(t, ts.addr)); return n == 2 })
	ts.joinAs(t, "fourth", false)
}

func addrOf(t *testing.T, s string) net.Addr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitFor polls cond: for state that changes with no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestOperatorsBanAndKick(t *testing.T) {
	st := openTestStore(t)
	opKey, trollKey := newSigner(t), newSigner(t)
	ts := startServerWith(t, room.Config{Store: st}, func(c *Config) {
		c.Operators = map[string]bool{gossh.FingerprintSHA256(opKey.PublicKey()): true}
	})
	op := ts.openWithKey(t, "op", opKey)
	op.stdout.WaitLine(t, "* op joined #lobby (1 online)")
	troll := ts.openWithKey(t, "troll", trollKey)
	op.stdout.WaitLine(t, "* troll joined #lobby (2 online)")

	troll.send(t, "/kick op")
	troll.stdout.WaitLine(t, "error: /kick is for operators")

	// Mute, unmute, kick.
	op.send(t, "/mute troll")
	troll.stdout.WaitLine(t, "* you were muted by op until unmuted: nobody sees what you say")
	troll.send(t, "hello?")
	troll.stdout.WaitLine(t, "error: you are muted: nobody sees what you say")
	op.send(t, "/unmute troll")
	troll.stdout.WaitLine(t, "* you were unmuted by op")
	troll.send(t, "thanks")
	op.stdout.WaitLine(t, "troll: thanks")
	if strings.Contains(op.stdout.Text(), "hello?") {
		t.Error("a muted line got through")
	}
	op.send(t, "/kick troll calm down")
	troll.stdout.WaitLine(t, "error: you were kicked by op: calm down")
	troll.stdout.WaitClosed(t)
	op.stdout.WaitLine(t, "* troll was kicked by op: calm down")
	troll = ts.openWithKey(t, "troll", trollKey)
	troll.stdout.WaitContains(t, "* welcome to chatd, troll!")

	// A key ban ends the session and keeps the key out, under any name.
	op.send(t, "/ban "+gossh.FingerprintSHA256(trollKey.PublicKey())+" spam")
	troll.stdout.WaitLine(t, "error: you were banned by op: spam")
	troll.stdout.WaitClosed(t)
	op.stdout.WaitLine(t, "* troll was banned by op: spam")
	_, banner, err := ts.dialKey(t, "someone-else", trollKey)
	if err == nil || !strings.Contains(banner, "chatd: you are banned from this server (spam)") {
		t.Fatalf("a banned key: err %v, banner %q", err, banner)
	}
	// /unban lifts a ban; the next one is for 3 s, and then the key is welcome again.
	op.send(t, "/unban 1")
	op.stdout.WaitContains(t, "* lifted #1 key")
	troll = ts.openWithKey(t, "troll", trollKey)
	troll.stdout.WaitContains(t, "* welcome to chatd, troll!")
	op.send(t, "/ban "+gossh.FingerprintSHA256(trollKey.PublicKey())+" 3s again")
	troll.stdout.WaitClosed(t)
	waitFor(t, "the ban to expire", func() bool {
		c, _, err := ts.dialKey(t, "troll", trollKey)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// An address ban keeps out everyone from there, with a banner saying so, keys or not.
	op.send(t, "/ban 127.0.0.1 everyone from here")
	op.stdout.WaitLine(t, "error: this ban would cover you too (you are op from 127.0.0.1): send /ban confirm within a minute to go ahead")
	op.send(t, "/ban confirm")
	op.stdout.WaitClosed(t)
	_, banner, err = ts.dialKey(t, "op", opKey)
	if err == nil || !strings.Contains(banner, "chatd: you are banned from this server (everyone from here)") {
		t.Fatalf("a banned address: err %v, banner %q", err, banner)
	}
}

func TestAllowlist(t *testing.T) {
	invited := newSigner(t)
	for _, keyless := range []bool{false, true} {
		t.Run(fmt.Sprintf("keyless=%v", keyless), func(t *testing.T) {
			ts := startServerWith(t, room.Config{}, func(c *Config) {
				c.Allow = map[string]bool{gossh.FingerprintSHA256(invited.PublicKey()): true}
				c.AllowKeyless = keyless
			})
			if c, _, err := ts.dialKey(t, "guest", invited); err != nil {
				t.Fatalf("an invited key: %v", err)
			} else {
				c.Close()
			}
			_, _, err := ts.dialKey(t, "stranger", newSigner(t))
			if err == nil {
				t.Error("a key off the list got in")
			}
			// Keyless: refused unless re-enabled.
			c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
				User: "nokey",
				Auth: []gossh.AuthMethod{gossh.KeyboardInteractive(func(_, instruction string, _ []string, _ []bool) ([]string, error) {
					if instruction != "" && !strings.Contains(instruction, "only admits SSH keys on its list") {
						t.Errorf("instruction %q", instruction)
					}
					return nil, nil
				})},
				HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
			})
			if (err == nil) != keyless {
				t.Errorf("keyless login with AllowKeyless=%v: %v", keyless, err)
			}
			if c != nil {
				c.Close()
			}
		})
	}
}

// TestPastedLinesAreNotSlowedDown: a paste of as many lines as the burst arrives whole and in
// order, with the rate limit on.
func TestPastedLinesAreNotSlowedDown(t *testing.T) {
	ts := startServer(t, room.Config{MsgRate: 2, MsgBurst: 10})
	alice := ts.joinAs(t, "alice", true)
	bob := ts.joinAs(t, "bob", false)
	var paste strings.Builder
	paste.WriteString("\x1b[200~")
	for i := range 10 {
		fmt.Fprintf(&paste, "pasted line %d\r", i)
	}
	paste.WriteString("\x1b[201~")
	if _, err := alice.stdin.Write([]byte(paste.String())); err != nil {
		t.Fatal(err)
	}
	bob.stdout.WaitLine(t, "alice: pasted line 9")
	text := bob.stdout.Text()
	last := -1
	for i := range 10 {
		j := strings.Index(text, fmt.Sprintf("alice: pasted line %d\n", i))
		if j < last {
			t.Fatalf("line %d out of order", i)
		}
		last = j
	}
	if strings.Contains(alice.stdout.Text(), "slow down") {
		t.Error("a paste of burst lines was slowed down")
	}
}

func openTestStore(t *testing.T) *sqlite.SQLite {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "chat.db")
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

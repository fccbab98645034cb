package sshd

import (
	"path/filepath"
	"strings"
	"sync"
	"testing"

	gossh "golang.org/x/crypto/ssh"

	"chatd/room"
	"chatd/store/sqlite"
)

func storedServer(t *testing.T) *testServer {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "chat.db")
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return startServer(t, room.Config{Store: st, ParseKey: ParseAuthorizedKey})
}

// dialKey connects as user with signer and returns what the server said in banners.
func (ts *testServer) dialKey(t *testing.T, user string, signer gossh.Signer) (*gossh.Client, string, error) {
	t.Helper()
	var mu sync.Mutex
	var banners strings.Builder
	c, err := gossh.Dial("tcp", ts.addr, &gossh.ClientConfig{
		User:            user,
		Auth:            []gossh.AuthMethod{gossh.PublicKeys(signer)},
		HostKeyCallback: gossh.FixedHostKey(ts.hostKey),
		BannerCallback: func(msg string) error {
			mu.Lock()
			defer mu.Unlock()
			banners.WriteString(msg)
			return nil
		},
		Timeout: hangGuard,
	})
	if err == nil {
		t.Cleanup(func() { c.Close() })
	}
	mu.Lock()
	defer mu.Unlock()
	return c, banners.String(), err
}

// openWithKey logs in as user with signer and opens a plain session.
func (ts *testServer) openWithKey(t *testing.T, user string, signer gossh.Signer) *client {
	t.Helper()
	c, _, err := ts.dialKey(t, user, signer)
	if err != nil {
		t.Fatalf("log in as %s: %v", user, err)
	}
	return open(t, c, false)
}

func TestNamesArePinnedToTheFirstKey(t *testing.T) {
	ts := storedServer(t)
	observer := ts.joinAs(t, "observer", false)
	aliceKey, otherKey := newSigner(t), newSigner(t)

	first := ts.openWithKey(t, "alice", aliceKey)
	observer.stdout.WaitLine(t, "* alice joined #lobby (2 online)")

	// Another key for alice is refused at authentication, with a message saying why.
	_, banner, err := ts.dialKey(t, "ALICE", otherKey)
	if err == nil {
		t.Fatal("another key logged in as alice")
	}
	if want := `chatd: name "ALICE" is registered to another key`; !strings.Contains(banner, want) {
		t.Errorf("banner %q, want %q", banner, want)
	}

	// A keyless login cannot use the name either.
	keyless := open(t, ts.dial(t, "alice", true), false)
	if got := keyless.exitStatus(t); got != 1 {
		t.Errorf("keyless alice: exit %d, want 1", got)
	}
	keyless.stderr.WaitContains(t, `error: name "alice" is registered to a key: log in over SSH with one of its keys`)

	// A second session with alice's key is alice again: no second join notice.
	second := ts.openWithKey(t, "alice", aliceKey)
	second.stdout.WaitLine(t, "* welcome back, alice: this is your session #2, in #lobby; every session gets every line.")
	first.send(t, "said once, seen twice")
	second.stdout.WaitLine(t, "alice: said once, seen twice")
	observer.stdout.WaitLine(t, "alice: said once, seen twice")
	first.stdin.Close()
	second.send(t, "still here")
	observer.stdout.WaitLine(t, "alice: still here")
	second.stdin.Close()
	observer.stdout.WaitLine(t, "* alice left #lobby")
	if n := strings.Count(observer.stdout.Text(), "* alice joined"); n != 1 {
		t.Errorf("%d join notices for two sessions, want 1", n)
	}
	if n := strings.Count(observer.stdout.Text(), "* alice left #lobby"); n != 1 {
		t.Errorf("%d leave notices for two sessions, want 1", n)
	}
}

// TestOpenSSHSeesWhyAKeyIsRefused: the real client prints the refusal, then gives up.
func TestOpenSSHSeesWhyAKeyIsRefused(t *testing.T) {
	ts := storedServer(t)
	c, _, err := ts.dialKey(t, "alice", newSigner(t)) // alice is claimed by another key
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	key := writeKeyFile(t, t.TempDir())
	out, code, _ := openssh(t, ts, key, "alice", "who") // BatchMode: no keyboard-interactive fallback
	if code != 255 {
		t.Fatalf("ssh: exit %d, want 255\n%s", code, out)
	}
	if !strings.Contains(out, `chatd: name "alice" is registered to another key`) {
		t.Errorf("ssh printed %q", out)
	}
}

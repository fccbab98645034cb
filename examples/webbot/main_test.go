package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/chat"
	"chatd/internal/roomtest"
	"chatd/room"
	"chatd/store/sqlite"
	"chatd/web"
)

// TestTheBotAnswersPing runs the bot against a real server: its owner makes a token with
// /weblogin token, the bot signs in with it, and answers !ping in two rooms and by DM.
func TestTheBotAnswersPing(t *testing.T) {
	scfg := sqlite.DefaultConfig()
	scfg.Path = filepath.Join(t.TempDir(), "chat.db")
	st, err := sqlite.Open(scfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hub, err := room.New(room.Config{Store: st, MsgRate: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hub.Shutdown(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := web.DefaultConfig()
	cfg.PublicURL = "http://" + ln.Addr().String()
	srv, err := web.New(cfg, hub, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	// The owner, logged in with a key (as over SSH), makes the bot's token.
	owner := join(t, hub, "owner", room.JoinOptions{Key: newKey(t)})
	owner.Handle("/weblogin token pingbot")
	tokenRE := regexp.MustCompile(`(?m)^\* ([A-Za-z0-9_-]{40,})$`)
	owner.out.Wait(t, "the token", func() bool { return tokenRE.MatchString(owner.out.Text()) })
	token := tokenRE.FindStringSubmatch(owner.out.Text())[1]

	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, "ws://"+ln.Addr().String()+"/ws", token, &out) }()

	out.waitFor(t, "state: owner, talking in #lobby") // the bot is in: another session of owner's
	bob := join(t, hub, "bob", room.JoinOptions{})
	bob.Handle("!ping")
	bob.out.WaitLine(t, "owner: pong")

	// In another room the bot is in, it answers there.
	owner.Handle("/join #go")
	bob.Handle("/join #go")
	bob.out.WaitLine(t, "* bob joined #go (2 online)")
	bob.Handle("!ping")
	bob.out.Wait(t, "the pong in #go", func() bool { return strings.Count(bob.out.Text(), "\nowner: pong\n") == 2 })
	bob.Handle("/msg owner !ping")
	bob.out.WaitLine(t, "[dm from owner] pong")

	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("run: %v", err)
	}
	for _, want := range []string{"state: owner, talking in #lobby", "#lobby bob: !ping", "#go bob: !ping", "[dm bob -> owner] !ping"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the bot did not print %q:\n%s", want, out.String())
		}
	}
}

type member struct {
	*room.Member
	out *roomtest.Stream
}

type pipeOutput struct{ w *io.PipeWriter }

func (p pipeOutput) Write(b []byte) (int, error) { return p.w.Write(b) }
func (p pipeOutput) Close() error                { return p.w.Close() }

// join joins name in-process, as an SSH session would, with its plain lines collected.
func join(t *testing.T, hub *room.Hub, name string, opts room.JoinOptions) *member {
	t.Helper()
	pr, pw := io.Pipe()
	st := roomtest.NewStream(pr)
	opts.Transport = "ssh"
	m, err := hub.Join(name, pipeOutput{pw}, opts)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	t.Cleanup(func() { m.Leave(room.ReasonEOF); pw.Close() })
	return &member{m, st}
}

func newKey(t *testing.T) *chat.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return &chat.Key{Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type(), AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// waitFor polls until the bot has printed s: it writes from its own goroutine, with nothing to
// wait on.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(roomtest.HangGuard)
	for !strings.Contains(b.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("the bot did not print %q:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

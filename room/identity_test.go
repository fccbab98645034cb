package room

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"chatd/room/store"
)

// openStore opens a real SQLite store in a fresh directory.
func openStore(t testing.TB, dir string) *store.SQLite {
	t.Helper()
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(dir, "chat.db")
	st, err := store.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newKey makes a fresh ed25519 public key as the store keeps it.
func newKey(t testing.TB) store.Key {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := gossh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := parseKey(string(gossh.MarshalAuthorizedKey(pk)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// parseKey is what the SSH layer gives the room as Config.ParseKey.
func parseKey(line string) (store.Key, error) {
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return store.Key{}, err
	}
	return store.Key{Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type(), AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))}, nil
}

func storedRoom(t *testing.T, st Store) *Room {
	t.Helper()
	return newTestRoom(t, Config{Store: st, ParseKey: parseKey})
}

func TestNamesArePinnedToKeys(t *testing.T) {
	r := storedRoom(t, openStore(t, t.TempDir()))
	keyA, keyB := newKey(t), newKey(t)

	if err := r.Authorize("Alice", keyA); err != nil {
		t.Fatalf("first key claims a free name: %v", err)
	}
	if err := r.Authorize("alice", keyA); err != nil {
		t.Fatalf("the owner's key, another case: %v", err)
	}
	err := r.Authorize("ALICE", keyB)
	if !errors.Is(err, ErrRegistered) || err.Error() != `name "ALICE" is registered to another key` {
		t.Fatalf("another key: %v", err)
	}
	if err := r.Authorize("bad name", keyB); err != nil {
		t.Fatalf("an invalid name is left for the session to explain: %v", err)
	}

	tests := []struct {
		name    string
		user    string
		key     *store.Key
		wantErr string
	}{
		{"other key", "alice", &keyB, `name "alice" is registered to another key`},
		{"keyless", "alice", nil, `name "Alice" is registered to a key: log in over SSH with one of its keys`},
		{"keyless free name", "bob", nil, ""},
		{"owner", "alice", &keyA, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := r.Join(tt.user, newRecorder(), JoinOptions{Key: tt.key})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tt.key != nil && m.Name() != "Alice" {
					t.Errorf("name %q, want the registered form Alice", m.Name())
				}
				m.Leave(ReasonQuit)
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
	// A keyless login does not claim a name: bob is still free for a key.
	if err := r.Authorize("bob", keyB); err != nil {
		t.Errorf("bob after a keyless visit: %v", err)
	}
}

func TestSeveralSessionsAreOnePerson(t *testing.T) {
	r := storedRoom(t, openStore(t, t.TempDir()))
	key := newKey(t)
	_, bobOut := join(t, r, "bob", JoinOptions{})
	first, firstOut := join(t, r, "alice", JoinOptions{Key: &key})
	second, secondOut := join(t, r, "alice", JoinOptions{Key: &key})
	secondOut.waitLine(t, "* welcome back, alice: this is your session #2; every session gets every line.")

	first.Handle("from the first terminal")
	secondOut.waitLine(t, "alice: from the first terminal")
	bobOut.waitLine(t, "alice: from the first terminal")
	r.lookup("bob").members[0].Handle("/msg alice hi both")
	firstOut.waitLine(t, "[dm from bob] hi both")
	secondOut.waitLine(t, "[dm from bob] hi both")
	second.Handle("/who")
	secondOut.waitLine(t, "* 2 online: alice, bob")

	// A keyless login cannot join a registered person, nor take its name while it is online.
	if _, err := r.Join("alice", newRecorder(), JoinOptions{}); !errors.Is(err, ErrRegistered) {
		t.Errorf("keyless alice: %v", err)
	}

	first.Leave(ReasonQuit)
	second.Handle("still here")
	bobOut.waitLine(t, "alice: still here")
	second.Leave(ReasonQuit)
	lines := bobOut.waitLine(t, "* alice left")
	if n := strings.Count(strings.Join(lines, "\n"), "* alice joined"); n != 1 {
		t.Errorf("bob saw %d joins for two sessions, want 1", n)
	}
	if n := strings.Count(strings.Join(bobOut.lines(), "\n"), "* alice left"); n != 1 {
		t.Errorf("bob saw %d leaves for two sessions, want 1", n)
	}
}

func TestUnregisteredNamesStayUnique(t *testing.T) {
	r := newTestRoom(t, Config{}) // no store: nothing is registered
	key := newKey(t)
	join(t, r, "alice", JoinOptions{Key: &key})
	if _, err := r.Join("alice", newRecorder(), JoinOptions{Key: &key}); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second session without a store: %v, want taken", err)
	}
}

func TestHistory(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	clock := time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)
	r := newTestRoom(t, Config{Store: st, HistoryOnJoin: 3, Now: func() time.Time { return clock }})
	alice, _ := join(t, r, "alice", JoinOptions{})
	for i := range 5 {
		alice.Handle(fmt.Sprintf("message %d", i))
	}
	alice.Handle("/me waves")
	alice.Handle("/msg nobody private") // not history

	_, bobOut := join(t, r, "bob", JoinOptions{})
	got := bobOut.waitLine(t, "* bob joined (2 online)")
	want := []string{
		"* welcome to chatd, bob! /help lists the commands; bye leaves.",
		"* the last 3 messages:",
		"[history 2026-11-25 09:41] alice: message 3",
		"[history 2026-11-25 09:41] alice: message 4",
		"[history 2026-11-25 09:41] ** alice waves",
		"* bob joined (2 online)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bob's first lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	bob := r.lookup("bob").members[0]
	bob.Handle("/history 2")
	bobOut.waitLine(t, "* the last 2 messages:")
	bob.Handle("/history 1001")
	bobOut.waitLine(t, "error: usage: /history [N]: N must be a whole number from 1 to 1000")

	var out strings.Builder
	if err := r.Exec([]string{"history", "2"}, &out, ExecOptions{Name: "reader"}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "[history 2026-11-25 09:41] alice: message 4\n[history 2026-11-25 09:41] ** alice waves\n" {
		t.Errorf("exec history printed %q", out.String())
	}

	// After a restart the history comes from the store, dated now that it is another day.
	if err := st.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(24 * time.Hour)
	r2 := newTestRoom(t, Config{Store: st, HistoryOnJoin: 2, Now: func() time.Time { return clock }})
	_, carolOut := join(t, r2, "carol", JoinOptions{Format: ANSI})
	carolOut.waitFor(t, "history", func(ls []string) bool { return len(ls) >= 4 })
	lines := carolOut.lines()
	if !strings.Contains(lines[2], sgrDim+"Nov 25 09:41 alice: message 4"+sgrReset) {
		t.Errorf("ANSI history line %q: want it dimmed and dated", lines[2])
	}
}

func TestOfflineDMs(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := storedRoom(t, st)
	key := newKey(t)
	alice, _ := join(t, r, "alice", JoinOptions{Key: &key}) // registers alice
	alice.Leave(ReasonQuit)

	bob, bobOut := join(t, r, "bob", JoinOptions{})
	bob.Handle("/msg alice see you tomorrow")
	bobOut.waitLine(t, "[dm to alice] see you tomorrow")
	bobOut.waitLine(t, "* alice is offline: they get your message when they next log in")
	bob.Handle("/msg carol hello?")
	bobOut.waitLine(t, `error: "carol" is not online`)

	_, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})
	lines := aliceOut.waitLine(t, "[dm from bob] (sent 2026-11-25 09:41) see you tomorrow")
	if i, j := index(lines, "* alice joined (2 online)"), index(lines, "* 1 private message(s) arrived while you were away:"); i < 0 || j < i {
		t.Errorf("queued messages must follow the join notice: %q", lines)
	}
	// Delivered once: a second session does not get them again.
	_, again := join(t, r, "alice", JoinOptions{Key: &key})
	again.waitLine(t, "* welcome back, alice: this is your session #2; every session gets every line.")
	r.lookup("bob").members[0].Handle("/who") // a marker
	bobOut.waitLine(t, "* 2 online: alice, bob")
	if strings.Contains(strings.Join(again.lines(), "\n"), "see you tomorrow") {
		t.Error("queued message delivered twice")
	}
}

func TestOfflineDMQueueIsBounded(t *testing.T) {
	cfg := store.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "chat.db")
	cfg.MaxQueuedDMs = 2
	st, err := store.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := storedRoom(t, st)
	key := newKey(t)
	alice, _ := join(t, r, "alice", JoinOptions{Key: &key})
	alice.Leave(ReasonQuit)
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	for i := range 3 {
		bob.Handle(fmt.Sprintf("/msg alice %d", i))
	}
	bobOut.waitLine(t, "error: alice is offline and has too many messages waiting; try again when they are back")
}

func TestKeysCommand(t *testing.T) {
	r := storedRoom(t, openStore(t, t.TempDir()))
	key, other := newKey(t), newKey(t)
	alice, out := join(t, r, "alice", JoinOptions{Key: &key})
	alice.Handle("/keys")
	out.waitLine(t, "*   ssh-ed25519 "+key.Fingerprint+" added 2026-11-25 09:41")

	alice.Handle("/keys remove " + key.Fingerprint)
	out.waitLine(t, "error: that is your name's only key: add another one first")
	alice.Handle("/keys add not a key")
	out.waitFor(t, "parse error", func(ls []string) bool {
		return len(ls) > 0 && strings.HasPrefix(ls[len(ls)-1], "error: not a public key:")
	})
	alice.Handle("/keys add " + other.AuthorizedKey + " laptop")
	out.waitLine(t, "* added ssh-ed25519 "+other.Fingerprint)
	alice.Handle("/keys add " + other.AuthorizedKey)
	out.waitLine(t, "error: that key is already yours")
	if err := r.Authorize("alice", other); err != nil {
		t.Errorf("the added key cannot log in: %v", err)
	}
	alice.Handle("/keys remove " + key.Fingerprint)
	out.waitLine(t, "* removed "+key.Fingerprint)
	if err := r.Authorize("alice", key); !errors.Is(err, ErrRegistered) {
		t.Errorf("a removed key can still log in: %v", err)
	}

	bob, bobOut := join(t, r, "bob", JoinOptions{})
	bob.Handle("/keys")
	bobOut.waitLine(t, "error: you logged in without a registered key: log in over SSH with a key to register your name")
	bob.Handle("/whois alice")
	bobOut.waitLine(t, "*   ssh-ed25519 "+other.Fingerprint)
	bob.Handle("/whois bob")
	bobOut.waitLine(t, "* not registered: logged in without a key")
	bob.Handle("/whois zed")
	bobOut.waitLine(t, `error: "zed" is not online and not registered`)
}

func TestTimestampsToggle(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, _ := join(t, r, "alice", JoinOptions{})
	term, out := join(t, r, "term", JoinOptions{Format: ANSI})
	alice.Handle("with time")
	out.waitFor(t, "with time", hasSuffixLine("with time"))
	term.Handle("/timestamps off")
	alice.Handle("without time")
	out.waitFor(t, "without time", hasSuffixLine("without time"))
	ls := out.lines()
	if !strings.HasPrefix(ls[len(ls)-3], sgrDim+"09:41"+sgrReset+" ") {
		t.Errorf("line %q should start with the time", ls[len(ls)-3])
	}
	if last := ls[len(ls)-1]; strings.Contains(last, "09:41") || !strings.HasPrefix(last, "\x1b[1;38;5;") {
		t.Errorf("line %q should start with the name", last)
	}
	// Plain lines have no time unless asked for.
	plain, plainOut := join(t, r, "plain", JoinOptions{})
	term.Handle("one")
	plainOut.waitLine(t, "term: one")
	plain.Handle("/timestamps on")
	term.Handle("two")
	plainOut.waitLine(t, "09:41 term: two")
}

// BenchmarkStoredFanOut1000: messages said, delivered to 1000 members and committed to SQLite
// per second. The timer includes the final flush, so every message counted is on disk.
func BenchmarkStoredFanOut1000(b *testing.B) {
	st := openStore(b, b.TempDir())
	sender := fanOutRoom(b, newTestRoom(b, Config{Store: st, OutboxSize: 1 << 16}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sender.Handle("the quick brown fox jumps over the lazy dog")
	}
	sender.room.flushers.Wait() // every line written, not just queued
	if err := st.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stored-msgs/s")
	b.ReportMetric(float64(b.N*999)/b.Elapsed().Seconds(), "deliveries/s")
}

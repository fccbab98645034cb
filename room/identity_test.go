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

	"chatd/chat"
	"chatd/store/sqlite"
)

// testNow is the time of newTestRoom's clock, which openStore's store shares: pending keys expire
// by the store's clock, a day after the room's.
var testNow = time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)

// openStore opens a real SQLite store in a fresh directory, on testNow's clock.
func openStore(t testing.TB, dir string) *sqlite.SQLite {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(dir, "chat.db")
	cfg.Now = func() time.Time { return testNow }
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// newKey makes a fresh ed25519 public key as the store keeps it.
func newKey(t testing.TB) chat.Key {
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
func parseKey(line string) (chat.Key, error) {
	pk, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return chat.Key{}, err
	}
	return chat.Key{Fingerprint: gossh.FingerprintSHA256(pk), Type: pk.Type(), AuthorizedKey: strings.TrimSpace(string(gossh.MarshalAuthorizedKey(pk)))}, nil
}

func storedRoom(t *testing.T, st Store) *Hub {
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
		key     *chat.Key
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
	secondOut.waitLine(t, "* welcome back, alice: this is your session #2, in #lobby; every session gets every line.")

	first.Handle("from the first terminal")
	secondOut.waitLine(t, "alice: from the first terminal")
	bobOut.waitLine(t, "alice: from the first terminal")
	r.lookup("bob").sessions[0].Handle("/msg alice hi both")
	firstOut.waitLine(t, "[dm from bob] hi both")
	secondOut.waitLine(t, "[dm from bob] hi both")
	second.Handle("/who")
	secondOut.waitLine(t, "* 2 online in #lobby: alice, bob")

	// A keyless login cannot join a registered person, nor take its name while it is online.
	if _, err := r.Join("alice", newRecorder(), JoinOptions{}); !errors.Is(err, ErrRegistered) {
		t.Errorf("keyless alice: %v", err)
	}

	first.Leave(ReasonQuit)
	second.Handle("still here")
	bobOut.waitLine(t, "alice: still here")
	second.Leave(ReasonQuit)
	lines := bobOut.waitLine(t, "* alice left #lobby")
	if n := strings.Count(strings.Join(lines, "\n"), "* alice joined"); n != 1 {
		t.Errorf("bob saw %d joins for two sessions, want 1", n)
	}
	if n := strings.Count(strings.Join(bobOut.lines(), "\n"), "* alice left #lobby"); n != 1 {
		t.Errorf("bob saw %d leaves for two sessions, want 1", n)
	}
}

func TestUnregisteredNamesStayUnique(t *testing.T) {
	r := newTestRoom(t, Config{}) // no store: nothing is registered
	key := newKey(t)
	join(t, r, "alice", JoinOptions{Key: &key})
	if _, err := r.Join("alice", newRecorder(), JoinOptions{Key: &key}); !errors.Is(err, chat.ErrNameTaken) {
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
	got := bobOut.waitLine(t, "* bob joined #lobby (2 online)")
	want := []string{
		"* welcome to chatd, bob! you are in #lobby; /help lists the commands; bye leaves.",
		"* the last 3 messages of #lobby:",
		"[history 2026-11-25 09:41] alice: message 3",
		"[history 2026-11-25 09:41] alice: message 4",
		"[history 2026-11-25 09:41] ** alice waves",
		"* bob joined #lobby (2 online)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bob's first lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	bob := r.lookup("bob").sessions[0]
	bob.Handle("/history 2")
	bobOut.waitLine(t, "* the last 2 messages of #lobby:")
	bob.Handle("/history 1001")
	bobOut.waitLine(t, "error: usage: /history [ROOM] [N]: N must be a whole number from 1 to 1000")

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
	if i, j := index(lines, "* alice joined #lobby (2 online)"), index(lines, "* 1 private message(s) arrived while you were away:"); i < 0 || j < i {
		t.Errorf("queued messages must follow the join notice: %q", lines)
	}
	// Delivered once: a second session does not get them again.
	_, again := join(t, r, "alice", JoinOptions{Key: &key})
	again.waitLine(t, "* welcome back, alice: this is your session #2, in #lobby; every session gets every line.")
	r.lookup("bob").sessions[0].Handle("/who") // a marker
	bobOut.waitLine(t, "* 2 online in #lobby: alice, bob")
	if strings.Contains(strings.Join(again.lines(), "\n"), "see you tomorrow") {
		t.Error("queued message delivered twice")
	}
}

func TestOfflineDMQueueIsBounded(t *testing.T) {
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "chat.db")
	cfg.MaxQueuedDMs = 2
	st, err := sqlite.Open(cfg, nil)
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

// TestOfflineDMCapsPerSender: senders cannot fill an offline person's queue. One name may have
// MaxQueuedDMsPerSender messages waiting for them, one address MaxQueuedDMsPerAddr whatever the
// names, and the queue as a whole MaxQueuedDMs; each cap is an error that says which.
func TestOfflineDMCapsPerSender(t *testing.T) {
	st, clock := clockedStore(t, nil) // the defaults: 10 per sender, 20 per address, 100 in all
	r := newTestRoom(t, Config{Store: st, Now: clock.Now})
	key := newKey(t)
	alice, _ := join(t, r, "alice", JoinOptions{Key: &key})
	alice.Leave(ReasonQuit)

	send := func(name, remote string, n int) *recorder {
		t.Helper()
		m, out := join(t, r, name, JoinOptions{Remote: remote})
		for i := range n {
			m.Handle(fmt.Sprintf("/msg alice %s %d", name, i))
		}
		m.Handle("/who") // a marker: every /msg above has been answered
		out.waitFor(t, "the marker", func(ls []string) bool {
			return len(ls) > 0 && strings.HasSuffix(ls[len(ls)-1], "online in #lobby: "+name)
		})
		m.Leave(ReasonQuit)
		return out
	}
	count := func(out *recorder, line string) int {
		return strings.Count(strings.Join(out.lines(), "\n")+"\n", line+"\n")
	}
	const queued = "* alice is offline: they get your message when they next log in"

	out := send("bob", "192.0.2.7:1000", 11)
	if got := count(out, queued); got != 10 {
		t.Errorf("bob queued %d, want 10", got)
	}
	if got := count(out, "error: you already have 10 messages waiting for alice; they get them when they are back"); got != 1 {
		t.Errorf("bob's 11th: %d errors\n%s", got, strings.Join(out.lines(), "\n"))
	}
	// BOB is bob: the cap is per name, whatever the case.
	out = send("BOB", "198.51.100.1:1000", 1)
	if got := count(out, "error: you already have 10 messages waiting for alice; they get them when they are back"); got != 1 {
		t.Errorf("BOB: %s", strings.Join(out.lines(), "\n"))
	}
	// Other names from bob's address: 10 more, then the address is at its cap.
	out = send("carol", "192.0.2.7:2000", 10)
	if got := count(out, queued); got != 10 {
		t.Errorf("carol queued %d, want 10", got)
	}
	out = send("dave", "192.0.2.7:3000", 1)
	if got := count(out, "error: 20 messages from your address are already waiting for alice; they get them when they are back"); got != 1 {
		t.Errorf("dave, from bob's address: %s", strings.Join(out.lines(), "\n"))
	}
	// Others still get through, until the queue as a whole is full.
	for i, addr := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"} {
		for j := range 2 {
			out = send(fmt.Sprintf("s%d%d", i, j), addr+":1", 10)
			if got := count(out, queued); got != 10 {
				t.Fatalf("sender %d/%d queued %d, want 10", i, j, got)
			}
		}
	}
	out = send("zed", "203.0.113.99:1", 1)
	if got := count(out, "error: alice is offline and has too many messages waiting; try again when they are back"); got != 1 {
		t.Errorf("the 101st message: %s", strings.Join(out.lines(), "\n"))
	}

	_, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})
	aliceOut.waitLine(t, "* 100 private message(s) arrived while you were away:")
}

func TestSenderAddr(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.7:4000", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:4000", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:4000", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2::9]:1", "2001:db8:1:2::/64"}, // the same /64: one subscriber
		{"", ""},
		{"pipe", ""},
	}
	for _, tt := range tests {
		if got := senderAddr(tt.remote); got != tt.want {
			t.Errorf("senderAddr(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}

// clockedStore opens a real store with its settings changed by mutate (may be nil), and a clock
// for it and the room to share: pending keys expire by the store's clock.
func clockedStore(t *testing.T, mutate func(*sqlite.Config)) (*sqlite.SQLite, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: testNow}
	cfg := sqlite.DefaultConfig()
	cfg.Path, cfg.Now = filepath.Join(t.TempDir(), "chat.db"), clock.Now
	if mutate != nil {
		mutate(&cfg)
	}
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, clock
}

func TestKeysCommand(t *testing.T) {
	st, clock := clockedStore(t, nil)
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, Now: clock.Now})
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

	// An added key is pending: the reply says how to confirm it, and /keys lists it apart.
	alice.Handle("/keys add " + other.AuthorizedKey + " laptop")
	out.waitLine(t, "* ssh-ed25519 "+other.Fingerprint+" is pending: it becomes one of alice's keys once it has logged in as alice, before 2026-11-26 09:41.")
	out.waitLine(t, "* to confirm it, log in once as alice with that key: ssh -i KEYFILE -p PORT alice@HOST (KEYFILE is that key's private file; HOST and PORT as you use them now)")
	out.waitLine(t, "* pending, not usable until each logs in once as alice to confirm it (ssh -i KEYFILE -p PORT alice@HOST):")
	out.waitLine(t, "*   ssh-ed25519 "+other.Fingerprint+" added 2026-11-25 09:41, expires 2026-11-26 09:41")
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	bob.Handle("/whois alice")
	bobOut.waitLine(t, "*   ssh-ed25519 "+key.Fingerprint)
	if strings.Contains(strings.Join(bobOut.lines(), "\n"), other.Fingerprint) {
		t.Error("/whois shows a pending key")
	}
	// Proposing it again moves its expiry.
	clock.Add(time.Hour)
	alice.Handle("/keys add " + other.AuthorizedKey)
	out.waitLine(t, "*   ssh-ed25519 "+other.Fingerprint+" added 2026-11-25 09:41, expires 2026-11-26 10:41")

	// Its first login as alice proves it, and confirms it.
	if err := r.Authorize("alice", other); err != nil {
		t.Fatalf("the pending key's login as alice: %v", err)
	}
	alice.Handle("/keys add " + other.AuthorizedKey)
	out.waitLine(t, "error: that key is already yours")
	bob.Handle("/whois alice")
	bobOut.waitLine(t, "*   ssh-ed25519 "+other.Fingerprint)
	alice.Handle("/keys remove " + key.Fingerprint)
	out.waitLine(t, "* removed "+key.Fingerprint)
	if err := r.Authorize("alice", key); !errors.Is(err, ErrRegistered) {
		t.Errorf("a removed key can still log in: %v", err)
	}

	// A pending key that is removed, or that expires, never logs in.
	third, fourth := newKey(t), newKey(t)
	second, out2 := join(t, r, "alice", JoinOptions{Key: &other})
	second.Handle("/keys add " + third.AuthorizedKey)
	second.Handle("/keys add " + fourth.AuthorizedKey)
	out2.waitLine(t, "*   ssh-ed25519 "+fourth.Fingerprint+" added 2026-11-25 10:41, expires 2026-11-26 10:41")
	second.Handle("/keys remove " + third.Fingerprint)
	out2.waitLine(t, "* removed "+third.Fingerprint)
	if err := r.Authorize("alice", third); !errors.Is(err, ErrRegistered) {
		t.Errorf("a removed pending key logs in: %v", err)
	}
	clock.Add(PendingKeyTTL)
	if err := r.Authorize("alice", fourth); !errors.Is(err, ErrRegistered) {
		t.Errorf("an expired pending key logs in: %v", err)
	}
	second.Handle("/keys")
	out2.waitFor(t, "a listing without the expired key", func(ls []string) bool {
		return len(ls) > 0 && ls[len(ls)-1] == "*   ssh-ed25519 "+other.Fingerprint+" added 2026-11-25 10:41"
	})

	bob.Handle("/keys")
	bobOut.waitLine(t, "error: you logged in without a registered key: log in over SSH with a key to register your name")
	bob.Handle("/whois bob")
	bobOut.waitLine(t, "* not registered: logged in without a key")
	bob.Handle("/whois zed")
	bobOut.waitLine(t, `error: "zed" is not online and not registered`)
}

// TestSomeoneElsesKeyIsNeverYours: mallory adds bob's public key, which anyone can copy. It
// stays pending (bob never logs in as mallory), so /whois does not show it as mallory's, and an
// operator's ban of mallory leaves bob alone.
func TestSomeoneElsesKeyIsNeverYours(t *testing.T) {
	st, clock := clockedStore(t, nil)
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, Now: clock.Now})
	malloryKey, bobKey := newKey(t), newKey(t)
	op, opOut := join(t, r, "op", JoinOptions{Operator: true, Remote: "127.0.0.1:5000"})
	mallory, malloryOut := join(t, r, "mallory", JoinOptions{Key: &malloryKey, Remote: "192.0.2.7:4000"})
	_, bobOut := join(t, r, "bob", JoinOptions{Key: &bobKey, Remote: "198.51.100.1:4000"})

	mallory.Handle("/keys add " + bobKey.AuthorizedKey)
	malloryOut.waitLine(t, "* ssh-ed25519 "+bobKey.Fingerprint+" is pending: it becomes one of mallory's keys once it has logged in as mallory, before 2026-11-26 09:41.")
	op.Handle("/whois mallory")
	opOut.waitLine(t, "*   ssh-ed25519 "+malloryKey.Fingerprint)
	if strings.Contains(strings.Join(opOut.lines(), "\n"), bobKey.Fingerprint) {
		t.Fatal("/whois mallory shows bob's key")
	}

	op.Handle("/ban mallory spam")
	malloryOut.waitLine(t, "error: you were banned by op: spam")
	opOut.waitLine(t, "* banned #1 name mallory by op, for ever: spam")
	opOut.waitLine(t, "* banned #2 key "+malloryKey.Fingerprint+" by op, for ever: spam")
	bobOut.waitLine(t, "* mallory was banned by op: spam")
	if strings.Contains(strings.Join(opOut.lines(), "\n"), bobKey.Fingerprint) {
		t.Error("the ban of mallory mentions bob's key")
	}
	if r.lookup("bob") == nil {
		t.Fatal("bob was expelled by the ban of mallory")
	}
	if err := r.Banned(remoteIP("198.51.100.1:4001"), bobKey.Fingerprint, "bob"); err != nil {
		t.Errorf("bob is banned: %v", err)
	}
	if err := r.Authorize("bob", bobKey); err != nil {
		t.Errorf("bob cannot log in: %v", err)
	}
}

// TestBanByNameSparesSharedKeys: a key that another name holds too is not banned with a name;
// the operator is told whose it is, and bans it by fingerprint if need be.
func TestBanByNameSparesSharedKeys(t *testing.T) {
	st, clock := clockedStore(t, nil)
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, Now: clock.Now})
	shared, own := newKey(t), newKey(t)
	for _, name := range []string{"bob", "carol", "troll"} {
		if err := r.Authorize(name, shared); err != nil {
			t.Fatal(err)
		}
	}
	// troll's own key, proved by its first login.
	if err := st.ProposeKey("troll", own, clock.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := r.Authorize("troll", own); err != nil {
		t.Fatal(err)
	}
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})
	op.Handle("/ban troll")
	opOut.waitLine(t, "* key "+shared.Fingerprint+" is also bob's and carol's: not banned (ban it by fingerprint to keep it out)")
	opOut.waitLine(t, "* banned #1 name troll by op, for ever")
	opOut.waitLine(t, "* banned #2 key "+own.Fingerprint+" by op, for ever")
	if err := r.Banned(remoteIP(""), shared.Fingerprint, "bob"); err != nil {
		t.Errorf("bob's key is banned: %v", err)
	}
	if err := r.Banned(remoteIP(""), own.Fingerprint, "someone"); err == nil {
		t.Error("troll's own key is not banned")
	}
	if err := r.Banned(remoteIP(""), shared.Fingerprint, "troll"); err == nil {
		t.Error("the name troll is not banned")
	}
}

// TestNamesPerKey: one key may hold MaxNamesPerKey names; a login that would claim another, or
// confirm the key for another, is refused with a reason fit for the SSH banner.
func TestNamesPerKey(t *testing.T) {
	st, clock := clockedStore(t, func(c *sqlite.Config) { c.MaxNamesPerKey = 3 })
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, Now: clock.Now})
	key := newKey(t)
	for _, name := range []string{"one", "two", "three"} {
		if err := r.Authorize(name, key); err != nil {
			t.Fatalf("name %s: %v", name, err)
		}
	}
	const want = "this key holds too many names: it is the key of one, three, two already, and a key may hold at most 3; log in as one of them"
	err := r.Authorize("four", key)
	if !errors.Is(err, ErrTooManyNames) || err.Error() != want {
		t.Fatalf("a 4th name: %v\nwant %q", err, want)
	}
	if _, err := r.Join("four", newRecorder(), JoinOptions{Key: &key}); err == nil || err.Error() != want {
		t.Fatalf("joining as a 4th name: %v", err)
	}
	if err := r.Authorize("TWO", key); err != nil {
		t.Errorf("a name the key holds: %v", err)
	}

	// Confirming the key onto a 4th name is refused too, and the key stays pending there.
	aliceKey := newKey(t)
	alice, out := join(t, r, "alice", JoinOptions{Key: &aliceKey})
	alice.Handle("/keys add " + key.AuthorizedKey)
	out.waitLine(t, "*   ssh-ed25519 "+key.Fingerprint+" added 2026-11-25 09:41, expires 2026-11-26 09:41")
	if err := r.Authorize("alice", key); !errors.Is(err, ErrTooManyNames) {
		t.Fatalf("confirming onto a 4th name: %v", err)
	}
	if id, _, _ := st.Identity("alice"); len(id.Keys) != 1 || len(id.Pending) != 1 {
		t.Errorf("alice after the refusal: %+v", id)
	}
}

// TestKeysPerName: a name may have MaxKeysPerName keys, active and pending together.
func TestKeysPerName(t *testing.T) {
	st, clock := clockedStore(t, func(c *sqlite.Config) { c.MaxKeysPerName = 3 })
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, Now: clock.Now})
	key := newKey(t)
	alice, out := join(t, r, "alice", JoinOptions{Key: &key})
	var pending []chat.Key
	for range 2 {
		k := newKey(t)
		pending = append(pending, k)
		alice.Handle("/keys add " + k.AuthorizedKey)
		out.waitLine(t, "*   ssh-ed25519 "+k.Fingerprint+" added 2026-11-25 09:41, expires 2026-11-26 09:41")
	}
	alice.Handle("/keys add " + newKey(t).AuthorizedKey)
	out.waitLine(t, "error: alice has 3 keys (active and pending), the most a name may have; remove one first: /keys remove FINGERPRINT")
	alice.Handle("/keys remove " + pending[0].Fingerprint)
	out.waitLine(t, "* removed "+pending[0].Fingerprint)
	last := newKey(t)
	alice.Handle("/keys add " + last.AuthorizedKey)
	out.waitLine(t, "*   ssh-ed25519 "+last.Fingerprint+" added 2026-11-25 09:41, expires 2026-11-26 09:41")
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
	sender.hub.flushers.Wait() // every line written, not just queued
	if err := st.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "stored-msgs/s")
	b.ReportMetric(float64(b.N*999)/b.Elapsed().Seconds(), "deliveries/s")
}

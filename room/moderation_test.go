package room

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"chatd/chat"
	"chatd/store/sqlite"
)

// fakeClock is a clock the test moves by hand, safe to read from the room's goroutines.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMuteIgnoreKick(t *testing.T) {
	r := newTestRoom(t, Config{})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})
	troll, trollOut := join(t, r, "troll", JoinOptions{})
	bob, bobOut := join(t, r, "bob", JoinOptions{})

	bob.Handle("/kick troll")
	bobOut.waitLine(t, "error: /kick is for operators")

	op.Handle("/mute troll 10m")
	opOut.waitLine(t, "* troll is muted until 09:51")
	trollOut.waitLine(t, "* you were muted by op until 09:51: nobody sees what you say")
	troll.Handle("can anyone hear me")
	trollOut.waitLine(t, "error: you are muted until 09:51: nobody sees what you say")
	troll.Handle("/msg bob psst")
	op.Handle("/unmute troll")
	trollOut.waitLine(t, "* you were unmuted by op")
	troll.Handle("back")
	bobOut.waitLine(t, "troll: back")
	for _, l := range bobOut.lines() {
		if strings.Contains(l, "hear me") || strings.Contains(l, "psst") {
			t.Fatalf("bob saw what the muted troll said: %q", l)
		}
	}

	bob.Handle("/ignore TROLL")
	bobOut.waitLine(t, "* you ignore TROLL: you will not see what they say (/unignore TROLL undoes it)")
	troll.Handle("you cannot see this")
	troll.Handle("/msg bob nor this")
	op.Handle("marker")
	bobOut.waitLine(t, "op: marker")
	for _, l := range bobOut.lines() {
		if strings.Contains(l, "see this") || strings.Contains(l, "nor this") {
			t.Fatalf("bob saw someone he ignores: %q", l)
		}
	}
	bob.Handle("/unignore troll")
	troll.Handle("visible again")
	bobOut.waitLine(t, "troll: visible again")

	op.Handle("/kick troll enough")
	trollOut.waitLine(t, "error: you were kicked by op: enough")
	trollOut.waitClosed(t)
	bobOut.waitLine(t, "* troll was kicked by op: enough")
	if troll.Reason() != ReasonKicked {
		t.Errorf("reason %v, want kicked", troll.Reason())
	}
}

func TestBans(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	cfg := sqlite.DefaultConfig()
	cfg.Path, cfg.Now = filepath.Join(t.TempDir(), "chat.db"), clock.Now
	st, err := sqlite.Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := newTestRoom(t, Config{Store: st, Now: clock.Now})
	trollKey := newKey(t)
	op, opOut := join(t, r, "op", JoinOptions{Operator: true, Remote: "127.0.0.1:5000"})
	troll, trollOut := join(t, r, "troll", JoinOptions{Key: &trollKey, Remote: "192.0.2.7:4000"})
	_, bobOut := join(t, r, "bob", JoinOptions{Remote: "198.51.100.1:4000"})
	_ = troll

	// A name ban covers the person's keys too, and ends their sessions.
	op.Handle("/ban troll 2h spamming")
	trollOut.waitLine(t, "error: you were banned by op: spamming")
	trollOut.waitClosed(t)
	bobOut.waitLine(t, "* troll was banned by op: spamming")
	opOut.waitLine(t, "* banned #1 name troll by op, until 2026-11-25 11:41: spamming")
	opOut.waitLine(t, "* banned #2 key "+trollKey.Fingerprint+" by op, until 2026-11-25 11:41: spamming")

	var be *BanError
	if _, err := r.Join("troll", newRecorder(), JoinOptions{}); !errors.As(err, &be) || !errors.Is(err, ErrBanned) {
		t.Fatalf("banned name joins: %v", err)
	}
	if err := r.Banned(netip.Addr{}, trollKey.Fingerprint, "troll2"); err == nil {
		t.Fatal("the banned key is not banned under another name")
	}
	if got := be.Error(); got != "you are banned from this server until 2026-11-25 11:41 UTC (spamming)" {
		t.Errorf("ban message %q", got)
	}

	// An address ban; banning your own address needs confirmation.
	op.Handle("/ban 192.0.2.0/24")
	opOut.waitLine(t, "* banned #3 ip 192.0.2.0/24 by op, for ever")
	if err := r.Banned(netip.MustParseAddr("192.0.2.99"), "", ""); err == nil {
		t.Error("an address in the banned range is let in")
	}
	op.Handle("/ban 127.0.0.1 oops")
	opOut.waitLine(t, "error: this ban would cover you too (you are op from 127.0.0.1): send /ban confirm within a minute to go ahead")
	if err := r.Banned(netip.MustParseAddr("127.0.0.1"), "", ""); err != nil {
		t.Fatal("a self-ban took effect without confirmation")
	}

	op.Handle("/bans")
	opOut.waitLine(t, "*   #3 ip 192.0.2.0/24 by op, for ever")
	op.Handle("/unban 3")
	opOut.waitLine(t, "* lifted #3 ip 192.0.2.0/24 by op, for ever")
	if err := r.Banned(netip.MustParseAddr("192.0.2.99"), "", ""); err != nil {
		t.Errorf("an unbanned address is kept out: %v", err)
	}

	// Bans survive a restart; timed ones expire.
	r2 := newTestRoom(t, Config{Store: st, Now: clock.Now})
	if err := r2.Banned(netip.Addr{}, "", "TROLL"); err == nil {
		t.Error("the name ban did not survive a restart")
	}
	clock.Add(3 * time.Hour)
	if err := r2.Banned(netip.Addr{}, "", "troll"); err != nil {
		t.Errorf("an expired ban still holds: %v", err)
	}
}

func TestMotd(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := newTestRoom(t, Config{Store: st, Motd: "be nice"})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})
	opOut.waitLine(t, "* be nice")
	op.Handle("/motd be kind, rewind")
	opOut.waitLine(t, "* message of the day set")
	_, bobOut := join(t, r, "bob", JoinOptions{})
	bobOut.waitLine(t, "* be kind, rewind")
	bob := r.lookup("bob").sessions[0]
	bob.Handle("/motd I rule")
	bobOut.waitLine(t, "error: /motd TEXT is for operators")
	// The operator's motd outlives a restart.
	r2 := newTestRoom(t, Config{Store: st, Motd: "be nice"})
	_, carolOut := join(t, r2, "carol", JoinOptions{})
	carolOut.waitLine(t, "* be kind, rewind")
}

func TestIdleTimeout(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	r := newTestRoom(t, Config{IdleTimeout: time.Minute, WriteTimeout: 400 * time.Millisecond, Now: clock.Now})
	sleepy, sleepyOut := join(t, r, "sleepy", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	clock.Add(30 * time.Second)
	r.lookup("bob").sessions[0].Handle("still here")
	clock.Add(31 * time.Second) // sleepy: 61 s without a line; bob: 31 s
	sleepyOut.waitLine(t, "error: you sent nothing for 1m0s; goodbye")
	bobOut.waitLine(t, "* sleepy left #lobby (idle)")
	sleepyOut.waitClosed(t)
	if sleepy.Reason() != ReasonIdle {
		t.Errorf("reason %v", sleepy.Reason())
	}
	if r.Online() != 1 {
		t.Errorf("online %d, want bob only", r.Online())
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"10m", 10 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"7d", 7 * 24 * time.Hour, true},
		{"2w", 14 * 24 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"", 0, false},
		{"10", 0, false},
		{"m", 0, false},
		{"10x", 0, false},
		{"-5m", 0, false},
		{"0s", 0, false},
		{"9999999w", 0, false},
		{"5300w", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90s", "1h30m", "7d", "2w", "", "10", "99999999999999999999h", "1h1h1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err == nil && (d <= 0 || d > 100*365*24*time.Hour) {
			t.Fatalf("ParseDuration(%q) = %v", s, d)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\x1b\x00") {
			t.Fatalf("error echoes control bytes: %q", err)
		}
	})
}

// FuzzHandle feeds arbitrary lines through the command layer, as any user can: nothing may panic,
// and nothing that reaches another member may hold a control character.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{"hello", "/help", "/msg", "/msg bob", "/me", "//x", "/ban", "/ban x 10m y", "/kick", "/mute a 1x",
		"/keys add ssh-ed25519 AAAA", "/history 0", "/history 99999", "/timestamps maybe", "/ignore", "/whois \x1b[2J", "/unban #x", "bye"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		st := openStore(t, t.TempDir())
		r := newTestRoom(t, Config{Store: st, ParseKey: parseKey})
		op, _ := join(t, r, "op", JoinOptions{Operator: true, Remote: "127.0.0.1:1"})
		_, bobOut := join(t, r, "bob", JoinOptions{})
		op.Handle(line)
		op.Handle("/ban confirm")
		if r.lookup("bob") != nil {
			r.lookup("bob").sessions[0].Handle("end")
		}
		for _, l := range bobOut.lines() {
			if !utf8.ValidString(l) || chat.Sanitize(l) != l {
				t.Fatalf("after %+q, bob got %+q: not clean", line, l)
			}
		}
	})
}

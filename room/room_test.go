package room

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"chatd/chat"
)

// recorder is an Output that keeps what was written. With block set, Write blocks until Close,
// like a client that never reads.
type recorder struct {
	mu      sync.Mutex
	buf     strings.Builder
	writes  int
	closed  bool
	block   bool
	changed chan struct{} // closed and replaced on every write or close
	unblock chan struct{}
}

func newRecorder() *recorder {
	return &recorder{changed: make(chan struct{}), unblock: make(chan struct{})}
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	if r.block && !r.closed {
		unblock := r.unblock
		r.mu.Unlock()
		<-unblock
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.closed {
		return 0, errors.New("closed")
	}
	r.buf.Write(p)
	r.writes++
	r.signalLocked()
	return len(p), nil
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.unblock)
		r.signalLocked()
	}
	return nil
}

func (r *recorder) signalLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// lines returns every complete line written so far, escape codes and all.
func (r *recorder) lines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := strings.TrimSuffix(r.buf.String(), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// waitFor waits until cond holds for the lines written so far. The deadline only keeps a broken
// test from hanging; nothing here depends on timing.
func (r *recorder) waitFor(t *testing.T, what string, cond func([]string) bool) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		if ls := r.lines(); cond(ls) {
			return ls
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got:\n%s", what, strings.Join(r.lines(), "\n"))
		}
	}
}

// waitLine waits for a line equal to want and returns all lines up to and including it.
func (r *recorder) waitLine(t *testing.T, want string) []string {
	t.Helper()
	ls := r.waitFor(t, fmt.Sprintf("line %q", want), func(ls []string) bool { return index(ls, want) >= 0 })
	return ls[:index(ls, want)+1]
}

func (r *recorder) waitClosed(t *testing.T) {
	t.Helper()
	r.waitFor(t, "close", func([]string) bool { return r.isClosed() })
}

func index(ls []string, s string) int {
	for i, l := range ls {
		if l == s {
			return i
		}
	}
	return -1
}

func newTestRoom(t testing.TB, cfg Config) *Hub {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC) }
	}
	if cfg.MsgRate == 0 {
		cfg.MsgRate = -1 // the tests that are about the rate limit set one
	}
	r, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return r
}

func join(t testing.TB, r *Hub, name string, opts JoinOptions) (*Member, *recorder) {
	t.Helper()
	out := newRecorder()
	m, err := r.Join(name, out, opts)
	if err != nil {
		t.Fatalf("join %s: %v", name, err)
	}
	return m, out
}

func TestBroadcastOrderIsTheSameForEveryone(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	_, carolOut := join(t, r, "carol", JoinOptions{})

	var wg sync.WaitGroup
	for _, m := range []*Member{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				m.Handle(fmt.Sprintf("%s %d", m.Name(), i))
			}
		}()
	}
	wg.Wait()

	carolOut.waitLine(t, "alice: alice 49")
	carolOut.waitLine(t, "bob: bob 49")
	carol := carolOut.lines()
	var want []string
	for _, l := range carol {
		if strings.HasPrefix(l, "alice: ") || strings.HasPrefix(l, "bob: ") {
			want = append(want, l)
		}
	}
	if len(want) != 100 {
		t.Fatalf("carol got %d messages, want 100", len(want))
	}
	// Each sender's lines arrive in the order sent, and alice (no echo) sees bob's lines in the
	// same relative order carol does.
	for _, who := range []string{"alice", "bob"} {
		n := 0
		for _, l := range want {
			if strings.HasPrefix(l, who+": ") {
				if l != fmt.Sprintf("%s: %s %d", who, who, n) {
					t.Fatalf("out of order: got %q, want #%d of %s", l, n, who)
				}
				n++
			}
		}
	}
	aliceLines := aliceOut.waitLine(t, "bob: bob 49")
	var bobsForAlice, bobsForCarol []string
	for _, l := range aliceLines {
		if strings.HasPrefix(l, "bob: ") {
			bobsForAlice = append(bobsForAlice, l)
		}
	}
	for _, l := range want {
		if strings.HasPrefix(l, "bob: ") {
			bobsForCarol = append(bobsForCarol, l)
		}
	}
	if strings.Join(bobsForAlice, "\n") != strings.Join(bobsForCarol, "\n") {
		t.Fatal("alice and carol saw bob's lines in different orders")
	}
	for _, l := range aliceLines {
		if strings.HasPrefix(l, "alice: ") {
			t.Fatalf("a plain member got its own message back: %q", l)
		}
	}
	_ = bobOut
}

func TestJoinAndLeaveNotices(t *testing.T) {
	r := newTestRoom(t, Config{})
	_, aliceOut := join(t, r, "alice", JoinOptions{})
	got := aliceOut.waitLine(t, "* alice joined #lobby (1 online)")
	if !strings.HasPrefix(got[0], "* welcome to chatd, alice!") {
		t.Errorf("first line %q, want the welcome", got[0])
	}
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	aliceOut.waitLine(t, "* bob joined #lobby (2 online)")
	bob.Handle("hi")
	bob.Leave(ReasonEOF)
	lines := aliceOut.waitLine(t, "* bob left #lobby")
	if i, j := index(lines, "bob: hi"), index(lines, "* bob joined #lobby (2 online)"); i < 0 || j > i {
		t.Errorf("join notice must come before bob's first message: %q", lines)
	}
	if bob.Reason() != ReasonEOF {
		t.Errorf("reason %v, want eof", bob.Reason())
	}
	select {
	case <-bob.Done():
	default:
		t.Error("Done not closed after Leave")
	}
	if bobOut.isClosed() {
		t.Error("Leave closed the transport's connection; the transport owns it")
	}
	bob.Leave(ReasonQuit) // idempotent
	if r.Online() != 1 {
		t.Errorf("online %d, want 1", r.Online())
	}
}

func TestNames(t *testing.T) {
	r := newTestRoom(t, Config{})
	join(t, r, "Alice", JoinOptions{})
	tests := []struct {
		name    string
		wantErr error
	}{
		{"bob", nil},
		{"b", nil},
		{"0day", nil},
		{"a.b-c_d", nil},
		{strings.Repeat("x", 32), nil},
		{"ALICE", chat.ErrNameTaken},
		{"alice", chat.ErrNameTaken},
		{"", chat.ErrNameInvalid},
		{strings.Repeat("x", 33), chat.ErrNameInvalid},
		{"_bob", chat.ErrNameInvalid},
		{".bob", chat.ErrNameInvalid},
		{"bob smith", chat.ErrNameInvalid},
		{"bob\x1b[2J", chat.ErrNameInvalid},
		{"böb", chat.ErrNameInvalid},
		{"error", chat.ErrNameInvalid},
		{"Server", chat.ErrNameInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := r.Join(tt.name, newRecorder(), JoinOptions{})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Join(%q) = %v, want %v", tt.name, err, tt.wantErr)
			}
			if err != nil {
				var ne *chat.NameError
				if !errors.As(err, &ne) || strings.ContainsAny(err.Error(), "\x1b\x00") {
					t.Fatalf("error %q is not a clean *chat.NameError", err)
				}
				return
			}
			m.Leave(ReasonQuit)
		})
	}
}

func TestCommands(t *testing.T) {
	long := strings.Repeat("x", 1001)
	tests := []struct {
		name      string
		line      string
		self      []string // lines alice must get, in order
		others    []string // lines bob and carol must get
		notOthers bool     // whether bob and carol must get nothing at all
		action    Action
	}{
		{name: "message", line: "hello", others: []string{"alice: hello"}},
		{name: "trimmed", line: "  hello  ", others: []string{"alice: hello"}},
		{name: "empty", line: "   ", notOthers: true},
		{name: "help", line: "/help", self: []string{"* commands:", "*   /who, /names [ROOM]    who is in this room (or ROOM)"}, notOthers: true},
		{name: "who", line: "/who", self: []string{"* 3 online in #lobby: alice, bob, carol"}, notOthers: true},
		{name: "names alias", line: "/names", self: []string{"* 3 online in #lobby: alice, bob, carol"}, notOthers: true},
		{name: "commands ignore case", line: "/WHO", self: []string{"* 3 online in #lobby: alice, bob, carol"}, notOthers: true},
		{name: "me", line: "/me waves", others: []string{"** alice waves"}},
		{name: "me without action", line: "/me", self: []string{"error: usage: /me ACTION"}, notOthers: true},
		{name: "double slash", line: "//shrug", others: []string{"alice: /shrug"}},
		{name: "unknown", line: "/frobnicate now", self: []string{`error: unknown command "/frobnicate" (/help lists the commands)`}, notOthers: true},
		{name: "too long", line: long, self: []string{"error: message too long (1001 bytes; the limit is 1000); it was not sent"}, notOthers: true},
		{name: "msg to offline", line: "/msg dave hi", self: []string{`error: "dave" is not online`}, notOthers: true},
		{name: "msg usage", line: "/msg bob", self: []string{"error: usage: /msg NAME TEXT"}, notOthers: true},
		{name: "msg to self", line: "/msg ALICE hi", self: []string{"error: that is you: /msg sends to someone else"}, notOthers: true},
		{name: "bye", line: "bye", self: []string{"* goodbye, alice!"}, notOthers: true, action: Quit},
		{name: "quit", line: "/quit", self: []string{"* goodbye, alice!"}, notOthers: true, action: Quit},
		{name: "exit", line: "/exit", self: []string{"* goodbye, alice!"}, notOthers: true, action: Quit},
		{name: "bye with more is a message", line: "bye everyone", others: []string{"alice: bye everyone"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRoom(t, Config{})
			alice, aliceOut := join(t, r, "alice", JoinOptions{})
			_, bobOut := join(t, r, "bob", JoinOptions{})
			_, carolOut := join(t, r, "carol", JoinOptions{Echo: true}) // she sees her own marker
			aliceOut.waitLine(t, "* carol joined #lobby (3 online)")

			if got := alice.Handle(tt.line); got != tt.action {
				t.Fatalf("Handle(%q) = %v, want %v", tt.line, got, tt.action)
			}
			// A marker after the line under test: once it arrives, everything before it has.
			r.lookup("carol").sessions[0].Handle("marker")
			mark := "carol: marker"
			self := aliceOut.waitLine(t, mark)
			if tt.action == Quit {
				self = aliceOut.lines()
			}
			self = self[index(self, "* carol joined #lobby (3 online)")+1:]
			for _, want := range tt.self {
				if index(self, want) < 0 {
					t.Errorf("alice did not get %q; got %q", want, self)
				}
			}
			for _, out := range []*recorder{bobOut, carolOut} {
				got := out.waitLine(t, mark)
				got = got[index(got, "* carol joined #lobby (3 online)")+1 : len(got)-1]
				if tt.notOthers && len(got) > 0 {
					t.Errorf("others got %q, want nothing", got)
				}
				for _, want := range tt.others {
					if index(got, want) < 0 {
						t.Errorf("others did not get %q; got %q", want, got)
					}
				}
			}
		})
	}
}

func TestPrivateMessagesReachOnlyTheRecipient(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	carol, carolOut := join(t, r, "carol", JoinOptions{})

	alice.Handle("/msg BOB the cake is in the fridge")
	carol.Handle("marker")
	bobOut.waitLine(t, "[dm from alice] the cake is in the fridge")
	aliceOut.waitLine(t, "[dm to bob] the cake is in the fridge")
	for _, l := range carolOut.waitLine(t, "* carol joined #lobby (3 online)") {
		if strings.Contains(l, "cake") {
			t.Fatalf("carol saw the private message: %q", l)
		}
	}
	bobOut.waitLine(t, "carol: marker")
	for _, l := range carolOut.lines() {
		if strings.Contains(l, "cake") {
			t.Fatalf("carol saw the private message: %q", l)
		}
	}
}

func TestSanitisedTextReachesOthers(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, _ := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{Format: ANSI})
	for _, line := range []string{"\x1b]0;pwned\x07title", "\x1b[2Jclear", "bell\a", "nul\x00byte", "c1\u009b31mred", "bidi\u202eevil", "bad\xffutf8"} {
		alice.Handle(line)
	}
	alice.Handle("end")
	got := bobOut.waitFor(t, "end", func(ls []string) bool { return len(ls) > 0 && strings.HasSuffix(ls[len(ls)-1], ": end") })
	text := strings.Join(got, "\n")
	for _, bad := range []string{"pwned", "\x1b]", "\x1b[2J", "\a", "\x00", "\u009b", "\u202e", "\xff"} {
		// The only escape codes allowed are the server's own SGR colours.
		if strings.Contains(text, bad) && !(bad == "\a") {
			t.Errorf("bob's terminal got %q", bad)
		}
	}
	if strings.Contains(text, "bell\a") {
		t.Error("a user rang bob's bell")
	}
	for _, want := range []string{": title", ": clear", ": bell", ": nulbyte", ": c1red", ": bidievil", ": bad\uFFFDutf8"} {
		if !strings.Contains(text, want) {
			t.Errorf("bob did not get %q in:\n%s", want, text)
		}
	}
}

func TestSlowMemberIsDroppedWhileOthersKeepReceiving(t *testing.T) {
	r := newTestRoom(t, Config{OutboxSize: 16})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	slow, slowOut := join(t, r, "slow", JoinOptions{})
	slowOut.mu.Lock()
	slowOut.block = true // stops reading: its writer blocks in Write
	slowOut.mu.Unlock()
	_, bobOut := join(t, r, "bob", JoinOptions{})

	// bob keeps up (the test waits for each line to reach him); slow's writer is stuck in Write.
	for i := range 100 {
		alice.Handle(fmt.Sprintf("line %d", i))
		bobOut.waitLine(t, fmt.Sprintf("alice: line %d", i))
	}
	bobOut.waitLine(t, "* slow left #lobby (too slow)")
	slowOut.waitClosed(t)
	<-slow.Done()
	if got := slow.Reason(); got != ReasonSlow {
		t.Errorf("reason %v, want %v", got, ReasonSlow)
	}
	if r.Online() != 2 {
		t.Errorf("online %d, want 2", r.Online())
	}
	_ = aliceOut
}

// TestDeafMemberIsDropped: a member that asks for the history again and again without reading
// is never left in the room unable to receive: replays are cut to what fits in its outbox, and
// once the outbox is full, whatever path the next line takes, the member is dropped as too slow.
func TestDeafMemberIsDropped(t *testing.T) {
	r := newTestRoom(t, Config{OutboxSize: 128})
	alice, _ := join(t, r, "alice", JoinOptions{})
	for i := range 300 {
		alice.Handle(fmt.Sprintf("history %d", i))
	}
	deaf, deafOut := join(t, r, "deaf", JoinOptions{})
	deafOut.mu.Lock()
	deafOut.block = true // stops reading
	deafOut.mu.Unlock()
	_, bobOut := join(t, r, "bob", JoinOptions{})

	deaf.Handle("/history 1000")
	if n := deaf.outboxRoom(); n < 16 {
		t.Fatalf("a replay left %d lines of room in the outbox: it must leave headroom", n)
	}
	deaf.Handle("/history 1000") // nothing more fits: refused with an error line, not dropped yet
	// Live lines fill the rest: the member that does not read is dropped, not left deaf.
	for i := 0; ; i++ {
		alice.Handle(fmt.Sprintf("live %d", i))
		if deaf.Reason() != 0 {
			break
		}
		if i > 1000 {
			t.Fatal("a member that reads nothing is still in the room after 1000 lines")
		}
	}
	bobOut.waitLine(t, "* deaf left #lobby (too slow)")
	deafOut.waitClosed(t)
	if got := deaf.Reason(); got != ReasonSlow {
		t.Errorf("reason %v, want %v", got, ReasonSlow)
	}
}

// TestReplayIsCutToWhatFits: a replay asks for more than the outbox can hold; it gets the newest
// that fit, and says so.
func TestReplayIsCutToWhatFits(t *testing.T) {
	r := newTestRoom(t, Config{OutboxSize: 64, HistoryOnJoin: 100})
	alice, _ := join(t, r, "alice", JoinOptions{})
	for i := range 200 {
		alice.Handle(fmt.Sprintf("m%d", i))
	}
	_, out := join(t, r, "reader", JoinOptions{})
	lines := out.waitLine(t, "[history 2026-11-25 09:41] alice: m199")
	// What fits is the outbox's room less the headroom: 46 lines, or 47 when the member's
	// writer has already taken the welcome out of the outbox.
	n := 0
	for _, fit := range []int{46, 47} {
		if index(lines, fmt.Sprintf("* the last %d messages of #lobby (of the 100 asked for: more would not fit until you have read these):", fit)) >= 0 {
			n = fit
		}
	}
	if n == 0 {
		t.Fatalf("no header saying the replay was cut: %q", lines)
	}
	first := fmt.Sprintf("[history 2026-11-25 09:41] alice: m%d", 200-n)
	before := fmt.Sprintf("[history 2026-11-25 09:41] alice: m%d", 199-n)
	if index(lines, before) >= 0 || index(lines, first) < 0 {
		t.Errorf("the replay is not the newest %d: %q", n, lines)
	}
}

func TestStalledWriteIsDropped(t *testing.T) {
	r := newTestRoom(t, Config{WriteTimeout: 100 * time.Millisecond})
	alice, _ := join(t, r, "alice", JoinOptions{})
	stuck, stuckOut := join(t, r, "stuck", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	stuckOut.mu.Lock()
	stuckOut.block = true
	stuckOut.mu.Unlock()
	alice.Handle("are you there?")
	bobOut.waitLine(t, "* stuck left #lobby (too slow)")
	stuckOut.waitClosed(t)
	if got := stuck.Reason(); got != ReasonStalled {
		t.Errorf("reason %v, want %v", got, ReasonStalled)
	}
}

func TestWritesAreCoalesced(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, _ := join(t, r, "alice", JoinOptions{})
	_, out := join(t, r, "bob", JoinOptions{})
	out.waitLine(t, "* bob joined #lobby (2 online)")
	out.mu.Lock()
	out.block = true
	out.mu.Unlock()
	alice.Handle("first") // the writer takes this one and blocks in Write
	for i := range 200 {
		alice.Handle(fmt.Sprintf("queued %d", i))
	}
	before := func() int { out.mu.Lock(); defer out.mu.Unlock(); return out.writes }()
	out.mu.Lock()
	out.block = false
	close(out.unblock)
	out.unblock = make(chan struct{})
	out.mu.Unlock()
	out.waitLine(t, "alice: queued 199")
	out.mu.Lock()
	writes := out.writes - before
	out.mu.Unlock()
	if writes > 3 {
		t.Errorf("201 queued lines took %d writes; a writer must coalesce what is queued", writes)
	}
}

func TestANSIRendering(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{Format: ANSI, Echo: true})
	_, bobOut := join(t, r, "bob", JoinOptions{Format: ANSI, Echo: true})
	_, carolOut := join(t, r, "carol", JoinOptions{Format: ANSI, Echo: true})

	alice.Handle("hey @Bob, look")
	alice.Handle("/msg carol psst")
	alice.Handle("end")
	bob := strings.Join(bobOut.waitFor(t, "end", hasSuffixLine("end")), "\n")
	carol := strings.Join(carolOut.waitFor(t, "end", hasSuffixLine("end")), "\n")
	self := strings.Join(aliceOut.waitFor(t, "end", hasSuffixLine("end")), "\n")

	colour := fmt.Sprintf("\x1b[1;38;5;%dmalice\x1b[0m", nameColour("alice"))
	if nameColour("alice") != nameColour("ALICE") {
		t.Error("a name's colour depends on its case")
	}
	for who, got := range map[string]string{"bob": bob, "carol": carol, "alice": self} {
		if !strings.Contains(got, colour) {
			t.Errorf("%s: alice's name is not in her colour:\n%q", who, got)
		}
		if !strings.Contains(got, "\x1b[2m09:41\x1b[0m ") {
			t.Errorf("%s: no dimmed timestamp:\n%q", who, got)
		}
	}
	if !strings.Contains(bob, "\a") || !strings.Contains(bob, sgrMention+"Bob"+sgrReset) {
		t.Errorf("bob was mentioned: want a bell and a highlight:\n%q", bob)
	}
	if strings.Contains(self, "\a") {
		t.Errorf("alice's own mention of bob rang her bell:\n%q", self)
	}
	if !strings.Contains(carol, "\a"+sgrDM+"[dm from alice]"+sgrReset+" psst") {
		t.Errorf("carol's DM is not highlighted with a bell:\n%q", carol)
	}
	if strings.Count(carol, "\a") != 1 {
		t.Errorf("carol's bell rang %d times, want once (the DM)", strings.Count(carol, "\a"))
	}
	if !strings.Contains(carol, sgrDim+"* carol joined #lobby (3 online)"+sgrReset) {
		t.Errorf("notices are not dimmed:\n%q", carol)
	}
}

func hasSuffixLine(s string) func([]string) bool {
	return func(ls []string) bool { return len(ls) > 0 && strings.HasSuffix(ls[len(ls)-1], s) }
}

func TestMentionIsAWholeWord(t *testing.T) {
	tests := []struct {
		text string
		want bool
	}{
		{"bob", true},
		{"hi bob", true},
		{"@bob, hi", true},
		{"bob's", true},
		{"bob.", true},
		{"bobby", false},
		{"jimbob", false},
		{"bob_x", false},
		{"hi jimbob and bob", true},
	}
	for _, tt := range tests {
		if got := mentions(chat.Fold(tt.text), "bob"); got != tt.want {
			t.Errorf("mentions(%q) = %v, want %v", tt.text, got, tt.want)
		}
	}
}

func TestShutdown(t *testing.T) {
	r := newTestRoom(t, Config{})
	_, aliceOut := join(t, r, "alice", JoinOptions{})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, out := range []*recorder{aliceOut, bobOut} {
		lines := out.lines()
		if got := lines[len(lines)-1]; got != "* server is shutting down, goodbye" {
			t.Errorf("last line %q, want the shutdown notice", got)
		}
		if !out.isClosed() {
			t.Error("connection not closed by shutdown")
		}
	}
	if strings.Contains(strings.Join(aliceOut.lines(), "\n"), "bob left") {
		t.Error("shutdown announced every leave")
	}
	if bob.Reason() != ReasonShutdown {
		t.Errorf("reason %v, want shutdown", bob.Reason())
	}
	if _, err := r.Join("carol", newRecorder(), JoinOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("join after shutdown: %v, want ErrClosed", err)
	}
	bob.Leave(ReasonEOF) // the transport noticing afterwards is harmless
	if err := r.Shutdown(ctx); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
}

func TestExec(t *testing.T) {
	r := newTestRoom(t, Config{})
	join(t, r, "bob", JoinOptions{})
	op, _ := join(t, r, "Alice", JoinOptions{Operator: true, Remote: "192.0.2.1:1"})
	reader := ExecOptions{Name: "reader", Remote: "198.51.100.1:1"}
	var out strings.Builder
	if err := r.Exec([]string{"who"}, &out, reader); err != nil {
		t.Fatal(err)
	}
	if out.String() != "Alice\nbob\n" {
		t.Errorf("who printed %q", out.String())
	}
	err := r.Exec([]string{"rm", "-rf"}, &out, reader)
	if !errors.Is(err, ErrUnknownCommand) || !strings.Contains(err.Error(), `"rm"`) {
		t.Errorf("unknown command: %v", err)
	}

	// A one-shot command passes the checks a login does: a banned name, key or address, or an
	// invalid name, gets nothing.
	op.Handle("/ban troll")
	op.Handle("/ban 203.0.113.0/24")
	key := &chat.Key{Fingerprint: "SHA256:bannedkey"}
	op.Handle("/ban SHA256:bannedkey")
	for _, tt := range []struct {
		opts ExecOptions
		want error
	}{
		{ExecOptions{Name: "troll", Remote: "198.51.100.1:1"}, ErrBanned},
		{ExecOptions{Name: "someone", Remote: "203.0.113.9:1"}, ErrBanned},
		{ExecOptions{Name: "someone", Key: key, Remote: "198.51.100.1:1"}, ErrBanned},
		{ExecOptions{Name: "bad name", Remote: "198.51.100.1:1"}, chat.ErrNameInvalid},
	} {
		out.Reset()
		err := r.Exec([]string{"history"}, &out, tt.opts)
		if !errors.Is(err, tt.want) || out.Len() > 0 {
			t.Errorf("exec as %+v: %v, output %q; want %v and nothing", tt.opts, err, out.String(), tt.want)
		}
	}
}

func BenchmarkFanOut1000(b *testing.B) {
	sender := fanOutRoom(b, newTestRoom(b, Config{OutboxSize: 1 << 16}))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		sender.Handle("the quick brown fox jumps over the lazy dog")
	}
	sender.hub.flushers.Wait() // every line written, not just queued
	b.StopTimer()
	b.ReportMetric(float64(b.N*999)/b.Elapsed().Seconds(), "deliveries/s")
}

// fanOutRoom fills r with 1000 members, half plain, half ANSI on 80-column terminals, and
// returns the first.
func fanOutRoom(b *testing.B, r *Hub) *Member {
	b.Helper()
	var first *Member
	for i := range 1000 {
		opts := JoinOptions{Format: Format(i % 2)}
		if opts.Format == ANSI {
			opts.Width = 80
		}
		m, err := r.Join(fmt.Sprintf("user%d", i), &countingOutput{}, opts)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			first = m
		}
	}
	return first
}

// countingOutput discards what it is given, like a client that reads instantly.
type countingOutput struct {
	mu    sync.Mutex
	bytes int
}

func (c *countingOutput) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.bytes += len(p)
	c.mu.Unlock()
	return len(p), nil
}

func (c *countingOutput) Close() error { return nil }

func TestJoinStormNoticesAreGathered(t *testing.T) {
	r := newTestRoom(t, Config{NoticeBurst: 3})
	_, watch := join(t, r, "watch", JoinOptions{})
	var last *Member
	for i := range 30 {
		last, _ = join(t, r, fmt.Sprintf("user%02d", i), JoinOptions{})
	}
	// The newest one speaks: every gathered notice goes out before its line.
	last.Handle("made it")
	lines := watch.waitLine(t, "user29: made it")
	var notices []string
	for _, l := range lines {
		if strings.Contains(l, " joined #lobby (") {
			notices = append(notices, l)
		}
	}
	// watch, 2 more one by one (the burst of 3 includes watch), then one gathered line.
	want := []string{
		"* watch joined #lobby (1 online)",
		"* user00 joined #lobby (2 online)",
		"* user01 joined #lobby (3 online)",
		"* user02, user03, user04, user05, user06 and 23 others joined #lobby (31 online)",
	}
	if strings.Join(notices, "\n") != strings.Join(want, "\n") {
		t.Errorf("notices:\n%s\nwant:\n%s", strings.Join(notices, "\n"), strings.Join(want, "\n"))
	}
	if got := nameList([]string{"a", "b"}); got != "a and b" {
		t.Errorf("nameList = %q", got)
	}
}

func TestGatheredNoticesGoOutWithinASecond(t *testing.T) {
	r := newTestRoom(t, Config{NoticeBurst: 1})
	_, watch := join(t, r, "watch", JoinOptions{})
	join(t, r, "late1", JoinOptions{})
	join(t, r, "late2", JoinOptions{})
	watch.waitLine(t, "* late1 and late2 joined #lobby (3 online)") // by the timer, nobody spoke
}

// TestLinesWrapToTheMembersWidth: a terminal member gets long lines wrapped to its width, every
// continuation row indented; members of other widths get their own wrapping of the same line,
// and plain members get it whole.
func TestLinesWrapToTheMembersWidth(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, _ := join(t, r, "alice", JoinOptions{})
	_, narrowOut := join(t, r, "narrow", JoinOptions{Format: ANSI, Width: 40})
	wide, wideOut := join(t, r, "wide", JoinOptions{Format: ANSI, Width: 60})
	_, plainOut := join(t, r, "plain", JoinOptions{})
	msg := "hi" + strings.Repeat(" ", 40) + "* bob left #lobby (too slow) and more words after it"
	alice.Handle(msg)
	plainOut.waitLine(t, "alice: "+msg)
	for _, tt := range []struct {
		out   *recorder
		width int
	}{{narrowOut, 40}, {wideOut, 60}} {
		lines := tt.out.waitFor(t, "the wrapped line", func(ls []string) bool {
			return slices.ContainsFunc(ls, func(l string) bool { return strings.Contains(l, "after it") })
		})
		for _, l := range lines {
			visible := stripSGR(l)
			if len([]rune(visible)) > tt.width {
				t.Errorf("width %d: a row of %d columns: %q", tt.width, len([]rune(visible)), visible)
			}
			if strings.HasPrefix(visible, "* bob") {
				t.Errorf("width %d: a row of its own: %q", tt.width, visible)
			}
		}
	}
	wide.SetWidth(0) // no wrapping
	alice.Handle("again " + msg)
	wideOut.waitFor(t, "the whole line", func(ls []string) bool {
		return slices.ContainsFunc(ls, func(l string) bool { return strings.HasSuffix(stripSGR(l), "alice: again "+msg) })
	})
}

// stripSGR removes colour codes, bells and carriage returns from a rendered line.
func stripSGR(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == 0x1b:
			for i < len(s) && s[i] != 'm' {
				i++
			}
		case s[i] == '\a' || s[i] == '\r':
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

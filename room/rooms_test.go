package room

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"chatd/chat"
)

// say makes m handle line and waits until out has the line want: the tests below read what
// others got only after a line that follows what they check.
func say(t *testing.T, m *Member, line string, out *recorder, want string) []string {
	t.Helper()
	m.Handle(line)
	return out.waitLine(t, want)
}

// after returns the lines that follow the last line equal to mark.
func after(ls []string, mark string) []string {
	for i := len(ls) - 1; i >= 0; i-- {
		if ls[i] == mark {
			return ls[i+1:]
		}
	}
	return ls
}

func TestRoomsKeepTheirLines(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	carol, carolOut := join(t, r, "carol", JoinOptions{})
	aliceOut.waitLine(t, "* carol joined #lobby (3 online)")

	say(t, alice, "/join Go", aliceOut, "* alice joined #go (1 online)")
	say(t, carol, "/join #go", aliceOut, "* carol joined #go (2 online)")
	if ls := bobOut.lines(); index(ls, "* alice joined #go (1 online)") >= 0 {
		t.Errorf("bob, who is not in #go, heard of it: %q", ls)
	}

	// Plain lines go to the current room; lines from another of one's rooms come tagged.
	say(t, alice, "in go", carolOut, "alice: in go")
	say(t, bob, "in the lobby", aliceOut, "#lobby bob: in the lobby")
	say(t, bob, "/me waves", aliceOut, "#lobby ** bob waves")
	say(t, alice, "/join lobby", aliceOut, "* you are in #lobby now: your lines go there")
	say(t, bob, "again", aliceOut, "bob: again")
	say(t, carol, "from go", aliceOut, "#go carol: from go")
	say(t, bob, "marker", carolOut, "#lobby bob: marker")
	if ls := bobOut.lines(); index(ls, "alice: in go") >= 0 || index(ls, "carol: from go") >= 0 {
		t.Errorf("a line of #go reached bob: %q", ls)
	}

	// /who and /rooms.
	say(t, alice, "/who #go", aliceOut, "* 2 online in #go: alice, carol")
	say(t, alice, "/who", aliceOut, "* 3 online in #lobby: alice, bob, carol")
	got := say(t, bob, "/rooms", bobOut, "* #go (2 online)")
	want := []string{"* 2 rooms (the busiest first):", "* #lobby (3 online, you are in it)", "* #go (2 online)"}
	if got = got[len(got)-3:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("/rooms:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// /part: others see them go; the last room left is the default room.
	say(t, alice, "/part", aliceOut, "* you left #lobby; you are in #go now")
	bobOut.waitLine(t, "* alice left #lobby")
	say(t, alice, "here", carolOut, "alice: here")
	say(t, alice, "/part #go", aliceOut, "* you left #go; you are in #lobby now")
	carolOut.waitLine(t, "* alice left #go")
	bobOut.waitLine(t, "* alice joined #lobby (3 online)")
	say(t, alice, "/part", aliceOut, "error: #lobby is your only room: there is nowhere else to go (/join another first)")
	say(t, alice, "/part #nowhere", aliceOut, "error: usage: /part [ROOM]: there is no room #nowhere (/rooms lists them)")
	say(t, alice, "/join #Not/a/room", aliceOut, `error: room name "#Not/a/room" may only contain letters, digits, '_', '.' and '-' after the #`)
	say(t, alice, "/join", aliceOut, "error: usage: /join ROOM (such as #go; /rooms lists them)")
}

func TestRoomHistoryIsPerRoom(t *testing.T) {
	r := newTestRoom(t, Config{HistoryOnJoin: 5})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	say(t, alice, "/join go", aliceOut, "* alice joined #go (1 online)")
	alice.Handle("gophers")
	say(t, alice, "/join lobby", aliceOut, "* you are in #lobby now: your lines go there")
	alice.Handle("lobbyists")

	bob, bobOut := join(t, r, "bob", JoinOptions{})
	got := bobOut.waitLine(t, "* bob joined #lobby (2 online)")
	if index(got, "[history 2026-11-25 09:41] alice: lobbyists") < 0 || strings.Contains(strings.Join(got, "\n"), "gophers") {
		t.Errorf("bob's replay of #lobby:\n%s", strings.Join(got, "\n"))
	}
	got = say(t, bob, "/join go", bobOut, "* bob joined #go (2 online)")
	got = after(got, "* bob joined #lobby (2 online)")
	want := []string{"* the last message of #go:", "[history 2026-11-25 09:41] alice: gophers", "* bob joined #go (2 online)"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("bob joining #go got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	say(t, bob, "/history #lobby 1", bobOut, "[history 2026-11-25 09:41] alice: lobbyists")
	say(t, bob, "/history 5 lobby", bobOut, "* the last message of #lobby:")
}

func TestTopicsAndOwners(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := storedRoom(t, st)
	key := newKey(t)
	alice, aliceOut := join(t, r, "alice", JoinOptions{Key: &key}) // registered: owns what she creates
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})

	say(t, alice, "/join go", aliceOut, "* alice joined #go (1 online)")
	say(t, alice, "/topic", aliceOut, "* #go has no topic")
	say(t, alice, "/topic all things Go :wave:", aliceOut, "* alice set the topic of #go: all things Go 👋")
	say(t, bob, "/join go", bobOut, "* topic of #go: all things Go 👋")
	say(t, bob, "/topic mine now", bobOut, "error: only alice, who owns #go, or an operator may change it")
	say(t, bob, "/topic "+strings.Repeat("t", maxTopic+1), bobOut, fmt.Sprintf("error: topic too long (%d bytes; the limit is %d)", maxTopic+1, maxTopic))
	say(t, op, "/join go", opOut, "* op joined #go (3 online)")
	say(t, op, "/topic the operators' now", bobOut, "* op set the topic of #go: the operators' now")
	say(t, bob, "/topic", bobOut, "* topic of #go: the operators' now")

	// A room made by someone without a registered name has no owner.
	say(t, bob, "/join bobs", bobOut, "* bob joined #bobs (1 online)")
	say(t, bob, "/topic x", bobOut, "error: #bobs has no owner: only an operator may change it")
	say(t, bob, "/private on", bobOut, "error: #bobs has no owner: only an operator may change it")
}

func TestPrivateRooms(t *testing.T) {
	st := openStore(t, t.TempDir())
	r := storedRoom(t, st)
	key := newKey(t)
	alice, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})

	say(t, alice, "/join secret", aliceOut, "* alice joined #secret (1 online)")
	say(t, alice, "/private maybe", aliceOut, "error: usage: /private on|off")
	say(t, alice, "/private on", aliceOut, "* alice made #secret private: invitation only (/invite NAME)")
	say(t, alice, "whispers", aliceOut, "* alice made #secret private: invitation only (/invite NAME)")

	// Not listed, not joinable, not readable by outsiders.
	got := say(t, bob, "/rooms", bobOut, "* #lobby (3 online, you are in it)")
	if strings.Contains(strings.Join(got, "\n"), "#secret") {
		t.Errorf("bob's /rooms shows the private room:\n%s", strings.Join(got, "\n"))
	}
	say(t, bob, "/join secret", bobOut, "error: #secret is invite-only")
	say(t, bob, "/who secret", bobOut, "error: #secret is invite-only")
	say(t, bob, "/history secret", bobOut, "error: #secret is invite-only")
	var out strings.Builder
	if err := r.Exec([]string{"history", "#secret"}, &out, ExecOptions{Name: "someone"}); err == nil || err.Error() != "#secret is invite-only" {
		t.Errorf("exec history of a private room: %v, printed %q", err, out.String())
	}

	// An operator may always come in; the owner lets bob in.
	say(t, op, "/join secret", opOut, "* op joined #secret (2 online)")
	say(t, op, "/invite bob", opOut, "* bob may join #secret now")
	bobOut.waitLine(t, "* op invited you to #secret: /join #secret")
	got = say(t, bob, "/join secret", bobOut, "* bob joined #secret (3 online)")
	if index(got, "[history 2026-11-25 09:41] alice: whispers") < 0 {
		t.Errorf("an invited member does not get the room's history:\n%s", strings.Join(got, "\n"))
	}
	say(t, bob, "/invite carol", bobOut, "error: only alice, who owns #secret, or an operator may change it")
	say(t, alice, "/invite -x", aliceOut, "error: usage: /invite NAME: "+chat.ValidateName("-x").Error())
	say(t, alice, "/private off", bobOut, "* alice made #secret public")
	say(t, op, "/rooms", opOut, "* #secret (3 online, you are in it)")
}

func TestRoomLimits(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 11, 25, 9, 41, 0, 0, time.UTC)}
	r := newTestRoom(t, Config{MaxRooms: 4, MaxRoomsPerPerson: 3, RoomsPerHour: 2, Now: clock.Now})
	alice, aliceOut := join(t, r, "alice", JoinOptions{Remote: "192.0.2.1:1000"})
	bob, bobOut := join(t, r, "bob", JoinOptions{Remote: "192.0.2.1:1001"}) // the same address
	carol, carolOut := join(t, r, "carol", JoinOptions{Remote: "192.0.2.9:1000"})

	say(t, alice, "/join a1", aliceOut, "* alice joined #a1 (1 online)")
	say(t, alice, "/join a2", aliceOut, "* alice joined #a2 (1 online)")
	say(t, alice, "/part a1", aliceOut, "* you left #a1; you are in #a2 now")
	// Per person, in rooms created.
	say(t, alice, "/join a3", aliceOut, "error: room limit: you may create 2 rooms an hour; join an existing one (/rooms) or try later")
	// Per address: bob shares alice's.
	say(t, bob, "/join b1", bobOut, "error: room limit: you may create 2 rooms an hour; join an existing one (/rooms) or try later")
	say(t, bob, "/join a1", bobOut, "* bob joined #a1 (1 online)")
	// Rooms per person.
	say(t, carol, "/join a1", carolOut, "* carol joined #a1 (2 online)")
	say(t, carol, "/join a2", carolOut, "* carol joined #a2 (2 online)")
	say(t, carol, "/join c1", carolOut, "error: room limit: you are in 3 rooms, the most one may be in; leave one first (/part ROOM)")
	say(t, carol, "/part a1", carolOut, "* you left #a1; you are in #a2 now")
	say(t, carol, "/join c1", carolOut, "* carol joined #c1 (1 online)")
	// Rooms on the server: #lobby, #a1, #a2, #c1.
	say(t, carol, "/part c1", carolOut, "* you left #c1; you are in #lobby now")
	say(t, carol, "/join c2", carolOut, "error: room limit: the server has 4 rooms, the most it may have; join one of them (/rooms)")
	// An hour on, alice may create rooms again (but the server is full).
	clock.Add(time.Hour + time.Second)
	say(t, alice, "/part a2", aliceOut, "* you left #a2; you are in #lobby now")
	say(t, alice, "/join a3", aliceOut, "error: room limit: the server has 4 rooms, the most it may have; join one of them (/rooms)")
}

func TestMembershipsSurviveARestart(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	key := newKey(t)
	r := newTestRoom(t, Config{Store: st, ParseKey: parseKey, HistoryOnJoin: 5})
	alice, aliceOut := join(t, r, "alice", JoinOptions{Key: &key})
	say(t, alice, "/join go", aliceOut, "* alice joined #go (1 online)")
	say(t, alice, "/topic gophers", aliceOut, "* alice set the topic of #go: gophers")
	say(t, alice, "/join secret", aliceOut, "* alice joined #secret (1 online)")
	say(t, alice, "/private on", aliceOut, "* alice made #secret private: invitation only (/invite NAME)")
	say(t, alice, "/invite bob", aliceOut, "* bob may join #secret now")
	say(t, alice, "psst", aliceOut, "* bob may join #secret now")
	say(t, alice, "/part lobby", aliceOut, "* you left #lobby; you are in #secret now")
	_, guestOut := join(t, r, "guest", JoinOptions{})
	guestOut.waitLine(t, "* guest joined #lobby (1 online)")
	alice.Leave(ReasonQuit)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	r2 := newTestRoom(t, Config{Store: st, ParseKey: parseKey, HistoryOnJoin: 5})
	_, aliceOut = join(t, r2, "alice", JoinOptions{Key: &key})
	got := aliceOut.waitLine(t, "* your rooms: #go, #secret (lines from rooms but the current one start with the room's name)")
	for _, want := range []string{
		"* welcome to chatd, alice! you are in #go; /help lists the commands; bye leaves.",
		"* topic of #go: gophers",
		"* alice joined #go (1 online)",
		"* alice joined #secret (1 online)",
	} {
		if index(got, want) < 0 {
			t.Errorf("alice coming back did not get %q:\n%s", want, strings.Join(got, "\n"))
		}
	}
	if index(got, "* alice joined #lobby (1 online)") >= 0 {
		t.Errorf("alice is back in #lobby, which she left:\n%s", strings.Join(got, "\n"))
	}
	bob, bobOut := join(t, r2, "bob", JoinOptions{})
	got = say(t, bob, "/join secret", bobOut, "* bob joined #secret (2 online)")
	if index(got, "[history 2026-11-25 09:41] alice: psst") < 0 {
		t.Errorf("the invitation or the history of #secret was lost:\n%s", strings.Join(got, "\n"))
	}
	say(t, bob, "/rooms", bobOut, "* #go (1 online): gophers")
}

func TestKickFromARoomAndDeleteIt(t *testing.T) {
	r := newTestRoom(t, Config{})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	carol, carolOut := join(t, r, "carol", JoinOptions{})
	say(t, bob, "/join go", bobOut, "* bob joined #go (1 online)")
	say(t, carol, "/join go", bobOut, "* carol joined #go (2 online)")
	say(t, op, "/kick bob #go spamming", carolOut, "* bob was kicked from #go by op: spamming")
	bobOut.waitLine(t, "error: you were kicked from #go by op: spamming")
	say(t, bob, "still here", opOut, "bob: still here") // in #lobby, connected
	say(t, bob, "/room delete go", bobOut, "error: /room is for operators")

	say(t, op, "/room delete lobby", opOut, "error: #lobby is the default room: it cannot be deleted")
	say(t, op, "/room delete go", opOut, "error: this deletes #go and all its history for good: send /room delete #go confirm within a minute to go ahead")
	say(t, op, "/room delete go confirm", opOut, "* deleted #go")
	carolOut.waitLine(t, "* #go was deleted by op")
	say(t, carol, "where am i", opOut, "carol: where am i")
	say(t, op, "/rooms", opOut, "* 1 rooms (the busiest first):")
}

func TestAwayAndReply(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	bob, bobOut := join(t, r, "bob", JoinOptions{})
	say(t, alice, "/reply hi", aliceOut, "error: nobody has sent you a private message yet: /msg NAME TEXT")
	say(t, alice, "/back", aliceOut, "error: you were not away")
	say(t, alice, "/away lunch", aliceOut, "* you are away (lunch); /back when you are back")
	say(t, bob, "/who", bobOut, "* 2 online in #lobby: alice (away: lunch), bob")
	say(t, bob, "/msg alice are you there?", bobOut, "* alice is away: lunch")
	got := say(t, bob, "/msg alice hello?", bobOut, "[dm to alice] hello?")
	if strings.Count(strings.Join(got, "\n"), "alice is away") != 1 {
		t.Errorf("the away text came back more than once:\n%s", strings.Join(got, "\n"))
	}
	say(t, bob, "/whois alice", bobOut, "* away: lunch")
	say(t, alice, "/back", aliceOut, "* welcome back")
	say(t, alice, "/r sorry :pizza:", bobOut, "[dm from alice] sorry 🍕")
	say(t, bob, "/who", bobOut, "* 2 online in #lobby: alice, bob")
}

func TestEmojiShortcodes(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, _ := join(t, r, "alice", JoinOptions{})
	_, bobOut := join(t, r, "bob", JoinOptions{})
	for _, tt := range []struct{ line, want string }{
		{"hi :wave:", "alice: hi 👋"},
		{":+1::tada:", "alice: 👍🎉"},
		{"time: 10:30:45", "alice: time: 10:30:45"},
		{":not_an_emoji: :wave", "alice: :not_an_emoji: :wave"},
		{"// :wave: as typed", "alice: / :wave: as typed"},
		{"/me :wave:s", "** alice 👋s"},
	} {
		say(t, alice, tt.line, bobOut, tt.want)
	}
}

func TestComplete(t *testing.T) {
	r := newTestRoom(t, Config{})
	alice, aliceOut := join(t, r, "alice", JoinOptions{})
	join(t, r, "albert", JoinOptions{})
	join(t, r, "bob", JoinOptions{})
	carol, carolOut := join(t, r, "Carol", JoinOptions{})
	op, _ := join(t, r, "op", JoinOptions{Operator: true})
	say(t, carol, "/join gophers", carolOut, "* Carol joined #gophers (1 online)")
	say(t, carol, "/join golf", carolOut, "* Carol joined #golf (1 online)")
	say(t, carol, "/join lobby", carolOut, "* you are in #lobby now: your lines go there")

	tests := []struct {
		who      *Member
		line     string
		pos      int // -1: the end
		want     string
		wantPos  int // -1: the end of want
		listWant string
	}{
		{alice, "/jo", -1, "/join ", -1, ""},
		{alice, "/JO", -1, "/join ", -1, ""},
		{alice, "/ba", -1, "/back ", -1, ""}, // /ban is for operators
		{op, "/ba", -1, "/ba", -1, "* /back  /ban  /bans"},
		{alice, "/join #go", -1, "/join #go", -1, "* #golf  #gophers"},
		{alice, "/join #goph", -1, "/join #gophers ", -1, ""},
		{alice, "/join #g", -1, "/join #go", -1, ""},
		{alice, "b", -1, "bob: ", -1, ""},
		{alice, "c", -1, "Carol: ", -1, ""},
		{alice, "hi c", -1, "hi Carol ", -1, ""},
		{alice, "al", -1, "albert: ", -1, ""}, // not her own name
		{alice, "/msg b hi", 6, "/msg bob  hi", 9, ""},
		{alice, "i :pizz", -1, "i :pizza:", -1, ""},
		{alice, "i :thumbsu", -1, "i :thumbsup", -1, ""},
		{alice, "x", -1, "x", -1, ""},
		{alice, "", -1, "", -1, ""},
		{alice, "hi ", -1, "hi ", -1, ""},
		{alice, "/nothing", -1, "/nothing", -1, ""},
		{alice, "a/jo", -1, "a/jo", -1, ""},
	}
	for _, tt := range tests {
		pos := tt.pos
		if pos < 0 {
			pos = len(tt.line)
		}
		got, gotPos := tt.who.Complete(tt.line, pos)
		wantPos := tt.wantPos
		if wantPos < 0 {
			wantPos = len(tt.want)
		}
		if got != tt.want || gotPos != wantPos {
			t.Errorf("%s: Complete(%q, %d) = %q, %d; want %q, %d", tt.who.Name(), tt.line, pos, got, gotPos, tt.want, wantPos)
		}
		if tt.listWant != "" {
			out := aliceOut
			if tt.who == op {
				out = nil
			}
			if out != nil {
				out.waitLine(t, tt.listWant)
			}
		}
	}

	// Completion has a budget: a flood of Tabs does nothing more after a while.
	completed := 0
	for range 100 {
		if got, _ := alice.Complete("/jo", 3); got != "/jo" {
			completed++
		}
	}
	if completed >= 100 || completed < 1 {
		t.Errorf("%d of 100 Tabs in a row completed; want a bounded number", completed)
	}
}

// FuzzRoomCommands runs any line as a command of an operator and of a member, and checks that
// the rooms stay consistent: every person in a room knows it, everyone is in one, and each
// session talks in one of its own rooms.
func FuzzRoomCommands(f *testing.F) {
	for _, s := range []string{"/join go", "/join #a.b-c_d", "/part", "/part #x", "/topic hi", "/private on", "/invite bob",
		"/who #go", "/history #go 5", "/rooms", "/room delete #go", "/room delete #go confirm", "/kick bob #go x", "/join " + strings.Repeat("x", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r := newTestRoom(t, Config{MaxRooms: 3})
		op, _ := join(t, r, "op", JoinOptions{Operator: true})
		bob, bobOut := join(t, r, "bob", JoinOptions{})
		op.Handle(line)
		bob.Handle(line)
		op.Handle("/room delete #go confirm")
		op.Complete(line, len(line))
		for _, l := range bobOut.lines() {
			if !utf8.ValidString(l) || chat.Sanitize(l) != l {
				t.Fatalf("after %+q, bob got %+q: not clean", line, l)
			}
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if len(r.rooms) > 3 || r.rooms[r.cfg.DefaultRoom] == nil {
			t.Fatalf("after %q: rooms %d, default room present: %v", line, len(r.rooms), r.rooms[r.cfg.DefaultRoom] != nil)
		}
		for name, ch := range r.rooms {
			for p := range ch.people {
				if !p.in(ch) || !containsRoom(p.rooms, ch) {
					t.Fatalf("after %q: %s is in %s, but does not know it", line, p.name, name)
				}
			}
		}
		for _, p := range r.people {
			if len(p.rooms) == 0 {
				t.Fatalf("after %q: %s is in no room", line, p.name)
			}
			for _, s := range p.sessions {
				if !p.in(s.current.Load()) {
					t.Fatalf("after %q: %s's current room %s is not one of theirs", line, p.name, s.current.Load().name)
				}
			}
		}
	})
}

func containsRoom(rooms []*channel, ch *channel) bool {
	for _, c := range rooms {
		if c == ch {
			return true
		}
	}
	return false
}

// BenchmarkRooms1000 is /rooms on a server of 1000 rooms: the time the command holds the
// room, measured in Handle (the writer renders the answer afterwards, off the room's lock).
func BenchmarkRooms1000(b *testing.B) {
	r := newTestRoom(b, Config{MaxRooms: -1, MaxRoomsPerPerson: -1, RoomsPerHour: -1, NoticeBurst: -1, OutboxSize: 1 << 20})
	maker, err := r.Join("maker", &countingOutput{}, JoinOptions{})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 999 {
		maker.Handle(fmt.Sprintf("/join room%d", i))
		if i%2 == 0 {
			maker.Handle(fmt.Sprintf("/topic the topic of room %d", i))
		}
	}
	asker, err := r.Join("asker", &countingOutput{}, JoinOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if n := len(r.rooms); n != 1000 {
		b.Fatalf("%d rooms", n)
	}
	b.ReportAllocs()
	for b.Loop() {
		asker.Handle("/rooms")
	}
	b.StopTimer()
	r.flushers.Wait()
}

// BenchmarkJoin1000 is /join of a room with 1000 people in it, and the /part after it: the
// room's topic and history shown to the newcomer, and its join and leave notices queued for all
// 1000, each notice on its own (no gathering).
func BenchmarkJoin1000(b *testing.B) {
	r := newTestRoom(b, Config{NoticeBurst: -1, OutboxSize: 1 << 16})
	first := fanOutRoom(b, r)
	first.Handle("/topic a crowded room")
	for i := range 20 {
		first.Handle(fmt.Sprintf("line %d of the history", i))
	}
	joiner, err := r.Join("joiner", &countingOutput{}, JoinOptions{})
	if err != nil {
		b.Fatal(err)
	}
	joiner.Handle("/join elsewhere")
	joiner.Handle("/part lobby")
	b.ReportAllocs()
	for b.Loop() {
		joiner.Handle("/join lobby")
		joiner.Handle("/part lobby")
	}
	b.StopTimer()
	r.flushers.Wait()
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/2, "µs/join")
}

// TestRoomBoundsHold checks the bounds of what one person can make a room hold: invitations and
// the away text.
func TestRoomBoundsHold(t *testing.T) {
	r := newTestRoom(t, Config{})
	op, opOut := join(t, r, "op", JoinOptions{Operator: true})
	say(t, op, "/join club", opOut, "* op joined #club (1 online)")
	for i := range maxInvited {
		op.Handle(fmt.Sprintf("/invite guest%d", i))
	}
	say(t, op, "/invite one.more", opOut, fmt.Sprintf("error: #club has %d invitations, the most a room may have", maxInvited))
	say(t, op, "/invite guest7", opOut, "* guest7 may join #club now") // an invitation again is no new one
	r.mu.Lock()
	n := len(r.rooms["#club"].invited)
	r.mu.Unlock()
	if n != maxInvited {
		t.Errorf("%d invitations held, want %d", n, maxInvited)
	}

	long := strings.Repeat("a", 900)
	got := say(t, op, "/away "+long, opOut, "* you are away ("+chat.Excerpt(long, 200)+"); /back when you are back")
	if l := got[len(got)-1]; len(l) > 300 {
		t.Errorf("away text of %d bytes kept", len(l))
	}
}
